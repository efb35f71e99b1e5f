#!/usr/bin/env bash
# test_cli.sh -- the agentrun command run as a user runs it, on a real store
# of the backend run.sh gives. Each function is one test; `--list` names them.
source "$(dirname "$0")/lib.sh"

# ---- help and usage ----------------------------------------------------------

help_lists_every_command_and_each_command_has_its_own_help() {
  run 0 ar --help
  has out "usage: agentrun [--json]"
  cp "$D/out" "$D/help"
  local c
  for c in ls show tail events stats recover retain info check fork respond export import copy otlp view; do
    grep -qE "^  $c " "$D/help" || { echo "--help does not list $c" >&2; return 1; }
    run 0 ar "$c" --help
    head -1 "$D/out" | grep -q "^usage: agentrun \\[--json\\] $c "
    [ "$(wc -l < "$D/out")" -gt 4 ]
  done
  run 0 ar --version
  grep -qE '^agentrun [0-9]+\.[0-9]+\.[0-9]+$' "$D/out"
}

no_command_is_a_usage_error() {
  run 2 ar
  usage_error
  has err "no command given"
}

unknown_command_is_a_usage_error() {
  run 2 ar frobnicate "$S"
  usage_error
  has err "unknown command 'frobnicate'"
}

unknown_option_is_a_usage_error_with_the_commands_usage() {
  fixture
  run 2 ar ls "$S" --frob
  usage_error
  has err "unknown option '--frob' for ls"
  has err "usage: agentrun [--json] ls STORE"
  run 2 ar --frob ls "$S"
  usage_error
  run 2 ar ls "$S" --agent
  usage_error
  has err "--agent needs a value"
  run 2 ar show "$S" --full=yes "$done"
  usage_error
  # empty values are the command line's fault, not a store error
  run 2 ar ls "$S" --status=,
  usage_error
  has err "--status needs at least one value"
  run 2 ar events "$S" alpha --type ,
  usage_error
  run 2 ar events "$S" ''
  usage_error
  has err "AGENT is empty"
  run 2 ar ls "$S" --agent=
  usage_error
  has err "--agent is empty"
}

malformed_time_count_status_or_duration_is_a_usage_error() {
  fixture
  local bad
  for bad in yesterday 10 2h3 2026-13-01 2026-02-30 "2026-01-01 25:00" 5x; do
    run 2 ar ls "$S" --since "$bad"
    usage_error
    has err "--since"
  done
  run 2 ar ls "$S" --limit -1
  usage_error
  run 2 ar ls "$S" --limit ten
  usage_error
  run 2 ar ls "$S" --status done
  usage_error
  has err "unknown status 'done'"
  run 2 ar recover "$S" --stale-after soon
  usage_error
  run 2 ar recover "$S"
  usage_error
  has err "recover needs --stale-after"
  run 2 ar show "$S"
  usage_error
  run 2 ar show "$S" "$done" extra
  usage_error
  has err "too many arguments"
}

missing_store_is_an_error_and_creates_nothing() {
  run 1 ar ls "$D/nowhere.db"
  one_error_line EIO
  [ ! -e "$D/nowhere.db" ]
  run 1 ar recover "$D/nowhere.db" --stale-after 1m
  one_error_line EIO
  [ ! -e "$D/nowhere.db" ]
  run 1 ar ls "postgresql:///nodb?host=$D/no-server"
  one_error_line EIO
  AGENTRUN_STORE= run 2 ar ls
  usage_error
  has err "no STORE given"
}

store_may_come_from_AGENTRUN_STORE() {
  fixture
  AGENTRUN_STORE="$S" run 0 ar ls
  has out "${done:0:8}"
  AGENTRUN_STORE="$S" run 0 ar show "$done"
  field run "$done"
  # given on the command line, STORE wins
  AGENTRUN_STORE="$D/nowhere.db" run 0 ar info "$S"
}

# ---- ls ------------------------------------------------------------------------

ls_lists_runs_newest_first_in_aligned_columns() {
  fixture
  COLUMNS=200 run 0 ar ls "$S"
  head -1 "$D/out" | grep -qE '^ID +AGENT +STATUS +.*COST +CREATED'
  [ "$(wc -l < "$D/out")" = 6 ]
  # newest first: the run left running, ..., the run of 2020
  sed -n 2p "$D/out" | grep -q "gamma  *running"
  sed -n 6p "$D/out" | grep -q "alpha  *completed"
  has out '$0.0046'
  has out "summarise the quarterly report"
  # every row's columns start where the header's do
  local col; col=$(head -1 "$D/out" | awk '{print index($0, "STATUS")}')
  awk -v c="$col" 'NR > 1 && !(substr($0, c, 1) != " " && substr($0, c - 1, 1) == " ") { exit 1 }' "$D/out"
  # no colour when the output is not a terminal
  lacks out $'\e['
  # ages and local dates
  has out "just now"
  sed -n 6p "$D/out" | grep -qE '2020-01-0[12]|2019-12-31'
}

ls_shows_ids_by_a_unique_prefix_that_show_accepts_back() {
  fixture
  run 0 ar ls "$S"
  cp "$D/out" "$D/ls"
  local id short
  for id in "$old" "$done" "$failed" "$exhausted" "$running"; do
    short=$(awk -v id="$id" 'NR > 1 && index(id, $1) == 1 { print $1 }' "$D/ls")
    [ -n "$short" ] && [ ${#short} -lt 26 ] && [ ${#short} -ge 8 ]
    run 0 ar show "$S" "$short"
    has out "$id"
    # either case
    run 0 ar show "$S" "$(tr 'A-Z' 'a-z' <<<"$short")"
    has out "$id"
  done
}

ls_fits_the_width_COLUMNS_gives() {
  fixture
  local w line
  for w in 60 72 100 200; do
    COLUMNS=$w run 0 ar ls "$S"
    while IFS= read -r line; do
      [ "$(LC_ALL=C.UTF-8 bash -c 'echo ${#1}' _ "$line")" -le "$w" ] || { echo "wider than $w: $line" >&2; return 1; }
    done < "$D/out"
  done
  COLUMNS=200 run 0 ar ls "$S"
  has out "summarise the quarterly report"
  has out "DURATION"
  COLUMNS=60 run 0 ar ls "$S"
  lacks out "DURATION"
}

ls_json_prints_one_line_per_run_with_every_field() {
  fixture
  run 0 ar --json ls "$S"
  [ "$(wc -l < "$D/out")" = 5 ]
  [ "$(lua "$here/same_as_store.lua" "$S" run < "$D/out")" = 5 ]
  # --json may also follow the command
  run 0 ar ls "$S" --json --limit 2
  [ "$(wc -l < "$D/out")" = 2 ]
}

ls_filters_by_agent_user_status_edition_and_time() {
  fixture
  run 0 ar --json ls "$S" --agent beta
  [ "$(wc -l < "$D/out")" = 2 ]
  has out "$failed"; has out "$exhausted"
  run 0 ar --json ls "$S" --user u-1
  [ "$(wc -l < "$D/out")" = 1 ]; has out "$done"
  run 0 ar --json ls "$S" --edition v2
  [ "$(wc -l < "$D/out")" = 1 ]; has out "$done"
  run 0 ar --json ls "$S" --status failed,budget_exhausted
  [ "$(wc -l < "$D/out")" = 2 ]
  run 0 ar --json ls "$S" --status failed --status running
  [ "$(wc -l < "$D/out")" = 2 ]; has out "$running"
  run 0 ar --json ls "$S" --since 1h
  [ "$(wc -l < "$D/out")" = 4 ]; lacks out "$old"
  run 0 ar --json ls "$S" --until 2021-01-01
  [ "$(wc -l < "$D/out")" = 1 ]; has out "$old"
  run 0 ar --json ls "$S" --since 2019-12-31T00:00Z --until "2020-01-01 12:00"
  [ "$(wc -l < "$D/out")" = 1 ]; has out "$old"
  run 0 ar --json ls "$S" --since=3d --limit=1
  [ "$(wc -l < "$D/out")" = 1 ]; has out "$running"
  run 0 ar --json ls "$S" --limit 0
  [ "$(wc -l < "$D/out")" = 5 ]
}

# ---- show ----------------------------------------------------------------------

show_prints_the_record_budget_transcript_and_checkpoint() {
  fixture
  run 0 ar show "$S" "${done:0:20}"
  field run "$done"
  field agent alpha
  field status completed
  field user u-1
  field edition v2
  field budget 'max_steps 10, max_cost $0.5000'
  field tokens "1,712 in, 216 out, 1,928 total; cache_read_tokens 512"
  field cost '$0.0046'
  field output '{"text":"the summary"}'
  field metadata '{"team":"ops"}'
  field checkpoint 'after step 3: {"page":2}'
  has out "(just now)"
  grep -qE '^SEQ +KIND +NAME +TOKENS +COST +DURATION +CONTENT' "$D/out"
  grep -qE '^ +1 +llm +model-a +812/96 +\$0\.0021 +740 ms +\{"text":"I will search"\}' "$D/out"
  grep -qE '^ +2 +tool +search .*15 ms +\{"query":"quarterly report"\}' "$D/out"
  # one line per step: the newline of step 3 is a space, its tail cut
  grep -q 'final answer: line two' "$D/out"
  lacks out "END-OF-CONTENT"
  run 0 ar show "$S" "$exhausted"
  field limit "max_steps 1 reached (1)"
  run 0 ar show "$S" "$failed"
  field error "tool crashed"
}

show_full_prints_whole_contents() {
  fixture
  COLUMNS=80 run 0 ar show "$S" "$done" --full
  has out "END-OF-CONTENT"
  has out "final answer:"
  has out "line two of the WHOLE-CONTENT-MARKER"
}

show_cuts_each_content_at_a_character_boundary_and_shows_it_as_stored() {
  local id
  id=$(lua - "$S" <<'LUA'
local s = require("open_store")(arg[1])
local r = s:begin { agent = "wide", goal = "multi-byte contents" }
-- 1 to 4 ASCII bytes before 2-, 3- and 4-byte characters: every cut position
for n = 1, 4 do r:step { kind = "llm", content = ("x"):rep(n) .. ("\u{e9}\u{20ac}\u{1f600}"):rep(60) } end
r:step { kind = "tool", content = { note = "tab\there" } }
r:step { kind = "llm", content = ("\n"):rep(200) .. "after the blank lines" }
print(r:complete().id)
LUA
)
  local cols
  for cols in 20 21 22 23 40 81; do
    COLUMNS=$cols run 0 ar show "$S" "$id"
    iconv -f UTF-8 -t UTF-8 "$D/out" >/dev/null
    grep -q '…' "$D/out"
  done
  # a string shows as its text, anything else as its JSON, escapes and all
  grep -qE '^ +1 +llm +.* xé€😀é€' "$D/out"
  has out '{"note":"tab\there"}'
  # white space collapses before the cut: a line of text, not of blanks
  grep -qE '^ +6 +llm +.* after the blank lines$' "$D/out"
}

show_ls_and_tail_never_hand_stored_control_characters_to_the_terminal() {
  local id c
  id=$(lua - "$S" <<'LUA'
local s = require("open_store")(arg[1])
local r = s:begin { agent = "a\27[31mred", goal = "g\27]0;title\7", user = "u\u{9b}2J", edition = "e\8" }
r:step { kind = "llm", name = "tool\27]0;owned\7", content = "c\27[2J" }
s:event { agent = "a\27[31mred", type = "log\27[1m", content = "x\27[5m" }
print(r:fail("boom\27[31m\nsecond line").id)
LUA
)
  for c in "ls $S" "show $S $id" "show $S $id --full" "tail $S $id" "stats $S" "events $S a"; do
    # shellcheck disable=SC2086
    run 0 ar $c
    if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]\|\xc2[\x80-\x9f]' "$D/out"; then
      echo "agentrun $c printed a control character:" >&2; cat -A "$D/out" >&2; return 1
    fi
  done
  # shown, in caret notation, not dropped
  run 0 ar show "$S" "$id" --full
  has out 'a^[[31mred'
  has out 'tool^[]0;owned^G'
  has out 'u�2J'
  # --full keeps the error's line break
  has out 'second line'
}

show_json_prints_the_record_then_each_step_with_every_field() {
  fixture
  run 0 ar --json show "$S" "$done"
  [ "$(wc -l < "$D/out")" = 4 ]
  head -1 "$D/out" > "$D/record"
  grep -q '"checkpoint":{' "$D/record"
  grep -q '"page":2' "$D/record"
  [ "$(lua "$here/same_as_store.lua" "$S" run < "$D/record")" = 1 ]
  tail -n +2 "$D/out" > "$D/steps"
  [ "$(lua "$here/same_as_store.lua" "$S" step < "$D/steps")" = 3 ]
  grep -q "\"run\":\"$done\"" "$D/steps"
}

unknown_id_is_ENOTFOUND() {
  fixture
  run 1 ar show "$S" ZZZZZZZZ
  one_error_line ENOTFOUND
  has err "no run with id 'ZZZZZZZZ'"
  run 1 ar show "$S" "01ABCDEFGHJKMNPQRSTVWXYZ00"
  one_error_line ENOTFOUND
  run 1 ar show "$S" "not-an-id!"
  one_error_line ENOTFOUND
  run 1 ar tail "$S" ZZZZZZZZ
  one_error_line ENOTFOUND
}

ambiguous_prefix_is_EAMBIGUOUS_naming_the_candidates() {
  fixture
  run 1 ar show "$S" "${done:0:2}"
  one_error_line EAMBIGUOUS
  has err "names several runs"
  local id
  for id in "$old" "$done" "$failed" "$exhausted" "$running"; do has err "$id"; done
}

# ---- events, stats, info -------------------------------------------------------

events_lists_an_agents_events_with_its_filters() {
  fixture
  run 0 ar events "$S" alpha
  head -1 "$D/out" | grep -qE '^ *ID +TIME +SESSION +TYPE +RUN +CONTENT'
  [ "$(wc -l < "$D/out")" = 4 ]
  has out "prompt_sent"; has out "hello human"; has out "${done:0:8}"
  lacks out "beta's line"
  run 0 ar --json events "$S" alpha --type output,tool_use
  [ "$(wc -l < "$D/out")" = 2 ]
  has out '"type":"output"'; has out "\"run\":\"$done\""
  run 0 ar --json events "$S" alpha --session 2
  [ "$(wc -l < "$D/out")" = 1 ]; has out "search(quarterly)"
  run 0 ar --json events "$S" alpha --desc --limit 1
  [ "$(wc -l < "$D/out")" = 1 ]; has out "search(quarterly)"
  run 0 ar --json events "$S" alpha --until 2000-01-01
  [ ! -s "$D/out" ]
  run 2 ar events "$S"
  usage_error
}

stats_totals_by_status_agent_and_day() {
  fixture
  run 0 ar stats "$S"
  grep -qE '^STATUS +RUNS +STEPS +TOKENS +COST' "$D/out"
  grep -qE '^all +5 +7 ' "$D/out"
  grep -qE '^completed +2 +4 ' "$D/out"
  grep -qE '^AGENT +RUNS' "$D/out"
  grep -qE '^alpha +2 +4 +1,935 +\$0\.0046' "$D/out"
  grep -qE '^beta +2 +2 ' "$D/out"
  grep -qE '^DAY +RUNS' "$D/out"
  grep -qE "^$(date +%Y-%m-%d) +4 " "$D/out"
  run 0 ar --json stats "$S" --agent beta
  grep '"group":"total"' "$D/out" | grep -q '"runs":2'
  grep '"group":"status"' "$D/out" | grep '"status":"failed"' | grep -q '"runs":1'
  grep '"group":"agent"' "$D/out" | grep -q '"agent":"beta"'
  lacks out '"agent":"alpha"'
}

info_shows_the_backend_and_counts() {
  fixture
  run 0 ar info "$S"
  field backend "$AR_CLI_BACKEND"
  grep -qE '^runs +5$' "$D/out"
  grep -qE '^steps +7$' "$D/out"
  grep -qE '^events +4$' "$D/out"
  run 0 ar --json info "$S"
  has out '"runs":5'; has out "\"backend\":\"$AR_CLI_BACKEND\""; has out '"version":"'
}

# ---- maintenance ---------------------------------------------------------------

recover_marks_stale_running_runs_interrupted() {
  fixture
  run 0 ar recover "$S" --stale-after 1h
  has out "0 runs marked interrupted"
  run 0 ar recover "$S" --stale-after 0
  has out "1 run marked interrupted"
  run 0 ar --json ls "$S" --status interrupted
  has out "$running"
  run 0 ar --json recover "$S" --stale-after 10m
  has out '{"recovered":0}'
}

retain_applies_a_policy_file_and_a_dry_run_changes_nothing() {
  fixture
  echo 'return { status = "failed", keep_last = 0 }' > "$D/policy.lua"
  run 0 ar retain "$S" "$D/policy.lua" --dry-run
  field "would delete" "1 of 1 finished runs considered (1 steps)"
  run 0 ar --json ls "$S" --status failed
  has out "$failed"
  run 0 ar --json retain "$S" "$D/policy.lua"
  has out '"deleted":1'; has out '"dry_run":false'
  run 0 ar --json ls "$S" --status failed
  [ ! -s "$D/out" ]
  run 0 ar retain "$S" "$D/policy.lua" --vacuum
  field deleted "0 of 0"
}

retain_refuses_a_bad_policy_file_in_one_line() {
  fixture
  echo 'return { bogus = 1 }' > "$D/bad.lua"
  run 1 ar retain "$S" "$D/bad.lua"
  one_error_line EMISUSE
  has err "bogus"
  echo 'os.execute("true")' > "$D/evil.lua"
  run 1 ar retain "$S" "$D/evil.lua"
  one_error_line EMISUSE
  run 1 ar retain "$S" "$D/missing.lua"
  one_error_line EMISUSE
  has err "cannot read policy file"
  run 0 ar --json ls "$S" --limit 0
  [ "$(wc -l < "$D/out")" = 5 ]
}

# ---- check ---------------------------------------------------------------------

check_passes_a_sound_store() {
  fixture
  run 0 ar check "$S"
  has out "ok: 5 runs, 7 steps, 4 events read; 0 problems"
  run 0 ar --json check "$S"
  has out '"ok":true'; has out '"problems":0'; has out '"checkpoints":1'
}

check_lists_damaged_rows_by_id_and_field() {
  fixture
  sql "UPDATE runs SET metadata = '{bad' WHERE id = '$done'"
  sql "UPDATE steps SET content = '[1,' WHERE run = (SELECT n FROM runs WHERE id = '$failed') AND seq = 1"
  sql "UPDATE events SET metadata = 'x' WHERE agent = 'beta'"
  run 1 ar check "$S"
  has out "run $done: stored metadata is damaged"
  has out "run $failed step 1: stored content is damaged"
  has out "stored metadata is damaged: expected a JSON object"
  has out "DAMAGED: 5 runs, 7 steps, 4 events read; 3 problems"
  run 1 ar --json check "$S"
  grep "\"id\":\"$done\"" "$D/out" | grep '"kind":"run"' | grep -q '"field":"metadata"'
  grep "\"id\":\"$failed\"" "$D/out" | grep '"kind":"step"' | grep '"seq":1' | grep -q '"field":"content"'
  grep '"kind":"event"' "$D/out" | grep -q '"field":"metadata"'
  has out '"ok":false'
  # a listing that meets the damaged row fails in one line
  run 1 ar ls "$S"
  one_error_line ECORRUPT
  has err "run $done: stored metadata is damaged"
}

check_reports_a_damaged_sqlite_file() {
  sqlite_only
  fixture
  sqlite3 "$S" "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = 'CREATE INDEX runs_by_agent ON runs(user)' WHERE name = 'runs_by_agent';"
  run 1 ar check "$S"
  has out "file: row"
  has out "missing from index runs_by_agent"
  run 1 ar --json check "$S"
  has out '"kind":"file"'
}

# ---- export, import, copy, otlp ------------------------------------------------

# A second store of the pass's backend: a file beside the test's, or another
# schema of the same database.
other_store() { # NAME -> sets O (location) and OSCHEMA
  if [ "$AR_CLI_BACKEND" = sqlite ]; then O="$D/$1.db" OSCHEMA=; else O="$S" OSCHEMA="${AGENTRUN_SCHEMA}_$1"; fi
}

export_import_round_trip_gives_the_same_bytes_and_a_second_import_skips() {
  fixture
  run 0 ar export "$S"
  cp "$D/out" "$D/stdout.jsonl"
  head -1 "$D/out" | grep -q '^{"type":"agentrun","format":1,"exported_at":'
  [ "$(grep -c '"type":"run"' "$D/out")" = 5 ]
  run 0 ar export "$S" -o "$D/dump.jsonl"
  has out "$D/dump.jsonl: 5 runs, 4 events"
  [ ! -e "$D/dump.jsonl.part" ]
  cmp <(tail -n +2 "$D/stdout.jsonl") <(tail -n +2 "$D/dump.jsonl")
  other_store empty
  AGENTRUN_SCHEMA="$OSCHEMA" run 0 ar import "$O" "$D/dump.jsonl"
  field imported "5 runs, 4 events"
  field skipped "0"
  field lines "10"
  AGENTRUN_SCHEMA="$OSCHEMA" run 0 ar export "$O"
  cmp <(tail -n +2 "$D/dump.jsonl") <(tail -n +2 "$D/out")
  # twice: nothing new; from standard input too
  AGENTRUN_SCHEMA="$OSCHEMA" run 0 ar --json import "$O" - < "$D/dump.jsonl"
  has out '"runs":0'; has out '"events":0'; has out '"skipped":9'; has out '"lines":10'
  # the filters select runs
  run 0 ar export "$S" --agent beta -o "$D/beta.jsonl"
  [ "$(grep -c '"type":"run"' "$D/beta.jsonl")" = 2 ]
  run 0 ar --json export "$S" --status completed --output "$D/c.jsonl"
  has out '"runs":2'
}

import_stops_at_a_bad_line_naming_it() {
  fixture
  run 0 ar export "$S" -o "$D/dump.jsonl"
  { head -3 "$D/dump.jsonl"; echo '{"type":"run","id":"nonsense"'; tail -n +4 "$D/dump.jsonl"; } > "$D/bad.jsonl"
  other_store bad
  AGENTRUN_SCHEMA="$OSCHEMA" run 1 ar import "$O" "$D/bad.jsonl"
  one_error_line EJSON
  has err "line 4: "
  # the lines before it stay imported
  AGENTRUN_SCHEMA="$OSCHEMA" run 0 ar --json ls "$O"
  [ "$(wc -l < "$D/out")" = 2 ]
  run 1 ar import "$S" "$D/missing.jsonl"
  one_error_line EIO
  run 2 ar import "$S"
  usage_error
}

export_to_a_file_that_cannot_be_written_leaves_nothing() {
  fixture
  echo "before" > "$D/keep.jsonl"
  run 1 ar export "$S" -o "$D/no-such-dir/x.jsonl"
  one_error_line EIO
  # the part cannot be written: the file stays as it was
  mkdir "$D/keep.jsonl.part"
  run 1 ar export "$S" -o "$D/keep.jsonl"
  one_error_line EIO
  [ "$(cat "$D/keep.jsonl")" = before ]
  run 2 ar export "$S" -o
  usage_error
}

copy_sqlite_to_the_backend_and_back_exports_the_same() {
  fixture
  run 0 ar export "$S" -o "$D/orig.jsonl"
  # a SQLite file holding the fixture
  run 0 ar import "$D/src.db" "$D/orig.jsonl"
  other_store middle
  run 0 ar copy "$D/src.db" "$O" --dest-schema "${OSCHEMA:-x}"
  field imported "5 runs, 4 events"
  AGENTRUN_SCHEMA="$OSCHEMA" run 0 ar --json copy "$O" "$D/back.db"
  has out '"runs":5'
  run 0 ar export "$D/src.db" -o "$D/a.jsonl"
  AGENTRUN_SCHEMA="$OSCHEMA" run 0 ar export "$O" -o "$D/b.jsonl"
  run 0 ar export "$D/back.db" -o "$D/c.jsonl"
  cmp <(tail -n +2 "$D/a.jsonl") <(tail -n +2 "$D/b.jsonl")
  cmp <(tail -n +2 "$D/a.jsonl") <(tail -n +2 "$D/c.jsonl")
  cmp <(tail -n +2 "$D/a.jsonl") <(tail -n +2 "$D/orig.jsonl")
  # again: everything is skipped
  run 0 ar --json copy "$D/src.db" "$D/back.db"
  has out '"runs":0'
  run 2 ar copy "$D/src.db"
  usage_error
}

otlp_prints_one_json_request_a_run() {
  fixture
  run 0 ar otlp "$S"
  [ "$(wc -l < "$D/out")" = 5 ]
  lua -e '
    local agentrun = require "agentrun"
    for line in io.lines() do
      local t = agentrun.json_decode(line)
      assert(type(t.resourceSpans) == "table" and #t.resourceSpans == 1, line)
    end' < "$D/out"
  lacks out "the summary"
  run 0 ar otlp "$S" --content --agent alpha -o "$D/traces.jsonl"
  has out "$D/traces.jsonl: 2 runs"
  grep -q "the summary" "$D/traces.jsonl"
  [ "$(wc -l < "$D/traces.jsonl")" = 2 ]
}

# ---- fork, respond, view -------------------------------------------------------

fork_prints_a_resumable_run_that_show_lists_with_its_origin() {
  fixture
  run 0 ar fork "$S" "${done:0:14}" --at 2
  [ "$(wc -l < "$D/out")" = 1 ]
  local fork; fork=$(cat "$D/out")
  [[ "$fork" =~ ^[0-9A-Z]{26}$ ]]
  run 0 ar show "$S" "$fork"
  field run "$fork"
  field "forked from" "$done after step 2"
  field status interrupted
  field steps 2
  run 0 ar --json ls "$S" --forks-of "${done:0:20}"
  [ "$(wc -l < "$D/out")" = 1 ]; has out "$fork"
  run 0 ar ls "$S" --forks-of "$fork"
  [ "$(wc -l < "$D/out")" = 1 ]
  # an agent goes on with it
  lua - "$S" "$fork" <<'LUA'
local s = require("open_store")(arg[1])
local r = s:resume(arg[2])
r:step { kind = "llm", content = "after the fork" }
r:complete("forked answer")
LUA
  run 0 ar show "$S" "$fork"
  field status completed
  field steps 3
  run 0 ar --json fork "$S" "$done"
  FROM=$done lua -e '
    local r = require("agentrun").json_decode(io.read("a"))
    assert(r.forked_from.run == os.getenv("FROM") and r.forked_from.seq == 3 and r.status == "interrupted")' \
    < "$D/out"
  run 2 ar fork "$S" "$done" --at 7
  usage_error
  run 1 ar fork "$S" ZZZZZZZZ
  one_error_line ENOTFOUND
}

respond_answers_a_waiting_run_once() {
  fixture
  local waiting
  waiting=$(lua - "$S" <<'LUA'
local s = require("open_store")(arg[1])
local r = s:begin { agent = "asker", goal = "needs approval" }
r:step { kind = "llm", content = "may I?" }
r:intend { key = "mail-1", name = "send_mail", args = { to = "ops" } }
r:wait { question = "approve the mail?" }
print(r.id)
LUA
)
  run 0 ar ls "$S" --status waiting
  has out "${waiting:0:8}"; has out "waiting"
  run 0 ar show "$S" "$waiting"
  field status waiting
  field request '{"question":"approve the mail?"}'
  field response "none yet"
  grep -qE '^INTENT +NAME +STATUS' "$D/out"
  grep -qE '^mail-1 +send_mail +pending' "$D/out"
  run 0 ar --json show "$S" "$waiting"
  grep '"intent":"mail-1"' "$D/out" | grep -q '"status":"pending"'
  run 1 ar respond "$S" "$waiting" '{not json'
  one_error_line EJSON
  run 0 ar respond "$S" "${waiting:0:16}" '{"approved":true}'
  field run "$waiting"
  field response '{"approved":true}'
  run 0 ar show "$S" "$waiting"
  field response '{"approved":true}'
  run 1 ar respond "$S" "$waiting" '"again"'
  one_error_line ESTATE
  run 1 ar respond "$S" "$done" 'true'
  one_error_line ESTATE
  run 2 ar respond "$S" "$waiting"
  usage_error
}

view_writes_a_page_holding_the_runs() {
  fixture
  run 0 ar view "$S" -o "$D/page.html"
  has out "$D/page.html: 5 runs"
  [ ! -e "$D/page.html.part" ]
  local id
  for id in "$old" "$done" "$failed" "$exhausted" "$running"; do
    grep -q "$id" "$D/page.html" || { echo "the page lacks $id" >&2; return 1; }
  done
  grep -qi '<!doctype html>' "$D/page.html"
  run 0 ar --json view "$S" --agent beta --title "beta runs" -o "$D/beta.html"
  has out '"runs":2'
  grep -q "$failed" "$D/beta.html"
  ! grep -q "$done" "$D/beta.html"
  run 2 ar view "$S"
  usage_error
  has err "view needs --output"
}

# ---- terminals -----------------------------------------------------------------

colour_only_on_a_terminal_and_never_with_NO_COLOR() {
  command -v script >/dev/null || exit 77
  fixture
  local cmd="${AR_CLI_WRAP:-} '$AR_CLI' ls '$S'"
  env -u NO_COLOR script -qec "$cmd" /dev/null > "$D/tty"
  grep -q $'\e\\[31mfailed' "$D/tty"
  grep -q $'\e\\[32mcompleted' "$D/tty"
  NO_COLOR=1 script -qec "$cmd" /dev/null > "$D/tty"
  ! grep -q $'\e\\[' "$D/tty"
  grep -q "failed" "$D/tty"
  run 0 ar ls "$S"
  lacks out $'\e['
}

# ---- tail ----------------------------------------------------------------------

tail_follows_a_concurrent_writer_until_the_run_finishes() {
  cat > "$D/writer.lua" <<'LUA'
local dir, loc = arg[1], arg[2]
local s = require("open_store")(loc)
local r = s:begin { agent = "writer", goal = "live" }
r:step { kind = "llm", name = "model-w", content = "step number 1" }
io.stdout:write(r.id, "\n")
io.stdout:flush()
-- the rest once the reader has shown the first step
while not io.open(dir .. "/go") do os.execute("sleep 0.05") end
for i = 2, 6 do
  os.execute("sleep 0.05")
  r:step { kind = i % 2 == 0 and "tool" or "llm", name = "model-w", content = "step number " .. i,
           usage = { input_tokens = i, output_tokens = 1 }, cost = 0.001 }
end
r:complete("finished")
LUA
  : > "$D/ids"
  lua "$D/writer.lua" "$D" "$S" > "$D/ids" &
  local writer=$!
  wait_for "$D/ids" "0"
  local id; id=$(head -1 "$D/ids")
  ar tail "$S" "${id:0:16}" > "$D/tail" 2> "$D/tail.err" &
  local tailer=$!
  wait_for "$D/tail" "step number 1"
  touch "$D/go"
  local rc=0
  wait "$tailer" || rc=$?
  wait "$writer"
  [ "$rc" = 0 ] || { echo "tail exited $rc" >&2; cat "$D/tail.err" >&2; return 1; }
  [ ! -s "$D/tail.err" ]
  local i
  for i in 1 2 3 4 5 6; do
    grep -q "#$i .*step number $i\$" "$D/tail" || { echo "no step $i:" >&2; cat "$D/tail" >&2; return 1; }
  done
  # in order, each once, then the end
  [ "$(grep -c 'step number' "$D/tail")" = 6 ]
  grep -o 'step number [0-9]' "$D/tail" | sort -c -k3n
  tail -1 "$D/tail" | grep -q "^run $id completed: 6 steps"
  # --json: each step, then the finished record
  run 0 ar --json tail "$S" "$id"
  [ "$(wc -l < "$D/out")" = 7 ]
  tail -1 "$D/out" | grep -q '"status":"completed"'
}

tail_agent_follows_new_events_until_interrupted() {
  fixture
  set -m
  ( exec ${wrap[@]+"${wrap[@]}"} "$AR_CLI" tail "$S" --agent alpha > "$D/tail" 2> "$D/tail.err" ) &
  local tailer=$!
  wait_for "$D/tail" "search(quarterly)"
  lua - "$S" <<'LUA'
local s = require("open_store")(arg[1])
s:event { agent = "alpha", type = "output", content = "a brand new event" }
s:event { agent = "beta", type = "output", content = "not alpha's" }
LUA
  wait_for "$D/tail" "a brand new event"
  kill -INT -- -"$tailer"
  local rc=0
  wait "$tailer" || rc=$?
  [ "$rc" = 130 ]
  [ ! -s "$D/tail.err" ]
  grep -q "prompt_sent" "$D/tail"
  ! grep -q "not alpha's" "$D/tail"
}

if [ "${1:-}" = --list ]; then
  declare -F | awk '{print $3}' | grep -vE '^(ar|lua|fixture|run|out|err|has|lacks|field|one_error_line|usage_error|sql|sqlite_only|wait_for|other_store)$'
else
  "$1"
fi
