"""The real ``codec-server`` binary, started on a loopback port with its own data directory.

Dev mode is ``serve --listen 127.0.0.1:PORT --data-dir DIR`` with no config (auth off, a local KEK
made in DIR). JWT mode writes a config with ``[auth] mode = "jwt"``, the test issuers and the
policies a test asks for. Every server is stopped when its fixture ends.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .binaries import codec_server_bin
from .ports import free_port

START_TIMEOUT = 30.0


def policy_toml(match: str, decode: list[str], encode: list[str], on_deny: str = "reject") -> str:
    def items(principals: list[str]) -> str:
        return ", ".join(f'"{p}"' for p in principals)

    return (
        "[[auth.policies]]\n"
        f'match = "{match}"\n'
        f"decode = [{items(decode)}]\n"
        f"encode = [{items(encode)}]\n"
        f'on_deny = "{on_deny}"\n'
    )


class CodecServer:
    """One ``codec-server serve`` process; ``stop()`` and ``start()`` again keep port and data."""

    def __init__(self, data_dir: Path, *, config: str | None = None, tls: TlsFiles | None = None):
        self.bin = codec_server_bin()
        self.data_dir = data_dir
        self.port = free_port()
        self.tls = tls
        self.config_file: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_file = data_dir / "server.log"
        if config is not None or tls is not None:
            self._write_config(config or "")

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _write_config(self, extra: str) -> None:
        keys = self.data_dir / "keys"
        if not (keys / "main.key").exists():
            subprocess.run(
                [str(self.bin), "keygen", "--name", "main", "--dir", str(keys)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        tls = ""
        if self.tls:
            tls = f'\n[server.tls]\ncert_file = "{self.tls.cert}"\nkey_file = "{self.tls.key}"\n'
        auth = extra if "[auth]" in extra else '[auth]\nmode = "disabled"\n' + extra
        text = (
            f'data_dir = "{self.data_dir}"\n\n'
            "[server]\n"
            f'listen = "127.0.0.1:{self.port}"\n'
            'shutdown_timeout = "1s"\n'
            f"{tls}\n"
            "[log]\n"
            'format = "json"\n'
            'level = "info"\n\n'
            '[keyrings.main]\nprimary = ["local://main"]\n\n'
            '[[namespaces]]\nmatch = "*"\nkeyring = "main"\n\n'
            f"{auth}\n"
        )
        self.config_file = self.data_dir / "config.toml"
        self.config_file.write_text(text)

    def check_config(self) -> subprocess.CompletedProcess[str]:
        assert self.config_file is not None
        return subprocess.run(
            [str(self.bin), "check-config", "--config", str(self.config_file)],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self, *, wait: bool = True) -> None:
        assert self._proc is None, "already running"
        if self.config_file is None:
            args = ["serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)]
        else:
            args = ["serve", "--config", str(self.config_file)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEC_", "RUST_LOG"))}
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [str(self.bin), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        if wait:
            self.wait_healthy()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        verify = self._verify()
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                pytest.fail(
                    f"codec-server exited with {self._proc.returncode}; log:\n{self.log()}",
                    pytrace=False,
                )
            try:
                if httpx.get(f"{self.url}/healthz", verify=verify, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"codec-server not healthy in {START_TIMEOUT}s; log:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def audit(self, *filters: str) -> list[dict[str, Any]]:
        """``codec-server audit query FILTERS --format json``: one object per line, newest first."""
        config = ["--config", str(self.config_file)] if self.config_file else []
        out = subprocess.run(
            [str(self.bin), "audit", "query", *config, *filters, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            env={k: v for k, v in os.environ.items() if not k.startswith("CODEC_")},
        )
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def requests_served(self) -> dict[str, int]:
        """``codec_http_requests_total`` from ``/metrics``, summed per operation."""
        text = httpx.get(f"{self.url}/metrics", verify=self._verify(), timeout=5).text
        totals: dict[str, int] = {}
        for line in text.splitlines():
            m = re.match(r'codec_http_requests_total\{operation="(\w+)",status="\d+"\} (\d+)', line)
            if m:
                totals[m[1]] = totals.get(m[1], 0) + int(m[2])
        totals.setdefault("encode", 0)
        totals.setdefault("decode", 0)
        return totals

    def _verify(self) -> bool | ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else True

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-6000:]
        except OSError:
            return "(no log)"


class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""

    def __init__(self, directory: Path) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "codec test CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca = directory / "ca.pem"
        self.cert = directory / "tls.crt"
        self.key = directory / "tls.key"
        self.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
