"""End to end: a Python worker and client (temporalio) with RemotePayloadCodec, a real Temporal dev
server, the real codec-server in JWT mode, and the real ``temporal`` CLI reading the history."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import jwt
import pytest
import temporalio.converter
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, RPCError, WorkflowHandle
from temporalio.worker import Worker

from temporal_codec_client import SEALED_ENCODING, CodecBadRequest, RemotePayloadCodec

from .conftest import INTERN, ONCALL, jwt_config
from .e2e_workflows import (
    APPROVER,
    CARD,
    MARKERS,
    PaymentWorkflow,
    SlowPaymentWorkflow,
    charge,
)
from .support.codec_server import CodecServer
from .support.history import json_encodings, payloads_in
from .support.leaks import leaks
from .support.temporal_dev import TemporalDevServer
from .support.tokens import WORKER_IDENTITY, Issuer

pytestmark = pytest.mark.temporal

ORDER = {"card": CARD, "holder": "Ada Lovelace"}


@pytest.fixture(scope="session")
async def temporal() -> AsyncIterator[TemporalDevServer]:
    server = TemporalDevServer(["payments", "marketing"])
    await server.start()
    yield server
    server.cleanup()


def with_codec(codec: RemotePayloadCodec) -> temporalio.converter.DataConverter:
    # The three lines a worker adds (see the README).
    return dataclasses.replace(temporalio.converter.default(), payload_codec=codec)


async def history_of(temporal: TemporalDevServer, ns: str, workflow_id: str) -> list[HistoryEvent]:
    """The stored history, read with a client that has no codec."""
    plain = await Client.connect(temporal.target, namespace=ns)
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    return list(history.events)


def assert_sealed_only(events: list[HistoryEvent], *secrets: str) -> int:
    """Every payload in the history is sealed and no secret appears anywhere; returns the count."""
    payloads = [p for e in events for p in payloads_in(e)]
    assert payloads, "the history has payloads"
    encodings = {p.metadata.get("encoding") for p in payloads}
    assert encodings == {SEALED_ENCODING}, f"unsealed payloads in history: {encodings}"
    raw = b"".join(e.SerializeToString() for e in events).decode("latin-1")
    found = leaks(raw, *MARKERS, *secrets)
    assert not found, f"reached history: {found}"
    return len(payloads)


async def wait_for_event(
    temporal: TemporalDevServer, ns: str, workflow_id: str, kind: EventType.ValueType, within: float
) -> list[HistoryEvent]:
    deadline = time.monotonic() + within
    while True:
        events = await history_of(temporal, ns, workflow_id)
        if any(e.event_type == kind for e in events):
            return events
        assert time.monotonic() < deadline, f"no {EventType.Name(kind)} within {within}s"
        await asyncio.sleep(0.2)


def task_failures(events: list[HistoryEvent]) -> list[str]:
    return [
        e.workflow_task_failed_event_attributes.failure.message
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def test_a_workflow_runs_through_the_codec_and_history_holds_only_sealed_payloads(
    temporal: TemporalDevServer, jwt_server: CodecServer, issuer: Issuer
) -> None:
    token = issuer.service_account_token("payments")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:payments:payments-worker"
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "payments-worker"
    if WORKER_IDENTITY == "sub":
        assert "email" not in claims, "a service-account token carries no email"

    workflow_id = f"pay-{uuid.uuid4()}"
    async with RemotePayloadCodec(jwt_server.url, "payments", token=token) as codec:
        client = await Client.connect(
            temporal.target, namespace="payments", data_converter=with_codec(codec)
        )
        async with Worker(
            client, task_queue="payments", workflows=[PaymentWorkflow], activities=[charge]
        ):
            handle: WorkflowHandle[PaymentWorkflow, dict[str, str]] = await client.start_workflow(
                PaymentWorkflow.run, ORDER, id=workflow_id, task_queue="payments"
            )
            await wait_until(lambda: stage_is(handle, "charged"), within=20)
            await handle.signal(PaymentWorkflow.approve, APPROVER)
            result = await handle.result()
    assert result == {
        "holder": "Ada Lovelace",
        "approved_by": APPROVER,
        "auth_code": "AUTH-7f3a-SECRET",
        "card_last4": "1111",
    }

    events = await history_of(temporal, "payments", workflow_id)
    # input, activity input, activity result, signal, workflow result: at least these five.
    assert assert_sealed_only(events, token) >= 5

    # The CLI without a codec sees the same: sealed payloads only.
    shown = await temporal.cli(
        "workflow", "show", "-n", "payments", "-w", workflow_id, "--output", "json"
    )
    assert shown.returncode == 0, shown.stderr
    assert set(json_encodings(shown.stdout)) == {"binary/kms-envelope"}
    assert not [m for m in MARKERS if m in shown.stdout]

    # A person allowed to decode payments sees plaintext through the codec; another does not.
    async def show_as(email: str) -> tuple[int, str]:
        out = await temporal.cli(
            "workflow", "show", "-n", "payments", "-w", workflow_id, "--output", "json",
            "--codec-endpoint", jwt_server.url,
            "--codec-auth", f"Bearer {issuer.person_token(email)}",
            "--command-timeout", "4s",
        )  # fmt: skip
        return out.returncode, out.stdout

    code, stdout = await show_as(ONCALL)
    assert code == 0
    assert "binary/kms-envelope" not in json_encodings(stdout)
    decoded = b"".join(
        base64.b64decode(
            e["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]["data"]
        )
        for e in json.loads(stdout)["events"][:1]
    )
    assert CARD.encode() in decoded

    code, stdout = await show_as(INTERN)
    assert code != 0, "a reader the policy denies gets an error, not the history"
    assert CARD not in stdout
    denied = jwt_server.audit("--email", INTERN, "--operation", "decode")
    assert denied, "the server recorded the denied decode"
    assert {row["outcome"] for row in denied} == {"denied"}
    assert {row["status"] for row in denied} == {403}


async def stage_is(handle: WorkflowHandle[PaymentWorkflow, dict[str, str]], stage: str) -> bool:
    status = await handle.query(PaymentWorkflow.status)
    assert status["mark"] == "QUERY-SECRET", "the query result comes back decoded"
    return status["stage"] == stage


async def wait_until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not reached within {within}s"
        await asyncio.sleep(0.1)


async def test_a_worker_pointed_at_another_namespace_is_refused_and_leaks_nothing(
    temporal: TemporalDevServer, jwt_server: CodecServer, issuer: Issuer
) -> None:
    payments_token = issuer.service_account_token("payments")
    marketing_token = issuer.service_account_token("marketing", "marketing-worker")
    workflow_id = f"misrouted-{uuid.uuid4()}"
    # Marketing starts a workflow (its own service account may seal in marketing)...
    async with RemotePayloadCodec(jwt_server.url, "marketing", token=marketing_token) as codec:
        starter = await Client.connect(
            temporal.target, namespace="marketing", data_converter=with_codec(codec)
        )
        await starter.start_workflow(
            PaymentWorkflow.run, ORDER, id=workflow_id, task_queue="misrouted"
        )
    # ...and a payments worker, deployed with the wrong namespace, picks it up.
    async with RemotePayloadCodec(jwt_server.url, "marketing", token=payments_token) as codec:
        client = await Client.connect(
            temporal.target, namespace="marketing", data_converter=with_codec(codec)
        )
        async with Worker(
            client, task_queue="misrouted", workflows=[PaymentWorkflow], activities=[charge]
        ):
            events = await wait_for_event(
                temporal, "marketing", workflow_id, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, 30
            )
    failures = task_failures(events)
    assert any("HTTP 403" in f and "code=forbidden" in f for f in failures), failures
    assert not any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in events)
    assert_sealed_only(events, payments_token, marketing_token)
    await (
        (await Client.connect(temporal.target, namespace="marketing"))
        .get_workflow_handle(workflow_id)
        .terminate("test done")
    )


async def test_a_codec_outage_fails_tasks_then_the_workflow_completes(
    temporal: TemporalDevServer,
    issuer: Issuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = CodecServer(tmp_path_factory.mktemp("codec-outage"), config=jwt_config(issuer))
    server.start()
    token = issuer.service_account_token("payments")
    workflow_id = f"outage-{uuid.uuid4()}"
    try:
        async with RemotePayloadCodec(
            server.url, "payments", token=token, max_retries=1, backoff=0.05, timeout=2.0
        ) as codec:
            client = await Client.connect(
                temporal.target, namespace="payments", data_converter=with_codec(codec)
            )
            async with Worker(
                client,
                task_queue="outage",
                workflows=[SlowPaymentWorkflow],
                activities=[charge],
            ):
                handle = await client.start_workflow(
                    SlowPaymentWorkflow.run,
                    args=[ORDER, 1.0],
                    id=workflow_id,
                    task_queue="outage",
                    execution_timeout=timedelta(minutes=2),
                )
                await wait_for_event(
                    temporal, "payments", workflow_id, EventType.EVENT_TYPE_TIMER_STARTED, 20
                )
                server.stop()  # the timer fires while the codec server is gone
                events = await wait_for_event(
                    temporal, "payments", workflow_id, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, 30
                )
                failures = task_failures(events)
                assert any("unavailable" in f for f in failures), failures
                assert_sealed_only(events, token)
                server.start()
                result = await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        server.stop()
    assert result["auth_code"] == "AUTH-7f3a-SECRET"
    events = await history_of(temporal, "payments", workflow_id)
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    assert_sealed_only(events, token)


async def test_a_codec_for_another_namespace_than_the_client_refuses_before_any_request(
    temporal: TemporalDevServer, jwt_server: CodecServer, issuer: Issuer
) -> None:
    token = issuer.service_account_token("payments")
    workflow_id = f"mismatch-{uuid.uuid4()}"
    before = jwt_server.requests_served()
    async with RemotePayloadCodec(jwt_server.url, "payments", token=token) as codec:
        client = await Client.connect(
            temporal.target, namespace="marketing", data_converter=with_codec(codec)
        )
        with pytest.raises(CodecBadRequest) as caught:
            await client.start_workflow(
                PaymentWorkflow.run, ORDER, id=workflow_id, task_queue="mismatch"
            )
    assert caught.value.code == "namespace-mismatch"
    assert "'marketing'" in str(caught.value)
    after = jwt_server.requests_served()
    assert (after["encode"], after["decode"]) == (before["encode"], before["decode"]), (
        "nothing was sent to the codec server"
    )
    plain = await Client.connect(temporal.target, namespace="marketing")
    with pytest.raises(RPCError):
        await plain.get_workflow_handle(workflow_id).describe()
