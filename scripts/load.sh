#!/usr/bin/env bash
# Load test against a release build on loopback with `hey`: UI-like decodes (one ~200 B payload per
# request, the same token and data key every time) and encodes, first with auth disabled, then with
# JWT auth (cached token) — so the difference is the cost of authorization — then decode with the audit
# log off, on SQLite (fail-closed and fail-open) and on PostgreSQL — so the difference is the audit cost.
# Usage: bash scripts/load.sh [seconds per run, default 10] [concurrency, default 16]
# Bounded in time, loopback only. Numbers go into docs/benchmarks.md by hand.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
secs="${1:-10}"
conc="${2:-16}"

command -v hey >/dev/null || { apt-get update -qq && apt-get install -y -qq hey >/dev/null; }
bash scripts/test-env.sh
# LOAD_BIN runs an already built binary instead of building the release one.
bin="${LOAD_BIN:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --quiet --bin codec-server
    bin=./target/release/codec-server
fi

work="$(mktemp -d)"
server=""
trap '[[ -n "$server" ]] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
port=18081
base="http://127.0.0.1:$port"

start() { # start <config file or empty>; CODEC_* variables set by the caller pass through
    local args=(serve --data-dir "$work/data" --listen "127.0.0.1:$port")
    [[ -n "$1" ]] && args+=(--config "$1")
    RUST_LOG=warn "$bin" "${args[@]}" 2>>"$work/server.log" &
    server=$!
    for _ in $(seq 50); do curl -sf "$base/healthz" >/dev/null && return; sleep 0.1; done
    echo "server did not start" >&2; cat "$work/server.log" >&2; exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }

data=$(printf '{"orderId":"A-1029384756","customer":{"email":"someone@example.com","card":"4111111111111111"},"items":[{"sku":"X1","qty":2},{"sku":"Y7","qty":1}],"note":"leave at door"}' | base64 -w0)
printf '{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"%s"}]}' "$data" >"$work/plain.json"

run() { # run <label> <op> <body> [extra hey args...]
    local label=$1 op=$2 body=$3
    shift 3
    echo "== $label $op: 1 payload (~200 B), concurrency $conc, ${secs}s"
    hey -z "${secs}s" -c "$conc" -m POST -T application/json -H 'X-Namespace: default' "$@" -D "$body" \
        "$base/$op" | sed -n '/Requests\/sec/p;/Average/p;/50% in/p;/99% in/p;/Status code distribution/,/^$/p'
}

# 1. Auth disabled (the embedded default).
start ""
curl -sf "$base/encode" -H 'content-type: application/json' -H 'x-namespace: default' -d @"$work/plain.json" >"$work/sealed.json"
run "auth-off" decode "$work/sealed.json"
run "auth-off" encode "$work/plain.json"
stop

# 2. JWT auth with a static RSA key (tests/fixtures/jwt, test-only) and one cached token.
token=$(.venv/bin/python - <<'PY'
import base64, json, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = serialization.load_pem_private_key(open("tests/fixtures/jwt/rsa-1.pem", "rb").read(), None)
head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"iss": "https://issuer.test/", "aud": "codec-api", "sub": "u", "exp": int(time.time()) + 3600,
                       "email": "reader@example.com"}).encode())
sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
print(f"{head}.{body}.{b64(sig)}")
PY
)
cat >"$work/jwt.toml" <<TOML
data_dir = "$work/data"
[auth]
mode = "jwt"
[[auth.issuers]]
issuer = "https://issuer.test/"
audiences = ["codec-api"]
keys = ['''$(cat tests/fixtures/jwt/rsa-1.pub.pem)''']
[[auth.policies]]
match = "*"
decode = ["reader@example.com"]
encode = ["reader@example.com"]
[keyrings.dev]
primary = ["local://dev"]
[[namespaces]]
match = "*"
keyring = "dev"
TOML
start "$work/jwt.toml"
run "jwt" decode "$work/sealed.json" -H "Authorization: Bearer $token"
run "jwt" encode "$work/plain.json" -H "Authorization: Bearer $token"
stop

# 3. Audit overhead on decode (auth off, so only the audit path differs): off, SQLite fail-closed (the
#    default: each decode waits for its row's commit, commits are grouped), SQLite fail-open (queued
#    only), and PostgreSQL fail-closed on a private cluster on loopback (initdb/pg_ctl, as the tests do).
CODEC_AUDIT__ENABLED=false start ""
run "audit-off" decode "$work/sealed.json"
stop
start ""
run "audit-sqlite-fail-closed" decode "$work/sealed.json"
stop
CODEC_AUDIT__ON_FAILURE=fail-open start ""
run "audit-sqlite-fail-open" decode "$work/sealed.json"
stop

pg_bin="${PG_BIN:-$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort | tail -n1)")}"
as_pg=()
mkdir -p "$work/pg"
chmod 755 "$work"
if [[ "$(id -u)" == 0 ]]; then # PostgreSQL refuses to run as root
    as_pg=(runuser -u postgres --)
    chown postgres:postgres "$work/pg"
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U codec --auth=trust --no-sync >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -w -l "$work/pg/log" \
    -o "-k $work/pg -p 15432 -c listen_addresses=127.0.0.1" start >/dev/null
trap '[[ -n "$server" ]] && kill "$server" 2>/dev/null; "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1; rm -rf "$work"' EXIT
CODEC_AUDIT__DATABASE_URL="postgres://codec@127.0.0.1:15432/postgres" start ""
run "audit-postgres-fail-closed" decode "$work/sealed.json"
stop
