"""Benchmark (not a test): what RemotePayloadCodec costs a Python worker.

1. Extra wall time per workflow execution with the remote codec vs no codec: a workflow with an
   input, one activity (input + result) and a result, run one after another on a real Temporal
   dev server (unsandboxed, so sandbox start-up cost does not hide the codec's).
2. Payloads per second one Python process pushes through the codec (encode, then decode), for a few
   batch sizes and concurrency levels, against a dev-mode codec-server (audit on, its default).

    CODEC_SERVER_BIN=... TEMPORAL_BIN=... .venv/bin/python bench/bench_codec.py [--runs 30]

Everything runs on loopback and is bounded in time (``--seconds`` per throughput case).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import temporalio.converter
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporal_codec_client import RemotePayloadCodec
from tests.support.codec_server import CodecServer
from tests.support.temporal_dev import TemporalDevServer


@activity.defn
async def bench_echo(order: dict[str, str]) -> dict[str, str]:
    return {"ok": "yes", **order}


@workflow.defn(sandboxed=False)
class BenchWorkflow:
    @workflow.run
    async def run(self, order: dict[str, str]) -> dict[str, str]:
        return await workflow.execute_activity(
            bench_echo, order, start_to_close_timeout=timedelta(seconds=10)
        )


class TimedCodec(RemotePayloadCodec):
    """Counts calls and the wall time spent inside encode/decode (client and worker alike)."""

    calls = 0
    seconds = 0.0

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        start = time.perf_counter()
        try:
            return await super().encode(payloads)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - start

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        start = time.perf_counter()
        try:
            return await super().decode(payloads)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - start


ORDER = {"card": "4111 1111 1111 1111", "holder": "Ada Lovelace", "note": "x" * 200}


async def time_workflows(client: Client, queue: str, runs: int, warmup: int) -> list[float]:
    times: list[float] = []
    async with Worker(
        client,
        task_queue=queue,
        workflows=[BenchWorkflow],
        activities=[bench_echo],
    ):
        for i in range(warmup + runs):
            start = time.perf_counter()
            await client.execute_workflow(
                BenchWorkflow.run, ORDER, id=f"bench-{uuid.uuid4()}", task_queue=queue
            )
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


async def throughput(
    codec: RemotePayloadCodec, batch: int, concurrency: int, size: int, seconds: float
) -> tuple[float, float]:
    payloads = [
        Payload(metadata={"encoding": b"json/plain"}, data=b"x" * size) for _ in range(batch)
    ]
    sealed = await codec.encode(payloads)

    async def run(op: str) -> float:
        done = 0
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                if op == "encode":
                    await codec.encode(payloads)
                else:
                    await codec.decode(sealed)
                done += batch

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.perf_counter() - start)

    return await run("encode"), await run("decode")


def summary(xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    q = statistics.quantiles(ms, n=20)
    return (
        f"mean {statistics.mean(ms):6.1f} ms  median {statistics.median(ms):6.1f}  p95 {q[18]:6.1f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()

    codec_server = CodecServer(Path(tempfile.mkdtemp(prefix="codec-bench-")))
    codec_server.start()
    temporal = TemporalDevServer([])
    await temporal.start()
    try:
        async with TimedCodec(codec_server.url, "default") as codec:
            plain = await Client.connect(temporal.target)
            coded = await Client.connect(
                temporal.target,
                data_converter=dataclasses.replace(
                    temporalio.converter.default(), payload_codec=codec
                ),
            )
            # Interleave the two so machine noise hits both alike.
            base: list[float] = []
            remote: list[float] = []
            half = max(1, args.runs // 2)
            for _ in range(2):
                base += await time_workflows(plain, "bench-plain", half, args.warmup)
                remote += await time_workflows(coded, "bench-codec", half, args.warmup)
            print(f"workflow executions, {len(base)} each (sequential, 1 activity):")
            print(f"  no codec      {summary(base)}")
            print(f"  remote codec  {summary(remote)}")
            extra = statistics.median(remote) - statistics.median(base)
            print(f"  extra per execution (median): {extra * 1000:.1f} ms")
            executions = 2 * (half + args.warmup)
            print(
                f"  codec calls per execution: {codec.calls / executions:.1f}, "
                f"time inside the codec per execution: {codec.seconds / executions * 1000:.1f} ms "
                f"({codec.seconds / codec.calls * 1000:.2f} ms per call)"
            )

            print(f"\npayloads/s through the codec, one process, {args.seconds:.0f} s per case:")
            for batch, concurrency, size in [(1, 1, 1024), (1, 16, 1024), (100, 4, 1024)]:
                enc, dec = await throughput(codec, batch, concurrency, size, args.seconds)
                print(
                    f"  batch {batch:3d} x concurrency {concurrency:2d}, {size} B: "
                    f"encode {enc:8.0f}/s  decode {dec:8.0f}/s"
                )
    finally:
        temporal.cleanup()
        codec_server.stop()
        shutil.rmtree(codec_server.data_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
