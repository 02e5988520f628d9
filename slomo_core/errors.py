"""Errors whose message is one line meant for the user; the CLI prints it and exits non-zero."""


class SlomoError(Exception):
    """Base class: anything the user can fix (bad input, bad option, bad file)."""


class InputError(SlomoError):
    """The input is missing, not a video, too short, truncated or otherwise unusable."""


class CheckpointError(SlomoError):
    """A weights file is missing, corrupt, or does not match the architecture."""


class OutputError(SlomoError):
    """The output cannot be written."""


class ConfigError(SlomoError):
    """An option is out of range or contradicts another one."""


class StorageError(SlomoError, OSError):
    """A store failed under a running job (full disk, quota, endpoint gone): one line naming the URL.

    Unlike other SlomoErrors it may pass: a chunk that meets it is retried on another actor, and a re-run
    once the fault is gone resumes from the committed chunks.
    """
