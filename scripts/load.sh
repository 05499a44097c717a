#!/usr/bin/env bash
# Load test against a running release build on loopback: UI-like small decodes and encodes with `hey`.
# Usage: bash scripts/load.sh [seconds per run, default 10] [concurrency, default 16]
# Prints hey's summaries; numbers go into docs/benchmarks.md by hand. Bounded in time, loopback only.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
secs="${1:-10}"
conc="${2:-16}"

command -v hey >/dev/null || { apt-get update -qq && apt-get install -y -qq hey >/dev/null; }
cargo build --release --quiet --bin codec-server

work="$(mktemp -d)"
port=18081
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
RUST_LOG=warn ./target/release/codec-server serve --data-dir "$work/data" --listen "127.0.0.1:$port" 2>"$work/server.log" &
server=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

# One payload of ~200 bytes of JSON, like a typical workflow input the Web UI decodes.
data=$(printf '{"orderId":"A-1029384756","customer":{"email":"someone@example.com","card":"4111111111111111"},"items":[{"sku":"X1","qty":2},{"sku":"Y7","qty":1}],"note":"leave at door"}' | base64 -w0)
printf '{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"%s"}]}' "$data" >"$work/plain.json"
curl -sf "http://127.0.0.1:$port/encode" -H 'content-type: application/json' -H 'x-namespace: default' \
    -d @"$work/plain.json" >"$work/sealed.json"

for op in decode encode; do
    body="$work/sealed.json"
    [[ "$op" == encode ]] && body="$work/plain.json"
    echo "== $op: 1 payload (~200 B), concurrency $conc, ${secs}s"
    hey -z "${secs}s" -c "$conc" -m POST -T application/json -H 'X-Namespace: default' -D "$body" \
        "http://127.0.0.1:$port/$op" | sed -n '/Summary/,/Latency distribution/p;/50%/p;/99%/p;/Status code/,/^$/p'
done
