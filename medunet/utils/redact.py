"""Credentials out of records: what a run writes about itself (its merged configuration, logged to MLflow) must
not carry a password given on the command line, e.g. in ``--tracking_uri http://user:password@host``."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["redact_credentials"]

_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
_SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_key|apikey)$", re.IGNORECASE)


def redact_credentials(value: Any) -> Any:
    """``value`` with the password of every ``scheme://user:password@host`` replaced by ``***`` and the value of
    every key named like a secret (``password``, ``token``, ``*_secret``, ``api_key``) hidden; lists, tuples and
    dicts are walked, other values returned as they are."""
    if isinstance(value, str):
        return _URI_PASSWORD.sub(r"\g<head>:***@", value)
    if isinstance(value, dict):
        return {
            k: "***" if isinstance(k, str) and _SECRET_KEYS.search(k) and v else redact_credentials(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_credentials(v) for v in value)
    return value
