#!/usr/bin/env bash
# test_make.sh -- the Makefile as a user meets it: parallel builds on a fresh
# machine and installs under another prefix. Each function is one test;
# `--list` names them. AR_ROOT and AR_BUILD come from run.sh.
set -euo pipefail

tmp=$(mktemp -d /tmp/agentrun-make-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# A stand-in pkg-config answers `deps`' checks slowly and marks each module
# it has found; a stand-in compiler refuses to compile a file before the
# modules its directory's headers come from are marked, so any compile that
# `make -j` starts ahead of its packages' check fails the build. Both only
# touch their outputs: the test needs the order, not the objects.
make_j_compiles_each_directory_only_after_its_packages_are_checked() {
  mkdir -p "$tmp/bin"
  local real_pc; real_pc=$(command -v pkg-config)
  cat > "$tmp/bin/pkg-config" <<PC
#!/bin/sh
if [ "\$1" = --exists ]; then
  sleep 0.3
  "$real_pc" "\$@" || exit 1
  touch "$tmp/found-\$2"
  exit 0
fi
exec "$real_pc" "\$@"
PC
  cat > "$tmp/cc" <<CC
#!/bin/sh
out="" src=""
for a in "\$@"; do
  case "\$a" in *.c) src="\$a";; esac
done
case "\$src" in
  core/*) needs="sqlite3 libcjson";;
  bindings/*|examples/embed_host.c) needs="sqlite3 libcjson lua5.4";;
  tests/*) needs="sqlite3 libcjson lua5.4 cmocka libpq";;
  examples/*) needs="sqlite3 libcjson";;
  *) needs="";;
esac
for m in \$needs; do
  [ -f "$tmp/found-\$m" ] || { echo "compiled \$src before pkg-config found \$m" >&2; exit 1; }
done
while [ \$# -gt 0 ]; do [ "\$1" = -o ] && out="\$2"; shift; done
[ -n "\$out" ] && : > "\$out"
exit 0
CC
  chmod +x "$tmp/bin/pkg-config" "$tmp/cc"
  (cd "$AR_ROOT" && PATH="$tmp/bin:$PATH" make -s -j2 BUILD="$tmp/build" CC="$tmp/cc" \
     all "$tmp/build/tests/c_tests" >/dev/null)
  [ -f "$tmp/build/libagentrun.a" ] && [ -f "$tmp/build/tests/c_tests" ]
}

# `make install PREFIX=...` after a build with the default prefix installs a
# pkg-config file naming the new prefix, and a program built from it runs.
install_under_another_prefix_gives_a_working_pc_file() {
  (cd "$AR_ROOT" && make -s BUILD="$AR_BUILD" install PREFIX=/opt/agentrun-test DESTDIR="$tmp/root" >/dev/null)
  local pc="$tmp/root/opt/agentrun-test/lib/pkgconfig/agentrun.pc"
  grep -qx 'prefix=/opt/agentrun-test' "$pc"
  grep -qx 'libdir=/opt/agentrun-test/lib' "$pc"
  if grep -q /usr/local "$pc"; then echo "the .pc still names /usr/local" >&2; return 1; fi
  local flags
  flags=$(PKG_CONFIG_PATH="$tmp/root/opt/agentrun-test/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$tmp/root" \
          pkg-config --cflags --libs agentrun)
  cc -o "$tmp/record_run" "$AR_ROOT/examples/record_run.c" $flags
  LD_LIBRARY_PATH="$tmp/root/opt/agentrun-test/lib" "$tmp/record_run" "$tmp/store.db" >/dev/null
  [ -s "$tmp/store.db" ]
}

# Installed (no DESTDIR) under a prefix the dynamic linker does not search,
# a program linked with an rpath of the .pc's libdir (README, install notes)
# runs with no LD_LIBRARY_PATH and loads the library installed there.
rpath_of_the_pc_libdir_finds_the_library_under_another_prefix() {
  (cd "$AR_ROOT" && make -s BUILD="$AR_BUILD" install PREFIX="$tmp/prefix" >/dev/null)
  export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
  local libdir; libdir=$(pkg-config --variable=libdir agentrun)
  [ "$libdir" = "$tmp/prefix/lib" ]
  cc -o "$tmp/record_run" "$AR_ROOT/examples/record_run.c" $(pkg-config --cflags --libs agentrun) \
     -Wl,-rpath,"$libdir"
  # (the output is taken whole first: grep -q leaving early would kill ldd
  # with SIGPIPE, which pipefail reports as a failure)
  local deps; deps=$(env -u LD_LIBRARY_PATH ldd "$tmp/record_run")
  grep -q "libagentrun.so.0 => $libdir/libagentrun.so.0 " <<<"$deps"
  env -u LD_LIBRARY_PATH "$tmp/record_run" "$tmp/store.db" >/dev/null
  [ -s "$tmp/store.db" ]
}

# `pkg-config --static` names what libagentrun.a needs (Requires.private,
# Libs.private): linked with it against an install that holds only the
# archive (as a static-only package does; with the .so beside it the linker
# would take the .so), a program carries the library inside and runs with no
# library path.
static_pkg_config_links_the_archive_into_a_program_that_runs() {
  (cd "$AR_ROOT" && make -s BUILD="$AR_BUILD" install PREFIX=/opt/agentrun-static DESTDIR="$tmp/root" >/dev/null)
  local lib="$tmp/root/opt/agentrun-static/lib" flags
  rm -f "$lib"/libagentrun.so*
  [ -f "$lib/libagentrun.a" ]
  flags=$(PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$tmp/root" \
          pkg-config --static --cflags --libs agentrun)
  cc -o "$tmp/record_run" "$AR_ROOT/examples/record_run.c" $flags
  local dynamic; dynamic=$(readelf -d "$tmp/record_run")
  if grep -q 'NEEDED.*libagentrun' <<<"$dynamic"; then
    echo "linked against libagentrun.so, not the archive" >&2; return 1
  fi
  env -u LD_LIBRARY_PATH "$tmp/record_run" "$tmp/store.db" >/dev/null
  [ -s "$tmp/store.db" ]
}

# The installed command finds the module installed beside it: run from
# another directory with no LUA_PATH or LUA_CPATH, with its man page
# installed. Under DESTDIR, the script names the final prefix, not DESTDIR.
installed_agentrun_command_runs_from_another_prefix() {
  (cd "$AR_ROOT" && make -s BUILD="$AR_BUILD" install PREFIX="$tmp/prefix" >/dev/null)
  local bin="$tmp/prefix/bin/agentrun"
  [ -x "$bin" ]
  [ -f "$tmp/prefix/share/man/man1/agentrun.1" ]
  grep -qF "package.path = \"$tmp/prefix/share/lua/5.4/?.lua;" "$bin"
  grep -qF "package.cpath = \"$tmp/prefix/lib/lua/5.4/?.so;" "$bin"
  # a store written through the installed module
  env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 \
    LUA_PATH="$tmp/prefix/share/lua/5.4/?.lua" LUA_CPATH="$tmp/prefix/lib/lua/5.4/?.so" \
    lua5.4 - "$tmp/store.db" <<'LUA'
local s = assert(require("agentrun").open(arg[1]))
local r = s:begin { agent = "installed", goal = "g" }
r:step { kind = "llm", content = "hello" }
r:complete("done")
LUA
  local out
  out=$(cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "$bin" ls "$tmp/store.db")
  grep -q "installed  *completed" <<<"$out"
  out=$(cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "$bin" --version)
  [ "$out" = "agentrun $(sed -nE 's/^#define AR_VERSION "([^"]+)".*/\1/p' "$AR_ROOT/core/include/agentrun.h")" ]
  (cd "$AR_ROOT" && make -s BUILD="$AR_BUILD" install PREFIX=/opt/agentrun-cli DESTDIR="$tmp/root" >/dev/null)
  grep -qF 'package.path = "/opt/agentrun-cli/share/lua/5.4/?.lua;' "$tmp/root/opt/agentrun-cli/bin/agentrun"
  if grep -q "$tmp/root" "$tmp/root/opt/agentrun-cli/bin/agentrun"; then
    echo "the installed script names DESTDIR" >&2; return 1
  fi
  [ -f "$tmp/root/opt/agentrun-cli/share/man/man1/agentrun.1" ]
}

# The compile command make runs for the object of SRC (`make -n`), with SRC
# replaced by PROBE and the object written to the temp dir.
_compile_cmd() { # SRC PROBE
  local src=$1 probe=$2 obj line
  obj="$tmp/b/obj/${src%.c}.o"
  line=$(cd "$AR_ROOT" && make -n -B BUILD="$tmp/b" "$obj" | grep -F -- " -c $src -o $obj")
  [ -n "$line" ] || { echo "make -n shows no compile of $src" >&2; return 1; }
  printf '%s\n' "${line/" -c $src -o $obj"/" -c $probe -o $tmp/probe.o"}"
}

# The core sees neither Lua's, cmocka's, the bindings' nor the tests'
# headers. A probe including each header compiles with the flags of the
# directory that owns it (so the probe itself is sound) and fails with the
# flags of every core directory. cmocka.h sits in the compiler's default
# path, so for it the core's command must name no cmocka (nor Lua) flag.
core_cannot_include_lua_cmocka_bindings_or_test_headers() {
  printf '#include <lua.h>\nint probe(void);\nint probe(void) { return LUA_VERSION_NUM; }\n' > "$tmp/lua_probe.c"
  printf '#include "arl.h"\nint probe(void);\nint probe(void) { return 0; }\n' > "$tmp/bind_probe.c"
  printf '#include "suite.h"\nint probe(void);\nint probe(void) { return 0; }\n' > "$tmp/test_probe.c"
  local cmd p src tok
  for p in "bindings/module.c lua_probe" "bindings/module.c bind_probe" "tests/c/main.c test_probe"; do
    set -- $p
    cmd=$(_compile_cmd "$1" "$tmp/$2.c")
    (cd "$AR_ROOT" && eval "$cmd") || { echo "$2.c does not compile with the flags of $1" >&2; return 1; }
  done
  for src in core/store.c core/sqlite/db.c; do
    for p in lua_probe bind_probe test_probe; do
      cmd=$(_compile_cmd "$src" "$tmp/$p.c")
      if (cd "$AR_ROOT" && eval "$cmd") 2>/dev/null; then
        echo "$p.c compiles with the flags of $src: $cmd" >&2; return 1
      fi
    done
    cmd=$(_compile_cmd "$src" "$tmp/none.c")
    for tok in $(pkg-config --cflags lua5.4 cmocka) -Ibindings -Itests/c -Itests; do
      case " $cmd " in *" $tok "*) echo "the compile of $src has $tok" >&2; return 1;; esac
    done
  done
}

# The bindings see the public header, core/private (the core's JSON and
# UTF-8 rules, made for them) and their own headers, and none of the core's
# other internal headers: a probe including agentrun_json.h compiles with the
# flags of a bindings file, one including internal.h, json.h or backend.h
# does not, and the compile names no -Icore.
bindings_see_only_the_core_interface_made_for_them() {
  local cmd h
  printf '#include "agentrun_json.h"\nint probe(void);\nint probe(void) { return AR_JSON_MAX_DEPTH; }\n' \
      > "$tmp/json_probe.c"
  cmd=$(_compile_cmd bindings/json.c "$tmp/json_probe.c")
  (cd "$AR_ROOT" && eval "$cmd") || { echo "agentrun_json.h is not visible to the bindings" >&2; return 1; }
  for h in internal.h json.h backend.h; do
    printf '#include "%s"\nint probe(void);\nint probe(void) { return 0; }\n' "$h" > "$tmp/core_probe.c"
    cmd=$(_compile_cmd bindings/json.c "$tmp/core_probe.c")
    if (cd "$AR_ROOT" && eval "$cmd") 2>/dev/null; then
      echo "core/$h compiles with the flags of the bindings: $cmd" >&2; return 1
    fi
  done
  case " $cmd " in *" -Icore "*) echo "the bindings' compile has -Icore: $cmd" >&2; return 1;; esac
}

_header_version() { # [ROOT]
  sed -nE 's/^.[[:space:]]*define[[:space:]]+AR_VERSION[[:space:]]+"([^"]+)".*/\1/p' \
      "${1:-$AR_ROOT}/core/include/agentrun.h"
}

# AR_VERSION in the public header is the one definition of the version: in
# a copy of the tree whose header says 9.8.7, the Makefile names the shared
# library and the .pc file's Version after it.
library_and_pc_versions_follow_the_header() {
  mkdir -p "$tmp/src"
  cp "$AR_ROOT/Makefile" "$tmp/src/"
  cp -r "$AR_ROOT/core" "$tmp/src/"
  sed -i -E 's/^(.[[:space:]]*define[[:space:]]+AR_VERSION[[:space:]]+)"[^"]*"/\1"9.8.7"/' \
      "$tmp/src/core/include/agentrun.h"
  [ "$(_header_version "$tmp/src")" = 9.8.7 ]
  (cd "$tmp/src" && make -s BUILD="$tmp/b" "$tmp/b/agentrun.pc")
  grep -qx 'Version: 9.8.7' "$tmp/b/agentrun.pc"
  local plan; plan=$(cd "$tmp/src" && make -n BUILD="$tmp/b" lib)
  grep -q -- "-o $tmp/b/libagentrun.so.9.8.7 " <<<"$plan"
}

# The rockspec repeats the header's version (its file name, version and
# source tag), and the built Lua module reports it as agentrun.version.
rockspec_and_lua_module_carry_the_header_version() {
  local v specs got
  v=$(_header_version)
  [ -n "$v" ]
  specs=$(cd "$AR_ROOT" && ls ./*.rockspec)
  [ "$specs" = "./agentrun-$v-1.rockspec" ] || { echo "rockspecs: $specs; header: $v" >&2; return 1; }
  echo 'local env = {}; assert(loadfile(arg[1], "t", env))()
        io.write(env.package, " ", env.version, " ", env.source.tag)' > "$tmp/spec.lua"
  got=$(lua5.4 "$tmp/spec.lua" "$AR_ROOT/$specs")
  [ "$got" = "agentrun $v-1 v$v" ] || { echo "rockspec says: $got; header: $v" >&2; return 1; }
  got=$(cd "$tmp" && LUA_PATH="$AR_ROOT/lua/?.lua" LUA_CPATH="$AR_BUILD/lua/?.so" \
        lua5.4 -e 'io.write(require("agentrun").version)')
  [ "$got" = "$v" ] || { echo "agentrun.version is $got; header: $v" >&2; return 1; }
}

if [ "${1:-}" = --list ]; then
  declare -F | awk '{print $3}' | grep -v '^_'
else
  "$1"
fi
