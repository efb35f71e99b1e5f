#!/usr/bin/env bash
# test_make.sh -- the Makefile as a user meets it: parallel builds on a fresh
# machine and installs under another prefix. Each function is one test;
# `--list` names them. AR_ROOT and AR_BUILD come from run.sh.
set -euo pipefail

tmp=$(mktemp -d /tmp/agentrun-make-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# A stand-in pkg-config answers `deps`' checks slowly and marks when the last
# one is done; a stand-in compiler refuses to run before that mark, so any
# compile that `make -j` starts ahead of `deps` fails the build. Both only
# touch their outputs: the test needs the order, not the objects.
make_j_compiles_nothing_before_deps_has_run() {
  mkdir -p "$tmp/bin"
  local real_pc; real_pc=$(command -v pkg-config)
  cat > "$tmp/bin/pkg-config" <<PC
#!/bin/sh
if [ "\$1" = --exists ]; then
  sleep 0.3
  [ "\$2" = cmocka ] && touch "$tmp/deps-done"
fi
exec "$real_pc" "\$@"
PC
  cat > "$tmp/cc" <<CC
#!/bin/sh
[ -f "$tmp/deps-done" ] || { echo "compiler started before deps finished: \$*" >&2; exit 1; }
out=""
while [ \$# -gt 0 ]; do [ "\$1" = -o ] && out="\$2"; shift; done
[ -n "\$out" ] && : > "\$out"
exit 0
CC
  chmod +x "$tmp/bin/pkg-config" "$tmp/cc"
  (cd "$AR_ROOT" && PATH="$tmp/bin:$PATH" make -s -j2 BUILD="$tmp/build" CC="$tmp/cc" all >/dev/null)
  [ -f "$tmp/build/libagentrun.a" ]
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

if [ "${1:-}" = --list ]; then
  declare -F | awk '{print $3}'
else
  "$1"
fi
