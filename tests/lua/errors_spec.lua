-- errors_spec.lua -- misuse errors name their call as Lua's own do, whichever way the call is
-- made; error text kept for a failed run is readable (SPEC §3, §6 Errors name their call).
local agentrun = require "agentrun"
local h = require "helpers"

-- Asserts that msg is a misuse error naming `name` and, when given, the argument number.
local function names(msg, name, arg, context)
  context = context or ""
  assert(type(msg) == "string", context .. ": expected a plain error, got " .. tostring(msg))
  assert(not msg:find("?", 1, true), context .. ": '?' in: " .. msg)
  assert(not msg:find("ar_%l"), context .. ": a C name in: " .. msg)
  local want = arg and ("bad argument #" .. arg .. " to '" .. name .. "'") or ("'" .. name .. "'")
  assert(msg:find(want, 1, true), context .. ": expected " .. want .. " in: " .. msg)
end

-- pcall(f, ...) must fail; returns the error.
local function raised(f, ...)
  local ok, e = pcall(f, ...)
  assert(not ok, "the call succeeded")
  return e
end

local s, run
before_each(function()
  s = h.store()
  run = s:begin { agent = "a", goal = "g" }
end)
after_each(function()
  run:close()
  s:close()
end)

-- Every method of a handle with a first argument of a wrong type. `nil` marks
-- a method whose only argument may be anything (it is called without one).
local function store_methods()
  return {
    { "begin", 5 }, { "write", 5 }, { "get", 5 }, { "steps", 5 }, { "runs", 5 }, { "count", 5 },
    { "stats", 5 }, { "forget_user", 5 }, { "checkpoint", 5 }, { "resume", 5 }, { "recover", 5 },
    { "event", 5 }, { "events", 5 }, { "count_events", 5 }, { "event_summary", 5 },
    { "delete_events", 5 }, { "retain_events", 5 }, { "retain", 5 }, { "intents", {} }, { "fork", 5 },
    { "respond", 5 }, { "info" }, { "check" }, { "close" }, { "export", 5 }, { "import", 5 }, { "copy", 5 },
    { "otlp", 5 },
  }
end
local function run_methods()
  return {
    { "step", 5 }, { "checkpoint", nil, true }, { "exhaust", 5 }, { "check" }, { "complete" }, { "fail" },
    { "intend", 5 }, { "settle", {} }, { "wait", nil, true },
    { "close" },
  }
end

describe("a misuse error", function()
  it("names every store method and its argument, called as a method, through pcall and by field", function()
    local listed = {}
    for _, m in ipairs(store_methods()) do
      local name, bad = m[1], m[2]
      listed[name] = true
      if bad ~= nil then
        names(raised(function() return s[name](s, bad) end), name, 1, "store:" .. name)
        names(raised(s[name], s, bad), name, 1, "pcall store." .. name)
        local f = s[name]
        names(raised(function() return f(s, bad) end), name, 1, "local f store." .. name)
      end
      -- a handle of the wrong kind
      local e = raised(s[name], 5)
      names(e, name, nil, "bad self store." .. name)
      assert.truthy(e:find("calling '" .. name .. "' on bad self", 1, true), e)
    end
    -- the list above covers every method a store has
    for name in pairs(getmetatable(s).__index) do
      assert.is_true(listed[name] ~= nil, "store method not covered: " .. name)
    end
  end)

  it("names every run method and its argument, called as a method and through pcall", function()
    local listed = {}
    for _, m in ipairs(run_methods()) do
      local name, bad, missing = m[1], m[2], m[3]
      listed[name] = true
      if bad ~= nil or missing then
        names(raised(function() return run[name](run, bad) end), name, 1, "run:" .. name)
        names(raised(run[name], run, bad), name, 1, "pcall run." .. name)
      end
      local e = raised(run[name], s)
      names(e, name, nil, "bad self run." .. name)
      assert.truthy(e:find("calling '" .. name .. "' on bad self", 1, true), e)
    end
    -- the list above covers every method a run has (its __index holds them as an upvalue)
    local _, methods = debug.getupvalue(getmetatable(run).__index, 1)
    assert.is_table(methods)
    for name in pairs(methods) do
      assert.is_true(listed[name] ~= nil, "run method not covered: " .. name)
    end
  end)

  it("names every module function and its argument", function()
    local cases = {
      { "open", agentrun.open, 5 },
      { "array", agentrun.array, 5 },
      { "json_decode", agentrun.json_decode, {} },
      { "loop", agentrun.loop, 5 },
      { "policy", agentrun.policy, 5 },
    }
    for _, c in ipairs(cases) do
      names(raised(c[2], c[3]), c[1], 1, c[1])
      names(raised(function() return c[2](c[3]) end), c[1], 1, c[1])
    end
    names(raised(agentrun.json_encode), "json_encode", 1, "json_encode()")
    names(raised(agentrun.open, "x.db", 5), "open", 2, "open options")
  end)

  it("names the record factory's functions and their arguments", function()
    local r = agentrun.records
    names(raised(r.completed, 5), "completed", 1, "completed")
    names(raised(r.completed, { agent = 5, goal = "g" }), "completed", 1, "completed field")
    names(raised(r.completed, { agnt = "a", goal = "g" }), "completed", 1, "completed unknown field")
    names(raised(r.failed, "boom", 5), "failed", 2, "failed")
    names(raised(r.failed, "boom", { agent = "a" }), "failed", 2, "failed required field")
    names(raised(r.budget_exhausted, 5, { agent = "a", goal = "g" }), "budget_exhausted", 1, "budget_exhausted")
    names(raised(r.budget_exhausted, { limit = "max_steps", limit_value = 1, value = 1 }, 5), "budget_exhausted", 2,
      "budget_exhausted fields")
  end)

  it("names ctx:record and ctx:save inside the loop, and loop for a bad spec", function()
    local errors = {}
    agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      errors.record = raised(function() return ctx:record(5) end)
      errors.record_field = raised(function() return ctx:record { kind = 5 } end)
      errors.record_pcall = raised(ctx.record, ctx, { knid = "typo" })
      errors.save = raised(function() return ctx:save() end)
      errors.save_pcall = raised(ctx.save, ctx)
      errors.record_self = raised(ctx.record, 5)
      errors.save_self = raised(ctx.save, {})
      return "done"
    end)
    names(errors.record, "record", 1, "ctx:record(5)")
    names(errors.record_field, "record", 1, "ctx:record{kind=5}")
    names(errors.record_pcall, "record", 1, "pcall ctx.record")
    names(errors.save, "save", 1, "ctx:save()")
    names(errors.save_pcall, "save", 1, "pcall ctx.save")
    assert.truthy(errors.record_self:find("calling 'record' on bad self", 1, true), errors.record_self)
    assert.truthy(errors.save_self:find("calling 'save' on bad self", 1, true), errors.save_self)
    names(raised(agentrun.loop, s, { agent = "a", goal = "g", budget = { max_step = 1 } }, function() end),
      "loop", 2, "loop budget")
    names(raised(agentrun.loop, s, { agent = 5, goal = "g" }, function() end), "loop", 2, "loop agent")
    names(raised(agentrun.loop, s, { agent = "a", goal = "g", retries = -1 }, function() end), "loop", 2,
      "loop retries")
    names(raised(agentrun.loop, s, { agent = "a", goal = "g", bogus = 1 }, function() end), "loop", 2,
      "loop unknown field")
    names(raised(agentrun.loop, s, { resume = 5 }, function() end), "loop", 2, "loop resume")
    names(raised(agentrun.loop, s, { resume = run.id, budget = 5 }, function() end), "loop", 2, "loop resume budget")
  end)

  it("names the call for bad fields of each query, spec and option table", function()
    local cases = {
      { "begin", function() return s:begin { agent = "a", goal = "g", budget = { max_steps = -1 } } end },
      { "begin", function() return s:begin { agent = "a", goal = "g", metadata = 5 } end },
      { "write", function() return s:write { agent = "a", goal = "g", status = "nope" } end },
      { "get", function() return s:get(run.id, { stepz = true }) end, 2 },
      { "steps", function() return s:steps(run.id, { limit = -1 }) end, 2 },
      { "runs", function() return s:runs { limit = "x" } end },
      { "runs", function() return s:runs { status = { "nope" } } end },
      { "runs", function() return s:runs { after = "garbage" } end },
      { "runs", function() return s:runs { after = "r1:1:x", before = "r1:1:x" } end },
      { "count", function() return s:count { order = "sideways" } end },
      { "stats", function() return s:stats { agnt = "a" } end },
      { "resume", function() return s:resume(run.id, { budget = { max_cost = -1 } }) end, 2 },
      { "recover", function() return s:recover {} end },
      { "event", function() return s:event { agent = "a" } end },
      { "event", function() return s:event { agent = "a", type = "t", metadata = 5 } end },
      { "events", function() return s:events { agent = "a", after = "zz" } end },
      { "events", function() return s:events { agent = "a", type = { 5 } } end },
      { "count_events", function() return s:count_events { agent = "a", limit = -1 } end },
      { "retain_events", function() return s:retain_events { keep_last = -1 } end },
      { "retain", function() return s:retain { status = "running" } end },
      { "retain", function() return s:retain { rule = 5 } end },
      { "step", function() return run:step { kind = "" } end },
      { "step", function() return run:step { kind = "k", usage = { input_tokens = -1 } } end },
      { "step", function() return run:step { kind = "k", usage = { input_tokens = 1, total_tokens = 5 } } end },
      { "exhaust", function() return run:exhaust { limit = "max_nothing", limit_value = 1, value = 1 } end },
    }
    for i, c in ipairs(cases) do
      names(raised(c[2]), c[1], c[3] or 1, "case " .. i)
    end
  end)

  it("for a malformed cursor speaks of the Lua call and its field", function()
    local e = raised(function() return s:events { agent = "a", after = "zz" } end)
    names(e, "events", 1, "events cursor")
    assert.truthy(e:find("after", 1, true), e)
    e = raised(function() return s:runs { before = "zz" } end)
    names(e, "runs", 1, "runs cursor")
    assert.truthy(e:find("before", 1, true), e)
  end)
end)

describe("agentrun.json_decode", function()
  it("raises EJSON with the position for text that is not JSON, not ECORRUPT", function()
    for _, text in ipairs { "[1,2", "{", "nul", "[1,]", "\"\255\"", "1 2" } do
      local e = h.ar_error("EJSON", agentrun.json_decode, text)
      assert.truthy(e.message:find("at byte %d+"), e.message)
      assert.falsy(e.message:find("stored", 1, true), e.message)
    end
    for _, text in ipairs { "", " \t\r\n" } do
      assert.equal("text is not valid JSON: empty input", h.ar_error("EJSON", agentrun.json_decode, text).message)
    end
  end)

  it("raises a misuse error for a value that is not a string", function()
    names(h.plain_error(agentrun.json_decode, {}), "json_decode", 1)
    names(h.plain_error(agentrun.json_decode), "json_decode", 1)
  end)
end)

describe("agentrun.json_encode", function()
  it("raises EJSON with the path for values that are not JSON, and a misuse error without a value", function()
    local e = h.ar_error("EJSON", agentrun.json_encode, { a = { 0 / 0 } })
    assert.truthy(e.message:find("value.a[1]", 1, true), e.message)
    h.ar_error("EJSON", agentrun.json_encode, print)
    names(h.plain_error(agentrun.json_encode), "json_encode", 1)
  end)
end)

describe("the error text kept for a failed run", function()
  local function status_error(id)
    local rec = s:get(id)
    return rec.status, rec.error
  end

  -- Ends a <close> scope of a new run with `err` raised; returns the run id.
  local function close_with(err)
    local id
    local ok = pcall(function()
      local r <close> = s:begin { agent = "a", goal = "g" }
      id = r.id
      error(err)
    end)
    assert.is_false(ok)
    return id
  end

  local with_message = { message = "structured failure" }
  local printable = setmetatable({}, { __tostring = function() return "printable failure" end })
  local both = setmetatable({ message = "the message" }, { __tostring = function() return "the tostring" end })
  local bare = {}
  local broken = setmetatable({}, { __tostring = function() error("tostring broke") end })
  local bad_tostring = setmetatable({ message = "fallback message" }, { __tostring = function() return 5 end })

  local function expectations()
    local ar_err = h.ar_error("EJSON", agentrun.json_encode, 0 / 0)
    local ok, budget = pcall(function()
      local r = s:begin { agent = "a", goal = "g", budget = { max_steps = 0 } }
      r:check()
    end)
    assert.is_false(ok)
    return {
      { with_message, function(t) return t == "structured failure" end },
      { printable, function(t) return t == "printable failure" end },
      { both, function(t) return t == "the tostring" end },
      { ar_err, function(t) return t == tostring(ar_err) end },
      { budget, function(t) return t == tostring(budget) end },
      { bare, function(t) return not t:find("0x", 1, true) and t:find("table", 1, true) ~= nil end },
      { broken, function(t) return not t:find("0x", 1, true) end },
      { bad_tostring, function(t) return t == "fallback message" end },
      { print, function(t) return not t:find("0x", 1, true) and t:find("function", 1, true) ~= nil end },
    }
  end

  it("of a <close> scope ended by a table error is its message or __tostring, never 'table: 0x...'", function()
    for i, c in ipairs(expectations()) do
      local status, text = status_error(close_with(c[1]))
      assert.equal("failed", status)
      assert.is_true(c[2](text), ("case %d: %q"):format(i, text))
    end
  end)

  it("of run:fail(err) given a table is its message or __tostring", function()
    for i, c in ipairs(expectations()) do
      local r = s:begin { agent = "a", goal = "g" }
      local rec = r:fail(c[1])
      assert.is_true(c[2](rec.error), ("case %d: %q"):format(i, rec.error))
      assert.equal(rec.error, (select(2, status_error(r.id))))
    end
  end)

  it("of the loop's failure path is the same text", function()
    for i, c in ipairs(expectations()) do
      -- a BudgetExhausted raised by the step function ends the run as budget_exhausted instead
      if not agentrun.is_budget_exhausted(c[1]) then
        local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function() error(c[1]) end)
        assert.equal("failed", rec.status)
        assert.is_true(c[2](rec.error), ("case %d: %q"):format(i, rec.error))
      end
    end
  end)

  it("of records.failed(err) is the same text", function()
    for i, c in ipairs(expectations()) do
      local rec = agentrun.records.failed(c[1], { agent = "a", goal = "g" })
      assert.is_true(c[2](rec.error), ("case %d: %q"):format(i, rec.error))
    end
  end)
end)
