#!/usr/bin/env bash
# Coverage-guided fuzzing: `bash scripts/fuzz.sh [seconds-per-target] [target...]` (default 60 s, all targets),
# or `bash scripts/fuzz.sh --smoke` (what scripts/test.sh runs: every target for 8 s, under a minute).
#
# Installs cargo-fuzz (pinned, --locked) into $REPO/.tools (git-ignored), builds the targets in fuzz/
# once (libFuzzer, stable Rust: `--sanitizer none`, debug assertions and overflow checks on), then runs
# each target in turn on one core for the given time, starting from fuzz/seeds/<target> and growing
# fuzz/corpus/<target> (git-ignored). A crash leaves its input in fuzz/artifacts/<target>/ and makes the
# script exit 1 after the remaining targets ran. See docs/reliability.md, "Fuzzing".
#
# --smoke builds with `--dev` (instrumented, unoptimised: about 2 minutes cold instead of 18) because a
# few seconds per target only need to show that every target builds, replays its seeds and survives
# some mutations; the long runs use the optimised release build.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

CARGO_FUZZ_VERSION="0.13.2"
# The same flags for build and run, so `cargo fuzz run` finds the binaries already built.
FLAGS=(--sanitizer none --debug-assertions)
if [[ "${1:-}" == "--smoke" ]]; then
    shift
    SECONDS_PER_TARGET=8
    FLAGS+=(--dev)
else
    SECONDS_PER_TARGET="${1:-60}"
    shift || true
fi
ALL_TARGETS=(envelope legacy payloads route jwt)
if [[ $# -gt 0 ]]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

die() {
    echo "fuzz.sh: $*" >&2
    exit 2
}

[[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ && "$SECONDS_PER_TARGET" -gt 0 ]] || die "seconds-per-target must be a positive integer"

export PATH="$REPO/.tools/bin:$PATH"
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/"
    cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked --root "$REPO/.tools" --quiet
fi

# fuzz/ is its own workspace with its own target dir; a CARGO_TARGET_DIR meant for the main crate
# would mix instrumented and plain builds.
unset CARGO_TARGET_DIR
start=$(date +%s)
cargo fuzz build "${FLAGS[@]}"
echo "fuzz.sh: build took $(($(date +%s) - start)) s"

log_dir="$REPO/fuzz/artifacts/logs"
mkdir -p "$log_dir"
failed=()
summary=()
for target in "${TARGETS[@]}"; do
    [[ -d "fuzz/seeds/$target" ]] || die "unknown target $target (no fuzz/seeds/$target)"
    mkdir -p "fuzz/corpus/$target"
    log="$log_dir/$target.log"
    echo "fuzz.sh: $target for ${SECONDS_PER_TARGET} s (log: ${log#"$REPO"/})"
    set +e
    cargo fuzz run "${FLAGS[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    set -e
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    if [[ "$status" -ne 0 ]]; then
        failed+=("$target")
        grep -E 'panicked at|ERROR: libFuzzer|Test unit written to' "$log" | head -5 >&2 || true
        summary+=("$(printf '%-9s FAILED (exit %s) after %s runs; artifacts in fuzz/artifacts/%s/' "$target" "$status" "${runs:-?}" "$target")")
    else
        summary+=("$(printf '%-9s %12s runs  %8s exec/s  cov %s' "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}")")
    fi
done

printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: FAILED: ${failed[*]} crashed (inputs under fuzz/artifacts/; reproduce with" \
        "cargo fuzz run ${FLAGS[*]} <target> <file>)" >&2
    exit 1
fi
echo "fuzz.sh: OK: ${#TARGETS[@]} targets fuzzed ${SECONDS_PER_TARGET} s each, no crash"
