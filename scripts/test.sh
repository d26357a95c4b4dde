#!/usr/bin/env bash
# The test command: ./scripts/test.sh
#
# Installs what the tests need (the wasm32-wasip2 target, a Python venv with aiosmtpd under
# target/test-venv, openssl, PostgreSQL, Chromium and ChromeDriver from Debian when missing), builds the plugins,
# starts a throwaway PostgreSQL on a free loopback port, then runs cargo fmt --check,
# clippy with -D warnings and cargo test for the whole workspace. PostgreSQL is always
# stopped and its directory removed on exit. Safe to run repeatedly, with or without a tty.
#
# Exported to the tests:
#   CLEARFLOW_TEST_POSTGRES_URL   postgres://postgres@127.0.0.1:PORT/clearflow_test
#   CLEARFLOW_TEST_PYTHON         a python that can import aiosmtpd
#   CLEARFLOW_TEST_SMTP_SERVER    path to scripts/smtp_server.py
#   CLEARFLOW_TEST_CHROMIUM       /usr/bin/chromium (the browser tests drive it with selenium)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
log() { echo "test.sh: $*" >&2; }

apt_updated=0
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        log "missing $*; install it (apt-get install $*) or run as root"
        exit 1
    fi
    if [[ $apt_updated -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- toolchain ------------------------------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "adding rust target wasm32-wasip2"
    rustup target add wasm32-wasip2
fi

# --- python with aiosmtpd -------------------------------------------------------------------
venv=$root/target/test-venv
requirements=$root/scripts/requirements-test.txt
stamp=$venv/.requirements-test.txt
if ! cmp -s "$requirements" "$stamp" || ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    log "setting up $venv"
    python=$(command -v python3 || true)
    [[ -n $python ]] || { apt_install python3 python3-venv; python=$(command -v python3); }
    if ! "$python" -m venv --clear "$venv" >/dev/null 2>&1; then
        # Debian's own python3 ships venv/ensurepip separately.
        apt_install python3-venv
        "$python" -m venv --clear "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$requirements"
    cp "$requirements" "$stamp"
fi
export CLEARFLOW_TEST_PYTHON=$venv/bin/python
export CLEARFLOW_TEST_SMTP_SERVER=$root/scripts/smtp_server.py

command -v openssl >/dev/null || apt_install openssl

# --- chromium for the browser tests -------------------------------------------------------------
# Debian's chromium and chromium-driver (a test tool's own browser download is not reachable);
# the venv above has selenium and axe-core (axe-selenium-python).
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
    log "installing chromium and chromium-driver"
    apt_install chromium chromium-driver
fi
# CJK glyphs for the screenshots the browser test saves (docs/staff.md shows them).
if ! fc-list 2>/dev/null | grep -qi "noto sans cjk"; then
    log "installing fonts-noto-cjk"
    apt_install fonts-noto-cjk
fi
export CLEARFLOW_TEST_CHROMIUM=/usr/bin/chromium

# --- plugins --------------------------------------------------------------------------------
if [[ -f plugins/build.sh ]]; then
    log "building plugins"
    bash plugins/build.sh
fi

# --- throwaway postgresql -------------------------------------------------------------------
pg_dir=$(mktemp -d /tmp/clearflow-pg.XXXXXX)
chmod 755 "$pg_dir" # the server runs as user postgres
pg_port=$("$CLEARFLOW_TEST_PYTHON" -c \
    'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    local rc=$?
    "$root/scripts/pg.sh" stop "$pg_dir/cluster" "$pg_port" || log "could not stop postgresql in $pg_dir"
    rm -rf "$pg_dir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
log "starting postgresql on 127.0.0.1:$pg_port"
CLEARFLOW_TEST_POSTGRES_URL=$("$root/scripts/pg.sh" start "$pg_dir/cluster" "$pg_port")
export CLEARFLOW_TEST_POSTGRES_URL

# --- checks ---------------------------------------------------------------------------------
locked=()
if git ls-files --error-unmatch Cargo.lock >/dev/null 2>&1; then
    locked=(--locked)
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets "${locked[@]}" -- -D warnings
log "cargo test"
cargo test --workspace --no-fail-fast "${locked[@]}"
