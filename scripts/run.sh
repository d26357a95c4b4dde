#!/usr/bin/env bash
# The run command: ./scripts/run.sh [extra `clearflow serve` arguments]
#
# Installs what the daemon needs (the wasm32-wasip2 target for the plugins), builds the
# built-in plugins and the daemon in release mode, and runs `clearflow serve` with the
# shipped workflows on the embedded default: a SQLite file under var/ and mail written to
# the maildir var/maildir. Stop it with Ctrl-C (it drains and exits 0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "run.sh: adding rust target wasm32-wasip2" >&2
    rustup target add wasm32-wasip2
fi
if [[ -x plugins/build.sh ]]; then
    plugins/build.sh
fi
cargo build --release --locked -p clearflow
mkdir -p var
# The key that seals whistleblowers' identities, made once (back it up apart from var/).
if [[ ! -e var/identity.key && -z "${CLEARFLOW_IDENTITY_KEY:-}" ]]; then
    target/release/clearflow identity keygen var/identity.key
fi
# The shipped configuration plus the built-in plugins pinned to the hashes just built.
{ cat config/clearflow.toml; scripts/plugin-config.sh; } > var/clearflow.toml
exec target/release/clearflow serve --config var/clearflow.toml "$@"
