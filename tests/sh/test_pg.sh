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
  # With job control the command gets a process group of its own, as a
  # terminal gives `make test`; Ctrl-C reaches every process in the group.
  # SIGINT is set back to its default: these tests may run under something
  # started in the background, which ignores it, and a shell cannot trap a
  # signal ignored when it started.
  set -m
  TMPDIR=$tmp env --default-signal=INT "$AR_ROOT/tests/pg/with-server.sh" sh -c 'echo "$AGENTRUN_TEST_PG" > "$0"; exec sleep 60' \
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

server_keeps_fsync_on_when_asked_and_refuses_a_bad_setting() {
  local dir="$tmp/srv-fsync" url
  url=$(AGENTRUN_PG_FSYNC=on "$AR_ROOT/tests/pg/server.sh" start "$dir")
  local fsync fpw
  fsync=$(psql -X -At -d "$url" -c 'SHOW fsync')
  fpw=$(psql -X -At -d "$url" -c 'SHOW full_page_writes')
  "$AR_ROOT/tests/pg/server.sh" stop "$dir"
  _gone "$dir"
  [ "$fsync/$fpw" = on/on ] || { echo "fsync/full_page_writes $fsync/$fpw, want on/on" >&2; return 1; }
  if AGENTRUN_PG_FSYNC=maybe "$AR_ROOT/tests/pg/server.sh" start "$tmp/srv-bad" 2>"$tmp/err"; then
    echo "AGENTRUN_PG_FSYNC=maybe was accepted" >&2; return 1
  fi
  grep -q "AGENTRUN_PG_FSYNC must be on or off" "$tmp/err" || { cat "$tmp/err" >&2; return 1; }
}

with_server_optional_runs_the_command_without_a_server_when_none_starts() {
  local got status=0
  # a server that cannot start: with --optional the command runs without one
  got=$(AGENTRUN_PG_FSYNC=maybe TMPDIR=$tmp "$AR_ROOT/tests/pg/with-server.sh" --optional \
        sh -c 'echo "url=${AGENTRUN_TEST_PG:-}"; exit 3' 2>/dev/null) || status=$?
  [ "$status" = 3 ] || { echo "status $status, want the command's 3" >&2; return 1; }
  [ "$(tail -n 1 <<<"$got")" = "url=" ] || { echo "got $got" >&2; return 1; }
  # without it the failure to start is the result, and the command does not run
  status=0
  got=$(AGENTRUN_PG_FSYNC=maybe TMPDIR=$tmp "$AR_ROOT/tests/pg/with-server.sh" sh -c 'echo ran' 2>/dev/null) \
    || status=$?
  [ "$status" != 0 ] && [ -z "$got" ] || { echo "status $status, output $got" >&2; return 1; }
  [ -z "$(ls -A "$tmp" | grep agentrun-pg- || true)" ] || { echo "a server directory was left" >&2; return 1; }
}

if [ "${1:-}" = --list ]; then
  declare -F | awk '{print $3}' | grep -v '^_'
else
  "$1"
fi
