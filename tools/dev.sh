#!/usr/bin/env bash
# polygrad's two entry points on a fresh Debian or Ubuntu machine; each does all the set-up.
#
#   bash tools/dev.sh validate   check the default GPU adapter against the f64 CPU reference
#   bash tools/dev.sh test       the whole test suite, then validate on Vulkan and on GL (CI)
#
# Where no Vulkan driver is installed, set-up installs Mesa's software one (lavapipe) and its
# GL driver, so that both commands work on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

have_vulkan_driver() {
    ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || return 1
    ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1
}

have_gl_driver() {
    ldconfig -p 2>/dev/null | grep -q 'libEGL\.so\.1' || return 1
    ls /usr/share/glvnd/egl_vendor.d/*.json >/dev/null 2>&1
}

setup() {
    if ! command -v cargo >/dev/null; then
        echo "cargo not found: install a Rust toolchain (rustup) first" >&2
        exit 1
    fi
    if ! have_vulkan_driver || ! have_gl_driver; then
        echo "installing Mesa's software Vulkan and GL drivers (no GPU driver found)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
            mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
    fi
    # `polygrad bench --plot` draws its text with a TrueType font (DejaVu Sans).
    if [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
        echo "installing fonts-dejavu-core (the font of bench --plot)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
            fonts-dejavu-core >/dev/null
    fi
    # Mesa complains on every start without it; harmless, but noisy.
    if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
        export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/polygrad-runtime-$(id -u)"
        mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
    fi
}

case "${1:-}" in
    validate)
        setup
        cargo run --release --quiet -- validate "${@:2}"
        ;;
    test)
        setup
        cargo test --release
        echo "== benchmarks compile"
        cargo bench --no-run --quiet
        echo "== polygrad validate on Vulkan"
        WGPU_BACKEND=vulkan cargo run --release --quiet -- validate
        echo "== polygrad validate on GL"
        WGPU_BACKEND=gl cargo run --release --quiet -- validate
        ;;
    *)
        echo "usage: bash tools/dev.sh validate|test" >&2
        exit 2
        ;;
esac
