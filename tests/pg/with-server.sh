#!/bin/sh
# with-server.sh CMD [ARG...] -- runs CMD with AGENTRUN_TEST_PG naming a
# PostgreSQL server: the one the caller set it to, or a throwaway server
# (tests/pg/server.sh) started for CMD and stopped when it ends, whatever
# way it ends (failure, Ctrl-C, kill). Exits with CMD's status.
#
# with-server.sh --optional CMD ...: when no server can be started, runs CMD
# without AGENTRUN_TEST_PG (its PostgreSQL parts say they were skipped).
set -u
here=$(cd "$(dirname "$0")" && pwd)
optional=0
if [ "${1:-}" = --optional ]; then
    optional=1
    shift
fi

if [ -n "${AGENTRUN_TEST_PG:-}" ]; then
    # a server of the caller's: never stopped by the tests unless its data
    # directory is given too (AGENTRUN_TEST_PGDATA)
    echo "postgresql: the server of AGENTRUN_TEST_PG (none started)"
    exec "$@"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/agentrun-pg-XXXXXX") || exit 1
cleanup() {
    trap - EXIT HUP INT TERM
    "$here/server.sh" stop "$dir"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP

if ! url=$("$here/server.sh" start "$dir"); then
    [ $optional = 1 ] || exit 1
    cleanup
    echo "postgresql: no server could be started; running without one"
    exec "$@"
fi
echo "postgresql: a server started for the tests in $dir"
AGENTRUN_TEST_PG=$url
# the data directory, for the tests that stop and start the server they own
AGENTRUN_TEST_PGDATA=$dir/data
export AGENTRUN_TEST_PG AGENTRUN_TEST_PGDATA
"$@"
status=$?
cleanup
exit $status
