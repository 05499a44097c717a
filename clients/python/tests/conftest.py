"""Fixtures: the real codec-server (dev mode and JWT mode), the test token issuer, payloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from .support.codec_server import CodecServer, policy_toml
from .support.tokens import Issuer, worker_principal

ONCALL = "oncall@example.com"
INTERN = "intern@example.com"


@pytest.fixture(scope="session")
def issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    yield issuer
    issuer.close()


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CodecServer]:
    """Dev mode: no config, auth off, a local KEK generated in the data dir."""
    server = CodecServer(tmp_path_factory.mktemp("codec-dev"))
    server.start()
    yield server
    server.stop()


def jwt_config(issuer: Issuer) -> str:
    """Workers of Kubernetes namespace payments seal and open in Temporal namespace payments;
    marketing's in marketing; the on-call engineer may also read payments. In reports, payments
    workers may seal but not open, and a denied decode passes the payloads through unchanged."""
    return (
        '[auth]\nmode = "jwt"\n\n'
        + issuer.issuers_toml()
        + "\n"
        + policy_toml(
            "payments",
            decode=[worker_principal("payments"), ONCALL],
            encode=[worker_principal("payments")],
        )
        + "\n"
        + policy_toml(
            "marketing",
            decode=[worker_principal("marketing")],
            encode=[worker_principal("marketing")],
        )
        + "\n"
        + policy_toml(
            "reports",
            decode=[ONCALL],
            encode=[worker_principal("payments")],
            on_deny="passthrough",
        )
    )


@pytest.fixture(scope="session")
def jwt_server(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[CodecServer]:
    server = CodecServer(tmp_path_factory.mktemp("codec-jwt"), config=jwt_config(issuer))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    return tmp_path


SECRET = b'{"card":"4111 1111 1111 1111","holder":"Ada Lovelace"}'


def plain_payloads(n: int = 3) -> list[Payload]:
    """``n`` distinct JSON payloads, each carrying the recognisable ``SECRET`` text."""
    return [
        Payload(
            metadata={"encoding": b"json/plain", "index": str(i).encode()},
            data=SECRET[:-1] + f',"i":{i}}}'.encode(),
        )
        for i in range(n)
    ]
