#!/usr/bin/env bash
# test_types.sh -- the LuaLS definitions install with the Lua module and go
# with it. Each function is one test; `--list` names them. AR_ROOT and
# AR_BUILD come from run.sh.
set -euo pipefail

tmp=$(mktemp -d /tmp/agentrun-types-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# `make install` puts types/agentrun.lua in the module's folder, where
# docs/lua.md tells editors to look; `make uninstall` removes it.
install_puts_the_luals_definitions_beside_the_module() {
  (cd "$AR_ROOT" && make -s BUILD="$AR_BUILD" install PREFIX=/opt/agentrun-test DESTDIR="$tmp/root" >/dev/null)
  local types="$tmp/root/opt/agentrun-test/share/lua/5.4/agentrun/types/agentrun.lua"
  cmp "$AR_ROOT/types/agentrun.lua" "$types"
  grep -q "agentrun/types" "$AR_ROOT/docs/lua.md"
  (cd "$AR_ROOT" && make -s BUILD="$AR_BUILD" uninstall PREFIX=/opt/agentrun-test DESTDIR="$tmp/root" >/dev/null)
  if [ -e "$types" ]; then echo "uninstall left $types" >&2; return 1; fi
}

# The rockspec installs through `make install-lua` with the rock tree's
# folders: the definitions land in the tree's Lua folder as well.
the_rockspec_install_target_puts_the_definitions_in_the_rock_tree() {
  (cd "$AR_ROOT" && make -s BUILD="$AR_BUILD" install-lua LUA_CMOD="$tmp/tree/lib/lua/5.4" \
     LUA_LMOD="$tmp/tree/share/lua/5.4" >/dev/null)
  cmp "$AR_ROOT/types/agentrun.lua" "$tmp/tree/share/lua/5.4/agentrun/types/agentrun.lua"
}

if [ "${1:-}" = --list ]; then
  declare -F | awk '{print $3}'
else
  "$1"
fi
