#!/usr/bin/env bash
# Builds every plugin in this workspace as a WASI 0.2 component (the
# wasm32-wasip2 target links components directly) and publishes them as
# dist/NAME.wasm with dist/SHA256SUMS. Needs only rustup and cargo.
# Idempotent: cargo skips unchanged crates and unchanged files are not
# rewritten, so a second run takes about a second.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
target=wasm32-wasip2

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

# Our own target dir, so a CARGO_TARGET_DIR exported for the host workspace
# does not scatter plugin builds elsewhere.
export CARGO_TARGET_DIR="$here/target"
cargo build --release --target "$target" --workspace ${CARGO_BUILD_QUIET:+--quiet}

# Plugins are the members that build a cdylib; the SDK does not.
names=()
for manifest in */Cargo.toml testing/*/Cargo.toml; do
    grep -q 'crate-type = \["cdylib"' "$manifest" || continue
    name="$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1)"
    names+=("$name")
done

mkdir -p dist
for name in "${names[@]}"; do
    built="target/$target/release/${name//-/_}.wasm"
    if [ ! -f "$built" ]; then
        echo "build.sh: expected $built after the build" >&2
        exit 1
    fi
    if ! cmp -s "$built" "dist/$name.wasm"; then
        cp "$built" "dist/$name.wasm.tmp"
        mv "dist/$name.wasm.tmp" "dist/$name.wasm"
    fi
done

# Drop components of plugins that no longer exist.
for file in dist/*.wasm; do
    name="$(basename "$file" .wasm)"
    keep=0
    for n in "${names[@]}"; do [ "$n" = "$name" ] && keep=1; done
    [ "$keep" = 1 ] || rm -f "$file"
done

if command -v sha256sum > /dev/null; then
    sums="$(cd dist && sha256sum -- *.wasm)"
else
    sums="$(cd dist && shasum -a 256 -- *.wasm)"
fi
if [ "$sums" != "$(cat dist/SHA256SUMS 2> /dev/null || true)" ]; then
    printf '%s\n' "$sums" > dist/SHA256SUMS
fi
echo "build.sh: ${#names[@]} plugins in $here/dist"
