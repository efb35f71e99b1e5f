#!/usr/bin/env bash
# run.sh -- the build-system tests: each test_*.sh beside this file, one
# result line per test, ending on "N passed, N failed".
# Usage: tests/sh/run.sh BUILD_DIR   (run from the project's root)
set -u
here=$(cd "$(dirname "$0")" && pwd)
export AR_ROOT=$(cd "$here/../.." && pwd)
export AR_BUILD=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
passed=0 failed=0
for t in "$here"/test_*.sh; do
  for name in $(bash "$t" --list); do
    out=$(mktemp)
    # traced, so that a failure shows the command that failed
    if bash -x "$t" "$name" >"$out" 2>&1; then
      echo "ok      $name"; passed=$((passed + 1))
    else
      echo "FAILED  $name"; sed 's/^/    /' "$out"; failed=$((failed + 1))
    fi
    rm -f "$out"
  done
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
