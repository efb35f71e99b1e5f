# lib.sh -- helpers of the command's tests (sourced by test_*.sh). run.sh
# gives each test AR_CLI (the command), AR_CLI_STORE (its store's location),
# AR_CLI_DIR (its own directory), AR_CLI_BACKEND and AGENTRUN_SCHEMA.
# no pipefail: `cmd | grep -q` would fail whenever grep left before cmd wrote all
set -eu
# the trace goes where run.sh collects it, never into a command's captured stderr
exec 9>&2
BASH_XTRACEFD=9
: "${AR_CLI:?run by tests/cli/run.sh}"
wrap=(${AR_CLI_WRAP:-})
S=${AR_CLI_STORE:-}
D=${AR_CLI_DIR:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The command, as a user runs it (under the wrapper of an ASan build).
ar() { ${wrap[@]+"${wrap[@]}"} "$AR_CLI" "$@"; }

# lua5.4 with the build's module and this folder's open_store.lua (for
# fixtures and checks).
lua() { LUA_PATH="$here/?.lua;${LUA_PATH:-;}" ${wrap[@]+"${wrap[@]}"} lua5.4 "$@"; }

# Writes the fixture store and sets one variable per run: old, done, failed,
# exhausted, running (their ids).
fixture() {
  lua "$here/fixture.lua" "$S" > "$D/ids"
  while IFS== read -r k v; do printf -v "$k" %s "$v"; done < "$D/ids"
}

# run EXPECTED_STATUS CMD...: runs CMD, its output in $D/out and $D/err;
# fails unless it exits with EXPECTED_STATUS.
run() {
  local want=$1; shift
  local rc=0
  "$@" >"$D/out" 2>"$D/err" || rc=$?
  if [ "$rc" != "$want" ]; then
    echo "exit status $rc, expected $want; stdout:" >&2; cat "$D/out" >&2
    echo "stderr:" >&2; cat "$D/err" >&2
    return 1
  fi
}

out() { cat "$D/out"; }
err() { cat "$D/err"; }

# has FILE TEXT / lacks FILE TEXT: fixed-string matches in $D/out or $D/err.
has() { grep -qF -- "$2" "$D/$1" || { echo "$1 lacks '$2':" >&2; cat "$D/$1" >&2; return 1; }; }
lacks() { ! grep -qF -- "$2" "$D/$1" || { echo "$1 has '$2':" >&2; cat "$D/$1" >&2; return 1; }; }

# The one-line error of a store error: "agentrun: ... (CODE)", nothing else.
one_error_line() { # CODE
  [ "$(wc -l < "$D/err")" = 1 ] || { echo "stderr is not one line:" >&2; cat "$D/err" >&2; return 1; }
  grep -qE "^agentrun: .* \\($1\\)\$" "$D/err" || { cat "$D/err" >&2; return 1; }
  lacks err "traceback"
}

# A usage error: the message, then the usage line.
usage_error() {
  [ "$(wc -l < "$D/err")" = 2 ] || { echo "stderr is not two lines:" >&2; cat "$D/err" >&2; return 1; }
  head -1 "$D/err" | grep -q '^agentrun: '
  sed -n 2p "$D/err" | grep -q '^usage: agentrun '
  lacks err "traceback"
}

# field KEY VALUE: show's line "KEY   VALUE..." (VALUE a fixed string).
field() {
  local v; v=$(printf '%s' "$2" | sed 's/[]\/$*.^[]/\\&/g')
  grep -q "^$1  *$v" "$D/out" || { echo "no line '$1 $2':" >&2; cat "$D/out" >&2; return 1; }
}

# Runs SQL on the test's store (sqlite3 on a file, psql in the schema).
sql() {
  if [ "$AR_CLI_BACKEND" = sqlite ]; then
    sqlite3 "$S" "$1"
  else
    psql -X -q -v ON_ERROR_STOP=1 -d "$S" -c "SET search_path = $AGENTRUN_SCHEMA; $1" >/dev/null
  fi
}

sqlite_only() { [ "$AR_CLI_BACKEND" = sqlite ] || exit 77; }

# Waits (up to a minute: a loaded machine is slow, never a test's failure)
# until FILE holds TEXT.
wait_for() { # FILE TEXT
  local i
  for i in $(seq 600); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 never held '$2':" >&2; cat "$1" >&2
  return 1
}
