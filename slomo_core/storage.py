"""Object storage through fsspec: local paths by default, s3:// (s3fs) or any other protocol by URL.

Workers never share a filesystem: everything they exchange (manifests, segments, commit markers,
status rows) goes through these helpers, and remote inputs are copied into a per-process cache keyed by
their etag, so a chunk never reads a source that changed after planning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from slomo_core.errors import InputError, OutputError, SlomoError, StorageError

StorageOptions = Mapping[str, Any]

# Stores whose whole-object PUT is atomic: a failed upload leaves no object. Elsewhere a temporary name is
# written first and moved into place, so a failed write never leaves a partial file under the real name.
_ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"})
_CLIENT_LIBRARIES = ("botocore", "aiobotocore", "aiohttp")


@dataclass(frozen=True)
class ObjectIdentity:
    """What must not change between planning and execution: an etag (or mtime stamp) and a size."""

    etag: str
    size: int


def filesystem(url: str, options: StorageOptions | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem serving ``url`` and the path within it.

    S3 listings are not cached: other processes commit markers, and a stale listing would hide them.
    """
    kwargs = dict(options or {})
    if url.startswith(("s3://", "s3a://")):
        kwargs.setdefault("use_listings_cache", False)
    try:
        return fsspec.core.url_to_fs(url, **kwargs)
    except (ImportError, ValueError) as exc:
        raise OutputError(f"{url}: unsupported storage URL ({exc})") from None


def is_local(url: str, options: StorageOptions | None = None) -> bool:
    return isinstance(filesystem(url, options)[0], LocalFileSystem)


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL or local path with '/' (what every object store uses)."""
    if "://" in url:
        return posixpath.join(url, *parts)
    return os.path.join(url, *parts)


def unreachable(url: str, exc: BaseException) -> InputError | None:
    """One line for a store that cannot be reached or refuses us (no endpoint, no credentials, access denied),
    instead of the client library's traceback; None for anything else."""
    library = type(exc).__module__.split(".")[0]
    if not isinstance(exc, (OSError, TimeoutError)) and library not in _CLIENT_LIBRARIES:
        return None
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    hint = ("; credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or an AWS profile"
            if "Credentials" in type(exc).__name__ else "")
    return InputError(f"{url}: storage not reachable: {type(exc).__name__}: {first}{hint}")


def storage_fault(url: str, exc: BaseException, doing: str) -> StorageError | None:
    """One line for a store failing mid-run (full disk, quota, lost endpoint), naming the URL; None when
    ``exc`` is not a storage failure. ``doing`` says what was under way ("writing", "uploading" ...)."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code in errno.errorcode and not isinstance(exc, ConnectionError):
        reason = f"{os.strerror(code).lower()} ({errno.errorcode[code]})"
    elif isinstance(exc, (OSError, TimeoutError)) or type(exc).__module__.split(".")[0] in _CLIENT_LIBRARIES:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        reason = f"storage not reachable: {type(exc).__name__}: {first}"
    else:
        return None
    fault = StorageError(f"{url}: {doing} failed: {reason}")
    fault.errno = code
    return fault


@contextmanager
def faults_named(url: str, doing: str) -> Iterator[None]:
    """Storage failures leave as one StorageError naming ``url``; a missing object stays FileNotFoundError
    (callers decide what that means) and slomo's own errors pass unchanged."""
    try:
        yield
    except (SlomoError, FileNotFoundError):
        raise
    except Exception as exc:
        fault = storage_fault(url, exc, doing)
        if fault is None:
            raise
        raise fault from exc


def _discard(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Best effort: remove what a failed write left (the store may be the thing that failed)."""
    try:
        if isinstance(fs, LocalFileSystem):
            os.remove(path)
        else:
            fs.rm_file(path)
    except Exception:
        pass


def discard(url: str, options: StorageOptions | None = None) -> None:
    """Best effort removal of an object a failed step must not leave behind."""
    try:
        fs, path = filesystem(url, options)
    except Exception:
        return
    _discard(fs, path)


def _atomic_put(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return bool(_ATOMIC_PUT.intersection(protocols))


def identity(url: str, options: StorageOptions | None = None) -> ObjectIdentity:
    fs, path = filesystem(url, options)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise InputError(f"{url}: no such file") from None
    except Exception as exc:
        error = unreachable(url, exc)
        if error is None:
            raise
        raise error from None
    if info.get("type") == "directory":
        raise InputError(f"{url}: is a directory, not a video file")
    size = int(info.get("size") or 0)
    etag = info.get("ETag") or info.get("etag")
    if not etag:  # local files: modification time stands in for an etag
        mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or ""
        etag = f"{mtime}-{size}"
    return ObjectIdentity(str(etag).strip('"'), size)


def exists(url: str, options: StorageOptions | None = None) -> bool:
    fs, path = filesystem(url, options)
    with faults_named(url, "checking"):
        return fs.exists(path)


def read_bytes(url: str, options: StorageOptions | None = None) -> bytes:
    fs, path = filesystem(url, options)
    with faults_named(url, "reading"), fs.open(path, "rb") as handle:
        return handle.read()


def put_whole(fs: fsspec.AbstractFileSystem, path: str, write: Callable[[str], None]) -> None:
    """``write(target)`` puts the bytes at ``target``; under a temporary name first unless the store's PUT is
    atomic, so the real name holds a complete object or nothing."""
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if _atomic_put(fs):
        write(path)
        return
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        write(tmp)
        if isinstance(fs, LocalFileSystem):
            os.replace(tmp, path)
        else:
            fs.mv(tmp, path)
    except BaseException:
        _discard(fs, tmp)
        raise


def write_bytes(url: str, data: bytes, options: StorageOptions | None = None) -> None:
    """Whole-object write: complete under its name, or absent (a failure leaves no partial object)."""
    fs, path = filesystem(url, options)

    def write(target: str) -> None:
        if isinstance(fs, LocalFileSystem):
            with open(target, "wb") as handle:
                handle.write(data)
        else:
            with fs.open(target, "wb") as handle:
                handle.write(data)

    with faults_named(url, "writing"):
        put_whole(fs, path, write)


def read_json(url: str, options: StorageOptions | None = None) -> dict:
    return json.loads(read_bytes(url, options))


def write_json(url: str, payload: Mapping[str, Any], options: StorageOptions | None = None) -> None:
    write_bytes(url, json.dumps(payload, sort_keys=True, indent=1).encode(), options)


def upload(local_path: str, url: str, options: StorageOptions | None = None) -> None:
    """Copy a local file to ``url``: complete under its name, or absent."""
    fs, path = filesystem(url, options)

    def write(target: str) -> None:
        if isinstance(fs, LocalFileSystem):
            shutil.copyfile(local_path, target)
        else:
            fs.put_file(local_path, target)

    with faults_named(url, "uploading"):
        put_whole(fs, path, write)


def download(url: str, local_path: str, options: StorageOptions | None = None) -> None:
    fs, path = filesystem(url, options)
    tmp = f"{local_path}.{uuid.uuid4().hex}.tmp"
    try:
        with faults_named(url, f"copying to {os.path.dirname(local_path) or '.'}"):
            fs.get_file(path, tmp)
            os.replace(tmp, local_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def localize(url: str, cache_dir: str, expected: ObjectIdentity | None = None, options: StorageOptions | None = None) -> str:
    """A local path with the object's bytes: the path itself when local, else a cached download.

    With ``expected``, the object must still have the identity it had at planning time.
    """
    current = identity(url, options)
    if expected is not None and current != expected:
        raise InputError(f"{url}: changed since the job was planned (etag/size {current} != {expected})")
    fs, path = filesystem(url, options)
    if isinstance(fs, LocalFileSystem):
        return path
    key = hashlib.sha256(f"{url}\0{current.etag}\0{current.size}".encode()).hexdigest()[:24]
    folder = os.path.join(cache_dir, key)
    local = os.path.join(folder, posixpath.basename(path) or "object")
    if not os.path.exists(local):
        os.makedirs(folder, exist_ok=True)
        download(url, local, options)
    else:
        os.utime(folder)  # recently used: bounded caches evict the least recently used first
    return local


def file_sha256(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def list_names(url: str, options: StorageOptions | None = None) -> list[str]:
    """Names of the objects directly under a folder or prefix (sorted); none when it does not exist."""
    fs, path = filesystem(url, options)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    return sorted(posixpath.basename(str(entry).rstrip("/")) for entry in entries)


def list_files(url: str, pattern: str = "**", options: StorageOptions | None = None) -> list[str]:
    """Files under a prefix matching a glob, as URLs with the prefix's protocol."""
    fs, path = filesystem(url, options)
    protocol = url.split("://", 1)[0] + "://" if "://" in url else ""
    with faults_named(url, "listing"):
        found = fs.glob(posixpath.join(path.rstrip("/"), pattern))
        files = [p for p in found if not fs.isdir(p)]
    return sorted(protocol + p if protocol and not p.startswith(protocol) else p for p in files)
