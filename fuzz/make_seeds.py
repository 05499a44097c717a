#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/seeds/ from the golden vectors and test-fixture shapes.

Re-run after changing the golden vectors: python3 fuzz/make_seeds.py
"""
import base64
import gzip
import hashlib
import json
import pathlib
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def write(target: str, name: str, data: bytes) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def payload(metadata: dict, data: bytes, external=()) -> bytes:
    out = b""
    for key in sorted(metadata):
        out += field(1, field(1, key.encode()) + field(2, metadata[key]))
    out += field(2, data)
    for size in external:
        out += field(3, varint(1 << 3 | 0) + varint(size))
    return out


def snappy_literal(data: bytes) -> bytes:
    """Snappy block format with literal chunks only (a valid, if uncompressed, stream)."""
    out = varint(len(data))
    for i in range(0, len(data), 60):
        chunk = data[i : i + 60]
        out += bytes([(len(chunk) - 1) << 2]) + chunk
    return out


def layer(encoding: str, inner: bytes) -> bytes:
    packed = {"binary/zlib": zlib.compress, "binary/gzip": lambda b: gzip.compress(b, mtime=0),
              "binary/snappy": snappy_literal}[encoding](inner)
    return payload({"encoding": encoding.encode()}, packed)


def main() -> None:
    vectors = json.loads((ROOT / "docs" / "vectors" / "envelope-v1.json").read_text())
    for i, v in enumerate(vectors):
        write("envelope", f"vector-{i}", bytes.fromhex(v["envelope_hex"]))

    plain = payload({"encoding": b"json/plain"}, b'{"hello":"world"}')
    rich = payload({"encoding": b"json/plain", "messageType": b"Order"}, b'{"id":7}', external=(1024, 5))
    write("legacy", "sealed-plain", b"\x01" + plain)
    write("legacy", "sealed-zlib", b"\x01" + layer("binary/zlib", plain))
    write("legacy", "sealed-gzip", b"\x01" + layer("binary/gzip", rich))
    write("legacy", "sealed-snappy", b"\x01" + layer("binary/snappy", plain))
    nested = layer("binary/gzip", layer("binary/snappy", layer("binary/zlib", plain)))
    write("legacy", "sealed-nested", b"\x01" + nested)
    stored = payload({"encoding": b"binary/encrypted", "encryption-key-id": b"fuzz-key"}, bytes(12) + bytes(40))
    write("legacy", "stored-legacy", b"\x00" + stored)
    proxy = payload({"encoding": b"binary/encrypted", "encryption-key-id": b"arn:aws:kms:us-east-1:1:key/k",
                     "encryption-dek": base64.b64encode(bytes(40))}, bytes(12) + bytes(40))
    write("legacy", "stored-proxy", b"\x00" + proxy)
    write("legacy", "proxy-data", b"\x02" + bytes(12) + bytes(33))
    write("legacy", "proxy-sealed", b"\x03" + rich)
    write("legacy", "zlib", b"\x04\x01" + zlib.compress(b"a" * 300))
    write("legacy", "gzip", b"\x04\x02" + gzip.compress(b"b" * 300, mtime=0))
    write("legacy", "snappy", b"\x04\x03" + snappy_literal(b"c" * 100))

    b64 = lambda b: base64.b64encode(b).decode()
    url = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
    bodies = {
        "webui": {"payloads": [{"metadata": {"encoding": b64(b"binary/kms-envelope"), "encryption-key-id": b64(b"payments")},
                                "data": b64(bytes.fromhex(vectors[1]["envelope_hex"]))}]},
        "lenient": {"payloads": [{"metadata": {"encoding": url(b"json/plain")}, "data": url(b'{"a":1}>>?'),
                                  "externalPayloads": [{"sizeBytes": "1024"}, {"sizeBytes": 7}]}]},
        "proto-names": {"payloads": [{"metadata": {}, "data": "", "external_payloads": [{"size_bytes": "9"}]}], "x": [1]},
        "empty": {"payloads": []},
    }
    for name, body in bodies.items():
        write("payloads", name, json.dumps(body).encode())
    write("payloads", "proto-plain", plain)
    write("payloads", "proto-rich", rich)

    for name, data in {
        "plain": b"/decode",
        "prefixed": b"/codec//payments/decode\x00/codec/\x00payments",
        "header": b"/encode/\x00\x00payments-prod",
        "two-headers": b"/download\x00codec\x00a\x00b",
        "default": b"//decode\x00D/api/v1\x00",
        "mismatch": b"/my_ns.a1b2c/decode\x00\x00other",
    }.items():
        write("route", name, data)

    enc = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    sig = base64.urlsafe_b64encode(hashlib.sha256(b"not a signature").digest()).decode().rstrip("=")
    claims = {"iss": "https://issuer.example", "aud": "codec", "exp": 4102444800, "email": "a@example.com",
              "email_verified": True, "groups": ["payments"]}
    for name, header in {"rs256": {"alg": "RS256", "kid": "rsa-1", "typ": "JWT"},
                         "es256": {"alg": "ES256", "kid": "ec-1"}, "none": {"alg": "none"}}.items():
        token = f"{enc(header)}.{enc(claims)}.{sig}"
        write("jwt", name, f"Bearer {token}".encode())
    write("jwt", "two-headers", f"bearer {enc({'alg': 'HS256'})}.{enc(claims)}.{sig}\x00Bearer a.b.c".encode())


if __name__ == "__main__":
    main()
