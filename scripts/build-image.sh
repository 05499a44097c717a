#!/usr/bin/env bash
# Builds the container image from the Dockerfile without a Docker daemon or a registry: buildah with vfs
# storage and chroot isolation (as root: no overlay mount, no user namespace, no OCI runtime needed).
#
#   bash scripts/build-image.sh [--tag NAME]                       # both stages: cargo build --release inside
#   bash scripts/build-image.sh --prebuilt BINARY [--tag NAME]     # runtime stage only, BINARY as its input
#
# The registries the Dockerfile names (Docker Hub, gcr.io) may be out of reach, so the two base images are
# made here from Debian 12 packages, with buildah only, and passed as RUST_IMAGE / RUNTIME_IMAGE:
#
#   localhost/codec-server-base/runtime:bookworm  what gcr.io/distroless/cc-debian12:nonroot holds for this
#       binary: base-files, netbase, tzdata, ca-certificates (the bundle concatenated, as distroless does),
#       libc6, libgcc-s1; no shell, no package manager; user nonroot = 65532. The .deb files come from the
#       host's apt sources (`apt-get download`), unpacked with `dpkg-deb -x`.
#   localhost/codec-server-base/build:bookworm    (full build only) `debootstrap --variant=minbase bookworm`
#       plus gcc and libc6-dev (aws-lc, zstd and SQLite are C), and the host's Rust toolchain (`rustc
#       --print sysroot`, without its docs) as /usr/local/rust, on PATH like the rust image's; the host's
#       local CAs (/usr/local/share/ca-certificates) are added to its bundle so cargo can reach crates.io.
#
# --prebuilt replaces the Dockerfile's `build` stage with a directory holding /out/codec-server (BINARY,
# stripped like the image's) and /out/data (`--build-context build=DIR`): the runtime stage, its user,
# labels, entrypoint and file ownership are the Dockerfile's own. BINARY must be built for glibc <= the
# base's (2.36): build it on Debian 12, as the Dockerfile's build stage does. This is what the
# integration test `dockerfile::the_image_runs_the_binary_as_65532_checks_its_config_and_serves` runs.
#
# Storage: $CODEC_IMAGE_STORE (default target/image) holds buildah's vfs storage; the base images are made
# once and reused (delete that directory to refresh them). `--print-buildah` prints the buildah command
# line for that storage, one argument a line, to inspect or run the image: `$(… | xargs) images`.
#
# The whole file is parsed before anything runs (`main "$@"` on the last line), so editing it while a build
# runs is safe.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STORE="${CODEC_IMAGE_STORE:-${CARGO_TARGET_DIR:-$REPO/target}/image}"
RUNTIME_BASE=localhost/codec-server-base/runtime:bookworm
BUILD_BASE=localhost/codec-server-base/build:bookworm
RUNTIME_DEBS=(base-files netbase tzdata ca-certificates libc6 libgcc-s1)

die() {
    echo "build-image.sh: $*" >&2
    exit 1
}

buildah_() {
    buildah --root "$STORE/storage" --runroot "$STORE/run" --storage-driver vfs "$@"
}

has_image() {
    buildah_ images --quiet "$1" >/dev/null 2>&1
}

# The runtime base: Debian packages unpacked into an empty image, users like distroless's.
make_runtime_base() {
    has_image "$RUNTIME_BASE" && return 0
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "apt-get and dpkg-deb are needed"
    local debs ctr root versions
    debs="$(mktemp -d)"
    # Without package lists (a fresh or cleaned machine) update them once and retry.
    (cd "$debs" && apt-get download -qq "${RUNTIME_DEBS[@]}" 2>/dev/null) \
        || { apt-get update -qq >/dev/null && (cd "$debs" && apt-get download -qq "${RUNTIME_DEBS[@]}" 2>/dev/null); } \
        || die "apt-get download ${RUNTIME_DEBS[*]} failed"
    ctr="$(buildah_ from scratch)"
    root="$(buildah_ mount "$ctr")"
    for deb in "$debs"/*.deb; do
        dpkg-deb -x "$deb" "$root"
    done
    versions="$(for deb in "$debs"/*.deb; do dpkg-deb --showformat='${Package}=${Version}\n' -W "$deb"; done)"
    rm -rf "$debs"
    mkdir -p "$root/etc/ssl/certs" "$root/home/nonroot" "$root/tmp"
    cat "$root"/usr/share/ca-certificates/*/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
    printf '%s\n' root:x:0:0:root:/root:/sbin/nologin nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin \
        nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin >"$root/etc/passwd"
    printf '%s\n' root:x:0: nobody:x:65534: nonroot:x:65532: >"$root/etc/group"
    chown 65532:65532 "$root/home/nonroot"
    chmod 1777 "$root/tmp"
    buildah_ umount "$ctr" >/dev/null
    buildah_ config --user 65532:65532 --workingdir /home/nonroot \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label "org.codec-server.base.packages=$(paste -sd, - <<<"$versions")" "$ctr"
    buildah_ commit --quiet --rm "$ctr" "$RUNTIME_BASE" >/dev/null
}

# The build base: a minimal Debian 12 with a C compiler and the host's Rust toolchain.
make_build_base() {
    has_image "$BUILD_BASE" && return 0
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    command -v rustc >/dev/null || die "rustc is missing: the build base copies the host's toolchain"
    local ctr root sysroot
    ctr="$(buildah_ from scratch)"
    root="$(buildah_ mount "$ctr")"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates bookworm "$root" \
        >"$STORE/debootstrap.log" 2>&1 || die "debootstrap failed; see $STORE/debootstrap.log"
    # cargo fetches crates from inside the build: trust what the host trusts beyond Debian's bundle (an
    # egress proxy's CA on the machine this was written on). The runtime base gets none of these.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cat /usr/local/share/ca-certificates/*.crt >>"$root/etc/ssl/certs/ca-certificates.crt"
    fi
    sysroot="$(rustc --print sysroot)"
    mkdir -p "$root/usr/local/rust" "$root/usr/local/cargo/bin"
    cp -a "$sysroot/bin" "$sysroot/lib" "$root/usr/local/rust/"
    for tool in cargo rustc rustdoc; do
        ln -s "/usr/local/rust/bin/$tool" "$root/usr/local/cargo/bin/$tool"
    done
    buildah_ umount "$ctr" >/dev/null
    buildah_ config --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label "org.codec-server.base.rustc=$(rustc -V)" "$ctr"
    buildah_ commit --quiet --rm "$ctr" "$BUILD_BASE" >/dev/null
}

main() {
    local tag=localhost/temporal-codec-server:dev prebuilt=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --tag) tag="$2"; shift 2 ;;
            --prebuilt) prebuilt="$2"; shift 2 ;;
            --print-buildah)
                printf '%s\n' buildah --root "$STORE/storage" --runroot "$STORE/run" --storage-driver vfs
                return 0
                ;;
            *) die "unknown argument $1 (see the top of this file)" ;;
        esac
    done
    command -v buildah >/dev/null 2>&1 || die "buildah is missing: apt-get install buildah (Debian 12 has 1.28)"
    [[ "$(id -u)" == 0 ]] || die "run as root: vfs storage with chroot isolation needs no daemon, but root"
    mkdir -p "$STORE"

    local version revision
    version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n1)"
    revision="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
    local args=(--isolation chroot --layers=false -f "$REPO/Dockerfile" -t "$tag"
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE")

    make_runtime_base
    if [[ -n "$prebuilt" ]]; then
        [[ -x "$prebuilt" ]] || die "--prebuilt $prebuilt is not an executable"
        local stage
        stage="$(mktemp -d)"
        mkdir -p "$stage/out/data"
        # As the build stage makes it: stripped, mode 0755.
        strip -o "$stage/out/codec-server" "$prebuilt"
        chmod 0755 "$stage/out/codec-server"
        buildah_ bud --quiet "${args[@]}" --build-context "build=$stage" "$REPO" >/dev/null \
            || { rm -rf "$stage"; die "buildah bud failed"; }
        rm -rf "$stage"
    else
        make_build_base
        buildah_ bud "${args[@]}" --build-arg "RUST_IMAGE=$BUILD_BASE" "$REPO"
    fi
    echo "$tag"
}

main "$@"
