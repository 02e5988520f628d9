"""The U-Net used twice by Super SloMo (flow computation and arbitrary-time flow interpolation).

Module names (conv1, conv2, down1..down5, up1..up5, conv3) match the widely used public PyTorch
re-implementation so its checkpoints load unchanged. Widths are configurable so a lighter network
(fewer channels, same topology) can be trained on CPUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

FULL_WIDTHS: tuple[int, ...] = (32, 64, 128, 256, 512, 512)
# Same topology with half the channels at the top and a quarter at the bottom: 4.0M parameters against
# 39.6M, ~4x fewer FLOPs; learns on two CPU cores in hours and ships in the repository as 8 MB of fp16.
LIGHT_WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 128, 128)
# The named sizes of the architecture (training, benchmarks and cards refer to them by name).
PRESETS: dict[str, tuple[int, ...]] = {"full": FULL_WIDTHS, "light": LIGHT_WIDTHS}
_SLOPE = 0.1


class Down(nn.Module):
    """Average-pool by 2, then two convolutions."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 2)
        x = F.leaky_relu(self.conv1(x), _SLOPE)
        return F.leaky_relu(self.conv2(x), _SLOPE)


class Up(nn.Module):
    """Bilinear upsample by 2, convolution, concatenate the skip, convolution."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int | None = None) -> None:
        super().__init__()
        skip_channels = out_channels if skip_channels is None else skip_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels + skip_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = F.leaky_relu(self.conv1(x), _SLOPE)
        return F.leaky_relu(self.conv2(torch.cat((x, skip), dim=1)), _SLOPE)


class UNet(nn.Module):
    """Five-level U-Net; input height and width must be multiples of 32."""

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int] = FULL_WIDTHS) -> None:
        super().__init__()
        if len(widths) != 6:
            raise ValueError(f"UNet needs 6 widths, got {len(widths)}")
        w0, w1, w2, w3, w4, w5 = widths
        self.widths = tuple(int(w) for w in widths)
        self.conv1 = nn.Conv2d(in_channels, w0, 7, padding=3)
        self.conv2 = nn.Conv2d(w0, w0, 7, padding=3)
        self.down1 = Down(w0, w1, 5)
        self.down2 = Down(w1, w2, 3)
        self.down3 = Down(w2, w3, 3)
        self.down4 = Down(w3, w4, 3)
        self.down5 = Down(w4, w5, 3)
        self.up1 = Up(w5, w4, w4)
        self.up2 = Up(w4, w3, w3)
        self.up3 = Up(w3, w2, w2)
        self.up4 = Up(w2, w1, w1)
        self.up5 = Up(w1, w0, w0)
        self.conv3 = nn.Conv2d(w0, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), _SLOPE)
        s1 = F.leaky_relu(self.conv2(x), _SLOPE)
        s2 = self.down1(s1)
        s3 = self.down2(s2)
        s4 = self.down3(s3)
        s5 = self.down4(s4)
        x = self.down5(s5)
        x = self.up1(x, s5)
        x = self.up2(x, s4)
        x = self.up3(x, s3)
        x = self.up4(x, s2)
        x = self.up5(x, s1)
        # The reference applies the activation to the output layer too; checkpoints depend on it.
        return F.leaky_relu(self.conv3(x), _SLOPE)
