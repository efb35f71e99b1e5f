#!/usr/bin/env bash
# test_rock.sh -- the rockspec as a Lua user meets it: `luarocks make` from a
# checkout and `luarocks install` of the rockspec, each into a temporary tree,
# then an agent loop run by lua5.4 against the installed copy alone. Each
# function is one test; `--list` names them. AR_ROOT and AR_BUILD come from
# run.sh.
set -euo pipefail

tmp=$(mktemp -d /tmp/agentrun-rock-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# luarocks runs make itself: nothing of the make running these tests (its
# jobserver, its BUILD=...) may reach that build.
unset MAKEFLAGS MFLAGS MAKEOVERRIDES MAKELEVEL

version=$(sed -nE 's/^.[[:space:]]*define[[:space:]]+AR_VERSION[[:space:]]+"([^"]+)".*/\1/p' \
          "$AR_ROOT/core/include/agentrun.h")
rockspec=agentrun-$version-1.rockspec

# The project's files as a release holds them: the tracked and new (not
# ignored) files of the checkout, never its build trees or stores.
_snapshot() { # DEST
  mkdir -p "$1"
  if git -C "$AR_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$AR_ROOT" && git ls-files -z --cached --others --exclude-standard |
       while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
       tar --null -T - -cf -) | tar -C "$1" -xf -
  else
    tar -C "$AR_ROOT" --exclude=./build --exclude='./build-*' --exclude='*.db' -cf - . | tar -C "$1" -xf -
  fi
}

# Runs a two-step agent loop on a fresh store with lua5.4 seeing only TREE's
# modules (the tree's own entries of `luarocks path`, nothing else), then
# reads the record back from a second connection.
_loop_runs_against_installed_copy() { # TREE
  local tree=$1 lpath cpath
  lpath=$(luarocks --lua-version 5.4 --tree "$tree" path --lr-path | tr ';' '\n' | grep "^$tree/" | paste -sd';')
  cpath=$(luarocks --lua-version 5.4 --tree "$tree" path --lr-cpath | tr ';' '\n' | grep "^$tree/" | paste -sd';')
  [ -n "$lpath" ] && [ -n "$cpath" ]
  cat > "$tmp/loop.lua" <<'LUA'
local tree, db, version = arg[1], arg[2], arg[3]
local agentrun = require "agentrun"
for _, m in ipairs { { "agentrun", package.path }, { "agentrun.loop", package.path },
                     { "agentrun.core", package.cpath } } do
  local file = assert(package.searchpath(m[1], m[2]))
  assert(file:sub(1, #tree + 1) == tree .. "/", m[1] .. " loaded from " .. file)
end
assert(agentrun.version == version, ("version %s, header says %s"):format(agentrun.version, version))
local store = assert(agentrun.open(db))
local calls = 0
local rec = agentrun.loop(store, { agent = "rock-test", goal = "two steps", budget = { max_steps = 5 } },
  function(ctx)
    calls = calls + 1
    ctx:record { kind = "llm", name = "model-x", content = { turn = calls },
                 usage = { input_tokens = 10, output_tokens = calls }, cost = 0.001 }
    if calls == 2 then return "done" end
  end)
assert(rec.status == "completed" and rec.output == "done", tostring(rec.status))
assert(rec.iterations == 2 and #rec.steps == 2, "iterations " .. tostring(rec.iterations))
store:close()
local again = assert(agentrun.open(db))
local got = assert(again:get(rec.id, { steps = true }))
assert(got.status == "completed" and got.output == "done" and #got.steps == 2)
assert(got.steps[1].content.turn == 1 and got.steps[2].content.turn == 2)
assert(got.usage.input_tokens == 20 and got.usage.output_tokens == 3)
again:close()
print("recorded " .. rec.id)
LUA
  (cd "$tmp" && env -u LUA_INIT -u LUA_INIT_5_4 LUA_PATH="$lpath" LUA_CPATH="$cpath" \
     lua5.4 "$tmp/loop.lua" "$tree" "$tmp/$(basename "$tree").db" "$version")
}

# The tree holds agentrun.core and every Lua file of lua/, deployed where
# `require` finds them.
_tree_has_the_whole_module() { # TREE
  local tree=$1 f
  [ -f "$tree/lib/lua/5.4/agentrun/core.so" ]
  for f in "$AR_ROOT"/lua/*.lua "$AR_ROOT"/lua/agentrun/*.lua; do
    f=${f#"$AR_ROOT"/lua/}
    [ -f "$tree/share/lua/5.4/$f" ] || { echo "not installed: $f" >&2; return 1; }
  done
}

# From a checkout, as a user without root and without the test-only packages
# (a stand-in pkg-config knows no cmocka, a stand-in id says uid 1000): the
# module build must need neither.
luarocks_make_from_a_checkout_installs_a_working_module() {
  _snapshot "$tmp/src"
  mkdir -p "$tmp/bin"
  local real_pc; real_pc=$(command -v pkg-config)
  cat > "$tmp/bin/pkg-config" <<PC
#!/bin/sh
for a in "\$@"; do [ "\$a" = cmocka ] && exit 1; done
exec "$real_pc" "\$@"
PC
  cat > "$tmp/bin/id" <<'ID'
#!/bin/sh
[ "$1" = -u ] && { echo 1000; exit 0; }
exec /usr/bin/id "$@"
ID
  chmod +x "$tmp/bin/pkg-config" "$tmp/bin/id"
  (cd "$tmp/src" && PATH="$tmp/bin:$PATH" luarocks --lua-version 5.4 --tree "$tmp/tree" make "$rockspec")
  _tree_has_the_whole_module "$tmp/tree"
  _loop_runs_against_installed_copy "$tmp/tree"
}

# `luarocks install` of the rockspec fetches its source: here a release
# tarball of the checkout, named by a copy of the rockspec whose source.url
# points at it (the committed one names the project's repository and tag).
luarocks_install_of_the_rockspec_installs_a_working_module() {
  _snapshot "$tmp/rel/agentrun-$version"
  tar -C "$tmp/rel" -czf "$tmp/agentrun-$version.tar.gz" "agentrun-$version"
  mkdir -p "$tmp/spec"
  sed -E -e "s|^([[:space:]]*)url = .*|\\1url = \"file://$tmp/agentrun-$version.tar.gz\",\\n\\1dir = \"agentrun-$version\",|" \
      -e '/^[[:space:]]*tag = /d' "$AR_ROOT/$rockspec" > "$tmp/spec/$rockspec"
  grep -q "file://$tmp/" "$tmp/spec/$rockspec"
  (cd "$tmp" && luarocks --lua-version 5.4 --tree "$tmp/tree" install "$tmp/spec/$rockspec")
  _tree_has_the_whole_module "$tmp/tree"
  _loop_runs_against_installed_copy "$tmp/tree"
}

if [ "${1:-}" = --list ]; then
  declare -F | awk '{print $3}' | grep -v '^_'
else
  "$1"
fi
