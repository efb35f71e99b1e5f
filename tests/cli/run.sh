#!/usr/bin/env bash
# run.sh -- the command's tests: each function of each test_*.sh beside this
# file runs build/bin/agentrun on a store of its own, once on SQLite, then on
# PostgreSQL when AGENTRUN_TEST_PG names a server. One result line per test
# and backend, a count per backend, and last "N passed, N failed".
# Usage: tests/cli/run.sh BUILD_DIR   (run from the project's root, with the
# build's module on LUA_PATH/LUA_CPATH for the fixtures; AR_CLI_WRAP, e.g.
# "env LD_PRELOAD=...", runs the command and the fixtures under a wrapper)
set -u
here=$(cd "$(dirname "$0")" && pwd)
export AR_ROOT=$(cd "$here/../.." && pwd)
export AR_BUILD=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
export AR_CLI="$AR_BUILD/bin/agentrun"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentrun-cli-XXXXXX") || exit 1
prefix="cli_$$_"
ran_pg=
cleanup() {
  trap - EXIT
  if [ -n "$ran_pg" ]; then
    psql -X -q -d "$AGENTRUN_TEST_PG" -v ON_ERROR_STOP=1 >/dev/null <<SQL ||
SET lock_timeout = '20s';
SET client_min_messages = warning;
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

[ -x "$AR_CLI" ] || { echo "run.sh: no $AR_CLI (make builds it)" >&2; exit 1; }
total_passed=0 total_failed=0 n=0
for backend in sqlite postgresql; do
  if [ $backend = postgresql ] && [ -z "${AGENTRUN_TEST_PG:-}" ]; then
    echo "postgresql: skipped: AGENTRUN_TEST_PG is not set (make test starts a server)"
    continue
  fi
  [ $backend = postgresql ] && ran_pg=1
  passed=0 failed=0
  for t in "$here"/test_*.sh; do
    for name in $(bash "$t" --list); do
      n=$((n + 1))
      dir="$tmp/$backend-$n"
      mkdir -p "$dir"
      if [ $backend = sqlite ]; then
        store="$dir/store.db" schema=
      else
        store="$AGENTRUN_TEST_PG" schema="$prefix$n"
      fi
      out="$dir/trace"
      # traced, so that a failure shows the command that failed; a test
      # still running after 300 seconds fails (it hangs: its waits give up after 60)
      AR_CLI_BACKEND=$backend AR_CLI_DIR="$dir" AR_CLI_STORE="$store" AGENTRUN_SCHEMA="$schema" \
        timeout --foreground -k 10 300 bash -x "$t" "$name" >"$out" 2>&1
      rc=$?
      if [ $rc = 124 ] || [ $rc = 137 ]; then echo "stopped after 300 s" >> "$out"; fi
      if [ $rc = 0 ]; then
        echo "ok      $backend  $name"; passed=$((passed + 1))
      elif [ $rc = 77 ]; then
        echo "skip    $backend  $name"
      else
        echo "FAILED  $backend  $name"; sed 's/^/    /' "$out"; failed=$((failed + 1))
      fi
    done
  done
  echo "$backend: $passed passed, $failed failed"
  total_passed=$((total_passed + passed)) total_failed=$((total_failed + failed))
done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
