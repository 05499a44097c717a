"""RemotePayloadCodec against the real codec-server: round trips, wire format, tokens, errors."""

from __future__ import annotations

import asyncio
import os
import traceback
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from temporal_codec_client import (
    SEALED_ENCODING,
    CodecBadRequest,
    CodecError,
    CodecForbidden,
    CodecResponseError,
    CodecTokenError,
    CodecUnauthorized,
    CodecUnavailable,
    RemotePayloadCodec,
)

from .conftest import SECRET, plain_payloads
from .support.codec_server import CodecServer, TlsFiles
from .support.fake_unavailable import FakeUnavailableThenRelay
from .support.leaks import leaks
from .support.ports import free_port
from .support.tokens import Issuer


def error_texts(e: BaseException) -> str:
    return "\n".join([str(e), repr(e), "".join(traceback.format_exception(e))])


# -- round trips -----------------------------------------------------------------------------


async def test_round_trip_seals_and_restores_payloads(dev_server: CodecServer) -> None:
    originals = plain_payloads(3)
    async with RemotePayloadCodec(dev_server.url, "default") as codec:
        sealed = await codec.encode(originals)
        assert [p.metadata["encoding"] for p in sealed] == [SEALED_ENCODING] * 3
        for p in sealed:
            assert b"4111" not in p.data
            assert b"json/plain" not in p.SerializeToString()
        assert await codec.decode(sealed) == originals


async def test_metadata_and_external_payloads_survive(dev_server: CodecServer) -> None:
    original = Payload(
        metadata={"encoding": b"binary/plain", "x-binary": bytes(range(256)), "empty": b""},
        data=bytes(range(255, -1, -1)),
        external_payloads=[
            Payload.ExternalPayloadDetails(size_bytes=123),
            Payload.ExternalPayloadDetails(size_bytes=2**40),
        ],
    )
    async with RemotePayloadCodec(dev_server.url, "default") as codec:
        [sealed] = await codec.encode([original])
        [opened] = await codec.decode([sealed])
        # A payload that is not sealed passes through decode unchanged, external payloads included.
        [passed] = await codec.decode([original])
    assert opened == original
    assert list(opened.external_payloads) == list(original.external_payloads)
    assert passed == original


async def test_count_and_order_hold_for_many_payloads_in_one_request(
    dev_server: CodecServer,
) -> None:
    originals = plain_payloads(200)
    before = dev_server.requests_served()
    async with RemotePayloadCodec(dev_server.url, "default") as codec:
        sealed = await codec.encode(originals)
        opened = await codec.decode(list(reversed(sealed)))
    after = dev_server.requests_served()
    assert (after["encode"] - before["encode"], after["decode"] - before["decode"]) == (1, 1), (
        "one HTTP request per encode and per decode"
    )
    assert opened == list(reversed(originals))


async def test_empty_lists_make_no_request() -> None:
    # Nothing listens on this port: a request would fail.
    async with RemotePayloadCodec(f"http://127.0.0.1:{free_port()}", "default") as codec:
        assert await codec.encode([]) == []
        assert await codec.decode([]) == []


async def test_namespace_placeholder_and_trailing_slash_in_endpoint(
    dev_server: CodecServer,
) -> None:
    async with RemotePayloadCodec(dev_server.url + "/{namespace}/", "default") as codec:
        assert codec.endpoint == dev_server.url + "/default"
        sealed = await codec.encode(plain_payloads(1))
        assert await codec.decode(sealed) == plain_payloads(1)


async def test_payloads_sealed_in_one_namespace_do_not_open_in_another(
    dev_server: CodecServer,
) -> None:
    async with (
        RemotePayloadCodec(dev_server.url, "alpha") as alpha,
        RemotePayloadCodec(dev_server.url, "beta") as beta,
    ):
        sealed = await alpha.encode(plain_payloads(2))
        with pytest.raises(CodecBadRequest) as caught:
            await beta.decode(sealed)
    assert caught.value.code == "decode-failed"
    assert caught.value.indexes == (0, 1)
    assert not leaks(error_texts(caught.value), SECRET, sealed[0].data[:48])


# -- encode never lets plaintext through ----------------------------------------------------


async def test_an_encode_reply_that_is_not_sealed_is_refused(dev_server: CodecServer) -> None:
    # A misrouted endpoint: "<url>/decode?x=" + "/encode" reaches the real server's /decode (the
    # query string is ignored), which passes plain payloads back unchanged.
    originals = plain_payloads(2)
    async with RemotePayloadCodec(dev_server.url + "/decode?x=", "default") as codec:
        with pytest.raises(CodecResponseError) as caught:
            await codec.encode(originals)
    assert caught.value.indexes == (0, 1)
    assert not leaks(error_texts(caught.value), SECRET)


async def test_a_denied_encode_raises_and_returns_nothing(
    jwt_server: CodecServer, issuer: Issuer
) -> None:
    token = issuer.service_account_token("payments")
    async with RemotePayloadCodec(jwt_server.url, "marketing", token=token) as codec:
        with pytest.raises(CodecForbidden) as caught:
            await codec.encode(plain_payloads(2))
    e = caught.value
    assert (e.status, e.code, e.operation, e.namespace) == (403, "forbidden", "encode", "marketing")
    assert e.request_id, "the server's request id is kept for support"
    assert e.request_id in str(e)
    assert leaks(f"a text holding a piece {token[40:60]} of it", token), "the leak check works"
    assert not leaks(error_texts(e), token, SECRET)


async def test_encode_with_the_server_down_raises_unavailable() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    async with RemotePayloadCodec(endpoint, "default", max_retries=2, backoff=0.01) as codec:
        with pytest.raises(CodecUnavailable) as caught:
            await codec.encode(plain_payloads(1))
    assert caught.value.attempts == 3
    assert caught.value.status is None
    assert not leaks(error_texts(caught.value), SECRET)


async def test_a_decode_passed_through_still_sealed_is_refused(
    jwt_server: CodecServer, issuer: Issuer
) -> None:
    token = issuer.service_account_token("payments")
    async with RemotePayloadCodec(jwt_server.url, "reports", token=token) as codec:
        sealed = await codec.encode(plain_payloads(2))
        with pytest.raises(CodecResponseError) as caught:
            await codec.decode(sealed)
    assert caught.value.indexes == (0, 1)
    assert "still sealed" in str(caught.value)
    # Without the check, the server's passthrough answer (200, payloads unchanged) is returned.
    async with RemotePayloadCodec(
        jwt_server.url, "reports", token=token, verify_sealed=False
    ) as codec:
        assert await codec.decode(sealed) == sealed


async def test_extra_headers_cannot_replace_the_namespace(dev_server: CodecServer) -> None:
    async with (
        RemotePayloadCodec(
            dev_server.url, "alpha", headers={"x-namespace": "beta", "X-Team": "payments"}
        ) as alpha_with_headers,
        RemotePayloadCodec(dev_server.url, "alpha") as alpha,
    ):
        sealed = await alpha_with_headers.encode(plain_payloads(1))
        assert await alpha.decode(sealed) == plain_payloads(1)


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from temporal_codec_client._codec import _retry_after

    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    wait = _retry_after(later)
    assert wait is not None
    assert 25 < wait <= 30
    earlier = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=30), usegmt=True)
    assert _retry_after(earlier) == 0.0


def test_retry_waits_grow_with_jitter_and_cap_retry_after() -> None:
    codec = RemotePayloadCodec("http://127.0.0.1:1", "default", backoff=0.2, max_backoff=2.0)
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (6, 2.0)]:
        waits = [codec._delay(attempt, None) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2, "full jitter spreads over the whole range"
    assert codec._delay(1, 1.5) >= 1.5, "Retry-After is a floor"
    assert codec._delay(1, 3600) == 2.0, "Retry-After is capped at max_backoff"


# -- tokens ----------------------------------------------------------------------------------


async def test_a_service_account_token_seals_and_opens_in_its_namespace(
    jwt_server: CodecServer, issuer: Issuer
) -> None:
    token = issuer.service_account_token("payments")
    async with RemotePayloadCodec(jwt_server.url, "payments", token=token) as codec:
        sealed = await codec.encode(plain_payloads(2))
        assert await codec.decode(sealed) == plain_payloads(2)


async def test_no_token_is_unauthorized(jwt_server: CodecServer) -> None:
    async with RemotePayloadCodec(jwt_server.url, "payments") as codec:
        with pytest.raises(CodecUnauthorized) as caught:
            await codec.encode(plain_payloads(1))
    assert (caught.value.status, caught.value.code) == (401, "unauthenticated")


async def test_a_token_from_an_unknown_key_is_unauthorized_and_not_echoed(
    jwt_server: CodecServer, issuer: Issuer
) -> None:
    forged = issuer.service_account_token("payments", key=issuer.stranger_key)
    async with RemotePayloadCodec(jwt_server.url, "payments", token=forged) as codec:
        with pytest.raises(CodecUnauthorized) as caught:
            await codec.decode(plain_payloads(1))
    assert caught.value.code == "unauthenticated"
    assert not leaks(error_texts(caught.value), forged, SECRET)
    assert forged.split(".")[1] not in error_texts(caught.value)


async def test_the_other_namespace_is_forbidden(jwt_server: CodecServer, issuer: Issuer) -> None:
    token = issuer.service_account_token("payments")
    async with RemotePayloadCodec(jwt_server.url, "payments", token=token) as payments:
        sealed = await payments.encode(plain_payloads(1))
    async with RemotePayloadCodec(jwt_server.url, "marketing", token=token) as marketing:
        with pytest.raises(CodecForbidden) as caught:
            await marketing.decode(sealed)
    assert caught.value.code == "forbidden"
    assert not leaks(error_texts(caught.value), token, SECRET)


async def test_token_callables_sync_and_async_are_called_per_request(
    jwt_server: CodecServer, issuer: Issuer
) -> None:
    calls: list[str] = []

    def sync_provider() -> str:
        calls.append("sync")
        return issuer.service_account_token("payments")

    async def async_provider() -> str:
        calls.append("async")
        await asyncio.sleep(0)
        return issuer.service_account_token("payments")

    async with RemotePayloadCodec(jwt_server.url, "payments", token=sync_provider) as codec:
        sealed = await codec.encode(plain_payloads(1))
        await codec.decode(sealed)
    async with RemotePayloadCodec(jwt_server.url, "payments", token=async_provider) as codec:
        assert await codec.decode(sealed) == plain_payloads(1)
    assert calls == ["sync", "sync", "async"]


async def test_a_failing_token_callable_raises_without_its_message(dev_server: CodecServer) -> None:
    def provider() -> str:
        raise RuntimeError("vault said: s3cr3t-t0ken-value")

    async with RemotePayloadCodec(dev_server.url, "default", token=provider) as codec:
        with pytest.raises(CodecTokenError) as caught:
            await codec.encode(plain_payloads(1))
    assert "RuntimeError" in str(caught.value)
    assert "s3cr3t" not in error_texts(caught.value)


def _project(volume: Path, generation: int, token: str) -> None:
    """Writes a token the way the kubelet updates a projected volume: a new timestamped
    directory, then an atomic swap of the ``..data`` symlink (``token`` -> ``..data/token``)."""
    target = volume / f"..2026_11_29_00_00_{generation:02d}.000000000"
    target.mkdir()
    (target / "token").write_text(token)
    tmp_link = volume / "..data_tmp"
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, volume / "..data")
    if not (volume / "token").is_symlink():
        (volume / "token").symlink_to("..data/token")


async def test_a_rotated_projected_token_file_is_used_on_the_next_call(
    jwt_server: CodecServer, issuer: Issuer, scratch: Path
) -> None:
    volume = scratch / "kube-api-access"
    volume.mkdir()
    _project(volume, 1, issuer.service_account_token("payments"))
    token_file = volume / "token"
    async with RemotePayloadCodec(jwt_server.url, "payments", token_file=token_file) as codec:
        sealed = await codec.encode(plain_payloads(1))
        # Rotated to a token of another service account: the very next call carries it (403).
        _project(volume, 2, issuer.service_account_token("marketing", "marketing-worker"))
        with pytest.raises(CodecForbidden):
            await codec.decode(sealed)
        # Rotated back: allowed again.
        _project(volume, 3, issuer.service_account_token("payments"))
        assert await codec.decode(sealed) == plain_payloads(1)
        # A plain rewrite in place (a file mounted some other way) is noticed too.
        token_file = scratch / "plain-token"
        token_file.write_text(issuer.service_account_token("payments") + "\n")
    async with RemotePayloadCodec(jwt_server.url, "payments", token_file=token_file) as codec:
        assert await codec.decode(sealed) == plain_payloads(1)
        token_file.write_text("not-a-jwt-and-longer-than-before")
        with pytest.raises(CodecUnauthorized):
            await codec.decode(sealed)
        token_file.write_text(issuer.service_account_token("payments"))
        assert await codec.decode(sealed) == plain_payloads(1)
        token_file.unlink()
        with pytest.raises(CodecTokenError):
            await codec.decode(sealed)


async def test_a_closed_codec_refuses_to_work(dev_server: CodecServer) -> None:
    codec = RemotePayloadCodec(dev_server.url, "default")
    assert await codec.decode(await codec.encode(plain_payloads(1))) == plain_payloads(1)
    await codec.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await codec.encode(plain_payloads(1))


async def test_copies_made_for_a_workflow_share_the_pool_and_check_the_namespace(
    dev_server: CodecServer,
) -> None:
    from temporalio.converter import WorkflowSerializationContext

    codec = RemotePayloadCodec(dev_server.url, "alpha")
    same = codec.with_context(WorkflowSerializationContext(namespace="alpha", workflow_id="w"))
    other = codec.with_context(WorkflowSerializationContext(namespace="beta", workflow_id="w"))
    assert await same.decode(await codec.encode(plain_payloads(1))) == plain_payloads(1)
    with pytest.raises(CodecBadRequest, match="namespace 'alpha', the workflow runs in 'beta'"):
        await other.encode(plain_payloads(1))
    await codec.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await same.encode(plain_payloads(1))


def test_token_and_token_file_are_exclusive() -> None:
    with pytest.raises(ValueError, match="either"):
        RemotePayloadCodec("http://127.0.0.1:1", "default", token="a", token_file="/tmp/x")


# -- retries ---------------------------------------------------------------------------------


async def test_503_is_retried_after_retry_after_then_succeeds(dev_server: CodecServer) -> None:
    fake = FakeUnavailableThenRelay(dev_server.url, failures=2, retry_after="1")
    try:
        async with RemotePayloadCodec(fake.url, "default", backoff=0.01) as codec:
            sealed = await codec.encode(plain_payloads(2))
    finally:
        fake.close()
    assert [p.metadata["encoding"] for p in sealed] == [SEALED_ENCODING] * 2
    assert len(fake.arrivals) == 3
    gaps = [b - a for a, b in zip(fake.arrivals, fake.arrivals[1:], strict=False)]
    assert all(g >= 0.95 for g in gaps), f"Retry-After: 1 not honoured: {gaps}"
    # One logical call, one id per attempt.
    assert len({rid.split(".")[0] for rid in fake.request_ids}) == 1


async def test_retries_are_bounded_and_end_in_unavailable(dev_server: CodecServer) -> None:
    fake = FakeUnavailableThenRelay(dev_server.url, failures=100, retry_after=None, status=502)
    try:
        async with RemotePayloadCodec(fake.url, "default", max_retries=2, backoff=0.01) as codec:
            with pytest.raises(CodecUnavailable) as caught:
                await codec.encode(plain_payloads(1))
    finally:
        fake.close()
    assert len(fake.arrivals) == 3
    e = caught.value
    assert (e.status, e.code, e.attempts) == (502, "kms-unavailable", 3)
    assert "fake outage" not in str(e), "the server's free text stays out of history"


async def test_connection_refused_is_retried_until_the_server_starts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    late = CodecServer(tmp_path_factory.mktemp("codec-late"))

    async def start_later() -> None:
        await asyncio.sleep(0.6)
        await asyncio.to_thread(late.start)

    try:
        async with RemotePayloadCodec(
            late.url, "default", max_retries=10, backoff=0.2, max_backoff=0.5
        ) as codec:
            starter = asyncio.create_task(start_later())
            sealed = await codec.encode(plain_payloads(1))
            await starter
            assert await codec.decode(sealed) == plain_payloads(1)
    finally:
        late.stop()


# -- TLS -------------------------------------------------------------------------------------


async def test_ca_file_trusts_a_server_with_a_private_ca(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data = tmp_path_factory.mktemp("codec-tls")
    server = CodecServer(data, tls=TlsFiles(data))
    server.start()
    try:
        assert server.tls is not None
        assert server.url.startswith("https://")
        async with RemotePayloadCodec(server.url, "default", ca_file=server.tls.ca) as codec:
            sealed = await codec.encode(plain_payloads(1))
            assert await codec.decode(sealed) == plain_payloads(1)
        async with RemotePayloadCodec(server.url, "default", max_retries=5) as untrusting:
            with pytest.raises(CodecError) as caught:
                await untrusting.encode(plain_payloads(1))
        assert "certificate" in str(caught.value)
        assert caught.value.attempts == 1, "a certificate that does not verify is not retried"
    finally:
        server.stop()
