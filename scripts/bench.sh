#!/usr/bin/env bash
# Side-by-side HTTP benchmark on loopback (method and results: docs/performance.md).
#
# Each server runs pinned to CPU 1 with one worker; wrk -t1 -c32 runs pinned to CPU 0. Every server
# decodes the same plaintext (1 KiB JSON "order" documents): 1x1KiB, 20x1KiB, 1x256KiB and 1x1MiB per
# request, and answers one checked request before it is measured. Configurations:
#   dev        our server, embedded default (auth off, audit on: SQLite, fail-closed), our envelopes
#   audit-off  the same with audit.enabled = false (also encode 1x1KiB)
#   postgres   the dev default with the audit log in PostgreSQL (a private cluster on loopback, pinned
#              to CPU 1 with the server, or to BENCH_PG_CPUS), when Debian's PostgreSQL server binaries
#              are installed
#   rotating   audit off, encode 1x1KiB with a data key that lives 2 s (renewed in the background 1 s
#              before): the p99 of encode across a key rotation, next to audit-off encode
#   suite1     audit off, decoding envelopes of suite 0x0001 (per-payload key schedule, what 0.1 wrote)
#   legacy     the same, audit off, decoding the official samples' binary/encrypted format
#   ts-sample  temporalio/samples-typescript encryption/ codec server (same legacy bodies), only when
#              TS_SAMPLE_DIR points at a built copy (see --help)
#   echo       benches/echo_server.rs (bin echo-baseline): parse the JSON, base64-decode and re-encode
#              every field, answer; no crypto — the HTTP + JSON + base64 limit of a simple implementation
# Prints one markdown table (req/s, payloads/s, MB/s of plaintext, p50/p99, peak RSS = VmHWM).
#
# Usage: bash scripts/bench.sh [--quick] [--ratios] [--debug] [--no-build]
#   --quick     1 s per run, one round (a smoke check; numbers mean little)
#   --ratios    only the runs the targets' ratios compare (1x1KiB: dev, audit off, PostgreSQL, echo;
#               20x1KiB: audit off, echo), 4 s each, 5 rounds: on a noisy machine the same binary moves
#               by ±20 % between minutes, so ratios are taken within each round and their median printed
#   --debug     use the debug build (numbers mean nothing; for checking the script)
#   --no-build  use the binaries already in the target directory
# Environment: CARGO_TARGET_DIR, TS_SAMPLE_DIR, PG_BIN (PostgreSQL's bin directory), BENCH_PG_CPUS (the
#   CPUs the PostgreSQL cluster may use, taskset's list; default 1, the server's), BENCH_SECONDS, BENCH_ROUNDS, BENCH_PORT (base port,
#   default 18190), BENCH_OUT (also write the table there), RUST_LOG (default: the servers' own, info).
# Bounded in time (the total is printed first), loopback only; every process it starts is stopped.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

secs="${BENCH_SECONDS:-8}"
rounds="${BENCH_ROUNDS:-2}"
profile=release
build=1
ratios_only=0
quick=0
for arg in "$@"; do
    case "$arg" in
    --quick) quick=1 ;;
    --ratios) ratios_only=1 ;;
    --debug) profile=debug ;;
    --no-build) build=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        cat <<'EOF'

TypeScript sample (optional): outside this repository,
  git clone https://github.com/temporalio/samples-typescript && cd samples-typescript/encryption
  npm install && npx tsc --build   # reports one type error but still emits lib/codec-server.js
  TS_SAMPLE_DIR=$PWD bash /path/to/scripts/bench.sh
EOF
        exit 0
        ;;
    *)
        echo "unknown argument: $arg (see --help)" >&2
        exit 2
        ;;
    esac
done
if [[ "$quick" == 1 ]]; then
    secs=1 rounds=1
elif [[ "$ratios_only" == 1 ]]; then
    secs="${BENCH_SECONDS:-4}" rounds="${BENCH_ROUNDS:-5}"
fi

# ---------------------------------------------------------------- tools and binaries
if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)…"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
for tool in wrk taskset curl python3; do
    command -v "$tool" >/dev/null || { echo "bench.sh needs $tool" >&2; exit 1; }
done
if [[ "$(nproc)" -lt 2 ]]; then
    echo "bench.sh needs two CPUs (server on CPU 1, wrk on CPU 0)" >&2
    exit 1
fi
have_legacy=1
python3 -c 'import cryptography' 2>/dev/null || {
    have_legacy=0
    echo "note: python3 'cryptography' is missing: no legacy-format bodies, so no legacy and ts-sample rows" >&2
}

target_dir="${CARGO_TARGET_DIR:-$REPO/target}"
if [[ "$build" == 1 ]]; then
    flags=()
    [[ "$profile" == release ]] && flags+=(--release)
    echo "building ($profile): cargo build ${flags[*]} --bin codec-server --bin echo-baseline"
    cargo build "${flags[@]}" --quiet --bin codec-server --bin echo-baseline
fi
server_bin="$target_dir/$profile/codec-server"
echo_bin="$target_dir/$profile/echo-baseline"
for b in "$server_bin" "$echo_bin"; do
    [[ -x "$b" ]] || { echo "missing $b (build it, or drop --no-build)" >&2; exit 1; }
done

ts_dir="${TS_SAMPLE_DIR:-}"
if [[ -n "$ts_dir" && ! -f "$ts_dir/lib/codec-server.js" ]]; then
    echo "TS_SAMPLE_DIR=$ts_dir has no lib/codec-server.js (npm install && npx tsc --build there)" >&2
    exit 1
fi
[[ -n "$ts_dir" ]] && ! command -v node >/dev/null && { echo "TS_SAMPLE_DIR needs node" >&2; exit 1; }

pg_bin="${PG_BIN:-$(compgen -G "/usr/lib/postgresql/*/bin" | sort -V | tail -1 || true)}"
have_pg=0
[[ -n "$pg_bin" && -x "$pg_bin/initdb" ]] && have_pg=1
[[ "$have_pg" == 0 ]] && echo "note: no PostgreSQL server binaries (apt-get install postgresql): no postgres rows" >&2

# ---------------------------------------------------------------- the plan
workloads=(1x1KiB 20x1KiB 1x256KiB 1x1MiB)
plan=() # "config op workload"
for w in "${workloads[@]}"; do plan+=("dev decode $w"); done
[[ "$have_pg" == 1 ]] && plan+=("postgres decode 1x1KiB" "postgres decode 20x1KiB")
for w in "${workloads[@]}"; do plan+=("audit-off decode $w"); done
plan+=("audit-off encode 1x1KiB" "rotating encode 1x1KiB")
plan+=("suite1 decode 1x1KiB" "suite1 decode 20x1KiB")
if [[ "$have_legacy" == 1 ]]; then
    for w in "${workloads[@]}"; do plan+=("legacy decode $w"); done
    if [[ -n "$ts_dir" ]]; then
        for w in "${workloads[@]}"; do plan+=("ts-sample decode $w"); done
        plan+=("ts-sample encode 1x1KiB")
    fi
fi
for w in "${workloads[@]}"; do plan+=("echo echo $w"); done
if [[ "$ratios_only" == 1 ]]; then
    # Close together in each round: the pairs whose ratios the targets name.
    plan=("dev decode 1x1KiB" "audit-off decode 1x1KiB" "echo echo 1x1KiB" "audit-off encode 1x1KiB")
    [[ "$have_pg" == 1 ]] && plan+=("postgres decode 1x1KiB")
    plan+=("audit-off decode 20x1KiB" "echo echo 20x1KiB")
fi
estimate=$(((${#plan[@]} * rounds) * (secs + 2) + 10))
label="$profile build"
[[ "$profile" == debug ]] && label="DEBUG build: these numbers mean nothing"
echo "plan: ${#plan[@]} runs x $rounds round(s) x ${secs}s, wrk -t1 -c32 on CPU 0, servers on CPU 1 ($label)"
echo "expected duration: about $((estimate / 60)) min $((estimate % 60)) s"

# ---------------------------------------------------------------- work directory, cleanup
work="$(mktemp -d)"
server_pid=""
pg_started=0
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ "$pg_started" == 1 ]]; then
        "${run_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_base="${BENCH_PORT:-18190}"
port_ours=$port_base
port_echo=$((port_base + 1))
port_ts=$((port_base + 2))
for p in $port_ours $port_echo $port_ts; do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/"; then
        echo "port $p is in use; set BENCH_PORT" >&2
        exit 1
    fi
done

# ---------------------------------------------------------------- bodies
mkdir -p "$work/bodies" "$work/replies" "$work/logs"
printf '%s' 'test-key-test-key-test-key-test!' >"$work/legacy.key" # the samples' key, id "test-key-id"
python3 - "$work/bodies" "$have_legacy" <<'PY'
import base64, json, os, sys

out, have_legacy = sys.argv[1], sys.argv[2] == "1"

def order(n):
    """A 1 KiB JSON order document, exactly 1024 bytes."""
    doc = {
        "orderId": f"ORD-{n:08d}",
        "customer": {"id": f"C-{n:06d}", "name": f"Customer {n}", "email": f"customer{n}@example.com",
                     "phone": "+1-555-0100"},
        "shipping": {"street": f"{n} Main Street", "city": "Springfield", "zip": "12345", "country": "US"},
        "items": [{"sku": f"SKU-{i:04d}", "name": f"Item number {i}", "qty": i + 1, "price": 10 * i + 9.99}
                  for i in range(6)],
        "status": "PENDING",
        "note": "",
    }
    text = json.dumps(doc, separators=(",", ":"))
    doc["note"] = "x" * (1024 - len(text))
    text = json.dumps(doc, separators=(",", ":")).encode()
    assert len(text) == 1024, len(text)
    return text

def big(size):
    """One JSON array of orders, exactly `size` bytes."""
    docs, total = [], 2
    while total + 1025 <= size:
        docs.append(order(len(docs)))
        total += 1025 if len(docs) > 1 else 1024
    text = b"[" + b",".join(docs) + b"]"
    return text[:-1] + b" " * (size - len(text)) + b"]"

bodies = {
    "1x1KiB": [order(0)],
    "20x1KiB": [order(n) for n in range(20)],
    "1x256KiB": [big(256 << 10)],
    "1x1MiB": [big(1 << 20)],
}
b64 = lambda b: base64.b64encode(b).decode()
plain_meta = {"encoding": b"json/plain"}

def doc(payloads):
    return json.dumps({"payloads": [{"metadata": {k: b64(v) for k, v in m.items()}, "data": b64(d)}
                                    for m, d in payloads]}).encode()

for name, datas in bodies.items():
    assert all(len(d) == len(datas[0]) for d in datas)
    with open(os.path.join(out, f"plain-{name}.json"), "wb") as f:
        f.write(doc([(plain_meta, d) for d in datas]))

if have_legacy:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    def varint(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def ld(tag, b):
        return bytes([tag]) + varint(len(b)) + b

    def proto_payload(meta, data):  # temporal.api.common.v1.Payload
        entries = b"".join(ld(0x0A, ld(0x0A, k.encode()) + ld(0x12, v)) for k, v in sorted(meta.items()))
        return entries + ld(0x12, data)

    aead = AESGCM(b"test-key-test-key-test-key-test!")
    legacy_meta = {"encoding": b"binary/encrypted", "encryption-key-id": b"test-key-id"}
    for name, datas in bodies.items():
        sealed = []
        for d in datas:
            iv = os.urandom(12)
            sealed.append((legacy_meta, iv + aead.encrypt(iv, proto_payload(plain_meta, d), None)))
        with open(os.path.join(out, f"legacy-{name}.json"), "wb") as f:
            f.write(doc(sealed))
PY

# check <expected plain body> <reply> <op>: decode/echo replies must carry exactly the plaintext
# payloads; encode replies must carry as many sealed payloads, none of them plaintext.
check() {
    python3 - "$@" <<'PY'
import base64, json, sys
expected, reply, op = sys.argv[1:4]
norm = lambda p: ({k: base64.b64decode(v) for k, v in (p.get("metadata") or {}).items()},
                  base64.b64decode(p.get("data") or ""))
want = [norm(p) for p in json.load(open(expected))["payloads"]]
got = [norm(p) for p in json.load(open(reply))["payloads"]]
if op == "encode":
    ok = len(got) == len(want) and all(
        g[0].get("encoding") in (b"binary/kms-envelope", b"binary/encrypted") and w[1] not in g[1]
        for g, w in zip(got, want))
else:
    ok = got == want
sys.exit(0 if ok else 1)
PY
}

# ---------------------------------------------------------------- servers
start_server() { # start_server <config>
    local config=$1 port url
    case "$config" in
    dev | audit-off | legacy | postgres | suite1 | seal-suite1 | rotating)
        port=$port_ours
        local env=(CODEC_SERVER__WORKERS=1 CODEC_SERVER__SHUTDOWN_TIMEOUT=1s)
        local args=(serve --data-dir "$work/data" --listen "127.0.0.1:$port")
        case "$config" in
        dev | seal-suite1) ;;
        postgres) env+=(CODEC_AUDIT__DATABASE_URL="$pg_url") ;;
        *) env+=(CODEC_AUDIT__ENABLED=false) ;;
        esac
        [[ "$config" == seal-suite1 ]] && env+=(CODEC_ENVELOPE__SEAL_SUITE=1)
        [[ "$config" == rotating ]] && env+=(CODEC_CACHE__ENCRYPT__MAX_AGE=2s CODEC_CACHE__ENCRYPT__RENEW_BEFORE=1s)
        [[ "$config" == legacy ]] && args+=(--config "$work/legacy.toml")
        env "${env[@]}" taskset -c 1 "$server_bin" "${args[@]}" >>"$work/logs/$config.log" 2>&1 &
        ;;
    echo)
        port=$port_echo
        taskset -c 1 "$echo_bin" "127.0.0.1:$port" 1 >>"$work/logs/echo.log" 2>&1 &
        ;;
    ts-sample)
        port=$port_ts
        # The sample logs every decoded payload to stdout; that is part of its cost, kept off the terminal.
        (cd "$ts_dir" && exec taskset -c 1 node lib/codec-server.js --port "$port" >>"$work/logs/ts.log" 2>&1) &
        ;;
    esac
    server_pid=$!
    url="http://127.0.0.1:$port"
    for _ in $(seq 100); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url/healthz" || true)" != 000 ]]; then
            server_url=$url
            return
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$config did not start; its log:" >&2
    tail -20 "$work/logs/"*"$config"*.log >&2 || true
    exit 1
}
stop_server() {
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}
peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0; }

{
    cat config/dev.toml
    printf '\n[legacy.keys."test-key-id"]\nkey_file = "%s"\nnamespaces = ["*"]\n' "$work/legacy.key"
} >"$work/legacy.toml"

# Seal the plaintext bodies once with our server (this also creates the local KEK in the data dir), in
# the default suite and in suite 0x0001.
for sealer in dev seal-suite1; do
    start_server "$sealer"
    prefix=sealed
    [[ "$sealer" == seal-suite1 ]] && prefix=sealed-suite1
    for w in "${workloads[@]}"; do
        curl -sf "$server_url/encode" -H 'content-type: application/json' -H 'x-namespace: default' \
            --data-binary @"$work/bodies/plain-$w.json" -o "$work/bodies/$prefix-$w.json"
        check "$work/bodies/plain-$w.json" "$work/bodies/$prefix-$w.json" encode ||
            { echo "encode of $w did not seal" >&2; exit 1; }
    done
    stop_server
done

# A private PostgreSQL cluster for the postgres rows: loopback only, pinned to CPU 1 like the server,
# default durability (synchronous_commit on, fsync on), migrated once.
if [[ "$have_pg" == 1 ]]; then
    pg_port=$((port_ours + 7))
    pg_user=bench
    run_pg=()
    [[ "$(id -u)" == 0 ]] && { chown -R nobody "$work"; run_pg=(runuser -u nobody --); pg_user=nobody; }
    "${run_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U "$pg_user" --auth=trust >"$work/logs/pg-init.log" 2>&1
    "${run_pg[@]}" taskset -c "${BENCH_PG_CPUS:-1}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/logs/pg.log" -w \
        -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$work" start >/dev/null
    pg_started=1
    pg_url="postgres://$pg_user@127.0.0.1:$pg_port/postgres"
    CODEC_AUDIT__DATABASE_URL="$pg_url" "$server_bin" migrate --data-dir "$work/data" >>"$work/logs/pg-init.log" 2>&1 ||
        { echo "migrating the PostgreSQL audit table failed: $work/logs/pg-init.log" >&2; exit 1; }
fi

cat >"$work/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Namespace"] = "default"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
LUA

body_for() { # body_for <config> <op> <workload>
    case "$1:$2" in
    dev:decode | audit-off:decode | postgres:decode) echo "$work/bodies/sealed-$3.json" ;;
    suite1:decode) echo "$work/bodies/sealed-suite1-$3.json" ;;
    legacy:decode | ts-sample:decode) echo "$work/bodies/legacy-$3.json" ;;
    *) echo "$work/bodies/plain-$3.json" ;;
    esac
}

# ---------------------------------------------------------------- runs
results="$work/results"
: >"$results"
started=$(date +%s)
for round in $(seq "$rounds"); do
    for entry in "${plan[@]}"; do
        read -r config op w <<<"$entry"
        body=$(body_for "$config" "$op" "$w")
        path=$op
        [[ "$op" == echo ]] && path=decode
        start_server "$config"
        status=$(curl -s -o "$work/replies/reply.json" -w '%{http_code}' --max-time 30 "$server_url/$path" \
            -H 'content-type: application/json' -H 'x-namespace: default' --data-binary @"$body" || true)
        if [[ "$status" != 200 ]]; then
            echo "round $round: $config $op $w: HTTP $status, not measured"
            echo "$config $op $w $round refused $status" >>"$results"
            stop_server
            continue
        fi
        if ! check "$work/bodies/plain-$w.json" "$work/replies/reply.json" "$op"; then
            echo "round $round: $config $op $w: WRONG REPLY, not measured" >&2
            echo "$config $op $w $round wrong 200" >>"$results"
            stop_server
            continue
        fi
        line=$(BENCH_BODY="$body" taskset -c 0 wrk -t1 -c32 -d"${secs}s" --timeout 10s -s "$work/post.lua" \
            "$server_url/$path" | grep '^RESULT' || true)
        rss=$(peak_rss_kb)
        stop_server
        # The cluster shares CPU 1: let it vacuum and checkpoint the rows just written now, not during
        # the next measurement (earlier runs showed the next row ~25 % low).
        if [[ "$config" == postgres ]]; then
            "${run_pg[@]}" "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U "$pg_user" -d postgres -qX \
                -c "VACUUM ANALYZE audit_events" -c "CHECKPOINT" >>"$work/logs/pg-quiet.log" 2>&1 || true
        fi
        if [[ -z "$line" ]]; then
            echo "round $round: $config $op $w: wrk failed" >&2
            echo "$config $op $w $round wrk-failed 0" >>"$results"
            continue
        fi
        echo "$config $op $w $round ok ${line#RESULT } $rss" >>"$results"
        read -r _ _ _ _ _ n dur p50 p99 bad sockerr _ <<<"$config $op $w $round ok ${line#RESULT } $rss"
        awk -v r="$round" -v c="$config" -v o="$op" -v w="$w" -v n="$n" -v d="$dur" -v p50="$p50" -v p99="$p99" \
            -v bad="$bad" -v se="$sockerr" 'BEGIN {
                printf "round %s: %-9s %-6s %-8s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  non-2xx %s  socket errors %s\n",
                    r, c, o, w, n / (d / 1e6), p50 / 1000, p99 / 1000, bad, se }'
    done
done
elapsed=$(($(date +%s) - started))

# ---------------------------------------------------------------- the table
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) CPUs ($cpu), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
table=$(python3 - "$results" "$label" "$secs" "$rounds" "$elapsed" "$machine" <<'PY'
import collections, statistics, sys
path, label, secs, rounds, elapsed, machine = sys.argv[1:7]
sizes = {"1x1KiB": (1, 1024), "20x1KiB": (20, 1024), "1x256KiB": (1, 256 << 10), "1x1MiB": (1, 1 << 20)}
names = {"dev": "ours, dev default (audit on)", "audit-off": "ours, audit off",
         "postgres": "ours, audit on in PostgreSQL",
         "rotating": "ours, audit off, data key rotated every 2 s", "suite1": "ours, audit off, suite 1 envelopes",
         "legacy": "ours, samples' legacy format, audit off", "ts-sample": "TypeScript sample",
         "echo": "echo (HTTP+JSON+base64, no crypto)"}
rows = collections.OrderedDict()
for line in open(path):
    f = line.split()
    rows.setdefault((f[0], f[1], f[2]), []).append(f[3:])

def rate(run):  # req/s of one run: requests over its duration in microseconds
    return int(run[2]) / (int(run[3]) / 1e6)

def rng(values, fmt):
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"

print(f"{label}; wrk -t1 -c32, {secs} s per run, {rounds} round(s) (ranges are min-max over rounds); "
      f"measuring took {elapsed} s")
print(f"Machine: {machine}.")
print()
print("| server | op | payloads | req/s | payloads/s | MB/s | p50 ms | p99 ms | peak RSS MiB | errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (config, op, w), runs in rows.items():
    ok = [r for r in runs if r[1] == "ok" and int(r[2]) > 0]
    count, size = sizes[w]
    name = names.get(config, config)
    if not ok:
        why = ", ".join(sorted({"no reply within the run" if r[1] == "ok" else f"{r[1]} (HTTP {r[2]})"
                                for r in runs}))
        print(f"| {name} | {op} | {w} | {why} | | | | | | |")
        continue
    rps = [rate(r) for r in ok]
    p50 = [int(r[4]) / 1000 for r in ok]
    p99 = [int(r[5]) / 1000 for r in ok]
    errors = sum(int(r[6]) + int(r[7]) for r in ok)
    rss = max(int(r[8]) for r in ok) / 1024
    n = lambda v: f"{v:,.0f}"
    print(f"| {name} | {op} | {w} | {rng(rps, n)} | {rng([x * count for x in rps], n)} | "
          f"{rng([x * count * size / 1e6 for x in rps], lambda v: f'{v:,.1f}')} | "
          f"{rng(p50, lambda v: f'{v:.2f}')} | {rng(p99, lambda v: f'{v:.2f}')} | {rss:.0f} | {errors} |")
print()
print("MB/s: plaintext payload data (10^6 bytes) per second. Peak RSS: VmHWM of the server process.")

# Ratios taken within each round (runs seconds apart), then their median: steadier than ratios of ranges.
pairs = [(("dev", "decode", "1x1KiB"), ("audit-off", "decode", "1x1KiB"), "1x1KiB decode: audit on (SQLite) / audit off", 70),
         (("postgres", "decode", "1x1KiB"), ("audit-off", "decode", "1x1KiB"), "1x1KiB decode: audit on (PostgreSQL) / audit off", 70),
         (("audit-off", "decode", "1x1KiB"), ("echo", "echo", "1x1KiB"), "1x1KiB decode, audit off / echo", 70),
         (("audit-off", "encode", "1x1KiB"), ("echo", "echo", "1x1KiB"), "1x1KiB encode, audit off / echo", 70),
         (("audit-off", "decode", "20x1KiB"), ("echo", "echo", "20x1KiB"), "20x1KiB payloads/s, audit off / echo", 85)]
def per_round(key):
    return {r[0]: rate(r) for r in rows.get(key, []) if r[1] == "ok" and int(r[2]) > 0}
lines = []
for num, den, what, target in pairs:
    a, b = per_round(num), per_round(den)
    ratios = [100 * a[r] / b[r] for r in sorted(set(a) & set(b), key=int)]
    if ratios:
        each = " / ".join(f"{x:.0f} %" for x in ratios)
        lines.append(f"| {what} | {each} | **{statistics.median(ratios):.0f} %** | {target} % |")
if lines:
    print()
    print("| ratio, paired by round | each round | median | target |")
    print("|---|---|---|---|")
    print("\n".join(lines))
PY
)
echo
echo "$table"
[[ -n "${BENCH_OUT:-}" ]] && printf '%s\n' "$table" >"$BENCH_OUT"
exit 0
