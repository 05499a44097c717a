"""A token issuer for tests: RS256 keys made here, a JWKS served over http on 127.0.0.1, and
tokens shaped like the ones real callers carry.

Workers carry Kubernetes service-account tokens (projected volume): ``iss`` the cluster's issuer,
``sub`` ``system:serviceaccount:<ns>:<name>``, ``aud``, ``exp``/``iat``/``nbf`` and the
``kubernetes.io`` claim; no email. People (Web UI, CLI) carry OIDC access tokens with an email.

``WORKER_IDENTITY`` is the one switch between the two ways a policy can name a worker:
``"sub"`` (``sub:system:serviceaccount:payments:*``, DESIGN §6) or ``"email"`` (for a server that
only knows email principals: the token then also carries an email claim).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

#: How policies name workers; see the module doc.
WORKER_IDENTITY: Literal["sub", "email"] = "sub"

K8S_ISSUER = "https://kubernetes.default.svc.cluster.local"
OIDC_ISSUER = "https://login.example.test/"
AUDIENCE = "temporal-codec"


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


def worker_principal(k8s_namespace: str) -> str:
    """The policy principal that admits the workers of a Kubernetes namespace."""
    if WORKER_IDENTITY == "sub":
        return f"sub:system:serviceaccount:{k8s_namespace}:*"
    return f"{k8s_namespace}-worker@serviceaccounts.example.test"


class Issuer:
    """Two issuers (a Kubernetes cluster and an OIDC provider) with their JWKS on one loopback
    HTTP server: ``/k8s/jwks`` and ``/oidc/jwks``."""

    def __init__(self) -> None:
        self.k8s_key = SigningKey.generate("k8s-1")
        self.oidc_key = SigningKey.generate("oidc-1")
        self.stranger_key = SigningKey.generate("k8s-1")  # same kid, not in any JWKS
        jwks = {
            "/k8s/jwks": {"keys": [self.k8s_key.jwk()]},
            "/oidc/jwks": {"keys": [self.oidc_key.jwk()]},
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = jwks.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def issuers_toml(self) -> str:
        """``[[auth.issuers]]`` entries for the server config."""
        return (
            "[[auth.issuers]]\n"
            f'issuer = "{K8S_ISSUER}"\n'
            f'audiences = ["{AUDIENCE}"]\n'
            f'jwks_url = "{self.base_url}/k8s/jwks"\n'
            'algorithms = ["RS256"]\n\n'
            "[[auth.issuers]]\n"
            f'issuer = "{OIDC_ISSUER}"\n'
            f'audiences = ["{AUDIENCE}"]\n'
            f'jwks_url = "{self.base_url}/oidc/jwks"\n'
            'algorithms = ["RS256"]\n'
        )

    def service_account_token(
        self,
        k8s_namespace: str = "payments",
        name: str = "payments-worker",
        *,
        lifetime: int = 3600,
        key: SigningKey | None = None,
    ) -> str:
        """A projected service-account token as the kubelet writes it (one pod, one volume)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": [AUDIENCE],
            "exp": now + lifetime,
            "iat": now,
            "nbf": now,
            "iss": K8S_ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": k8s_namespace,
                "node": {"name": "node-a", "uid": str(uuid.uuid4())},
                "pod": {"name": f"{name}-7d9c6b5f4-x2x9q", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": name, "uid": str(uuid.uuid4())},
                "warnafter": now + lifetime - 600,
            },
            "sub": f"system:serviceaccount:{k8s_namespace}:{name}",
        }
        if WORKER_IDENTITY == "email":
            claims["email"] = worker_principal(k8s_namespace)
        return (key or self.k8s_key).sign(claims)

    def person_token(self, email: str, *, lifetime: int = 3600) -> str:
        """An OIDC access token of a person (the CLI's ``--codec-auth`` and the Web UI send one)."""
        now = int(time.time())
        claims = {
            "iss": OIDC_ISSUER,
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, email)),
            "aud": AUDIENCE,
            "exp": now + lifetime,
            "iat": now,
            "nbf": now,
            "email": email,
            "email_verified": True,
        }
        return self.oidc_key.sign(claims)
