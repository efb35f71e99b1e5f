#!/usr/bin/env bash
# test_pg.sh -- the throwaway PostgreSQL server of `make test`
# (tests/pg/server.sh, tests/pg/with-server.sh): it serves on a Unix socket
# only, refuses a wrong password for the password role, and is gone after
# the command it served ends, however it ends. Each function is one test;
# `--list` names them. AR_ROOT comes from run.sh.
set -euo pipefail

tmp=$(mktemp -d /tmp/agentrun-pgtest-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# As root the server runs as the postgres user, who must reach its directory.
chmod 755 "$tmp"
# These tests start servers of their own, whatever server the suite uses.
unset AGENTRUN_TEST_PG

# No postgres process serves a socket in dir any more, and dir is gone.
_gone() {
  local dir=$1
  if pgrep -f -- "-k $dir( |$)" >/dev/null; then
    echo "a server of $dir still runs:" >&2; pgrep -af -- "-k $dir( |$)" >&2; return 1
  fi
  [ ! -e "$dir" ] || { echo "$dir is still there" >&2; return 1; }
}

# The URL's socket directory.
_host() { sed -nE 's/.*[?&]host=([^&]*).*/\1/p' <<<"$1"; }

server_serves_a_socket_only_checks_the_password_role_and_stops_leaving_nothing() {
  local dir="$tmp/srv" url
  url=$("$AR_ROOT/tests/pg/server.sh" start "$dir")
  [[ $url == "postgresql:///agentrun_test?host=$dir&user="* ]] || { echo "URL: $url" >&2; return 1; }
  [ "$(psql -X -At -d "$url" -c 'SELECT 1')" = 1 ]
  [ -z "$(psql -X -At -d "$url" -c "SELECT setting FROM pg_settings WHERE name = 'listen_addresses'")" ]
  local pw_url="postgresql:///agentrun_test?host=$dir&user=agentrun_pw"
  if PGPASSWORD=wrong psql -X -At -d "$pw_url" -c 'SELECT 1' >/dev/null 2>&1; then
    echo "a wrong password was accepted" >&2; return 1
  fi
  [ "$(PGPASSWORD=agentrun_pw psql -X -At -d "$pw_url" -c 'SELECT current_user')" = agentrun_pw ]
  "$AR_ROOT/tests/pg/server.sh" stop "$dir"
  _gone "$dir"
}

with_server_passes_the_url_and_keeps_a_failing_commands_status() {
  local status=0
  TMPDIR=$tmp "$AR_ROOT/tests/pg/with-server.sh" sh -c \
    'echo "$AGENTRUN_TEST_PG" > "$0"; psql -X -At -d "$AGENTRUN_TEST_PG" -c "SELECT 1" >/dev/null && exit 7' \
    "$tmp/url" >/dev/null || status=$?
  [ "$status" = 7 ] || { echo "status $status, want 7" >&2; return 1; }
  _gone "$(_host "$(cat "$tmp/url")")"
}

with_server_stops_the_server_when_the_run_is_interrupted() {
  # With job control the command gets a process group of its own (and
  # SIGINT is not ignored in it), as a terminal gives `make test`; Ctrl-C
  # reaches every process in the group.
  set -m
  TMPDIR=$tmp "$AR_ROOT/tests/pg/with-server.sh" sh -c 'echo "$AGENTRUN_TEST_PG" > "$0"; exec sleep 60' \
    "$tmp/url" >/dev/null 2>&1 &
  local pid=$!
  set +m
  for _ in $(seq 300); do [ -s "$tmp/url" ] && break; sleep 0.1; done
  [ -s "$tmp/url" ] || { echo "the command never started" >&2; return 1; }
  kill -INT -- "-$pid"
  local status=0
  wait "$pid" || status=$?
  [ "$status" = 130 ] || { echo "status $status, want 130" >&2; return 1; }
  _gone "$(_host "$(cat "$tmp/url")")"
}

with_server_uses_the_given_server_and_starts_none() {
  local got
  got=$(AGENTRUN_TEST_PG='postgresql:///given?host=/nowhere' "$AR_ROOT/tests/pg/with-server.sh" \
        sh -c 'echo "$AGENTRUN_TEST_PG"' | tail -n 1)
  [ "$got" = 'postgresql:///given?host=/nowhere' ] || { echo "got $got" >&2; return 1; }
}

if [ "${1:-}" = --list ]; then
  declare -F | awk '{print $3}' | grep -v '^_'
else
  "$1"
fi
