"""Credentials never travel as parameters: Prefect stores flow parameters in its database, in clear.

Storage options such as ``endpoint_url`` or ``anon`` are settings; ``key``, ``secret``, ``token`` or a
password are credentials, which come from the environment, the standard AWS chain (profiles, instance
and pod roles) or the cluster's own secret store, and are read where the storage is opened.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from slomo_core.errors import ConfigError

# Names s3fs, gcsfs, adlfs and botocore use for credentials: key, secret, token, aws_secret_access_key,
# session_token, password, account_key, sas_token, credentials...
_CREDENTIAL_NAME = re.compile(r"key|secret|token|passw|credential", re.IGNORECASE)
WAYS = ("give credentials through the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), an AWS profile "
        "(AWS_PROFILE) or an instance/pod role, not as storage options")


def credential_names(options: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    """Dotted names of options (nested ones too, e.g. ``client_kwargs.aws_secret_access_key``) that hold
    credentials; values that are empty or None carry no secret and are not counted."""
    found: list[str] = []
    for name, value in (options or {}).items():
        dotted = f"{prefix}{name}"
        if isinstance(value, Mapping):
            found += credential_names(value, dotted + ".")
        elif value not in (None, "") and _CREDENTIAL_NAME.search(str(name)):
            found.append(dotted)
    return found


def refuse_credentials(options: Mapping[str, Any] | None, where: str) -> None:
    """One line naming the offending options, before anything stores them."""
    names = credential_names(options)
    if names:
        raise ConfigError(f"storage option(s) {', '.join(names)} hold credentials, which {where} would store in "
                          f"clear; {WAYS}")
