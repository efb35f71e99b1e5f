#!/usr/bin/env bash
# test_abi.sh -- the shared library's interface: it exports the functions the
# public header declares, and nothing else. Each function is one test;
# `--list` names them. AR_ROOT and AR_BUILD come from run.sh.
set -euo pipefail

tmp=$(mktemp -d /tmp/agentrun-abi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The functions the header declares, one a line, sorted: the preprocessed
# header (comments gone, AR_API empty) with every brace body removed, split
# into declarations; those that are not typedefs and have a parameter list
# name a function.
_header_functions() {
  cc -E -P -DAR_API= -x c "$AR_ROOT/core/include/agentrun.h" |
    perl -0777 -ne '
      1 while s/\{[^{}]*\}//g;
      for my $d (split /;/) {
        $d =~ s/\s+/ /g; $d =~ s/^ //;
        next if $d =~ /^(typedef|enum|struct|extern)\b/;
        print "$1\n" if $d =~ /\b([A-Za-z_]\w*)\s*\(/;
      }' | sort -u
}

# The symbols a shared library defines in its dynamic table, sorted.
_exported() { # LIB
  nm -D --defined-only "$1" | awk '{print $NF}' | sort -u
}

# `make install` (into a DESTDIR) installs a libagentrun.so whose dynamic
# symbol table holds exactly the functions of the installed header: no
# internal function (ar_db_*, the SQLite layer, helpers) is exported, and
# no public one is missing.
installed_library_exports_exactly_the_header_functions() {
  (cd "$AR_ROOT" && make -s BUILD="$AR_BUILD" install PREFIX=/usr/local DESTDIR="$tmp/root" >/dev/null)
  local lib; lib=$(readlink -f "$tmp/root/usr/local/lib/libagentrun.so")
  [ -f "$lib" ]
  _header_functions > "$tmp/header"
  _exported "$lib" > "$tmp/exported"
  [ "$(wc -l < "$tmp/header")" -gt 40 ] || { echo "the header parse found too few functions" >&2; return 1; }
  if ! diff -u "$tmp/header" "$tmp/exported" >&2; then
    echo "(- declared in the header only, + exported by the library only)" >&2; return 1
  fi
}

# Every function of the header carries AR_API: without it the function
# would be hidden from the shared library under -fvisibility=hidden.
every_header_function_is_marked_ar_api() {
  local marked
  marked=$(cc -E -P -DAR_API=AR_API_MARK -x c "$AR_ROOT/core/include/agentrun.h" |
           perl -0777 -ne '1 while s/\{[^{}]*\}//g;
             for my $d (split /;/) { $d =~ s/\s+/ /g; print "$1\n" if $d =~ /^ ?AR_API_MARK\b.*?\b([A-Za-z_]\w*)\s*\(/ }' |
           sort -u)
  diff -u <(_header_functions) <(printf '%s\n' "$marked") >&2
}

if [ "${1:-}" = --list ]; then
  declare -F | awk '{print $3}' | grep -v '^_'
else
  "$1"
fi
