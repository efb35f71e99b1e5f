#!/usr/bin/env bash
# run.sh DIR ARTIFACTS [WRAP...] -- the browser tests of agentrun.view: makes
# the fixture pages in DIR (fixture.lua, run as WRAP lua5.4, e.g. under an
# ASan preload), then drives Debian's chromium over them (run.js), which saves
# its screenshots in ARTIFACTS. When AGENTRUN_TEST_PG names a server, the
# fixture is also made on PostgreSQL, in a schema dropped at the end. Ends on
# "N passed, N failed" whatever happens.
set -u
here=$(cd "$(dirname "$0")" && pwd)
dir=$1 artifacts=$2
shift 2

schema=
cleanup() {
    if [ -n "$schema" ]; then
        psql -X -q -d "$AGENTRUN_TEST_PG" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 ||
            echo "run.sh: could not drop the schema $schema" >&2
    fi
}
trap cleanup EXIT

rm -rf "$dir" && mkdir -p "$dir" "$artifacts" || exit 1
fixture() {
    if ! "$@" lua5.4 "$here/fixture.lua" "${args[@]}"; then
        echo "run.sh: the fixture could not be made: fixture.lua ${args[*]}" >&2
        echo "browser: 0 passed, 1 failed"
        exit 1
    fi
}
args=("$dir/fx.db" "$dir/fx.html" "$dir/fx.json"); fixture "$@"
args=(--large "$dir/large.db" "$dir/large.html" "$dir/large.json"); fixture "$@"
if [ -n "${AGENTRUN_TEST_PG:-}" ]; then
    schema="view_$$"
    args=("$AGENTRUN_TEST_PG" "$dir/pg.html" "$dir/pg.json" "$schema"); fixture "$@"
fi
node "$here/run.js" "$dir" "$artifacts"
