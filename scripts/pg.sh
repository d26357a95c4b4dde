#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, listening on 127.0.0.1 only, trust auth.
#
# Usage:
#   scripts/pg.sh start DIR PORT   initdb (if needed) and start a cluster in DIR on 127.0.0.1:PORT,
#                                  create database clearflow_test, print its URL on stdout
#   scripts/pg.sh stop DIR PORT    stop that cluster and delete DIR
#
# Installs Debian's postgresql package when initdb is missing. Run as root, the server runs
# as user postgres (DIR is chowned to it, so put DIR somewhere postgres can reach, e.g. /tmp);
# as another user, it runs as that user. Durability is switched off: test data only.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop DIR PORT" >&2
    exit 2
}
[[ $# -eq 3 ]] || usage
cmd=$1 dir=$(realpath -m "$2") port=$3
[[ $port =~ ^[0-9]+$ ]] || usage
[[ $dir != / ]] || usage
# The server user may not be able to read the caller's working directory.
cd /
if [[ $port -eq 5432 ]]; then
    echo "pg.sh: refusing port 5432; a throwaway cluster takes another port" >&2
    exit 2
fi

find_bindir() {
    local initdb
    for initdb in /usr/lib/postgresql/*/bin/initdb; do
        [[ -x $initdb ]] && { dirname "$initdb"; return 0; }
    done
    initdb=$(command -v initdb || true)
    [[ -n $initdb ]] && { dirname "$(readlink -f "$initdb")"; return 0; }
    return 1
}

install_postgres() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "pg.sh: initdb not found and not root; install postgresql first" >&2
        exit 1
    fi
    echo "pg.sh: installing postgresql from Debian" >&2
    # Keep the package's own cluster from starting on 5432 during the install.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod +x "$policy"
        created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    [[ $created_policy -eq 1 ]] && rm -f "$policy"
    return 0
}

# Runs a command as the cluster's owner.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

bindir=$(find_bindir || true)
if [[ -z $bindir ]]; then
    [[ $cmd == stop ]] && { rm -rf "$dir"; exit 0; }
    install_postgres
    bindir=$(find_bindir) || { echo "pg.sh: initdb still not found after install" >&2; exit 1; }
fi
data=$dir/data
url="postgres://postgres@127.0.0.1:$port/clearflow_test"

case $cmd in
start)
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir"
        if ! runuser -u postgres -- test -w "$dir"; then
            echo "pg.sh: user postgres cannot write $dir; choose a directory under /tmp" >&2
            exit 1
        fi
    fi
    if [[ ! -f $data/PG_VERSION ]]; then
        as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        opts="-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir"
        opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        as_owner "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -o "$opts" -w -t 60 start >/dev/null ||
            { cat "$dir/server.log" >&2; exit 1; }
    fi
    exists=$(as_owner "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'clearflow_test'")
    if [[ $exists != 1 ]]; then
        as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres clearflow_test
    fi
    echo "$url"
    ;;
stop)
    if [[ -f $data/PG_VERSION ]] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_owner "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    fi
    rm -rf "$dir"
    ;;
*)
    usage
    ;;
esac
