"""Compare-and-swap on one small object: create it only if absent, replace or delete it only if unchanged.

This is what a lease (lease.py) needs from storage, so that two runs can never both believe they won.
How each store provides it:

- **local files**: creation opens with ``O_CREAT | O_EXCL``; every read, create, replace and delete runs
  under an exclusive ``flock`` of a sidecar ``<name>.lock`` file, so no two processes interleave a
  read-compare-write (the kernel drops the lock of a process that dies: nothing stays locked). A replace
  writes a temporary file and renames it into place.
- **S3** (s3fs): conditional requests, atomic on the server: ``PutObject`` with ``If-None-Match: *`` to
  create, ``PutObject`` / ``DeleteObject`` with ``If-Match: <ETag>`` to replace / delete. AWS S3 honours
  them since 2024 and so does moto 5.2.5 (s3fs 2026.9 passes them through to botocore).
- **any other fsspec store**: best effort only: check that the object is absent (or unchanged), write,
  read it back and compare. Two writers within the same moment can both believe they won.

A *version* is opaque to callers: what ``read`` returned, handed back to ``replace`` / ``delete``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from fsspec.implementations.local import LocalFileSystem

from slomo_core.storage import StorageOptions, filesystem, put_whole

Version = str


class ConditionalObject(Protocol):
    url: str
    #: "atomic" where the store guarantees one winner, "best effort" where it cannot (see the module doc)
    guarantee: str

    def read(self) -> tuple[bytes, Version] | None:
        """The object's bytes and version, or None when it does not exist."""

    def create(self, data: bytes) -> Version | None:
        """Write ``data`` if the object does not exist; None when it does."""

    def replace(self, data: bytes, expected: Version) -> Version | None:
        """Write ``data`` if the object still has version ``expected``; None when it changed or is gone."""

    def delete(self, expected: Version) -> bool:
        """Delete the object if it still has version ``expected``."""


def conditional_object(url: str, options: StorageOptions | None = None) -> ConditionalObject:
    """The strongest compare-and-swap the store at ``url`` offers."""
    fs, path = filesystem(url, options)
    if isinstance(fs, LocalFileSystem):
        return _LocalObject(url, path)
    if type(fs).__module__.split(".")[0] == "s3fs":
        return _S3Object(url, fs, path)
    return _BestEffortObject(url, fs, path)


def _digest(data: bytes) -> Version:
    return hashlib.sha256(data).hexdigest()


class _LocalObject:
    guarantee = "atomic"

    def __init__(self, url: str, path: str) -> None:
        self.url, self.path, self.lock_path = url, path, f"{path}.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the flock of the sidecar lock file. ``delete`` removes that file while holding it, so a waiter
        that then gets the lock of the removed file notices (another inode, or none) and locks the new one."""
        while True:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the folder was removed between the two calls
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                current = os.stat(self.lock_path)
                if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                    break
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)

    def _read_unlocked(self) -> tuple[bytes, Version] | None:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        return data, _digest(data)

    def read(self) -> tuple[bytes, Version] | None:
        if not os.path.exists(self.path):  # a look creates no folder and no lock file
            return None
        with self._locked():  # a create writes in place: read only once it is complete
            return self._read_unlocked()

    def create(self, data: bytes) -> Version | None:
        with self._locked():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return None
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return _digest(data)

    def replace(self, data: bytes, expected: Version) -> Version | None:
        with self._locked():
            current = self._read_unlocked()
            if current is None or current[1] != expected:
                return None
            tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            return _digest(data)

    def delete(self, expected: Version) -> bool:
        with self._locked():
            current = self._read_unlocked()
            if current is None or current[1] != expected:
                return False
            os.remove(self.path)
            os.remove(self.lock_path)  # nothing left behind; waiters re-lock a fresh file (see _locked)
            return True


class _S3Object:
    guarantee = "atomic"

    def __init__(self, url: str, fs, path: str) -> None:
        self.url, self.fs = url, fs
        self.bucket, self.key, _ = fs.split_path(path)

    def read(self) -> tuple[bytes, Version] | None:
        from fsspec.asyn import sync

        async def get() -> tuple[bytes, Version] | None:
            try:
                response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            except FileNotFoundError:
                return None
            try:
                data = await response["Body"].read()
            finally:
                response["Body"].close()
            return data, response["ETag"]  # the ETag of exactly these bytes: one request

        return sync(self.fs.loop, get)

    def _put(self, data: bytes, condition: dict[str, str]) -> Version | None:
        try:
            response = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=data, **condition)
        except FileExistsError:  # 412 on If-None-Match
            return None
        except OSError as exc:
            # 412 on If-Match (s3fs: EINVAL), 404 when gone, 409 when a concurrent conditional write won (EBUSY)
            if isinstance(exc, FileNotFoundError) or exc.errno in (errno.EINVAL, errno.EBUSY):
                return None
            raise
        return response["ETag"]

    def create(self, data: bytes) -> Version | None:
        return self._put(data, {"IfNoneMatch": "*"})

    def replace(self, data: bytes, expected: Version) -> Version | None:
        return self._put(data, {"IfMatch": expected})

    def delete(self, expected: Version) -> bool:
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=expected)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno in (errno.EINVAL, errno.EBUSY):
                return False
            raise
        return True


class _BestEffortObject:
    guarantee = "best effort"

    def __init__(self, url: str, fs, path: str) -> None:
        self.url, self.fs, self.path = url, fs, path

    def read(self) -> tuple[bytes, Version] | None:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return data, _digest(data)

    def _write_and_check(self, data: bytes) -> Version | None:
        def write(target: str) -> None:
            with self.fs.open(target, "wb") as handle:
                handle.write(data)

        put_whole(self.fs, self.path, write)  # a failed write (full store) leaves the old lease, never a torn one
        back = self.read()
        return back[1] if back is not None and back[0] == data else None

    def create(self, data: bytes) -> Version | None:
        return None if self.read() is not None else self._write_and_check(data)

    def replace(self, data: bytes, expected: Version) -> Version | None:
        current = self.read()
        return self._write_and_check(data) if current is not None and current[1] == expected else None

    def delete(self, expected: Version) -> bool:
        current = self.read()
        if current is None or current[1] != expected:
            return False
        self.fs.rm_file(self.path)
        return True
