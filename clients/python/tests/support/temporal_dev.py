"""A real Temporal dev server (``temporal server start-dev``) on free loopback ports, in memory,
and the real ``temporal`` CLI against it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from .binaries import temporal_bin
from .ports import free_port

READY_TIMEOUT = 60.0


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env["HOME"] = str(home)
    env["TEMPORAL_CONFIG_FILE"] = str(home / "no-cli-config.toml")
    return env


class TemporalDevServer:
    def __init__(self, namespaces: list[str]) -> None:
        self.bin = temporal_bin()
        self.namespaces = namespaces
        self.dir = Path(tempfile.mkdtemp(prefix="pyclient-temporal-"))
        self.log_file = self.dir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.target = ""

    async def start(self) -> None:
        last = ""
        for _ in range(3):  # a port found free may be taken before the server binds it
            grpc, ui, http, metrics = (free_port() for _ in range(4))
            args = [
                str(self.bin), "server", "start-dev", "--ip", "127.0.0.1",
                "--port", str(grpc), "--ui-port", str(ui), "--http-port", str(http),
                "--metrics-port", str(metrics), "--headless", "--log-level", "warn",
            ]  # fmt: skip
            for ns in self.namespaces:
                args += ["--namespace", ns]
            with open(self.log_file, "ab") as log:
                self._proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=_clean_env(self.dir),
                    start_new_session=True,
                )
            self.target = f"127.0.0.1:{grpc}"
            status = await self._wait_ready()
            if status is None:
                return
            last = status
        pytest.fail(f"temporal dev server did not start: {last}\n{self.log()}", pytrace=False)

    async def _wait_ready(self) -> str | None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return f"exited with {self._proc.returncode}"
            try:
                client = await Client.connect(self.target)
                for ns in ["default", *self.namespaces]:
                    await client.workflow_service.describe_namespace(
                        DescribeNamespaceRequest(namespace=ns)
                    )
                return None
            except Exception as e:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"temporal dev server not ready in {READY_TIMEOUT}s: {e!r}")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # in memory: nothing to flush
            proc.wait(timeout=10)

    def cleanup(self) -> None:
        """Stops the server and removes its scratch directory (log included)."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    async def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Runs ``temporal ARGS --address TARGET`` with no TEMPORAL_* variables or config file."""
        cmd = [str(self.bin), *args, "--address", self.target]
        return await asyncio.to_thread(
            subprocess.run,
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_clean_env(self.dir),
            stdin=subprocess.DEVNULL,
        )
