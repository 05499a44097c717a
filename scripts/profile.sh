#!/usr/bin/env bash
# Where a decode's instructions go: runs the release server under valgrind's callgrind (instruction
# counts, reliable on a loaded machine where timings are not), sends REQUESTS decode requests of one
# 1 KiB JSON payload (or 20 with PAYLOADS=20) and prints the functions with the most instructions.
# Only the requests are counted (instrumentation is switched on after startup, the seal and a warm-up).
#
# Usage: bash scripts/profile.sh [requests, default 300]
# Environment: CARGO_TARGET_DIR or PROFILE_BIN (the binary), PAYLOADS (1 or 20), AUDIT (on|off, default
#   on), PROFILE_OUT (keep the callgrind.out file there). Needs valgrind. Loopback only, bounded.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
requests="${1:-300}"
payloads="${PAYLOADS:-1}"
audit="${AUDIT:-on}"
bin="${PROFILE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/codec-server}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
[[ -x "$bin" ]] || { echo "missing $bin: cargo build --release --bin codec-server" >&2; exit 1; }

work="$(mktemp -d)"
server=""
cleanup() {
    if [[ -n "$server" ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
port="${PROFILE_PORT:-18199}"
url="http://127.0.0.1:$port"

env=(CODEC_SERVER__WORKERS=1 CODEC_SERVER__SHUTDOWN_TIMEOUT=1s)
[[ "$audit" == off ]] && env+=(CODEC_AUDIT__ENABLED=false)
env "${env[@]}" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
    "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do curl -sf -o /dev/null "$url/healthz" && break; sleep 0.1; done
curl -sf -o /dev/null "$url/healthz" || { echo "server did not start" >&2; tail "$work/server.log" >&2; exit 1; }

python3 - "$payloads" >"$work/plain.json" <<'PY'
import base64, json, sys
doc = lambda n: json.dumps({"orderId": f"ORD-{n:08d}", "note": "x" * 990}, separators=(",", ":"))[:1024]
print(json.dumps({"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                                "data": base64.b64encode(doc(n).encode()).decode()} for n in range(int(sys.argv[1]))]}))
PY
curl -sf "$url/encode" -H 'content-type: application/json' -H 'x-namespace: default' \
    --data-binary @"$work/plain.json" -o "$work/sealed.json"
# One warm-up decode (DEK cache, first allocations), then count only the measured requests.
curl -sf -o /dev/null "$url/decode" -H 'content-type: application/json' -H 'x-namespace: default' \
    --data-binary @"$work/sealed.json"
callgrind_control -i on "$server" >/dev/null 2>&1
for _ in $(seq "$requests"); do
    curl -sf -o /dev/null "$url/decode" -H 'content-type: application/json' -H 'x-namespace: default' \
        --data-binary @"$work/sealed.json"
done
callgrind_control -i off "$server" >/dev/null 2>&1
kill "$server"
wait "$server" 2>/dev/null || true
server=""

short() { # drop toolchain and registry path prefixes and the object file names
    sed -E 's#/rustc/[0-9a-f]+/library/##; s#/root/\.cargo/registry/src/index\.crates\.io-[0-9a-f]+/##; s# \[[^]]*\]$##'
}
echo "callgrind: $requests decode requests of $payloads x 1 KiB, audit $audit (instructions, self):"
# (head closes the pipe early; that is not a failure)
callgrind_annotate --inclusive=no "$work/callgrind.out" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -40 | short || true
echo
echo "inclusive:"
callgrind_annotate --inclusive=yes "$work/callgrind.out" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -80 | short || true
[[ -n "${PROFILE_OUT:-}" ]] && cp "$work/callgrind.out" "$PROFILE_OUT"
exit 0
