# agentrun -- build, test, benchmark, demo and install.
#
#   make demo    install missing packages, build, run the example agent loop, show it with agentrun
#   make test    install missing packages, build, run every C, Lua, build-system, command and browser test
#   make check   the same suites under ASan+UBSan, warnings as errors
#   make test-browser   the page agentrun.view writes, in headless chromium
#   make docs-img       the README's screenshots of that page (docs/img/)
#   make bench   the benchmarks (files on disk, baselines measured alongside)
#   make install PREFIX=/usr/local DESTDIR=
#   make lua-module / install-lua   the Lua module alone (what the rockspec runs)

PREFIX     ?= /usr/local
DESTDIR    ?=
LIBDIR     ?= $(PREFIX)/lib
INCDIR     ?= $(PREFIX)/include
PCDIR      ?= $(LIBDIR)/pkgconfig
LUA_CMOD   ?= $(PREFIX)/lib/lua/5.4
LUA_LMOD   ?= $(PREFIX)/share/lua/5.4
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man

# The release version is defined once, as AR_VERSION in the public header;
# the library's file name, the .pc file and the Lua module all take it from
# there (the rockspec's name repeats it; tests/sh checks that they agree).
VERSION    := $(shell sed -nE 's/^.[[:space:]]*define[[:space:]]+AR_VERSION[[:space:]]+"([^"]+)".*/\1/p' core/include/agentrun.h)
ifeq ($(VERSION),)
$(error cannot read AR_VERSION from core/include/agentrun.h)
endif
SOMAJOR    := 0

CC         ?= cc
BUILD      ?= build
WARN       := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings
OPT        ?= -O2 -g
EXTRA_CFLAGS ?=
EXTRA_LDFLAGS ?=

# What each build needs, as kind:name:Debian-package words: a pkg-config
# module (pc:), a command (cmd:) or a file (file:). A library or Lua-module
# build needs only the first two lists; the test-only packages are checked
# by `deps` alone. luarocks names its Lua headers' directory in LUA_INCDIR.
LIB_NEEDS  := cmd:pkg-config:pkg-config pc:sqlite3:libsqlite3-dev pc:libcjson:libcjson-dev pc:libpq:libpq-dev
LUA_NEEDS   = $(if $(LUA_INCDIR),file:$(LUA_INCDIR)/lua.h:liblua5.4-dev,pc:lua5.4:liblua5.4-dev)
# The tests start a throwaway PostgreSQL server: Debian's `postgresql` package
# puts initdb under /usr/lib/postgresql/<major>/bin.
PG_INITDB   = $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) /usr/lib/postgresql/initdb)
TEST_NEEDS := pc:cmocka:libcmocka-dev cmd:lua5.4:lua5.4 cmd:sqlite3:sqlite3 cmd:busted:lua-busted cmd:luarocks:luarocks \
              file:$(PG_INITDB):postgresql pc:libpq:libpq-dev
# The browser tests (alone among the targets) need Debian's chromium, and
# node and npm for playwright-core, which tests/browser/package-lock.json pins.
BROWSER_NEEDS := cmd:node:nodejs cmd:npm:npm file:/usr/bin/chromium:chromium
# The benchmark measures peak memory with GNU time's -v.
BENCH_NEEDS := file:/usr/bin/time:time
# auto: as root, apt-get installs what is missing; no: only name it and stop.
APT_INSTALL ?= auto

PKG_CFLAGS  = $(shell pkg-config --cflags sqlite3 libcjson libpq 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs sqlite3 libcjson libpq 2>/dev/null)
LUA_CFLAGS  = $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell pkg-config --cflags lua5.4 2>/dev/null))
LUA_LIBS    = $(shell pkg-config --libs lua5.4 2>/dev/null)
CMOCKA_CFLAGS = $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)
# The C runner talks to the test server itself (it drops the schemas its
# tests made).
TEST_PQ_CFLAGS = $(shell pkg-config --cflags libpq 2>/dev/null)
TEST_PQ_LIBS = $(shell pkg-config --libs libpq 2>/dev/null)

# Each directory sees only the headers it may use: the core its own and
# SQLite's, libpq's (only core/postgres/ includes libpq-fe.h) and cJSON's,
# never Lua's, cmocka's, the bindings' or the tests'.
# The bindings see the public header, Lua's, their own, and of the core only
# core/private: its JSON limits and JSON/UTF-8 validators, which the bindings
# ask rather than keep rules of their own (not installed, not exported).
BASE_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) $(OPT) -fPIC
# The shared library exports only what the public header marks AR_API; hidden
# visibility changes nothing for the static archive, whose internals the
# bindings and the C tests link.
CORE_CFLAGS = $(BASE_CFLAGS) -fvisibility=hidden -Icore/include -Icore $(PKG_CFLAGS) $(EXTRA_CFLAGS)
BIND_CFLAGS = $(BASE_CFLAGS) -Icore/include -Icore/private -Ibindings $(LUA_CFLAGS) $(EXTRA_CFLAGS)
TEST_CFLAGS = $(BASE_CFLAGS) -Icore/include -Icore -Ibindings -Itests/c $(PKG_CFLAGS) $(LUA_CFLAGS) \
              $(CMOCKA_CFLAGS) $(TEST_PQ_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS_ALL = $(EXTRA_LDFLAGS)

CORE_SRC   := $(wildcard core/*.c core/sqlite/*.c core/postgres/*.c)
CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
BIND_SRC   := $(wildcard bindings/*.c)
BIND_OBJ   := $(BIND_SRC:%.c=$(BUILD)/obj/%.o)
CTEST_SRC  := $(wildcard tests/c/*.c)
CTEST_OBJ  := $(CTEST_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_SRC  := $(wildcard tests/bench/*.c)

STATIC_LIB := $(BUILD)/libagentrun.a
SHARED_LIB := $(BUILD)/libagentrun.so.$(VERSION)
SONAME     := libagentrun.so.$(SOMAJOR)
LUA_MOD    := $(BUILD)/lua/agentrun/core.so
CTEST_BIN  := $(BUILD)/tests/c_tests
EXAMPLES   := $(BUILD)/examples/record_run $(BUILD)/examples/embed_host
BENCH_BIN  := $(BUILD)/bench/bench
CLI_BIN    := $(BUILD)/bin/agentrun

# A test-only Lua module: the Lua specs arm the fault VFS through it; it is
# never part of the library or installed.
FAULTVFS_LUA := $(BUILD)/lua/faultvfs.so

LUA_ENV     = LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/tests/lua/?.lua;;' \
              LUA_CPATH='$(abspath $(BUILD))/lua/?.so;;'

.PHONY: all deps deps-lib deps-lua deps-browser deps-bench lib lua-module test-build test test-c test-lua test-sh test-otlp test-cli test-browser \
        docs-img check check-suites bench demo \
        install install-lua uninstall clean env

all: lib $(LUA_MOD) $(EXAMPLES) $(CLI_BIN)
	@echo "the agentrun command: $(CLI_BIN)"

lib: $(STATIC_LIB) $(SHARED_LIB) $(BUILD)/agentrun.pc

lua-module: $(LUA_MOD)

# $(call need,WORDS): checks each kind:name:package word of WORDS; installs
# the missing Debian packages as root with apt-get (unless APT_INSTALL=no),
# otherwise prints the command to run and stops.
need = @missing=""; \
	for w in $(1); do \
	  kind=$${w%%:*}; rest=$${w\#*:}; name=$${rest%:*}; pkg=$${rest\#\#*:}; \
	  case $$kind in \
	    pc) pkg-config --exists "$$name" 2>/dev/null;; \
	    cmd) command -v "$$name" >/dev/null 2>&1;; \
	    file) [ -f "$$name" ];; \
	  esac || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && [ "$(APT_INSTALL)" != no ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	  else \
	    echo "missing packages; run:  sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi

# One after the other, so that two apt-get runs never compete for its lock.
deps-lib:
	$(call need,$(LIB_NEEDS))
deps-lua: deps-lib
	$(call need,$(LUA_NEEDS))
deps: deps-lua
	$(call need,$(TEST_NEEDS))
deps-browser: deps
	$(call need,$(BROWSER_NEEDS))
deps-bench: deps
	$(call need,$(BENCH_NEEDS))

# Each compile waits (order-only) for the packages that provide the headers
# it includes, so `make -j` never compiles before they are installed.
$(BUILD)/obj/core/%.o: core/%.c | deps-lib
	@mkdir -p $(@D)
	$(CC) $(CORE_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/bindings/%.o: bindings/%.c | deps-lua
	@mkdir -p $(@D)
	$(CC) $(BIND_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/tests/c/%.o: tests/c/%.c | deps
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -MMD -MP -c $< -o $@

$(STATIC_LIB): $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(SHARED_LIB): $(CORE_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(PKG_LIBS) $(LDFLAGS_ALL)
	ln -sf libagentrun.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libagentrun.so

# The .pc names install paths, so it is made again whenever PREFIX, LIBDIR or
# INCDIR differ from the ones it was made with (`make install PREFIX=...`
# after a plain `make` must not install the first build's paths).
PC_SUBST = -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
           -e 's|@VERSION@|$(VERSION)|'
$(BUILD)/agentrun.pc: core/agentrun.pc.in FORCE
	@mkdir -p $(@D)
	@sed $(PC_SUBST) $< > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

FORCE:

# The command is the script with the lines that point package.path and
# package.cpath at a module written in: the build tree's here, the install
# prefix's by `make install`, so it never needs LUA_PATH. $(call cli_paths,LMOD,CMOD)
cli_paths = package.path = "$(1)/?.lua;$(1)/?/init.lua;" .. package.path; package.cpath = "$(2)/?.so;" .. package.cpath
$(CLI_BIN): cli/agentrun.lua FORCE
	@mkdir -p $(@D)
	@sed 's|^-- @AGENTRUN_PATHS@$$|$(call cli_paths,$(CURDIR)/lua,$(abspath $(BUILD))/lua)|' $< > $@.tmp
	@chmod 755 $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(LUA_MOD): $(BIND_OBJ) $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) -shared -o $@ $(BIND_OBJ) $(STATIC_LIB) $(PKG_LIBS) $(LDFLAGS_ALL)

$(BUILD)/examples/record_run: examples/record_run.c $(STATIC_LIB) | deps-lib
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Icore/include $(EXTRA_CFLAGS) -o $@ $< $(STATIC_LIB) $(PKG_LIBS) $(LDFLAGS_ALL)

$(BUILD)/examples/embed_host: examples/embed_host.c $(BIND_OBJ) $(STATIC_LIB) | deps-lua
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Icore/include $(LUA_CFLAGS) $(EXTRA_CFLAGS) -o $@ $< $(BIND_OBJ) $(STATIC_LIB) \
	    $(PKG_LIBS) $(LUA_LIBS) -lm $(LDFLAGS_ALL)

# The C runner also drives the Lua glue through an embedded Lua state.
$(CTEST_BIN): $(CTEST_OBJ) $(BIND_OBJ) $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $(CTEST_OBJ) $(BIND_OBJ) $(STATIC_LIB) $(PKG_LIBS) $(LUA_LIBS) $(CMOCKA_LIBS) $(TEST_PQ_LIBS) -lm \
	    $(LDFLAGS_ALL)

$(FAULTVFS_LUA): tests/lua/faultvfs_lua.c tests/c/faultvfs.c tests/c/faultvfs.h tests/c/sqlimit.c \
                 tests/c/sqlimit.h | deps
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Itests/c $(PKG_CFLAGS) $(LUA_CFLAGS) $(EXTRA_CFLAGS) -shared -o $@ \
	    tests/lua/faultvfs_lua.c tests/c/faultvfs.c tests/c/sqlimit.c $(PKG_LIBS) $(LDFLAGS_ALL)

$(BENCH_BIN): $(BENCH_SRC) $(wildcard tests/bench/*.h tests/bench/*.def) $(STATIC_LIB) | deps
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Icore/include $(PKG_CFLAGS) $(LUA_CFLAGS) $(EXTRA_CFLAGS) -o $@ $(BENCH_SRC) \
	    $(STATIC_LIB) $(PKG_LIBS) $(LUA_LIBS) -lm $(LDFLAGS_ALL)

# Everything the test runners run.
test-build: all $(CTEST_BIN) $(FAULTVFS_LUA)

# The C and Lua suites run on SQLite, then on PostgreSQL: on the server
# AGENTRUN_TEST_PG names (a libpq URL), or else on one that `make test` and
# `make check` start for the run and stop whatever way it ends
# (tests/pg/with-server.sh). test-c and test-lua alone run the PostgreSQL
# pass only when AGENTRUN_TEST_PG is set. Every suite runs even when another
# fails (--keep-going), so that each prints its counts.
# The browser tests come after the others, so that chromium never competes for
# the cores with the suites that time a server's restart.
test: deps test-build
	@tests/pg/with-server.sh sh -c '$(MAKE) --no-print-directory --keep-going test-c test-lua test-sh test-otlp test-cli; s=$$?; \
	  $(MAKE) --no-print-directory test-browser || s=1; exit $$s'

# The C runner and the Lua runner each print a count per backend and end on
# "N passed, N failed". A runner (the C one) or a pass (Lua) still running
# after AGENTRUN_TEST_TIMEOUT seconds (default 1800) is stopped, naming the
# test it was in, so that a hang fails and says where.
test-c: $(CTEST_BIN)
	AR_BUILD=$(BUILD) $(LUA_ENV) timeout --foreground -k 10 $${AGENTRUN_TEST_TIMEOUT:-1800} $(CTEST_BIN)

test-lua: $(LUA_MOD) $(FAULTVFS_LUA)
	AR_BUILD=$(BUILD) $(LUA_ENV) tests/lua/run.sh $(LUA_WRAP) lua5.4 $$(command -v busted) \
	  --output=tests/lua/summary.lua --pattern=_spec --lpath='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua' tests/lua

# store:otlp's output decoded with the OpenTelemetry project's own protobuf
# definitions (opentelemetry-proto, generated in @opentelemetry/otlp-transformer,
# installed from the npm registry by the lockfile into the build tree): every
# field must be one the proto has, and the spans must hang together. Skipped
# with a message where npm or node is missing.
test-otlp: $(LUA_MOD)
	@if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then \
	  echo "otlp: skipped: npm and node are not installed"; exit 0; fi; \
	mkdir -p $(BUILD)/otlp && \
	cp tests/otlp/package.json tests/otlp/package-lock.json tests/otlp/check.js $(BUILD)/otlp/ && \
	(cd $(BUILD)/otlp && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null) && \
	$(LUA_ENV) $(LUA_WRAP) lua5.4 tests/otlp/make_traces.lua > $(BUILD)/otlp/traces.jsonl && \
	node $(BUILD)/otlp/check.js $(BUILD)/otlp/traces.jsonl

# The agentrun command run on real stores, like test-lua once per backend
# (the fixtures and the command under LUA_WRAP, as the Lua suite).
test-cli: $(LUA_MOD) $(CLI_BIN)
	AR_CLI_WRAP='$(LUA_WRAP)' $(LUA_ENV) tests/cli/run.sh $(BUILD)

# The build system itself: parallel builds wait for their packages, installs
# honour PREFIX, the rockspec installs a working module.
test-sh: lib $(LUA_MOD)
	tests/sh/run.sh $(BUILD)

# The page agentrun.view writes, opened in Debian's chromium (headless, driven
# by playwright-core): the fixture pages are made in $(BUILD)/browser, the
# screenshots kept in $(ARTIFACTS). npm installs exactly the locked
# playwright-core and nothing else: no browser download, no install scripts.
ARTIFACTS ?= $(BUILD)/artifacts
BROWSER_MODULES := tests/browser/node_modules/.package-lock.json

$(BROWSER_MODULES): tests/browser/package.json tests/browser/package-lock.json | deps-browser
	cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

test-browser: $(LUA_MOD) $(BROWSER_MODULES)
	$(LUA_ENV) tests/browser/run.sh $(BUILD)/browser $(ARTIFACTS) $(LUA_WRAP)

# Refreshes the README's screenshots from the browser tests' artifacts.
docs-img: test-browser
	@mkdir -p docs/img
	cp $(ARTIFACTS)/view-overview.png $(ARTIFACTS)/view-run.png docs/img/

# ASan+UBSan build in its own tree; the Lua interpreter is not instrumented,
# so the runtime is preloaded for the Lua suite.
check: deps
	$(MAKE) --no-print-directory BUILD=build-asan OPT='-O1 -g -fno-omit-frame-pointer' \
	  EXTRA_CFLAGS='-Werror -fsanitize=address,undefined -fno-sanitize-recover=undefined' \
	  EXTRA_LDFLAGS='-fsanitize=address,undefined' test-build
	@tests/pg/with-server.sh $(MAKE) --no-print-directory check-suites

# The suites of `make check`, on its build (run by check, with a server).
# Under the sanitizers the allocation-failure tests refuse one allocation
# point in AGENTRUN_TEST_ALLOC_STRIDE (5), `make test` every one.
check-suites:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  AGENTRUN_TEST_ALLOC_STRIDE=$${AGENTRUN_TEST_ALLOC_STRIDE:-5} $(MAKE) --no-print-directory BUILD=build-asan test-c
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) --no-print-directory BUILD=build-asan \
	  LUA_WRAP='env LD_PRELOAD=$(shell $(CC) -print-file-name=libasan.so):$(shell $(CC) -print-file-name=libubsan.so)' test-lua
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) --no-print-directory BUILD=build-asan \
	  LUA_WRAP='env LD_PRELOAD=$(shell $(CC) -print-file-name=libasan.so):$(shell $(CC) -print-file-name=libubsan.so)' test-browser
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) --no-print-directory BUILD=build-asan \
	  LUA_WRAP='env LD_PRELOAD=$(shell $(CC) -print-file-name=libasan.so):$(shell $(CC) -print-file-name=libubsan.so)' test-cli

# The PostgreSQL cases run against AGENTRUN_TEST_PG or a throwaway server
# with fsync on (durable commits are what they measure); without either they
# say they were skipped.
bench: deps-bench $(BENCH_BIN) $(LUA_MOD) $(CLI_BIN)
	@AGENTRUN_PG_FSYNC=on tests/pg/with-server.sh --optional env $(LUA_ENV) AR_BENCH_CLI=$(abspath $(CLI_BIN)) $(BENCH_BIN)

demo: deps all
	@rm -f $(BUILD)/demo.db $(BUILD)/demo.db-wal $(BUILD)/demo.db-shm
	@if [ -f examples/agent_loop.lua ]; then \
	  $(LUA_ENV) lua5.4 examples/agent_loop.lua $(BUILD)/demo.db && \
	  $(LUA_ENV) lua5.4 examples/show_store.lua $(BUILD)/demo.db; \
	else $(BUILD)/examples/record_run $(BUILD)/demo.db; fi
	@echo; echo '$$ agentrun ls $(BUILD)/demo.db --limit 5'; $(CLI_BIN) ls $(BUILD)/demo.db --limit 5
	@id=$$($(CLI_BIN) --json ls $(BUILD)/demo.db --limit 1 | sed -n 's/.*"id":"\([0-9A-Z]*\)".*/\1/p'); \
	  echo; echo "$$ agentrun show $(BUILD)/demo.db $$id"; $(CLI_BIN) show $(BUILD)/demo.db $$id

# Prints the one line that makes `require "agentrun"` work from this tree:
#   eval $(make -s env)
env:
	@echo "export $(LUA_ENV)"

install: lib install-lua
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR)
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libagentrun.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libagentrun.so
	install -m 644 core/include/agentrun.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(BUILD)/agentrun.pc $(DESTDIR)$(PCDIR)/
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	sed 's|^-- @AGENTRUN_PATHS@$$|$(call cli_paths,$(LUA_LMOD),$(LUA_CMOD))|' cli/agentrun.lua > $(DESTDIR)$(BINDIR)/agentrun
	chmod 755 $(DESTDIR)$(BINDIR)/agentrun
	install -m 644 docs/agentrun.1 $(DESTDIR)$(MANDIR)/man1/agentrun.1

# The Lua module: agentrun.core (C), every Lua file under lua/ and the LuaLS
# definitions (types/, for editors; never required). The rockspec runs this
# target with LUA_CMOD and LUA_LMOD set to the rock's dirs.
install-lua: $(LUA_MOD)
	install -d $(DESTDIR)$(LUA_CMOD)/agentrun $(DESTDIR)$(LUA_LMOD)/agentrun
	install -m 755 $(LUA_MOD) $(DESTDIR)$(LUA_CMOD)/agentrun/core.so
	install -m 644 lua/agentrun.lua $(DESTDIR)$(LUA_LMOD)/
	for f in lua/agentrun/*.lua; do [ -f "$$f" ] && install -m 644 "$$f" $(DESTDIR)$(LUA_LMOD)/agentrun/ || true; done
	install -d $(DESTDIR)$(LUA_LMOD)/agentrun/types
	install -m 644 types/agentrun.lua $(DESTDIR)$(LUA_LMOD)/agentrun/types/

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libagentrun.* $(DESTDIR)$(INCDIR)/agentrun.h $(DESTDIR)$(PCDIR)/agentrun.pc
	rm -f $(DESTDIR)$(BINDIR)/agentrun $(DESTDIR)$(MANDIR)/man1/agentrun.1
	rm -rf $(DESTDIR)$(LUA_CMOD)/agentrun $(DESTDIR)$(LUA_LMOD)/agentrun $(DESTDIR)$(LUA_LMOD)/agentrun.lua

clean:
	rm -rf build build-asan build-fuzz

-include $(CORE_OBJ:.o=.d) $(BIND_OBJ:.o=.d) $(CTEST_OBJ:.o=.d)

# ---- fuzzing (tests only) ----
# libFuzzer targets, one per tests/fuzz/*.c, built by clang with ASan+UBSan in
# their own tree (never mixed with the gcc objects of $(BUILD)). `make fuzz`
# runs each for FUZZ_SECONDS, starting from tests/fuzz/corpus/<target>/;
# inputs it finds go to $(FUZZ_BUILD)/corpus/<target>/, crashes to
# $(FUZZ_BUILD)/<target>-crash-*. `make fuzz-build` only builds.
FUZZ_SECONDS ?= 60
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# The same include paths per directory as the main build.
FUZZ_BASE     = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN)
FUZZ_CORE_CFLAGS = $(FUZZ_BASE) -Icore/include -Icore $(PKG_CFLAGS)
FUZZ_BIND_CFLAGS = $(FUZZ_BASE) -Icore/include -Icore/private -Ibindings $(LUA_CFLAGS)
FUZZ_CFLAGS   = $(FUZZ_BASE) -Icore/include -Icore -Ibindings $(PKG_CFLAGS) $(LUA_CFLAGS)
FUZZ_SRC     := $(wildcard tests/fuzz/*.c)
FUZZ_BINS    := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_OBJ     := $(CORE_SRC:%.c=$(FUZZ_BUILD)/obj/%.o) $(BIND_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)

.PHONY: fuzz fuzz-deps fuzz-build
.SECONDARY: $(FUZZ_OBJ)

# clang plus its libFuzzer runtime (Debian: clang, libclang-rt-14-dev), as `deps` does.
fuzz-deps: deps
	@probe=$$(mktemp -d); \
	echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' > $$probe/p.c; \
	if ! $(FUZZ_CC) -fsanitize=fuzzer,address,undefined $$probe/p.c -o $$probe/p >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && [ "$(APT_INSTALL)" != no ]; then \
	    echo "installing: clang libclang-rt-14-dev"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev) >/dev/null || \
	      { rm -rf $$probe; exit 1; }; \
	  else \
	    echo "missing packages; run:  sudo apt-get install -y clang libclang-rt-14-dev" >&2; rm -rf $$probe; exit 1; \
	  fi; \
	fi; \
	rm -rf $$probe

$(FUZZ_BUILD)/obj/core/%.o: core/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CORE_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/obj/bindings/%.o: bindings/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_BIND_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/%: tests/fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(PKG_LIBS) $(LUA_LIBS) -lm

fuzz-build: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

# Each target first replays its seeds and kept regressions, then explores.
fuzz: fuzz-build
	@for t in $(notdir $(FUZZ_BINS)); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/$$t- $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

-include $(FUZZ_OBJ:.o=.d)
