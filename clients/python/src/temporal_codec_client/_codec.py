"""``RemotePayloadCodec``: a Temporal ``PayloadCodec`` that seals and opens payloads through a
temporal-codec-server (``POST <endpoint>/encode`` and ``/decode``).

What must stay true:

- one HTTP request per ``encode``/``decode`` call, whatever the number of payloads;
- a failed call raises; ``encode`` never returns its input or anything the server did not seal,
  and ``decode`` never hands back payloads that are still sealed (with ``verify_sealed``);
- the reply has exactly as many payloads as were sent, in order, or the call raises;
- exception texts carry no payload bytes and no token (the SDK writes them into history);
- retries are bounded (``max_retries``) and wait at least what ``Retry-After`` asks, within a cap.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import os
import random
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, TypeVar

import httpx
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext

from . import _wire
from ._errors import (
    CodecBadRequest,
    CodecError,
    CodecForbidden,
    CodecResponseError,
    CodecUnauthorized,
    CodecUnavailable,
)
from ._tokens import NoToken, TokenProvider, token_source
from ._version import __version__

#: ``metadata["encoding"]`` of every payload temporal-codec-server seals.
SEALED_ENCODING: Final = b"binary/kms-envelope"

#: Statuses worth another attempt: the server (or an ingress in front of it) is briefly unable.
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_BAD_REQUEST_STATUSES: Final = frozenset({400, 413, 415})

_REQUEST_ID_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:"
)


_Codec = TypeVar("_Codec", bound="RemotePayloadCodec")


class _Pool:
    """The one ``httpx.AsyncClient`` of a codec, shared with the copies ``with_context`` makes."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    def client(self, make: Callable[[], httpx.AsyncClient]) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("RemotePayloadCodec is closed")
        if self._client is None:
            self._client = make()
        return self._client

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class RemotePayloadCodec(PayloadCodec, WithSerializationContext):
    """Encodes and decodes Temporal payloads through a remote temporal-codec-server.

    Args:
        endpoint: Base URL of the codec server, e.g. ``https://codec.example.com`` or
            ``https://codec.example.com/codec``; ``/encode`` and ``/decode`` are appended. A
            ``{namespace}`` in it is replaced by ``namespace`` (as the ``temporal`` CLI does).
        namespace: The Temporal namespace, sent as ``X-Namespace``. Payloads sealed for one
            namespace only open in that namespace.
        token: Bearer token: a string, or a callable (plain or ``async``) returning one. The
            callable is called before every request, so it should cache its token itself.
        token_file: Path of a file holding the token (e.g. a projected Kubernetes service-account
            token). Re-read whenever it changes (inode, size or mtime) and after a 401.
            Exclusive with ``token``.
        timeout: Seconds for each HTTP attempt (connect, write, read, pool).
        max_retries: Retries after the first attempt on connection errors, timeouts and HTTP
            429/502/503/504 (so at most ``max_retries + 1`` attempts); 0 disables retries. Waits
            grow exponentially from ``backoff`` with full jitter, at least ``Retry-After`` when
            the server sends one, at most ``max_backoff`` each.
        ca_file: PEM file of the CA certificates to trust for an ``https://`` endpoint (a
            private CA), instead of the system's CA store.
        headers: Extra request headers (e.g. for an ingress). ``Content-Type``, ``X-Namespace``
            and, when a token is set, ``Authorization`` are always the codec's own.
        backoff: First retry wait in seconds, before jitter.
        max_backoff: Longest single wait in seconds, also the cap on ``Retry-After``.
        verify_sealed: Check the seal both ways: refuse an encode reply whose payloads are not
            ``binary/kms-envelope`` (a misrouted endpoint or a proxy must never let plaintext
            into history), and a decode reply that still holds ``binary/kms-envelope`` payloads
            (a decode denied under ``on_deny = "passthrough"`` comes back sealed).

    Use one instance per process and close it with ``await codec.aclose()`` or ``async with``.
    """

    def __init__(
        self,
        endpoint: str,
        namespace: str,
        *,
        token: str | TokenProvider | None = None,
        token_file: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        ca_file: str | os.PathLike[str] | None = None,
        headers: Mapping[str, str] | None = None,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        verify_sealed: bool = True,
    ) -> None:
        if not namespace:
            raise ValueError("namespace is required")
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http:// or https:// URL")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        base = endpoint.replace("{namespace}", namespace).rstrip("/")
        self.endpoint: Final = base
        self.namespace: Final = namespace
        self.max_retries: Final = max_retries
        self._tokens = token_source(token, token_file)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._verify_sealed = verify_sealed
        self._timeout = timeout
        self._verify = _tls_context(ca_file)
        fixed = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Namespace": namespace,
            "User-Agent": f"temporal-codec-client-python/{__version__}",
        }
        reserved = {k.lower() for k in fixed} | {"x-request-id", "host", "content-length"}
        if not isinstance(self._tokens, NoToken):
            reserved.add("authorization")
        # Case-insensitively: {"x-namespace": ...} must not add a second X-Namespace header.
        extra = {k: v for k, v in (headers or {}).items() if k.lower() not in reserved}
        self._headers = {**extra, **fixed}
        self._pool = _Pool()
        # The namespace of the workflow/activity this copy serves (see with_context), if known.
        self._context_namespace: str | None = None

    # -- PayloadCodec ------------------------------------------------------------------------

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Seals ``payloads`` with one ``POST …/encode``; raises :class:`CodecError` on failure."""
        if not payloads:
            return []
        sealed = await self._call("encode", payloads)
        if self._verify_sealed:
            unsealed = [i for i, p in enumerate(sealed) if not _is_sealed(p)]
            if unsealed:
                raise CodecResponseError(
                    "encode reply holds payloads that are not binary/kms-envelope",
                    operation="encode",
                    namespace=self.namespace,
                    indexes=unsealed,
                )
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Opens ``payloads`` with one ``POST …/decode``; payloads that are not sealed come back
        unchanged. Raises :class:`CodecError` on failure."""
        if not payloads:
            return []
        opened = await self._call("decode", payloads)
        if self._verify_sealed:
            still_sealed = [i for i, p in enumerate(opened) if _is_sealed(p)]
            if still_sealed:
                raise CodecResponseError(
                    "decode reply is still sealed (a denied decode under on_deny = passthrough?)",
                    operation="decode",
                    namespace=self.namespace,
                    indexes=still_sealed,
                )
        return opened

    # -- lifecycle ---------------------------------------------------------------------------

    def with_context(self: _Codec, context: SerializationContext) -> _Codec:
        """Called by the SDK for every workflow and activity: a copy that shares this codec's
        connection pool and refuses to seal or open for a namespace other than ``namespace`` (a
        client connected to one namespace with a codec configured for another would store
        payloads that the Web UI of their namespace can never decode)."""
        namespace = getattr(context, "namespace", None)
        if not isinstance(namespace, str) or not namespace:
            return self
        view = copy.copy(self)
        view._context_namespace = namespace
        return view

    async def aclose(self) -> None:
        """Closes the pooled HTTP connections. The codec (and every copy the SDK made of it)
        cannot be used afterwards."""
        await self._pool.aclose()

    async def __aenter__(self: _Codec) -> _Codec:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"RemotePayloadCodec(endpoint={self.endpoint!r}, namespace={self.namespace!r})"

    # -- internals ---------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        return self._pool.client(
            lambda: httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout),
                verify=self._verify,
                follow_redirects=False,
                # No proxy variables, no ~/.netrc credentials, no SSL_CERT_FILE: only the options.
                trust_env=False,
            )
        )

    async def _call(self, operation: str, payloads: Sequence[Payload]) -> list[Payload]:
        if self._context_namespace is not None and self._context_namespace != self.namespace:
            raise CodecBadRequest(
                f"the codec is for namespace {self.namespace!r}, "
                f"the workflow runs in {self._context_namespace!r}",
                operation=operation,
                namespace=self.namespace,
                code="namespace-mismatch",
            )
        body = _wire.dump(payloads)
        url = f"{self.endpoint}/{operation}"
        call_id = uuid.uuid4().hex
        retried_unauthorized = False
        attempt = 0
        while True:
            attempt += 1
            token = await self._tokens.get()
            headers = dict(self._headers)
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            headers["X-Request-Id"] = f"{call_id}.{attempt}"
            transient: str
            retry_after: float | None = None
            try:
                response = await self._http().post(url, content=body, headers=headers)
            except httpx.TransportError as e:
                if _certificate_rejected(e):
                    # Waiting does not fix a certificate: fail at once.
                    raise CodecError(
                        "TLS certificate verification failed (see ca_file)",
                        operation=operation,
                        namespace=self.namespace,
                        attempts=attempt,
                    ) from None
                transient = f"{type(e).__name__}"
                status = None
                request_id = None
            except httpx.RequestError as e:
                raise CodecError(
                    f"HTTP client error ({type(e).__name__})",
                    operation=operation,
                    namespace=self.namespace,
                    attempts=attempt,
                ) from None
            else:
                status = response.status_code
                request_id = _request_id(response.headers.get("x-request-id"))
                if status == 200:
                    return self._reply(operation, response.content, len(payloads), request_id)
                if status not in _RETRY_STATUSES:
                    if status == 401 and not retried_unauthorized and self._tokens.invalidate():
                        retried_unauthorized = True
                        if await self._tokens.get() != token:
                            attempt -= 1  # a rotated token is not a retry
                            continue
                    raise self._status_error(operation, response, request_id, attempt)
                transient = f"HTTP {status}"
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt > self.max_retries:
                code = None
                message = None
                if status is not None:
                    code, message, _ = _wire.error_fields(response.content)
                raise CodecUnavailable(
                    f"codec server unavailable ({transient})"
                    if status is None
                    else "codec server unavailable",
                    operation=operation,
                    namespace=self.namespace,
                    status=status,
                    code=code,
                    request_id=request_id,
                    server_message=message,
                    attempts=attempt,
                )
            await asyncio.sleep(self._delay(attempt, retry_after))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        exponential = min(self._max_backoff, self._backoff * (2 ** (attempt - 1)))
        delay = random.uniform(0, exponential)  # full jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._max_backoff))
        return delay

    def _reply(
        self, operation: str, content: bytes, sent: int, request_id: str | None
    ) -> list[Payload]:
        try:
            result = _wire.load(content)
        except ValueError as e:
            raise CodecResponseError(
                str(e),
                operation=operation,
                namespace=self.namespace,
                status=200,
                request_id=request_id,
            ) from None
        if len(result) != sent:
            raise CodecResponseError(
                f"sent {sent} payloads, reply has {len(result)}",
                operation=operation,
                namespace=self.namespace,
                status=200,
                request_id=request_id,
            )
        return result

    def _status_error(
        self, operation: str, response: httpx.Response, request_id: str | None, attempts: int
    ) -> CodecError:
        status = response.status_code
        code, message, indexes = _wire.error_fields(response.content)
        kind: type[CodecError]
        if status == 401:
            kind, summary = CodecUnauthorized, "token missing, invalid or expired"
        elif status == 403:
            kind, summary = CodecForbidden, "not allowed by the namespace's policy"
        elif status in _BAD_REQUEST_STATUSES:
            kind, summary = CodecBadRequest, "request refused"
        else:
            kind, summary = CodecError, "unexpected status"
        return kind(
            summary,
            operation=operation,
            namespace=self.namespace,
            status=status,
            code=code,
            request_id=request_id,
            indexes=indexes,
            server_message=message,
            attempts=attempts,
        )


def _tls_context(ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    """``ca_file`` alone when given; else the system's CA store, or httpx's default (certifi's
    bundle) on a system without one."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=os.fspath(ca_file))
    system = ssl.create_default_context()
    return system if system.cert_store_stats()["x509_ca"] > 0 else True


def _is_sealed(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == SEALED_ENCODING


def _certificate_rejected(error: BaseException) -> bool:
    seen: BaseException | None = error
    for _ in range(8):  # the chain is short; bound it anyway
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _request_id(value: str | None) -> str | None:
    if value and len(value) <= 128 and all(c in _REQUEST_ID_CHARS for c in value):
        return value
    return None


def _retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After`` (delta-seconds or an HTTP date); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
