#!/usr/bin/env bash
# Rebuilds raftlog's vendored openraft from the pristine crates.io package: copies a pristine
# openraft 0.9.25 into a fresh directory and applies the numbered patches next to this script
# (0001-*.patch, 0002-*.patch, ...) in order, with `git apply` (no fuzz: a patch that does not
# apply exactly fails).
#
#   apply.sh [PRISTINE_DIR] [OUT_DIR]
#       Writes the patched crate to OUT_DIR, which must not exist or be empty (default: a new
#       temporary directory). Its path is printed last.
#   apply.sh --check [PRISTINE_DIR]
#       Rebuilds the patched crate in a temporary directory and compares it with vendor/openraft
#       (src/ and the package's own files; PATCHED.md, patches/, target/ and _log/ are ours).
#       Exits non-zero, showing the difference, if they differ.
#
# PRISTINE_DIR is an unpacked openraft-0.9.25 package, e.g.
# ~/.cargo/registry/src/index.crates.io-*/openraft-0.9.25. Without it, the script unpacks the
# .crate from cargo's cache ($CARGO_HOME/registry/cache), after checking its SHA-256 against the
# one crates.io publishes, and asks cargo to download it first if it is not there.
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(...) stops the script too

readonly VERSION=0.9.25
# The checksum of openraft-0.9.25.crate in the crates.io index (also in Cargo.lock files).
readonly CRATE_SHA256=a97014fb78acb77be3a40ac2da305f6dd3a6b243f3a908ace87d29b3972eaafd

patch_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vendor_dir="$(dirname "$patch_dir")"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

check=false
args=()
for arg in "$@"; do
    case "$arg" in
        --check) check=true ;;
        -h | --help) usage ;;
        -*) echo "apply.sh: unknown option $arg" >&2; usage ;;
        *) args+=("$arg") ;;
    esac
done
if $check && ((${#args[@]} > 1)) || ((${#args[@]} > 2)); then
    usage
fi
pristine="${args[0]:-}"
out="${args[1]:-}"

work="$(mktemp -d "${TMPDIR:-/tmp}/openraft-patches.XXXXXX")"
trap 'rm -rf "$work"' EXIT

find_crate() {
    local f
    for f in "$cargo_home"/registry/cache/*/openraft-"$VERSION".crate; do
        if [[ -f "$f" ]]; then
            echo "$f"
            return 0
        fi
    done
    return 1
}

# Has cargo download openraft-$VERSION.crate into its cache, through a throwaway package.
fetch_crate() {
    local dir="$work/fetch"
    mkdir -p "$dir"
    cat >"$dir/Cargo.toml" <<EOF
[package]
name = "fetch-pristine-openraft"
version = "0.0.0"
edition = "2021"

[lib]
path = "lib.rs"

[dependencies]
openraft = { version = "=$VERSION", default-features = false }

[workspace]
EOF
    : >"$dir/lib.rs"
    echo "apply.sh: downloading openraft $VERSION with cargo" >&2
    cargo fetch --quiet --manifest-path "$dir/Cargo.toml" >&2
}

# Prints a directory holding the pristine package.
pristine_dir() {
    if [[ -n "$pristine" ]]; then
        if [[ ! -f "$pristine/Cargo.toml" || ! -d "$pristine/src" ]]; then
            echo "apply.sh: $pristine is not an unpacked openraft package (no Cargo.toml and src/)" >&2
            exit 1
        fi
        if ! grep -qx "version = \"$VERSION\"" "$pristine/Cargo.toml"; then
            echo "apply.sh: $pristine is not openraft $VERSION" >&2
            exit 1
        fi
        echo "$pristine"
        return
    fi
    local crate
    if ! crate="$(find_crate)"; then
        fetch_crate
        crate="$(find_crate)" || {
            echo "apply.sh: cargo fetched openraft $VERSION but its .crate is not under $cargo_home/registry/cache" >&2
            exit 1
        }
    fi
    local sum
    sum="$(sha256sum "$crate" | cut -d' ' -f1)"
    if [[ "$sum" != "$CRATE_SHA256" ]]; then
        echo "apply.sh: $crate has SHA-256 $sum, crates.io publishes $CRATE_SHA256" >&2
        exit 1
    fi
    mkdir -p "$work/pristine"
    tar -xzf "$crate" -C "$work/pristine"
    echo "$work/pristine/openraft-$VERSION"
}

# Copies the pristine package to $1 and applies the patches there.
build() {
    local dest="$1" src patch
    src="$(pristine_dir)"
    mkdir -p "$dest"
    cp -a "$src"/. "$dest"/
    rm -f "$dest/.cargo-ok" # cargo's marker of an unpacked registry package, not part of it
    local patches=("$patch_dir"/[0-9][0-9][0-9][0-9]-*.patch)
    if [[ ! -f "${patches[0]}" ]]; then
        echo "apply.sh: no patches in $patch_dir" >&2
        exit 1
    fi
    for patch in "${patches[@]}"; do
        # The ceiling keeps git from taking an enclosing repository for the patch's root.
        if ! (cd "$dest" && unset GIT_DIR GIT_WORK_TREE &&
            GIT_CEILING_DIRECTORIES="$(dirname "$dest")" git apply "$patch"); then
            echo "apply.sh: $(basename "$patch") does not apply on top of the ones before it" >&2
            exit 1
        fi
        echo "applied $(basename "$patch")" >&2
    done
}

if $check; then
    build "$work/patched"
    # Everything in vendor/openraft but what raftlog adds around the package itself.
    if ! diff -r --exclude=PATCHED.md --exclude=patches --exclude=target --exclude=_log \
        "$work/patched" "$vendor_dir" >"$work/diff"; then
        echo "apply.sh --check: vendor/openraft is NOT pristine openraft $VERSION plus the patches in" \
            "vendor/openraft/patches. Difference (patched rebuild first, vendor/openraft second):" >&2
        diff -ru --exclude=PATCHED.md --exclude=patches --exclude=target --exclude=_log \
            "$work/patched" "$vendor_dir" | head -n 200 >&2 || true
        echo "apply.sh --check: turn the change into a patch (see vendor/openraft/PATCHED.md) or undo it." >&2
        exit 1
    fi
    echo "apply.sh --check: vendor/openraft is pristine openraft $VERSION plus" \
        "$(ls "$patch_dir"/[0-9][0-9][0-9][0-9]-*.patch | wc -l) patches" >&2
    exit 0
fi

if [[ -z "$out" ]]; then
    out="$(mktemp -d "${TMPDIR:-/tmp}/openraft-$VERSION-patched.XXXXXX")"
elif [[ -e "$out" && -n "$(ls -A "$out")" ]]; then
    echo "apply.sh: $out exists and is not empty; give a fresh directory" >&2
    exit 1
fi
out="$(mkdir -p "$out" && cd "$out" && pwd)"
build "$out"
echo "$out"
