"""CLI glue for the flows: fail fast on bad input, show progress, keep Prefect and Ray quiet.

Progress comes from storage, not from the flow: a thread counts the job's commit markers, so the bar
is right whether the actors run on this machine or on a remote cluster.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path
from typing import Any

from flows.interrupts import orderly_shutdown
from slomo_core.convert import check_output_path
from slomo_core.credentials import refuse_credentials
from slomo_core.errors import InputError
from slomo_core.keys import refuse_same_object
from slomo_core.manifest import DoneRecord, read_manifest
from slomo_core.plan import JobLayout
from slomo_core.settings import ConversionSettings
from slomo_core.storage import StorageOptions, exists, filesystem, identity, is_local
from slomo_core.video.audio import check_audio_decodes
from slomo_core.video.probe import probe, read_frame_timestamps


def preflight(source: str, output: str, overwrite: bool, storage: StorageOptions | None, audio_mode: str) -> None:
    """The checks that catch most mistakes, before Prefect and Ray start (seconds saved, one clear line)."""
    identity(source, storage)
    refuse_same_object(source, output, storage)  # any filesystem, --overwrite or not
    if is_local(source, storage):
        probe(source)
        frames = len(read_frame_timestamps(source))
        if frames < 2:
            raise InputError(f"{source}: has {frames} video frame(s); interpolation needs at least 2")
        if audio_mode == "stretch":
            check_audio_decodes(source)
    if is_local(output, storage):
        check_output_path(source, output, overwrite)


class CommitProgress:
    """Polls a job's commit markers and drives a tqdm bar of chunks."""

    def __init__(self, layout: JobLayout, storage: StorageOptions | None, quiet: bool, interval: float = 1.0) -> None:
        self.layout, self.storage, self.quiet, self.interval = layout, storage, quiet, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slomo-progress", daemon=True)

    def __enter__(self) -> "CommitProgress":
        if not self.quiet:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        from tqdm import tqdm

        bar = None
        commits = self.layout.commits
        try:
            while not self._stop.wait(self.interval):
                if bar is None and exists(self.layout.manifest, self.storage):
                    chunks, _ = read_manifest(self.layout.manifest, self.storage)
                    bar = tqdm(total=len(chunks), unit="chunk", desc="interpolating", dynamic_ncols=True)
                if bar is not None and exists(commits, self.storage):
                    fs, path = filesystem(commits, self.storage)
                    bar.update(len(fs.ls(path)) - bar.n)
        except Exception:  # progress is cosmetic: never let it break a run
            pass
        finally:
            if bar is not None:
                bar.close()


def keep_prefect_home_private() -> None:
    """Prefect's local database records every flow run and its parameters: only its owner may read it."""
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home).expanduser()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_uid == os.getuid():
        home.chmod(0o700)


def before_flow(storage: StorageOptions | None) -> None:
    """Credentials refused before Prefect stores the run's parameters, and its local store kept private."""
    refuse_credentials(storage, "Prefect's database (as this flow run's parameters; --local keeps them in this process)")
    keep_prefect_home_private()


def finished_summary(layout: JobLayout, storage: StorageOptions | None, seconds: float) -> dict[str, Any]:
    """The summary of a job that finished in an earlier run, from its manifest and DONE marker alone."""
    chunks, job = read_manifest(layout.manifest, storage)
    done = DoneRecord.read(layout.done, storage)
    return {**job, "output_frames": done.frames, "output_sha256": done.sha256, "chunks": len(chunks),
            "chunks_resumed": len(chunks), "workers": [], "seconds": round(seconds, 2)}


def run_convert_flow(args: argparse.Namespace, settings: ConversionSettings,
                     storage: StorageOptions | None) -> dict[str, Any]:
    from flows.convert import convert_video

    before_flow(storage)
    started = time.perf_counter()
    settings = settings.with_weights_digest(storage)  # hashed once: the flow gets the pinned digest
    layout = settings.layout_for(args.input, args.output, storage)
    finished = exists(layout.done, storage)
    if finished and exists(args.output, storage):
        return finished_summary(layout, storage, time.perf_counter() - started)  # no Prefect, no Ray
    # A finished job whose output is gone is stitched again from its committed chunks: its output is its own.
    preflight(args.input, args.output, args.overwrite or finished, storage, settings.job_settings().resolved_audio_mode())
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    with orderly_shutdown(settings.ray_address), CommitProgress(layout, storage, args.quiet):
        return convert_video(args.input, args.output, settings=settings, storage_options=storage,
                             overwrite=args.overwrite)


def run_archive_flow(args: argparse.Namespace, settings: ConversionSettings,
                     storage: StorageOptions | None) -> list[dict[str, Any]]:
    from flows.archive import convert_archive

    before_flow(storage)
    with orderly_shutdown(settings.ray_address, start_ray=False):  # Ray only if some video needs converting
        return convert_archive(args.input_prefix, args.output_prefix, settings=settings, pattern=args.pattern,
                               suffix=args.suffix, videos_per_pool=args.videos_per_pool, storage_options=storage)
