"""Exceptions raised by :class:`~temporal_codec_client.RemotePayloadCodec`.

The Temporal Python SDK writes the text of a failed codec's exception into workflow history, so
the text of every exception here is built only from safe values: the operation, the namespace,
the HTTP status, the server's stable error ``code``, its request id, payload indexes and counts.
It never holds payload bytes, tokens, header values or the server's free-text message.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CodecBadRequest",
    "CodecError",
    "CodecForbidden",
    "CodecResponseError",
    "CodecTokenError",
    "CodecUnauthorized",
    "CodecUnavailable",
]


class CodecError(Exception):
    """Base class: the remote codec could not encode or decode the payloads.

    Attributes are ``None`` when unknown. ``server_message`` holds the server's human-readable
    message for logs you control; it is deliberately *not* part of ``str(error)``.
    """

    def __init__(
        self,
        summary: str,
        *,
        operation: str | None = None,
        namespace: str | None = None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        indexes: Sequence[int] | None = None,
        server_message: str | None = None,
        attempts: int | None = None,
    ) -> None:
        self.summary = summary
        self.operation = operation
        self.namespace = namespace
        self.status = status
        self.code = code
        self.request_id = request_id
        self.indexes: tuple[int, ...] | None = tuple(indexes) if indexes is not None else None
        self.server_message = server_message
        self.attempts = attempts
        super().__init__(self._text())

    def _text(self) -> str:
        head = "remote codec"
        if self.operation is not None:
            head += f" {self.operation}"
        if self.namespace is not None:
            head += f" (namespace {self.namespace!r})"
        details: list[str] = []
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        if self.code is not None:
            details.append(f"code={self.code}")
        if self.indexes:
            details.append("indexes=" + ",".join(str(i) for i in self.indexes))
        if self.request_id is not None:
            details.append(f"request_id={self.request_id}")
        if self.attempts is not None and self.attempts > 1:
            details.append(f"attempts={self.attempts}")
        suffix = f" [{'; '.join(details)}]" if details else ""
        return f"{head} failed: {self.summary}{suffix}"


class CodecUnavailable(CodecError):
    """The codec server could not be reached or answered 502/503/504 (or 429) after every retry.

    Transient: Temporal fails the workflow task and retries it later.
    """


class CodecUnauthorized(CodecError):
    """HTTP 401: no token, or the server could not verify it (signature, issuer, expiry, ...)."""


class CodecForbidden(CodecError):
    """HTTP 403: the token is valid but the namespace's policy does not allow this operation."""


class CodecBadRequest(CodecError):
    """HTTP 400/413/415: the server refused the request (unknown namespace, malformed or too large
    body, a payload that does not decode, ...). ``code`` says which."""


class CodecResponseError(CodecError):
    """The server answered 200 with a reply this client refuses: not Payloads JSON, a different
    number of payloads than sent, or (encode) payloads that are not sealed."""


class CodecTokenError(CodecError):
    """The token could not be obtained: the token file is missing or empty, or the token callable
    raised or returned something that is not a non-empty single-line string."""
