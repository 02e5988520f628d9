"""Object storage through fsspec: local paths by default, s3:// (s3fs) or any other protocol by URL.

Workers never share a filesystem: everything they exchange (manifests, segments, commit markers,
status rows) goes through these helpers, and remote inputs are copied into a per-process cache keyed by
their etag, so a chunk never reads a source that changed after planning.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from slomo_core.errors import InputError, OutputError

StorageOptions = Mapping[str, Any]


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
    if not isinstance(exc, (OSError, TimeoutError)) and library not in ("botocore", "aiobotocore", "aiohttp"):
        return None
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    hint = ("; credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or an AWS profile"
            if "Credentials" in type(exc).__name__ else "")
    return InputError(f"{url}: storage not reachable: {type(exc).__name__}: {first}{hint}")


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
    return fs.exists(path)


def read_bytes(url: str, options: StorageOptions | None = None) -> bytes:
    fs, path = filesystem(url, options)
    with fs.open(path, "rb") as handle:
        return handle.read()


def write_bytes(url: str, data: bytes, options: StorageOptions | None = None) -> None:
    """Whole-object write: an S3 PUT is atomic; locally a temporary name is renamed into place."""
    fs, path = filesystem(url, options)
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        return
    with fs.open(path, "wb") as handle:
        handle.write(data)


def read_json(url: str, options: StorageOptions | None = None) -> dict:
    return json.loads(read_bytes(url, options))


def write_json(url: str, payload: Mapping[str, Any], options: StorageOptions | None = None) -> None:
    write_bytes(url, json.dumps(payload, sort_keys=True, indent=1).encode(), options)


def upload(local_path: str, url: str, options: StorageOptions | None = None) -> None:
    fs, path = filesystem(url, options)
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, path)
        return
    fs.put_file(local_path, path)


def download(url: str, local_path: str, options: StorageOptions | None = None) -> None:
    fs, path = filesystem(url, options)
    tmp = f"{local_path}.{uuid.uuid4().hex}.tmp"
    try:
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
    found = fs.glob(posixpath.join(path.rstrip("/"), pattern))
    files = [p for p in found if not fs.isdir(p)]
    return sorted(protocol + p if protocol and not p.startswith(protocol) else p for p in files)
