#!/bin/sh
# server.sh -- a throwaway PostgreSQL server for the test suites.
#
#   tests/pg/server.sh start DIR   initdb into DIR (empty or missing), start the
#                                  server on a Unix socket in DIR (no TCP port),
#                                  create the test database; prints its URL
#   tests/pg/server.sh stop DIR    stop that server and remove DIR
#
# The server is Debian's (the newest /usr/lib/postgresql/*/bin). initdb and
# postgres refuse to run as root: as root they run as the `postgres` user,
# who then owns DIR. Local connections are trusted, except for the role
# agentrun_pw (password "agentrun_pw"), which must give its password, so that
# a test can be refused for a wrong one. The server trades crash safety for
# speed (fsync off): it lives for one test run. AGENTRUN_PG_FSYNC=on keeps
# fsync and full page writes on, for the benchmark, whose durable commits are
# what it measures.
set -eu

DB=agentrun_test
PW_ROLE=agentrun_pw
PW=agentrun_pw

die() { echo "server.sh: $*" >&2; exit 1; }

bindir() {
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "no PostgreSQL server found in /usr/lib/postgresql (apt-get install postgresql)"
    echo "$dir"
}

# Runs a server program as the user that owns the cluster.
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    dir=$1
    bin=$(bindir)
    fsync=${AGENTRUN_PG_FSYNC:-off}
    case $fsync in on|off) ;; *) die "AGENTRUN_PG_FSYNC must be on or off, not '$fsync'";; esac
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
    case $dir in *[!A-Za-z0-9/._-]*) die "$dir: the socket directory must be a plain path";; esac
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "no postgres user (apt-get install postgresql)"
        chown postgres: "$dir"
        runuser -u postgres -- test -w "$dir" || die "the postgres user cannot reach $dir (a parent directory is closed to it)"
        super=postgres
    else
        super=$(id -un)
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U "$super" --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    {
        echo "local all $PW_ROLE scram-sha-256"
        echo "local all all trust"
    } > "$dir/pg_hba.conf"
    chown --reference="$dir/data" "$dir/pg_hba.conf"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $dir -c hba_file=$dir/pg_hba.conf -c fsync=$fsync -c full_page_writes=$fsync -c max_connections=200" \
        start >/dev/null || { cat "$dir/server.log" >&2; die "the server did not start"; }
    # pg_ctl -w waits for the server; pg_isready confirms it takes connections.
    tries=0
    until "$bin/pg_isready" -q -h "$dir" -d postgres -U "$super"; do
        tries=$((tries + 1))
        [ $tries -lt 100 ] || { cat "$dir/server.log" >&2; die "the server does not accept connections"; }
        sleep 0.1
    done
    "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -U "$super" -d postgres >/dev/null <<EOF || die "could not create the test database"
CREATE DATABASE $DB;
CREATE ROLE $PW_ROLE LOGIN PASSWORD '$PW';
GRANT CREATE ON DATABASE $DB TO $PW_ROLE;
EOF
    echo "postgresql:///$DB?host=$dir&user=$super"
}

stop() {
    dir=$1
    [ -d "$dir" ] || return 0
    bin=$(bindir)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        # pg_ctl could not stop it: end the postmaster by its pid (its
        # children exit when they see it gone).
        pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -rf "$dir"
}

[ $# -eq 2 ] || die "usage: server.sh start|stop DIR"
case $1 in
    start) start "$2";;
    stop) stop "$2";;
    *) die "usage: server.sh start|stop DIR";;
esac
