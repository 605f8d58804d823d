"""Keeping credentials out of what turbodspy records: history entries and saved LM state.

API keys (`api_key`, any `api_*` credential) and credential headers (`Authorization`, `*-Auth`, `*api-key`)
never reach history, printed output or a saved program; they stay on the live LM only.
"""

from __future__ import annotations

from typing import Any

_CREDENTIAL_ARGS = ("api_key", "api_token", "azure_ad_token", "aws_secret_access_key", "aws_session_token")
_HEADER_ARGS = ("extra_headers", "headers")


def is_credential_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in ("authorization", "proxy-authorization", "cookie") or lowered.endswith(
        ("-auth", "api-key", "apikey", "-token", "-secret")
    )


def without_credentials(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` minus credentials: key arguments dropped, credential headers dropped from header dicts."""
    clean = {}
    for name, value in kwargs.items():
        if name in _CREDENTIAL_ARGS:
            continue
        if name in _HEADER_ARGS and isinstance(value, dict):
            value = {h: v for h, v in value.items() if not is_credential_header(str(h))}
        clean[name] = value
    return clean
