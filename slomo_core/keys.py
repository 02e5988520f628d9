"""Where derived files may land: output keys relative to the input prefix, checked, kept under their root.

A bucket's keys are not under the operator's control, so a key never chooses where a file lands: it must
be a plain relative path (no '..', no absolute path, no backslash, no control character), and every path
built from it must resolve under its root. Pure string logic plus one filesystem probe (``same_object``).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence

from slomo_core.errors import InputError, OutputError
from slomo_core.storage import StorageOptions, filesystem, is_local

_SCHEME_ALIASES = {"s3a": "s3", "file": "", "local": ""}


class UnsafeKeyError(InputError):
    """An input key that would place an output outside its prefix (or is not a usable name)."""


def split_url(url: str) -> tuple[str, str]:
    """(scheme, path); local paths and file:// URLs have the scheme ''. The path is not normalised."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", url
    return _SCHEME_ALIASES.get(scheme.lower(), scheme.lower()), rest


def unsafe_reason(key: str) -> str | None:
    """Why ``key`` cannot be used as a relative output path, or None when it can."""
    if not key:
        return "empty key"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "control character in key"
    if "\\" in key:
        return "backslash in key"
    if key.startswith("/"):
        return "absolute path"
    segments = key.split("/")
    if any(s in ("..", ".") for s in segments):
        return "'.' or '..' segment in key"
    if any(not s for s in segments):
        return "empty segment in key"
    return None


def check_key(key: str, context: str) -> str:
    """``key`` when it is a safe relative path; else UnsafeKeyError naming ``context`` (the source)."""
    reason = unsafe_reason(key)
    if reason is not None:
        raise UnsafeKeyError(f"{context!r}: {reason}; not converted (outputs must stay under the output prefix)")
    return key


def check_name(name: str, what: str) -> str:
    """One path segment (job id, chunk or attempt name): safe and without '/'."""
    if "/" in name or unsafe_reason(name) is not None:
        raise OutputError(f"{what} {name!r} is not a plain name; it would leave its folder")
    return name


def _local_absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def relative_key(source: str, input_prefix: str) -> str:
    """The source's path relative to ``input_prefix``, checked; for local paths (relative or absolute, any
    cwd) and for URLs alike. Local paths are made absolute first (what the filesystem lists); URL keys are
    compared segment by segment without normalisation, since object stores keep '..' literally."""
    source_scheme, source_path = split_url(source)
    prefix_scheme, prefix_path = split_url(input_prefix)
    if source_scheme != prefix_scheme:
        raise UnsafeKeyError(f"{source!r}: not under the input prefix {input_prefix!r}")
    if source_scheme == "":
        base, path = _local_absolute(prefix_path), _local_absolute(source_path)
        relative = path[len(base) :].lstrip(os.sep) if path.startswith(base.rstrip(os.sep) + os.sep) else None
    else:
        base = prefix_path.rstrip("/")
        relative = source_path[len(base) + 1 :] if source_path.startswith(base + "/") else None
    if relative is None:
        raise UnsafeKeyError(f"{source!r}: not under the input prefix {input_prefix!r}")
    return check_key(relative, source)


def common_prefix(sources: Sequence[str]) -> str:
    """The deepest folder holding every source (for lists given without a prefix), keys left unnormalised."""
    schemes = {split_url(s)[0] for s in sources}
    if len(schemes) != 1:
        raise InputError("sources mix storage schemes; give them one at a time")
    (scheme,) = schemes
    if scheme == "":
        folders = [os.path.dirname(_local_absolute(s)) for s in sources]
        return os.path.commonpath(folders)
    parts = [split_url(s)[1].split("/")[:-1] for s in sources]
    shared: list[str] = []
    for segments in zip(*parts):
        if len(set(segments)) != 1:
            break
        shared.append(segments[0])
    return f"{scheme}://" + "/".join(shared)


def output_for(source: str, input_prefix: str, output_prefix: str, suffix: str = "") -> str:
    """Mirror the source's key under ``output_prefix``; ``suffix`` goes before the extension.

    Raises UnsafeKeyError for a key that is not a plain relative path; the result always lies under
    ``output_prefix``.
    """
    key = relative_key(source, input_prefix)
    stem, ext = posixpath.splitext(key)
    name = check_key(f"{stem}{suffix}{ext or '.mp4'}", source)
    output = output_prefix.rstrip("/") + "/" + name if "://" in output_prefix else os.path.join(output_prefix, name)
    if not is_under(output, output_prefix):
        raise UnsafeKeyError(f"{source!r}: its output {output!r} would leave the output prefix")
    return output


def is_under(path: str, root: str) -> bool:
    """Whether ``path`` lies strictly below ``root`` once both are normalised (same scheme)."""
    path_scheme, path_rest = split_url(path)
    root_scheme, root_rest = split_url(root)
    if path_scheme != root_scheme:
        return False
    if path_scheme == "":
        base, target = _local_absolute(root_rest), _local_absolute(path_rest)
        return target.startswith(base.rstrip(os.sep) + os.sep)
    base, target = posixpath.normpath("/" + root_rest), posixpath.normpath("/" + path_rest)
    return target.startswith(base.rstrip("/") + "/")


def absolute_location(url: str) -> str:
    """Local paths made absolute (URLs unchanged): jobs record where their files are, because Ray actors run
    in another working folder than the command that started them."""
    scheme, path = split_url(url)
    return os.path.abspath(os.path.expanduser(path)) if scheme == "" else url


def _canonical(url: str) -> str:
    scheme, path = split_url(url)
    return f"{scheme}://{path.strip('/')}"


def same_object(source: str, output: str, options: StorageOptions | None = None) -> bool:
    """Whether writing ``output`` would replace ``source``.

    Local: the same resolved path (symlinks followed, also of parent folders) or the same file (hard
    links, ``os.path.samefile``). Object stores: the same bucket and key after normalising the URL
    (s3a:// = s3://), or, where both objects exist, the same ETag and size: one object may be reached
    through two spellings, and replacing a byte-identical copy is never worth the risk.
    """
    if is_local(source, options) and is_local(output, options):
        source_path, output_path = filesystem(source, options)[1], filesystem(output, options)[1]
        if os.path.realpath(source_path) == os.path.realpath(output_path):
            return True
        try:
            return os.path.samefile(source_path, output_path)
        except OSError:  # one of them does not exist: they cannot be the same file
            return False
    if is_local(source, options) != is_local(output, options):
        return False
    if _canonical(source) == _canonical(output):
        return True
    fs_source, source_path = filesystem(source, options)
    fs_output, output_path = filesystem(output, options)
    try:
        a, b = fs_source.info(source_path), fs_output.info(output_path)
    except (FileNotFoundError, OSError):
        return False
    etag_a, etag_b = a.get("ETag") or a.get("etag"), b.get("ETag") or b.get("etag")
    return bool(etag_a) and etag_a == etag_b and a.get("size") == b.get("size")


def refuse_same_object(source: str, output: str, options: StorageOptions | None = None) -> None:
    """OutputError when the output would replace the job's own source, whatever ``--overwrite`` says."""
    if same_object(source, output, options):
        raise OutputError(f"{output}: output would overwrite the input {source} (refused even with --overwrite)")
