#!/usr/bin/env bash
# run.sh BUSTED-COMMAND... -- runs the Lua specs once per backend: SQLite,
# then PostgreSQL when AGENTRUN_TEST_PG names a server. Each run prints its
# count ("sqlite: N passed, N failed"); the last line is the total. Specs
# tagged #sqlite_only (about files and SQLite itself) are left out on
# PostgreSQL. The stores of a run live in a temporary directory, or in
# schemas named lua_<pid>_..., all removed when it ends.
set -u

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentrun-lua-run-XXXXXX") || exit 1
prefix="lua_$$_"
ran_pg=
cleanup() {
    trap - EXIT
    if [ -n "$ran_pg" ]; then
        psql -X -q -d "$AGENTRUN_TEST_PG" -v ON_ERROR_STOP=1 >/dev/null <<SQL ||
SET lock_timeout = '20s'; SET client_min_messages = warning;
DO \$\$DECLARE s text; BEGIN
  FOR s IN SELECT nspname FROM pg_namespace WHERE starts_with(nspname, '$prefix') LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END\$\$;
SQL
        echo "run.sh: could not drop the schemas $prefix*" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

: > "$tmp/counts"
status=0
for backend in sqlite postgresql; do
    if [ $backend = postgresql ]; then
        if [ -z "${AGENTRUN_TEST_PG:-}" ]; then
            echo "postgresql: skipped: AGENTRUN_TEST_PG is not set (make test starts a server)"
            continue
        fi
        # A module built without the PostgreSQL backend knows no `schema`
        # option. The probe runs under the same wrapper as busted (an ASan
        # build's module needs its runtime preloaded).
        wrap=()
        for a in "$@"; do [ "$a" = lua5.4 ] && break; wrap+=("$a"); done
        if ! ${wrap[@]+"${wrap[@]}"} lua5.4 -e 'local ok, e = pcall(require("agentrun").open, ":memory:", { schema = "probe" })
                        os.exit(ok or not tostring(e):find("schema", 1, true))' 2>/dev/null; then
            echo "postgresql: skipped: this build has no PostgreSQL backend (open knows no schema)"
            continue
        fi
    fi
    mkdir -p "$tmp/$backend"
    exclude=
    [ $backend = sqlite ] || { exclude=--exclude-tags=sqlite_only; ran_pg=1; }
    # A pass that hangs is stopped after AGENTRUN_TEST_TIMEOUT seconds and
    # names the test it was in.
    limit=${AGENTRUN_TEST_TIMEOUT:-1800}
    rc=0 before=$(wc -l < "$tmp/counts")
    AGENTRUN_TEST_BACKEND=$backend AGENTRUN_TEST_TMP="$tmp/$backend" AGENTRUN_TEST_SCHEMA_PREFIX=$prefix \
        AGENTRUN_TEST_COUNTS="$tmp/counts" AGENTRUN_TEST_CURRENT="$tmp/current" \
        timeout --foreground -k 10 "$limit" "$@" $exclude || rc=$?
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        echo "$backend: stopped after ${limit}s in: $(cat "$tmp/current" 2>/dev/null || echo '(no test started)')"
        echo "0 1" >> "$tmp/counts"
    elif [ "$(wc -l < "$tmp/counts")" = "$before" ]; then
        # busted died (a sanitizer's abort, a signal) before its summary
        echo "$backend: busted ended (status $rc) without a count, in: $(cat "$tmp/current" 2>/dev/null || echo '(no test started)')"
        echo "0 1" >> "$tmp/counts"
    fi
    [ $rc = 0 ] || status=1
done

passed=0 failed=0
if [ -s "$tmp/counts" ]; then
    while read -r p f; do
        passed=$((passed + p)) failed=$((failed + f))
    done < "$tmp/counts"
else
    echo "run.sh: busted reported no count" >&2
    status=1
fi
echo "$passed passed, $failed failed"
exit $status
