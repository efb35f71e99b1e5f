-- The version here repeats AR_VERSION of core/include/agentrun.h (the one
-- place it is defined); tests/sh/test_make.sh checks that they agree.
rockspec_format = "3.0"
package = "agentrun"
version = "0.1.0-1"

source = {
   url = "git+https://github.com/agentrun/agentrun",
   tag = "v0.1.0",
}

description = {
   summary = "Record AI-agent runs durably in SQLite",
   detailed = [[
agentrun records AI-agent runs durably in one SQLite file: each step (a model
call, a tool call) is appended the moment it happens with the run's token and
cost totals, and every run ends with one uniform record (completed, budget
exhausted or failed). This rock installs the Lua 5.4 module: the C core
(agentrun.core) and the Lua front end with agentrun.loop.
]],
   homepage = "https://github.com/agentrun/agentrun",
}

dependencies = {
   "lua >= 5.4, < 5.5",
}

external_dependencies = {
   SQLITE3 = { header = "sqlite3.h", library = "sqlite3" },
   CJSON = { header = "cjson/cJSON.h", library = "cjson" },
}

-- The Makefile holds the source list; it builds only what the module needs
-- and checks only the library's packages (never the test-only ones), and
-- APT_INSTALL=no makes it name a missing package instead of installing it.
build = {
   type = "make",
   build_target = "lua-module",
   build_variables = {
      CC = "$(CC)",
      OPT = "$(CFLAGS)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      APT_INSTALL = "no",
   },
   install_target = "install-lua",
   install_variables = {
      LUA_CMOD = "$(LIBDIR)",
      LUA_LMOD = "$(LUADIR)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      APT_INSTALL = "no",
   },
}
