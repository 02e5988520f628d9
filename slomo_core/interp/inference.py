"""How to run the network (device, dtype, memory), as plain settings that load no torch.

Settings and the CLI name these choices; only the network (network.py, runtime.py) turns them into torch
objects, so a run that never builds the network never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPE_NAMES = ("fp32", "bf16", "fp16")  # runtime.DTYPES maps each to its torch dtype


@dataclass(frozen=True)
class InferenceSettings:
    """How to run the network. channels_last measured 1.3x faster on a 2-core AVX2 CPU (bench/interpolators.py);
    bf16 pays off only where the hardware has it (GPUs, CPUs with AVX512-BF16/AMX), elsewhere it is far slower."""

    device: str = "auto"
    dtype: str = "auto"  # bf16 where the hardware has it natively, else fp32 (see resolve_inference_dtype)
    channels_last: bool = True
    compile: bool = False  # torch.compile both U-Nets (Inductor, dynamic shapes): slower first batch, faster after
    # Pixels (after padding) per forward pass, bounding activation memory; None sizes it from free memory.
    max_batch_pixels: int | None = None
    tile_overlap: int = 64
