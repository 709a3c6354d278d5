# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this
# Shared settings and helpers for scripts/setup and scripts/test.
# Sourced, not executed. Nothing here changes the machine by itself.
#
# Three test legs, each testing the iotmp wheel built from the checkout:
#   standalone  the machine's python3 (>= 3.11), no Home Assistant  -> host venv
#   minimum     Python 3.13.0 (pyenv) + Home Assistant 2025.4.4   -> host venv
#   latest      Python >= 3.14.2      + Home Assistant 2026.10.4  -> host venv if the
#               machine has python3.14 >= 3.14.2, otherwise a venv inside a Debian
#               "forky" root filesystem entered with chroot (Debian 12 has no 3.14).
#
# Environment knobs:
#   IOTMP_CACHE          cache dir for venvs and the rootfs (default ~/.cache/iotmp-ha)
#   IOTMP_PYTHON_STANDALONE  interpreter for the standalone leg (default: python3)
#   IOTMP_PYTHON_MIN     interpreter for the minimum leg (default: pyenv's 3.13.0)
#   IOTMP_PYTHON_LATEST  interpreter (>= 3.14.2) for the latest leg on the host
#   IOTMP_LATEST_MODE    "host" or "chroot" to force how the latest leg runs
#   IOTMP_DEBIAN_MIRROR  Debian mirror for the rootfs (default: the host's apt source)

IOTMP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
IOTMP_CACHE=${IOTMP_CACHE:-$HOME/.cache/iotmp-ha}

STANDALONE_PY_MIN=3.11.0
STANDALONE_VENV=$IOTMP_CACHE/venv-standalone
STANDALONE_REQS=$IOTMP_ROOT/requirements_test_standalone.txt
# What the standalone leg runs: everything that is not Home Assistant glue.
STANDALONE_TESTS=(tests/protocol tests/client tests/server tests/sim tests/cli tests/mqtt tests/hostile
    tests/mapping/test_mapping.py tests/mapping/test_mapping_properties.py
    tests/test_layering.py tests/test_standalone.py tests/storage tests/server_resources)
# The wheel scripts/test builds and installs into every leg's venv.
DIST_DIR=$IOTMP_ROOT/build/dist

MIN_PY_VERSION=3.13.0
MIN_VENV=$IOTMP_CACHE/venv-min
MIN_REQS=$IOTMP_ROOT/requirements_test_min.txt

LATEST_PY_MIN=3.14.2
LATEST_REQS=$IOTMP_ROOT/requirements_test.txt
HOST_LATEST_VENV=$IOTMP_CACHE/venv-latest
FORKY=$IOTMP_CACHE/forky
FORKY_VENV=/opt/iotmp/venv-latest          # path *inside* the rootfs
FORKY_READY=$FORKY/.iotmp-forky-ready      # written only after a complete build
# Debian packages inside the rootfs. libc6-dev because recommends are skipped
# and gcc needs it to build any sdist that has no 3.14 wheel. (No chromium:
# browser tests run on the minimum leg, on the host.)
# g++: two of Home Assistant's voice packages (needed by scripts/develop) build from source.
# mosquitto: the MQTT discovery test (tests/integration/test_mqtt_discovery.py) on this leg.
FORKY_PACKAGES="python3 python3-venv python3-dev gcc g++ libc6-dev ca-certificates mosquitto"

log() {
    if [[ -t 2 ]]; then
        printf '\033[1m[%s]\033[0m %s\n' "${IOTMP_LOG_TAG:-iotmp}" "$*" >&2
    else
        printf '[%s] %s\n' "${IOTMP_LOG_TAG:-iotmp}" "$*" >&2
    fi
}
die() { log "ERROR: $*"; exit 1; }

# py_at_least PYTHON X.Y.Z -> success if PYTHON runs and is >= X.Y.Z
py_at_least() {
    local want=$2
    "$1" -c "import sys; sys.exit(0 if sys.version_info[:3] >= tuple(map(int, '$want'.split('.'))) else 1)" \
        >/dev/null 2>&1
}

py_version() { "$1" -c 'import platform; print(platform.python_version())' 2>/dev/null; }

# Interpreter for the standalone leg: what a user of the package has.
standalone_python() {
    local candidate=${IOTMP_PYTHON_STANDALONE:-python3}
    candidate=$(command -v "$candidate" 2>/dev/null) || return 1
    py_at_least "$candidate" "$STANDALONE_PY_MIN" || return 1
    echo "$candidate"
}

# build_wheel: build the sdist and, from it, the pure-Python wheel (what a machine
# without a compiler gets) into $DIST_DIR with the standalone venv's build tools
# (no download: --no-isolation). Each leg then builds its own wheel, with the
# compiled codec: see install_wheel.
build_wheel() {
    [[ -x $STANDALONE_VENV/bin/python ]] || die "no venv at $STANDALONE_VENV: run scripts/setup"
    rm -rf "$DIST_DIR" "$IOTMP_ROOT/build/sdist-check"
    mkdir -p "$DIST_DIR"
    IOTMP_PURE_BUILD=1 "$STANDALONE_VENV/bin/python" -m build --no-isolation --outdir "$DIST_DIR" "$IOTMP_ROOT" \
        >"$DIST_DIR/build.log" 2>&1 || { tail -n 30 "$DIST_DIR/build.log" >&2; die "building the wheel failed"; }
    wheel_path >/dev/null || die "no wheel in $DIST_DIR"
}

wheel_path() { compgen -G "$DIST_DIR/iotmp-*.whl" | head -n 1; }

# build_leg_wheel NAME PYTHON [RUNNER...]: build the wheel again with the leg's own
# interpreter into $DIST_DIR/NAME (the compiled codec is specific to the
# interpreter and platform; hatchling and Cython are in every leg's venv).
build_leg_wheel() {
    local name=$1 python=$2; shift 2
    local -a run=("$@")
    local out=$DIST_DIR/$name
    rm -rf "$out"
    mkdir -p "$out"
    "${run[@]}" "$python" -m pip wheel --disable-pip-version-check -q --no-deps \
        --no-build-isolation -w "$out" "$IOTMP_ROOT" >"$out/build.log" 2>&1 ||
        { tail -n 30 "$out/build.log" >&2; die "$name: building the wheel failed"; }
    compgen -G "$out/iotmp-*.whl" | head -n 1
}

# install_wheel NAME PYTHON EXTRAS CONSTRAINTS [RUNNER...]: build the leg's wheel
# and put it in the venv: reinstall the package itself, then let pip satisfy its
# declared dependencies within the leg's constraints (a no-op when they are there).
install_wheel() {
    local name=$1 python=$2 extras=$3 constraints=$4; shift 4
    local -a run=("$@") pip cons=()
    local wheel
    wheel=$(build_leg_wheel "$name" "$python" "${run[@]}") && [[ -n $wheel ]] ||
        die "$name: no wheel built"
    pip=("$python" -m pip install --disable-pip-version-check -q)
    [[ -n $constraints ]] && cons=(-c "$constraints")
    "${run[@]}" "${pip[@]}" --force-reinstall --no-deps "$wheel" >/dev/null 2>&1 ||
        die "$name: installing $wheel failed"
    "${run[@]}" "${pip[@]}" "${cons[@]}" "$wheel$extras" 2>&1 | grep -v "^WARNING: Location" >&2 ||
        true
    "${run[@]}" "$python" -P -c "import iotmp, sys; sys.exit(0 if '/site-packages/' in iotmp.__file__ else 1)" ||
        die "$name: iotmp is not imported from the installed wheel"
    log "$name: installed $(basename "$wheel") (codec: $("${run[@]}" "$python" -P -c \
        'from iotmp.protocol import speedups; print(speedups.active())'))"
}

# Interpreter for the minimum leg (exactly 3.13.0: the lowest Python we support).
min_python() {
    if [[ -n ${IOTMP_PYTHON_MIN:-} ]]; then
        echo "$IOTMP_PYTHON_MIN"
    elif command -v pyenv >/dev/null 2>&1; then
        PYENV_VERSION=$MIN_PY_VERSION pyenv which python3 2>/dev/null
    fi
}

# A host interpreter >= 3.14.2 for the latest leg, or nothing.
host_latest_python() {
    local candidate
    for candidate in "${IOTMP_PYTHON_LATEST:-}" python3.14 python3; do
        [[ -n $candidate ]] || continue
        candidate=$(command -v "$candidate" 2>/dev/null) || continue
        if py_at_least "$candidate" "$LATEST_PY_MIN"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# "host" or "chroot"
latest_mode() {
    if [[ -n ${IOTMP_LATEST_MODE:-} ]]; then
        echo "$IOTMP_LATEST_MODE"
    elif host_latest_python >/dev/null; then
        echo host
    else
        echo chroot
    fi
}

# Stamp of a venv's inputs: a hash of the requirements file and of the files it
# includes with -c/-r, plus the interpreter version. A venv is reinstalled when
# its recorded stamp differs.
reqs_stamp() { # REQS PYVERSION
    local reqs=$1 dir f
    dir=$(dirname "$reqs")
    {
        cat "$reqs"
        for f in $(awk '$1 == "-c" || $1 == "-r" { print $2 }' "$reqs"); do
            cat "$dir/$f"
        done
    } | sha256sum | cut -d' ' -f1 | sed "s/\$/ python-$2/"
}

# Environment for processes inside the rootfs: a clean base plus whatever the
# host sets for package downloads (pip proxy, index, certificates) and tests.
forky_env() {
    [[ -n ${FORKY_ENV_DONE:-} ]] && return 0
    local var
    FORKY_ENV=(
        HOME=/root
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        LANG=C.UTF-8
        LC_ALL=C.UTF-8
        TERM="${TERM:-dumb}"
        DEBIAN_FRONTEND=noninteractive
    )
    while IFS= read -r var; do
        case $var in
            # a local find-links dir does not exist inside the rootfs
            PIP_FIND_LINKS) [[ ${!var} == *://* ]] || continue ;;
        esac
        FORKY_ENV+=("$var=${!var}")
    done < <(compgen -e | grep -E '^(PIP_[A-Z_]+|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|(HTTPS?|NO|ALL)_PROXY|(https?|no|all)_proxy|PYTEST_ADDOPTS|PYTHONSAFEPATH|HYPOTHESIS_[A-Z_]+|IOTMP_[A-Z_]+|CI|GITHUB_ACTIONS|FORCE_COLOR|NO_COLOR|COLUMNS)$')
    FORKY_ENV_DONE=1
}

# An index configured only in the host's pip.conf (not in the environment) is
# exported so forky_env passes it on. Slow (runs pip), so only setup calls it.
export_host_pip_index() {
    [[ -z ${PIP_INDEX_URL:-} ]] || return 0
    local index
    index=$(python3 -m pip config get global.index-url 2>/dev/null || true)
    if [[ $index == http*://* ]]; then
        export PIP_INDEX_URL=$index
    fi
    return 0
}

# forky_run CMD [ARGS...]: run CMD inside the rootfs, in the checkout directory
# (or in $FORKY_CWD), with /proc, /dev and the checkout bind-mounted.
#
# The mounts are made in a private mount namespace (unshare), so they vanish when
# the command exits: nothing stays mounted under the cache (an `rm -rf` of the
# cache can never reach the host's /dev or the checkout), concurrent runs do not
# interfere, and mounts never stack. Without unshare we fall back to persistent
# mounts, checked with `mountpoint -q` first.
forky_run() {
    forky_env
    local cwd=${FORKY_CWD:-$IOTMP_ROOT}
    local -a inner=(bash -c '
        set -e
        F=$1 R=$2 N=$3; shift 3
        mountpoint -q "$F/proc" || mount --bind /proc "$F/proc"
        # rbind: /dev/shm and /dev/pts are separate mounts (multiprocessing needs shm)
        mountpoint -q "$F/dev" || mount --rbind /dev "$F/dev"
        mkdir -p "$F$R"
        mountpoint -q "$F$R" || mount --bind "$R" "$F$R"
        ENVS=("${@:1:N}"); shift "$N"
        C=$1; shift
        exec chroot "$F" /usr/bin/env -i "${ENVS[@]}" /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$C" "$@"
    ' _ "$FORKY" "$IOTMP_ROOT" "${#FORKY_ENV[@]}" "${FORKY_ENV[@]}" "$cwd" "$@")
    if unshare --mount --propagation private true 2>/dev/null; then
        unshare --mount --propagation private "${inner[@]}"
    else
        "${inner[@]}"
    fi
}

# Mount points below DIR in the current mount namespace (deepest first).
mounts_below() {
    awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}
