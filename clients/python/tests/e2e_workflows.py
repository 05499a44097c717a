"""Workflows and activities for the end-to-end tests. Every value they carry holds a marker
string, so a test can search Temporal's stored history for plaintext."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

CARD = "4111 1111 1111 1111"
AUTH_CODE = "AUTH-7f3a-SECRET"
APPROVER = "approver-SECRET-grace"
QUERY_MARK = "QUERY-SECRET"
MARKERS = [CARD, AUTH_CODE, APPROVER, QUERY_MARK, "Ada Lovelace"]


@activity.defn
async def charge(order: dict[str, str]) -> dict[str, str]:
    return {"auth_code": AUTH_CODE, "card_last4": order["card"][-4:]}


@workflow.defn
class PaymentWorkflow:
    def __init__(self) -> None:
        self._approver: str | None = None
        self._stage = "started"

    @workflow.run
    async def run(self, order: dict[str, str]) -> dict[str, str]:
        receipt = await workflow.execute_activity(
            charge, order, start_to_close_timeout=timedelta(seconds=20)
        )
        self._stage = "charged"
        await workflow.wait_condition(lambda: self._approver is not None)
        assert self._approver is not None
        return {"holder": order["holder"], "approved_by": self._approver, **receipt}

    @workflow.signal
    def approve(self, approver: str) -> None:
        self._approver = approver

    @workflow.query
    def status(self) -> dict[str, str]:
        return {"stage": self._stage, "mark": QUERY_MARK}


@workflow.defn
class SlowPaymentWorkflow:
    """Waits on a timer before it needs the codec again, so the codec can go away meanwhile."""

    @workflow.run
    async def run(self, order: dict[str, str], wait_seconds: float) -> dict[str, str]:
        await asyncio.sleep(wait_seconds)
        receipt = await workflow.execute_activity(
            charge, order, start_to_close_timeout=timedelta(seconds=20)
        )
        return {"holder": order["holder"], **receipt}
