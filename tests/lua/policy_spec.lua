-- policy_spec.lua -- agentrun.policy: loading policy files in a sandbox, and every way out of it that must fail (SPEC §3.8).
local agentrun = require "agentrun"
local h = require "helpers"

local DAY = 24 * 3600 * 1000
local NOW = os.time() * 1000
local FIXTURES = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/fixtures/"

local function fixture(name) return FIXTURES .. name end

-- The host state a policy must never change: globals, the standard
-- libraries, the string metatable, the loaded modules, the JSON array
-- metatable, each as a shallow copy of its entries.
local function snapshot()
  local snap = { string_mt = getmetatable(""), array_mt = getmetatable(agentrun.array {}),
                 hook = debug.gethook() }
  local watched = {
    _G = _G, string = string, table = table, math = math, os = os, io = io, debug = debug,
    coroutine = coroutine, utf8 = utf8, package = package, loaded = package.loaded,
    string_metatable = getmetatable(""), array_metatable = getmetatable(agentrun.array {}),
  }
  for name, t in pairs(watched) do
    local copy = {}
    for k, v in next, t do copy[k] = v end
    snap[name] = copy
  end
  return snap
end

-- Fails unless the host state is as `before` recorded it, and still works.
local function assert_host_unchanged(before)
  local now = snapshot()
  assert.is_true(rawequal(before.string_mt, now.string_mt), "string metatable replaced")
  assert.is_true(rawequal(before.array_mt, now.array_mt), "array metatable replaced")
  for name, copy in pairs(before) do
    if type(copy) == "table" and name ~= "string_mt" and name ~= "array_mt" then
      for k, v in next, now[name] do
        assert.is_true(rawequal(copy[k], v), ("%s.%s changed"):format(name, tostring(k)))
      end
      for k in next, copy do
        assert.is_true(now[name][k] ~= nil, ("%s.%s removed"):format(name, tostring(k)))
      end
    end
  end
  assert.equal("ABC", ("abc"):upper())
  assert.equal("1-2", string.format("%d-%d", 1, 2))
  assert.is_nil(rawget(_G, "agentrun_leaked"))
  assert.is_nil(rawget(_G, "agentrun_leaked_too"))
  assert.is_nil(getmetatable(agentrun.array {}).__index)
  assert.equal(before.hook, debug.gethook())
end

-- A store holding three finished runs whose metadata has a JSON array.
local function store_with_runs()
  local s = h.store()
  for i = 1, 3 do
    s:write(agentrun.records.completed { agent = "bot", goal = "g", metadata = { tags = { "t" .. i } },
                                         created_at = NOW - i * DAY, finished_at = NOW - i * DAY })
  end
  return s
end

describe("agentrun.policy", function()
  it("loads a policy file that uses the sandbox's libraries, and its rule runs in store:retain", function()
    local before = snapshot()
    local p = agentrun.policy(fixture("basic.lua"))
    assert.same({ "completed", "failed", "budget_exhausted" }, p.status)
    assert.equal(30 * 24 * 3600, p.older_than)
    assert.equal(100, p.keep_last)
    assert.is_false(p.dry_run)
    assert.is_false(p.vacuum)
    assert.equal("function", type(p.rule))
    assert.is_nil(getmetatable(p))

    local s <close> = h.store()
    local function put(rec) return s:write(rec) end
    local kept = put(agentrun.records.completed { agent = "keeper", goal = "g",
                                                  created_at = NOW - 40 * DAY, finished_at = NOW - 40 * DAY })
    local dropped = put(agentrun.records.failed("x", { agent = "bot", goal = "drop me",
                                                       created_at = NOW - 3 * DAY, finished_at = NOW - 3 * DAY }))
    local young = put(agentrun.records.failed("x", { agent = "bot", goal = "drop me",
                                                     created_at = NOW - DAY, finished_at = NOW - DAY }))
    local old = put(agentrun.records.completed { agent = "bot", goal = "g",
                                                 created_at = NOW - 31 * DAY, finished_at = NOW - 31 * DAY })
    local r = s:retain(p)
    assert.same({ 4, 2, 1, 1 }, { r.considered, r.deleted, r.kept_by_rule, r.deleted_by_rule })
    assert.is_not_nil(s:get(kept))
    assert.is_not_nil(s:get(young))
    assert.is_nil(s:get(dropped))
    assert.is_nil(s:get(old))
    assert_host_unchanged(before)
  end)

  it("loads the example's standard policy", function()
    local root = FIXTURES:match("^(.*)/tests/lua/fixtures/$") or "."
    local p = agentrun.policy(root .. "/examples/policies/standard.lua")
    assert.equal(90 * 24 * 3600, p.older_than)
    assert.equal(1000, p.keep_last)
    assert.equal("keep", p.rule { status = "completed", age = 1e9, metadata = { tags = { "x", "pinned" } } })
    assert.equal("delete", p.rule { status = "completed", age = 8 * 24 * 3600, metadata = {} })
    assert.is_nil(p.rule { status = "failed", age = 8 * 24 * 3600, metadata = {} })
  end)

  it("gives each load a fresh environment", function()
    assert.equal(1, agentrun.policy(fixture("fresh_globals.lua")).keep_last)
    assert.equal(1, agentrun.policy(fixture("fresh_globals.lua")).keep_last)
    assert.is_nil(rawget(_G, "loads"))
  end)

  it("lets the top level run millions of instructions within its budget", function()
    local before = snapshot()
    assert.equal(500, agentrun.policy(fixture("heavy_but_finite.lua")).keep_last)
    assert_host_unchanged(before)
  end)

  it("refuses a bad file with a plain error naming it", function()
    local cases = {
      { "not_a_table.lua", "must return a policy table (got number)" },
      { "unknown_field.lua", "unknown field 'max_age' in policy file " },
      { "bad_type.lua", "older_than must be a number (got string)" },
      { "bad_status.lua", "status[2] must be a string (got table)" },
      { "syntax_error.lua", "syntax_error.lua:3:" },
      { "runtime_error.lua", "runtime_error.lua:2: deliberate failure" },
    }
    for _, c in ipairs(cases) do
      local e = h.plain_error(agentrun.policy, fixture(c[1]))
      assert.is_truthy(e:find(c[2], 1, true), e)
      assert.is_truthy(e:find(fixture(c[1]), 1, true), e)
    end
    assert.matches("cannot read policy file", h.plain_error(agentrun.policy, fixture("no_such_policy.lua")))
    assert.matches("string expected, got number", h.plain_error(agentrun.policy, 42))
  end)

  it("refuses a binary chunk", function()
    local dir = h.tmpdir()
    local path = dir .. "/binary.lua"
    h.write_file(path, string.dump(function() return { keep_last = 1 } end))
    local ok, e = pcall(agentrun.policy, path)
    h.rmdir(dir)
    assert.is_false(ok)
    assert.equal("string", type(e))
    assert.is_truthy(e:find("attempt to load a binary chunk", 1, true), e)
  end)
end)

local INSTRUCTIONS = "exceeded its budget of 10000000 instructions"
local MEMORY = "exceeded its memory budget of 67108864 bytes"

describe("the policy sandbox", function()
  -- Each file tries a way out at its top level; each must fail with this in its message.
  local attempts = {
    { "escape_io_open.lua", "attempt to index a nil value (global 'io')" },
    { "escape_os_execute.lua", "attempt to call a nil value (field 'execute')" },
    { "escape_os_getenv.lua", "attempt to call a nil value (field 'getenv')" },
    { "escape_os_remove.lua", "attempt to call a nil value (field 'remove')" },
    { "escape_require.lua", "attempt to call a nil value (global 'require')" },
    { "escape_load.lua", "attempt to call a nil value (global 'load')" },
    { "escape_loadstring.lua", "attempt to call a nil value (global 'loadstring')" },
    { "escape_dofile.lua", "attempt to call a nil value (global 'dofile')" },
    { "escape_loadfile.lua", "attempt to call a nil value (global 'loadfile')" },
    { "escape_debug.lua", "attempt to index a nil value (global 'debug')" },
    { "escape_package.lua", "attempt to index a nil value (global 'package')" },
    { "escape_string_dump.lua", "attempt to call a nil value (field 'dump')" },
    { "escape_string_metatable.lua", "attempt to index a nil value" },
    { "escape_gc.lua", "finalizers (__gc) are not allowed in a policy" },
    { "escape_collectgarbage.lua", "attempt to call a nil value (global 'collectgarbage')" },
    { "escape_coroutine.lua", "attempt to index a nil value (global 'coroutine')" },
    { "escape_library_write.lua", "the sandbox's libraries are read-only" },
    { "escape_top_loop.lua", "exceeded its budget of 10000000 instructions" },
    { "escape_top_pcall_loop.lua", "exceeded its budget of 10000000 instructions" },
    { "escape_error_tostring.lua", ": a table value" },
    -- nothing inside escapes either budget: message handlers, __close, metamethods
    { "escape_xpcall_handler.lua", INSTRUCTIONS },
    { "escape_xpcall_handler_pcall.lua", INSTRUCTIONS },
    { "escape_nested_handlers.lua", INSTRUCTIONS },
    { "escape_error_in_handler.lua", INSTRUCTIONS },
    { "escape_close_handler.lua", INSTRUCTIONS },
    { "escape_metamethod_loop.lua", INSTRUCTIONS },
    { "escape_concat_doubling.lua", MEMORY },
    { "escape_string_rep.lua", MEMORY },
    { "escape_memory_pcall.lua", "exceeded its " },
    { "escape_memory_churn.lua", INSTRUCTIONS },
    -- library calls whose work is not VM instructions pay for it
    { "escape_pattern_backtracking.lua", INSTRUCTIONS },
    { "escape_pattern_method.lua", INSTRUCTIONS },
    { "escape_gsub_backtracking.lua", INSTRUCTIONS },
    { "escape_plain_find.lua", INSTRUCTIONS },
    { "escape_table_concat.lua", "exceeded its " },
    { "escape_table_move.lua", INSTRUCTIONS },
    { "escape_table_insert.lua", INSTRUCTIONS },
    { "escape_table_remove.lua", INSTRUCTIONS },
    { "escape_table_sort.lua", "exceeded its " },
    { "escape_table_unpack.lua", INSTRUCTIONS },
    { "escape_string_byte.lua", INSTRUCTIONS },
    { "escape_utf8_len.lua", INSTRUCTIONS },
    { "escape_tonumber.lua", INSTRUCTIONS },
  }
  for _, a in ipairs(attempts) do
    local file, message = a[1], a[2]
    it(("stops %s with a clear error and leaves the host as it was"):format(file), function()
      local before = snapshot()
      local e = h.plain_error(agentrun.policy, fixture(file))
      assert.is_truthy(e:find(message, 1, true), e)
      assert.is_truthy(e:find("policy file " .. fixture(file), 1, true), e)
      assert.is_falsy(e:find("the host ran", 1, true), e)
      assert_host_unchanged(before)
    end)
  end

  it("keeps writes to _G and to the libraries inside the policy's own environment", function()
    local before = snapshot()
    local p = agentrun.policy(fixture("escape_globals.lua"))
    assert.is_nil(next(p))
    assert_host_unchanged(before)
  end)

  it("reads the returned table raw: none of its metamethods run host-side, none come along", function()
    local before = snapshot()
    local p = agentrun.policy(fixture("escape_policy_metatable.lua"))
    assert.is_nil(getmetatable(p))
    assert.same({ keep_last = 1 }, p)
    local s <close> = store_with_runs()
    assert.equal(2, s:retain(p).deleted)
    assert_host_unchanged(before)
  end)

  -- Each file's rule tries a way out when store:retain calls it; each must
  -- make store:retain raise a plain error holding this text, deleting nothing.
  local rule_attempts = {
    { "rule_io_open.lua", "attempt to index a nil value (global 'io')" },
    { "rule_os_execute.lua", "attempt to call a nil value (field 'execute')" },
    { "rule_loop.lua", "retention rule exceeded its budget of 1000000 instructions" },
    { "rule_pcall_loop.lua", "retention rule exceeded its budget of 1000000 instructions" },
    { "rule_array_metatable.lua", "attempt to index a nil value" },
    { "rule_string_metatable.lua", "attempt to index a nil value" },
    { "rule_gc.lua", "finalizers (__gc) are not allowed in a policy" },
    { "rule_error_object.lua", "the rule raised a table value" },
    { "rule_bad_verdict.lua", 'the rule must return "keep", "delete" or nil (got a table value)' },
    { "rule_string_nil_verdict.lua", 'must return "keep", "delete" or nil (got string "nil")' },
    { "rule_number_verdict.lua", 'the rule must return "keep", "delete" or nil (got number 0)' },
    { "rule_xpcall_handler.lua", "retention rule exceeded its budget of 1000000 instructions" },
    { "rule_close_handler.lua", "retention rule exceeded its budget of 1000000 instructions" },
    { "rule_concat_doubling.lua", "retention rule exceeded its " },
    { "rule_pattern_backtracking.lua", "retention rule exceeded its budget of 1000000 instructions" },
  }
  for _, a in ipairs(rule_attempts) do
    local file, message = a[1], a[2]
    it(("stops the rule of %s with a clear error from store:retain, deleting nothing"):format(file), function()
      local before = snapshot()
      local p = agentrun.policy(fixture(file))
      p.keep_last = 0
      local s <close> = store_with_runs()
      local e = h.plain_error(s.retain, s, p)
      assert.is_truthy(e:find(message, 1, true), e)
      assert.is_falsy(e:find("the host ran", 1, true), e)
      assert.equal(3, s:count {})
      assert_host_unchanged(before)
      -- the store is fine afterwards
      assert.equal(3, s:retain { keep_last = 0 }.deleted)
    end)
  end

  it("counts what the rule keeps from call to call against one memory budget per retain", function()
    local p = agentrun.policy(fixture("rule_memory_across_calls.lua"))
    p.keep_last = 0
    local s <close> = h.store()
    for i = 1, 40 do
      s:write(agentrun.records.completed { agent = "bot", goal = "g", created_at = NOW - i * DAY,
                                           finished_at = NOW - i * DAY })
    end
    local e = h.plain_error(s.retain, s, p)
    assert.is_truthy(e:find("retention rule exceeded its memory budget of 67108864 bytes", 1, true), e)
    assert.equal(40, s:count {})
  end)

  it("lets string methods, patterns and the table library work as usual in a policy", function()
    local p = agentrun.policy(fixture("library_use.lua"))
    assert.same({ keep_last = 3 }, { keep_last = p.keep_last })
    local s <close> = store_with_runs()
    local r = s:retain(p)
    assert.equal(3, r.kept_by_rule)
  end)

  it("passes a rule's plain error message to the caller as it is", function()
    local p = agentrun.policy(fixture("rule_error_text.lua"))
    local s <close> = store_with_runs()
    assert.equal("cannot judge bot", h.plain_error(s.retain, s, p))
    assert.equal(3, s:count {})
  end)
end)
