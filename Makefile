# agentrun -- build, test, benchmark, demo and install.
#
#   make demo    install missing packages, build, run the example agent loop
#   make test    install missing packages, build, run every C and Lua test
#   make check   the same suites under ASan+UBSan, warnings as errors
#   make bench   the benchmarks (files on disk, baselines measured alongside)
#   make install PREFIX=/usr/local DESTDIR=

PREFIX     ?= /usr/local
DESTDIR    ?=
LIBDIR     ?= $(PREFIX)/lib
INCDIR     ?= $(PREFIX)/include
PCDIR      ?= $(LIBDIR)/pkgconfig
LUA_CMOD   ?= $(PREFIX)/lib/lua/5.4
LUA_LMOD   ?= $(PREFIX)/share/lua/5.4

VERSION    := 0.1.0
SOMAJOR    := 0

CC         ?= cc
BUILD      ?= build
WARN       := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings
OPT        ?= -O2 -g
EXTRA_CFLAGS ?=
EXTRA_LDFLAGS ?=

PKGS       := sqlite3 libcjson lua5.4 cmocka
# Debian package that provides each pkg-config module / command.
DEB_sqlite3 := libsqlite3-dev
DEB_libcjson := libcjson-dev
DEB_lua5.4 := liblua5.4-dev
DEB_cmocka := libcmocka-dev

PKG_CFLAGS  = $(shell pkg-config --cflags sqlite3 libcjson 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs sqlite3 libcjson 2>/dev/null)
LUA_CFLAGS  = $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBS    = $(shell pkg-config --libs lua5.4 2>/dev/null)
CMOCKA_CFLAGS = $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)

CFLAGS_ALL  = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) $(OPT) -fPIC \
              -Icore/include -Icore $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS_ALL = $(EXTRA_LDFLAGS)

CORE_SRC   := $(wildcard core/*.c core/sqlite/*.c)
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

LUA_ENV     = LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/tests/lua/?.lua;;' \
              LUA_CPATH='$(abspath $(BUILD))/lua/?.so;;'

.PHONY: all deps lib test test-c test-lua test-sh check bench demo install uninstall clean env

all: deps lib $(LUA_MOD) $(EXAMPLES) $(CTEST_BIN)

lib: $(STATIC_LIB) $(SHARED_LIB) $(BUILD)/agentrun.pc

# Installs the Debian packages that are missing: as root with apt-get,
# otherwise it prints the command to run and stops.
deps:
	@missing=""; \
	for p in $(PKGS); do pkg-config --exists $$p || case $$p in \
	  sqlite3) missing="$$missing $(DEB_sqlite3)";; libcjson) missing="$$missing $(DEB_libcjson)";; \
	  lua5.4) missing="$$missing $(DEB_lua5.4)";; cmocka) missing="$$missing $(DEB_cmocka)";; esac; done; \
	command -v lua5.4 >/dev/null 2>&1 || missing="$$missing lua5.4"; \
	command -v busted >/dev/null 2>&1 || missing="$$missing lua-busted"; \
	command -v pkg-config >/dev/null 2>&1 || missing="pkg-config $$missing"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	  else \
	    echo "missing packages; run:  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# Every compile waits for `deps` (order-only), so `make -j` never compiles
# before the packages that provide the headers are installed.
$(BUILD)/obj/%.o: %.c | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) $(CMOCKA_CFLAGS) -Ibindings -Itests/c -MMD -MP -c $< -o $@

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

$(LUA_MOD): $(BIND_OBJ) $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) -shared -o $@ $(BIND_OBJ) $(STATIC_LIB) $(PKG_LIBS) $(LDFLAGS_ALL)

$(BUILD)/examples/record_run: examples/record_run.c $(STATIC_LIB) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(STATIC_LIB) $(PKG_LIBS) $(LDFLAGS_ALL)

$(BUILD)/examples/embed_host: examples/embed_host.c $(BIND_OBJ) $(STATIC_LIB) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) -Ibindings -o $@ $< $(BIND_OBJ) $(STATIC_LIB) \
	    $(PKG_LIBS) $(LUA_LIBS) -lm $(LDFLAGS_ALL)

# The C runner also drives the Lua glue through an embedded Lua state.
$(CTEST_BIN): $(CTEST_OBJ) $(BIND_OBJ) $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $(CTEST_OBJ) $(BIND_OBJ) $(STATIC_LIB) $(PKG_LIBS) $(LUA_LIBS) $(CMOCKA_LIBS) -lm $(LDFLAGS_ALL)

$(BENCH_BIN): $(BENCH_SRC) $(wildcard tests/bench/*.h tests/bench/*.def) $(STATIC_LIB) | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) -o $@ $(BENCH_SRC) $(STATIC_LIB) $(PKG_LIBS) $(LUA_LIBS) -lm $(LDFLAGS_ALL)

test: all
	@$(MAKE) --no-print-directory test-c test-lua test-sh

# The C runner and the Lua runner each end on "N passed, N failed".
test-c: $(CTEST_BIN)
	AR_BUILD=$(BUILD) $(LUA_ENV) $(CTEST_BIN)

test-lua: $(LUA_MOD)
	AR_BUILD=$(BUILD) $(LUA_ENV) $(LUA_WRAP) lua5.4 $$(command -v busted) --output=tests/lua/summary.lua \
	  --pattern=_spec --lpath='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua' tests/lua

# The build system itself: parallel builds wait for deps, installs honour PREFIX.
test-sh: lib
	tests/sh/run.sh $(BUILD)

# ASan+UBSan build in its own tree; the Lua interpreter is not instrumented,
# so the runtime is preloaded for the Lua suite.
check: deps
	$(MAKE) --no-print-directory BUILD=build-asan OPT='-O1 -g -fno-omit-frame-pointer' \
	  EXTRA_CFLAGS='-Werror -fsanitize=address,undefined -fno-sanitize-recover=undefined' \
	  EXTRA_LDFLAGS='-fsanitize=address,undefined' all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) --no-print-directory BUILD=build-asan test-c
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) --no-print-directory BUILD=build-asan \
	  LUA_WRAP='env LD_PRELOAD=$(shell $(CC) -print-file-name=libasan.so):$(shell $(CC) -print-file-name=libubsan.so)' test-lua

bench: deps $(BENCH_BIN) $(LUA_MOD)
	$(LUA_ENV) $(BENCH_BIN)

demo: all
	@rm -f $(BUILD)/demo.db $(BUILD)/demo.db-wal $(BUILD)/demo.db-shm
	@if [ -f examples/agent_loop.lua ]; then \
	  $(LUA_ENV) lua5.4 examples/agent_loop.lua $(BUILD)/demo.db && \
	  $(LUA_ENV) lua5.4 examples/show_store.lua $(BUILD)/demo.db; \
	else $(BUILD)/examples/record_run $(BUILD)/demo.db; fi

# Prints the one line that makes `require "agentrun"` work from this tree:
#   eval $(make -s env)
env:
	@echo "export $(LUA_ENV)"

install: lib $(LUA_MOD)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR) \
	  $(DESTDIR)$(LUA_CMOD)/agentrun $(DESTDIR)$(LUA_LMOD)/agentrun
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libagentrun.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libagentrun.so
	install -m 644 core/include/agentrun.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(BUILD)/agentrun.pc $(DESTDIR)$(PCDIR)/
	install -m 755 $(LUA_MOD) $(DESTDIR)$(LUA_CMOD)/agentrun/core.so
	install -m 644 lua/agentrun.lua $(DESTDIR)$(LUA_LMOD)/
	for f in lua/agentrun/*.lua; do [ -f "$$f" ] && install -m 644 "$$f" $(DESTDIR)$(LUA_LMOD)/agentrun/ || true; done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libagentrun.* $(DESTDIR)$(INCDIR)/agentrun.h $(DESTDIR)$(PCDIR)/agentrun.pc
	rm -rf $(DESTDIR)$(LUA_CMOD)/agentrun $(DESTDIR)$(LUA_LMOD)/agentrun $(DESTDIR)$(LUA_LMOD)/agentrun.lua

clean:
	rm -rf build build-asan build-fuzz

-include $(CORE_OBJ:.o=.d) $(BIND_OBJ:.o=.d) $(CTEST_OBJ:.o=.d)

# ---- fault injection and fuzzing (tests only; appended by the fault-tolerance work) ----
# The Lua specs arm the test-only fault VFS through this module; it is never
# part of the library or installed.
FAULTVFS_LUA := $(BUILD)/lua/faultvfs.so

$(FAULTVFS_LUA): tests/lua/faultvfs_lua.c tests/c/faultvfs.c tests/c/faultvfs.h | deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LUA_CFLAGS) -Itests/c -shared -o $@ tests/lua/faultvfs_lua.c tests/c/faultvfs.c \
	    $(PKG_LIBS) $(LDFLAGS_ALL)

test-lua: $(FAULTVFS_LUA)

# libFuzzer targets, one per tests/fuzz/*.c, built by clang with ASan+UBSan in
# their own tree (never mixed with the gcc objects of $(BUILD)). `make fuzz`
# runs each for FUZZ_SECONDS, starting from tests/fuzz/corpus/<target>/;
# inputs it finds go to $(FUZZ_BUILD)/corpus/<target>/, crashes to
# $(FUZZ_BUILD)/<target>-crash-*. `make fuzz-build` only builds.
FUZZ_SECONDS ?= 60
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS   = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) -g -O1 -fno-omit-frame-pointer \
                $(FUZZ_SAN) -Icore/include -Icore -Ibindings $(PKG_CFLAGS) $(LUA_CFLAGS)
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
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: clang libclang-rt-14-dev"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev) >/dev/null || \
	      { rm -rf $$probe; exit 1; }; \
	  else \
	    echo "missing packages; run:  sudo apt-get install -y clang libclang-rt-14-dev"; rm -rf $$probe; exit 1; \
	  fi; \
	fi; \
	rm -rf $$probe

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

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
