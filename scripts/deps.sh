# deps.sh: sourced by the quick-start scripts. Installs the Debian packages xdt needs that are
# missing: with apt-get when root, otherwise it prints the apt-get line and fails.
XDT_DEBIAN_PACKAGES=(gcc clang meson ninja-build pkg-config libopenblas-dev libyaml-dev
    libxxhash-dev libzstd-dev libssl-dev libcjson-dev libucx-dev ucx-utils openmpi-bin libomp-dev
    libclang-rt-14-dev python3 bsdutils hipcc libamdhip64-dev)

xdt_install_deps() {
    local missing=() p
    for p in "${XDT_DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "xdt needs these Debian packages; install them as root with:" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        return 1
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# xdt_build DIR [meson options...]: configures (once) and builds.
xdt_build() {
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log" >&2; return 1; }
    fi
    ninja -C "$dir" >"$dir.build.log" 2>&1 || { cat "$dir.build.log" >&2; return 1; }
}
