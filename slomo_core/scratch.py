"""Temporary folders: removed when their work ends, and marked so that a later run removes what a killed one left.

A sweep removes a folder only when it is provably ours and stale: its name is ``<prefix><pid>-<random>``
with a slomo prefix, it holds the owner file written when it was made (host, pid, the process's start
time), the host is this one, and that process is gone (or its pid now belongs to a later process).
Anything else (another host's folder on a shared disk, a folder being created, a foreign one) is left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

OWNER_FILE = ".slomo-owner.json"
_NAME = re.compile(r"^\.?slomo-[a-z-]+-(\d+)-[A-Za-z0-9_]+$")


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def make_scratch_dir(prefix: str, parent: str | None = None) -> str:
    """A fresh folder named after this process, with its owner file; the caller removes it."""
    path = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start_time(os.getpid())}
    with open(os.path.join(path, OWNER_FILE), "w", encoding="utf-8") as handle:
        json.dump(owner, handle)
    return path


@contextmanager
def scratch_dir(prefix: str, parent: str | None = None) -> Iterator[str]:
    """A scratch folder removed on success, failure and KeyboardInterrupt alike."""
    path = make_scratch_dir(prefix, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _owner_gone(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's: compare start times below
        pass
    recorded, current = owner.get("start"), process_start_time(pid)
    return recorded is not None and current is not None and current != recorded


def is_stale(path: str) -> bool:
    """Whether ``path`` is one of our scratch folders whose owning process is gone."""
    match = _NAME.match(os.path.basename(path))
    if match is None or os.path.islink(path) or not os.path.isdir(path):
        return False
    try:
        with open(os.path.join(path, OWNER_FILE), encoding="utf-8") as handle:
            owner = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(owner, dict) and owner.get("pid") == int(match.group(1)) and _owner_gone(owner)


def sweep_stale(parent: str | None = None) -> list[str]:
    """Remove the stale scratch folders directly under ``parent`` (default: the temp dir); returns them."""
    folder = parent or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if "slomo-" in entry.name and is_stale(entry.path):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _tree_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def prune_cache(cache_dir: str, max_bytes: int) -> list[str]:
    """Bound a download cache (one subfolder per object): drop least recently used entries until the rest
    fits in ``max_bytes``; the most recent entry always stays, whatever its size. Returns what went."""
    try:
        entries = [e for e in os.scandir(cache_dir) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    entries.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime, reverse=True)
    sizes = [_tree_bytes(e.path) for e in entries]
    removed, total = [], sum(sizes)
    for entry, size in reversed(list(zip(entries[1:], sizes[1:]))):
        if total <= max_bytes:
            break
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
        total -= size
    return removed
