#!/usr/bin/env bash
# test_docs.sh -- the C API reference (docs/c.md) and the public header name
# the same functions: each declared function has an entry (a `###` heading
# naming it), and the page names no ar_ function the header does not declare.
# Each function is one test; `--list` names them. AR_ROOT comes from run.sh.
set -euo pipefail

tmp=$(mktemp -d /tmp/agentrun-docs-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The functions a header declares: its text without comments (so that a
# function only mentioned in a contract does not count), each lower-case
# ar_ name followed by "(" — a declaration or a call in a macro body, never a
# function-pointer typedef, whose name is followed by ")".
_declared() {
  cpp -fpreprocessed -P -w "$1" 2>/dev/null |
    grep -oE '\bar_[a-z0-9_]+[[:space:]]*\(' | sed 's/[[:space:](]//g' | sort -u
}

# Every lower-case ar_ identifier of a header outside its comments:
# functions, types, struct tags.
_identifiers() {
  cpp -fpreprocessed -P -w "$1" 2>/dev/null | grep -oE '\bar_[a-z0-9_]+' | sort -u
}

# The functions that have an entry in a reference page: the ar_ names of its
# `###` headings.
_documented() {
  grep -E '^### ' "$1" | grep -oE '\bar_[a-z0-9_]+' | sort -u
}

# Checks a header against a reference page; prints each disagreement.
_check() {
  local header=$1 doc=$2 bad=0 name
  for name in $(comm -23 <(_declared "$header") <(_documented "$doc")); do
    echo "declared in the header, no entry in $(basename "$doc"): $name"; bad=1
  done
  for name in $(comm -13 <(_declared "$header") <(_documented "$doc")); do
    echo "an entry in $(basename "$doc"), not declared in the header: $name"; bad=1
  done
  # names in the text: a function the header dropped, or a misspelt one
  for name in $(comm -13 <(_identifiers "$header") <(grep -oE '\bar_[a-z0-9_]+' "$doc" | sort -u)); do
    echo "named in $(basename "$doc"), not in the header: $name"; bad=1
  done
  return $bad
}

c_reference_documents_every_function_the_header_declares() {
  local n
  n=$(_declared "$AR_ROOT/core/include/agentrun.h" | wc -l)
  [ "$n" -gt 40 ] || { echo "only $n functions found in the header" >&2; return 1; }
  _check "$AR_ROOT/core/include/agentrun.h" "$AR_ROOT/docs/c.md"
}

# The check itself: a function added to the header without an entry fails it.
c_reference_check_fails_for_a_function_missing_from_the_page() {
  sed 's|^AR_API void ar_free(void \*ptr);|&\nint ar_store_frobnicate(ar_store *store);|' \
    "$AR_ROOT/core/include/agentrun.h" > "$tmp/agentrun.h"
  grep -q ar_store_frobnicate "$tmp/agentrun.h"
  if out=$(_check "$tmp/agentrun.h" "$AR_ROOT/docs/c.md"); then
    echo "the check passed a header with an undocumented function" >&2; return 1
  fi
  grep -q 'no entry in c.md: ar_store_frobnicate' <<<"$out"
}

# ... and a page naming a function the header no longer declares fails it,
# in a heading or in the text.
c_reference_check_fails_for_a_function_the_header_does_not_declare() {
  { cat "$AR_ROOT/docs/c.md"; printf '\n### `ar_store_vanished`\n'; } > "$tmp/heading.md"
  if out=$(_check "$AR_ROOT/core/include/agentrun.h" "$tmp/heading.md"); then
    echo "the check passed an entry for an undeclared function" >&2; return 1
  fi
  grep -q 'not declared in the header: ar_store_vanished' <<<"$out"
  { cat "$AR_ROOT/docs/c.md"; printf '\nSee also `ar_run_rewind`.\n'; } > "$tmp/text.md"
  if out=$(_check "$AR_ROOT/core/include/agentrun.h" "$tmp/text.md"); then
    echo "the check passed a mention of an undeclared function" >&2; return 1
  fi
  grep -q 'not in the header: ar_run_rewind' <<<"$out"
}

if [ "${1:-}" = --list ]; then
  declare -F | awk '{print $3}' | grep -v '^_'
else
  "$1"
fi
