"""The request and reply bodies: proto3 JSON of ``temporal.api.common.v1.Payloads``.

``google.protobuf.json_format`` writes exactly what the Temporal CLI and Web UI send (``metadata``
values and ``data`` in standard base64, ``externalPayloads`` with ``sizeBytes`` as a string) and
keeps every field the installed Temporal API knows, so nothing is dropped on the way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads


def dump(payloads: Sequence[Payload]) -> bytes:
    message = Payloads(payloads=list(payloads))
    body: dict[str, Any] = json_format.MessageToDict(message)
    body.setdefault("payloads", [{} for _ in payloads])
    return json.dumps(body, separators=(",", ":")).encode("ascii")


def load(body: bytes) -> list[Payload]:
    """Parses a reply body; raises ``ValueError`` when it is not Payloads JSON."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("reply is not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("payloads", []), list):
        raise ValueError("reply is not a Payloads object")
    message = Payloads()
    try:
        json_format.ParseDict(obj, message, ignore_unknown_fields=True)
    except json_format.ParseError:
        raise ValueError("reply is not valid Payloads JSON") from None
    return list(message.payloads)


def error_fields(body: bytes) -> tuple[str | None, str | None, list[int] | None]:
    """``(code, message, indexes)`` from ``{"error":{"code":..,"message":..,"indexes":[..]}}``."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, None, None
    error = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(error, dict):
        return None, None, None
    code = error.get("code")
    message = error.get("message")
    raw_indexes = error.get("indexes")
    indexes = (
        [i for i in raw_indexes if isinstance(i, int) and not isinstance(i, bool)]
        if isinstance(raw_indexes, list)
        else None
    )
    return (
        _safe_code(code),
        message if isinstance(message, str) else None,
        indexes,
    )


def _safe_code(code: object) -> str | None:
    """A stable code is short kebab-case; anything else is not echoed."""
    if not isinstance(code, str) or not 0 < len(code) <= 64:
        return None
    if not all(c.isascii() and (c.isalnum() or c in "-_.") for c in code):
        return None
    return code
