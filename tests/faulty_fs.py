"""``faulty://``: the local filesystem behind a real fsspec protocol, with faults a test turns on and off.

A full disk and a storage endpoint that goes away are injected where slomo meets its store, through the
same fsspec calls s3fs serves in production. The faults live in a JSON file named by the storage option
``faults``, so the driver and every Ray actor (other processes) share one budget:

- ``space``: bytes the store may still take; a write past it stores what fits and raises ENOSPC;
- ``scratch``: bytes that copies *from* the store may still put on the local disk (a full scratch disk
  while a source is copied for decoding);
- ``calls``: store operations left before the endpoint disappears (then every call is refused).

``None`` (the default) means no limit. Ray actors learn the protocol from :func:`register`, run as their
worker setup hook (tests/conftest.py).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

PROTOCOL = "faulty"


def set_faults(path: str, space: int | None = None, scratch: int | None = None, calls: int | None = None) -> None:
    """(Re)arm the faults; all None clears them (the disk was emptied, the endpoint is back). Under the same
    lock as the budget's users: an actor's read-modify-write must not undo it."""
    if not os.path.exists(path):
        with open(path, "x", encoding="utf-8") as handle:
            json.dump({}, handle)
    with _state(path) as state:
        state.update(space=space, scratch=scratch, calls=calls)


@contextmanager
def _state(path: str) -> Iterator[dict[str, Any]]:
    """The shared budget, read and written under an exclusive lock (actors spend it concurrently)."""
    with open(path, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        state = json.load(handle)
        yield state
        handle.seek(0)
        handle.truncate()
        json.dump(state, handle)


def _no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _QuotaFile:
    """A local file opened for writing whose bytes are charged to a budget; past it, ENOSPC."""

    def __init__(self, handle: Any, charge: Any) -> None:
        self._handle, self._charge = handle, charge

    def write(self, data: bytes) -> int:
        allowed = self._charge(len(data))
        if allowed < len(data):
            self._handle.write(data[:allowed])
            raise _no_space()
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _QuotaFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


class FaultyFileSystem(AbstractFileSystem):
    """Local files through the fsspec API (not a LocalFileSystem: slomo must take its remote-store paths)."""

    protocol = PROTOCOL
    root_marker = "/"

    def __init__(self, faults: str, **kwargs: Any) -> None:
        super().__init__(faults=faults, **kwargs)
        self.faults = faults
        self.local = LocalFileSystem()

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = str(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3:]
        return "/" + path.lstrip("/").rstrip("/") if path not in ("", "/") else "/"

    def _call(self) -> None:
        """Each operation: refused once the endpoint is gone."""
        with _state(self.faults) as state:
            if state["calls"] is not None:
                if state["calls"] <= 0:
                    raise ConnectionRefusedError(errno.ECONNREFUSED, "faulty://: the storage endpoint went away")
                state["calls"] -= 1

    def _charge(self, key: str, wanted: int) -> int:
        """How many of ``wanted`` bytes fit in budget ``key`` (and spend them)."""
        with _state(self.faults) as state:
            if state[key] is None:
                return wanted
            allowed = max(0, min(wanted, state[key]))
            state[key] -= allowed
            return allowed

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        self._call()
        return self.local.ls(self._strip_protocol(path), detail=detail)

    def info(self, path: str, **kwargs: Any) -> dict:
        self._call()
        return self.local.info(self._strip_protocol(path))

    def exists(self, path: str, **kwargs: Any) -> bool:
        """Like s3fs: a missing object is False, a failing store raises (fsspec's default says False)."""
        try:
            self.info(path)
        except FileNotFoundError:
            return False
        return True

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self._call()
        self.local.mkdir(self._strip_protocol(path), create_parents=create_parents)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self._call()
        self.local.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    def rm_file(self, path: str) -> None:
        self._call()
        self.local.rm_file(self._strip_protocol(path))

    def rmdir(self, path: str) -> None:
        self._call()
        self.local.rmdir(self._strip_protocol(path))

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        self._call()
        os.replace(self._strip_protocol(path1), self._strip_protocol(path2))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        with self.open(path1, "rb") as source, self.open(path2, "wb") as target:
            target.write(source.read())

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        self._call()
        local = self._strip_protocol(path)
        if "r" in mode:
            return open(local, mode)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        return _QuotaFile(open(local, mode), lambda n: self._charge("space", n))

    def get_file(self, rpath: str, lpath: str, **kwargs: Any) -> None:
        """A copy onto this machine's disk: charged to the scratch budget."""
        with self.open(rpath, "rb") as source, _QuotaFile(open(lpath, "wb"), lambda n: self._charge("scratch", n)) as target:
            while block := source.read(1 << 16):
                target.write(block)


def register() -> None:
    """Make ``faulty://`` known to fsspec in this process (the test driver and each Ray worker)."""
    fsspec.register_implementation(PROTOCOL, FaultyFileSystem, clobber=True)
