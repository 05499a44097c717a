#!/usr/bin/env python3
"""Independent implementation of envelope v1 (docs/envelope-format.md) that checks the golden vectors.

Written from the format document alone, with the `cryptography` package's HKDF-SHA512 and AESGCM (no code
shared with the Rust implementation). For every vector it seals the inputs and compares the exact bytes,
parses the envelope back, opens it, and checks that it does not open under another namespace, with another
DEK, or with a flipped bit.

Usage: .venv/bin/python scripts/verify_envelope_vectors.py docs/vectors/envelope-v1.json
       .venv/bin/python scripts/verify_envelope_vectors.py docs/vectors/envelope-v1-suite2.json
Exit status 0 when every vector passes. `tests/it/crypto_vectors.rs` runs it.
"""

import hmac as std_hmac
import json
import struct
import sys

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
except ImportError:
    print("verify_envelope_vectors.py: the `cryptography` package is missing; run `bash scripts/test-env.sh`",
          file=sys.stderr)
    sys.exit(2)

MAGIC = b"TCE\x01"
SUITE_PER_PAYLOAD = 0x0001  # keys derived per payload, salted with the message id
SUITE_PER_KEY = 0x0002      # keys derived once per data key
SUITES = {SUITE_PER_PAYLOAD, SUITE_PER_KEY}
FLAG_ZSTD = 0x01
MAX_NAMESPACE = 255
MAX_KEK_REF = 512
MAX_WRAPPED = 1024
MAX_EDKS = 4
TAG_LEN = 16
PROVIDERS = {0, 1, 2, 3}


class EnvelopeError(Exception):
    """A rejected envelope; `kind` names the rule (the Rust EnvelopeError variant)."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


def u16(n):
    return struct.pack(">H", n)


# --- key schedule (§3) -------------------------------------------------------------------------------

def hkdf_extract(salt, ikm):
    h = hmac.HMAC(salt, hashes.SHA512())
    h.update(ikm)
    return h.finalize()


def hkdf_expand(prk, info, length):
    return HKDFExpand(algorithm=hashes.SHA512(), length=length, info=info).derive(prk)


def key_schedule(dek, message_id, suite):
    if suite == SUITE_PER_PAYLOAD:
        prk = hkdf_extract(message_id, dek)
        return hkdf_expand(prk, b"TCE v1 key" + u16(suite), 32), hkdf_expand(prk, b"TCE v1 commit", 32)
    if suite == SUITE_PER_KEY:
        prk = hkdf_extract(b"\x00" * 64, dek)  # RFC 5869: an empty salt is HashLen zero bytes
        return hkdf_expand(prk, b"TCE v1 key" + u16(suite), 32), hkdf_expand(prk, b"TCE v1 commit" + u16(suite), 32)
    raise EnvelopeError("UnknownSuite")


def aad(header, request_namespace):
    ns = request_namespace.encode("utf-8")
    return b"TCE v1" + header + u16(len(ns)) + ns


# --- sealing (§2, §6) --------------------------------------------------------------------------------

def seal(suite, dek, message_id, iv, namespace, flags, edks, plaintext):
    if flags & ~FLAG_ZSTD & 0xFF:
        raise EnvelopeError("ReservedFlags")
    if not 1 <= len(edks) <= MAX_EDKS:
        raise EnvelopeError("BadEdkCount")
    ns = namespace.encode("utf-8")
    if len(ns) > MAX_NAMESPACE:
        raise EnvelopeError("FieldTooLong")
    k_enc, commitment = key_schedule(dek, message_id, suite)
    header = bytearray(MAGIC + u16(suite) + bytes([flags]) + message_id + u16(len(ns)) + ns + bytes([len(edks)]))
    for provider, kek_ref, wrapped in edks:
        ref = kek_ref.encode("utf-8")
        if len(ref) > MAX_KEK_REF or len(wrapped) > MAX_WRAPPED:
            raise EnvelopeError("FieldTooLong")
        header += bytes([provider]) + u16(len(ref)) + ref + u16(len(wrapped)) + wrapped
    header += commitment + iv
    return bytes(header) + AESGCM(k_enc).encrypt(iv, plaintext, aad(bytes(header), namespace))


# --- parsing and opening (§8) ------------------------------------------------------------------------

class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise EnvelopeError("Truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def field(self, maximum):
        n = self.u16()
        if n > maximum:  # before reading the field
            raise EnvelopeError("FieldTooLong")
        return self.take(n)

    def text(self, maximum):
        raw = self.field(maximum)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EnvelopeError("NotUtf8") from None


def parse(data):
    r = Reader(data)
    magic = r.take(4)
    if magic[:3] != MAGIC[:3]:
        raise EnvelopeError("BadMagic")
    if magic[3] != MAGIC[3]:
        raise EnvelopeError("UnknownVersion")
    suite = r.u16()
    if suite not in SUITES:
        raise EnvelopeError("UnknownSuite")
    flags = r.u8()
    if flags & ~FLAG_ZSTD & 0xFF:
        raise EnvelopeError("ReservedFlags")
    message_id = r.take(32)
    namespace = r.text(MAX_NAMESPACE)
    count = r.u8()
    if not 1 <= count <= MAX_EDKS:
        raise EnvelopeError("BadEdkCount")
    edks = []
    for _ in range(count):
        provider = r.u8()
        if provider not in PROVIDERS:
            raise EnvelopeError("UnknownProvider")
        edks.append((provider, r.text(MAX_KEK_REF), r.field(MAX_WRAPPED)))
    commitment = r.take(32)
    iv = r.take(12)
    header, ciphertext = data[:r.pos], data[r.pos:]
    if len(ciphertext) < TAG_LEN:
        raise EnvelopeError("Truncated")
    return {"suite": suite, "flags": flags, "message_id": message_id, "namespace": namespace, "edks": edks,
            "commitment": commitment, "iv": iv, "header": header, "ciphertext": ciphertext}


def open_envelope(env, dek, request_namespace):
    k_enc, commitment = key_schedule(dek, env["message_id"], env["suite"])
    if not std_hmac.compare_digest(commitment, env["commitment"]):
        raise EnvelopeError("CommitmentMismatch")
    try:
        return AESGCM(k_enc).decrypt(env["iv"], env["ciphertext"], aad(env["header"], request_namespace))
    except InvalidTag:
        raise EnvelopeError("Open") from None


# --- protobuf of the Payload (§5), as the server writes it ----------------------------------------------

def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1  # int64 negatives are 10-byte varints
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def payload_protobuf(payload):
    out = bytearray()
    for key in sorted(payload["metadata"], key=lambda k: k.encode("utf-8")):
        k, v = key.encode("utf-8"), payload["metadata"][key].encode("utf-8")
        entry = (length_delimited(1, k) if k else b"") + (length_delimited(2, v) if v else b"")
        out += length_delimited(1, entry)
    data = payload["data"].encode("utf-8")
    if data:
        out += length_delimited(2, data)
    for size in payload["external_payload_sizes"]:
        out += length_delimited(3, (varint(1 << 3 | 0) + varint(size)) if size else b"")
    return bytes(out)


# --- the checks ------------------------------------------------------------------------------------------

def expect_error(kind, fn):
    try:
        fn()
    except EnvelopeError as e:
        if kind is not None and e.kind != kind:
            raise AssertionError(f"expected {kind}, got {e.kind}") from None
        return
    raise AssertionError(f"expected {kind or 'an error'}, got success")


def other_namespace(ns):
    return ns + "x" if len(ns.encode("utf-8")) < MAX_NAMESPACE else ns[:-1] + ("y" if ns[-1] != "y" else "z")


def check_vector(v):
    dek = bytes.fromhex(v["dek_hex"])
    message_id = bytes.fromhex(v["message_id_hex"])
    iv = bytes.fromhex(v["iv_hex"])
    namespace, flags = v["namespace"], v["flags"]
    edks = [(e["provider"], e["kek_ref"], bytes.fromhex(e["wrapped_hex"])) for e in v["edks"]]
    plaintext = bytes.fromhex(v["plaintext_hex"])
    envelope = bytes.fromhex(v["envelope_hex"])
    assert len(dek) == 32 and len(message_id) == 32 and len(iv) == 12, "input lengths"

    suite = v.get("suite", SUITE_PER_PAYLOAD)
    k_enc, commitment = key_schedule(dek, message_id, suite)
    assert k_enc.hex() == v["k_enc_hex"], "k_enc differs"
    assert commitment.hex() == v["commitment_hex"], "commitment differs"

    sealed = seal(suite, dek, message_id, iv, namespace, flags, edks, plaintext)
    assert sealed == envelope, "sealing the inputs does not give envelope_hex"

    env = parse(envelope)
    assert env["suite"] == suite, "parsed suite differs"
    assert (env["flags"], env["message_id"], env["namespace"], env["edks"], env["iv"], env["commitment"]) == (
        flags, message_id, namespace, edks, iv, commitment), "parsed header differs from the inputs"
    assert aad(env["header"], namespace).hex() == v["aad_hex"], "AAD differs"
    assert len(env["ciphertext"]) == len(plaintext) + TAG_LEN, "ciphertext length"
    assert open_envelope(env, dek, namespace) == plaintext, "opening does not give plaintext_hex"

    expect_error("Open", lambda: open_envelope(env, dek, other_namespace(namespace)))
    expect_error("CommitmentMismatch", lambda: open_envelope(env, bytes(b ^ 1 for b in dek), namespace))
    for position in (0, 3, 6, 7, 40, len(env["header"]) - 13, len(env["header"]) - 1, len(envelope) - 1):
        flipped = bytearray(envelope)
        flipped[position] ^= 0x01
        expect_error(None, lambda: open_envelope(parse(bytes(flipped)), dek, namespace))
    expect_error("Open", lambda: open_envelope(parse(envelope + b"\x00"), dek, namespace))

    payload = v.get("payload")
    if payload is not None:
        serialized = payload_protobuf(payload)
        if flags & FLAG_ZSTD:
            assert plaintext[:4] == b"\x28\xb5\x2f\xfd", "compressed plaintext is not a zstd frame"
            try:
                from compression import zstd  # Python 3.14+
            except ImportError:
                zstd = None
            if zstd is not None:
                assert zstd.decompress(plaintext) == serialized, "decompressed plaintext differs from the Payload"
        else:
            assert serialized == plaintext, "plaintext is not the protobuf of the described Payload"


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        vectors = json.load(f)
    passed = failed = 0
    for i, v in enumerate(vectors):
        try:
            check_vector(v)
            passed += 1
        except (AssertionError, EnvelopeError) as e:
            failed += 1
            print(f"vector {i} ({v.get('description', '?')}): {e}", file=sys.stderr)
    print(f"envelope v1 vectors: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
