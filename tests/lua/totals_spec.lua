-- totals_spec.lua -- cost to the nano-unit, totals that never wrap, limits that state their range, schema-1 files (SPEC §2, §6).
local agentrun = require "agentrun"
local h = require "helpers"

local CAP = 1 << 53 -- the largest token or counter total
local FIXTURE = (debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/[^/]*$") or ".") .. "/tests/fixtures/schema1.db"

-- Expects run:step(step) to raise a plain error holding every word; returns the message.
local function refused(r, step, ...)
  local msg = h.plain_error(r.step, r, step)
  for _, w in ipairs { ... } do
    assert.truthy(msg:find(w, 1, true), "expected '" .. w .. "' in: " .. msg)
  end
  return msg
end

describe("cost", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("is kept to the nano-unit: 1,000 steps of 0.0000004 sum to 0.0004 and reach max_cost = 0.0001", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_cost = 0.0001 } }
    for _ = 1, 249 do r:step { kind = "llm", usage = { input_tokens = 4 }, cost = 0.0000004 } end
    r:check()
    r:step { kind = "llm", usage = { input_tokens = 4 }, cost = 0.0000004 }
    local e = h.budget_error(r.check, r)
    assert.equal("max_cost", e.limit)
    assert.equal(0.0001, e.value)
    for _ = 1, 750 do r:step { kind = "llm", usage = { input_tokens = 4 }, cost = 0.0000004 } end
    assert.equal(0.0004, r.usage.cost)
    assert.equal(0.0000004, h.steps(s, r.id, { limit = 1 })[1].cost)
    r:complete()
    assert.equal(0.0004, s:get(r.id).usage.cost)
    assert.equal(0.0004, s:stats().cost)
  end)

  it("rounds to the nearest nano-unit", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm", cost = 0.0000000004 }
    r:step { kind = "llm", cost = 0.0000000015 }
    r:step { kind = "llm", cost = 0.1234567891234 }
    local steps = h.steps(s, r.id)
    assert.equal(0, steps[1].cost)
    assert.equal(0.000000002, steps[2].cost)
    assert.equal(0.123456789, steps[3].cost)
    assert.equal(0.123456791, r.usage.cost)
  end)
end)

describe("totals", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("refuse a step cost above 9e9 (9e12 as a float) as misuse, stating the range", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_cost = 9e9 } }
    for _, c in ipairs { 9e12, 1e300, -0.5, 0 / 0, math.huge } do
      refused(r, { kind = "llm", cost = c }, "step.cost must be a number in 0..9e9")
    end
    assert.equal(0, r.iterations)
    assert.equal(0, s:info().steps)
  end)

  it("never wrap: a cost total past 9e9 is refused, check() still sees the limit, the next step takes the next seq",
    function()
      local r = s:begin { agent = "a", goal = "g", budget = { max_cost = 9e9 } }
      r:step { kind = "llm", cost = 4.5e9 }
      r:check()
      r:step { kind = "llm", cost = 4.5e9 }
      refused(r, { kind = "llm", cost = 4.5e9 }, "cost", "9e9")
      refused(r, { kind = "llm", cost = 0.000000001 }, "cost", "9e9")
      assert.equal(9e9, r.usage.cost)
      local e = h.budget_error(r.check, r)
      assert.equal("max_cost", e.limit)
      assert.equal(9e9, e.value)
      assert.equal(3, r:step { kind = "tool" })
      local rec = r:exhaust(e)
      assert.equal(9e9, rec.usage.cost)
      assert.equal(3, rec.iterations)
      assert.equal(3, s:info().steps)
    end)

  for _, durability in ipairs { "full", "normal" } do
    it("never wrap in a stored run with durability '" .. durability .. "': the store keeps the last good totals",
      function()
        local path, o = h.location { durability = durability }
        local fs = assert(agentrun.open(path, o))
        local r = fs:begin { agent = "a", goal = "g" }
        r:step { kind = "llm", usage = { input_tokens = CAP - 1, cache_read_tokens = 5 }, cost = 9e9 }
        refused(r, { kind = "llm", cost = 0.000000001 }, "cost", "9e9")
        refused(r, { kind = "llm", usage = { input_tokens = 2 } }, "input_tokens", "2^53")
        assert.equal(2, r:step { kind = "llm", usage = { input_tokens = 1 } })
        local id = r.id
        fs:close()
        local again = assert(agentrun.open(path, h.same_store(o, { readonly = true })))
        local rec = again:get(id, { steps = true })
        assert.same({ input_tokens = CAP, output_tokens = 0, total_tokens = CAP, cost = 9e9, cache_read_tokens = 5 },
          rec.usage)
        assert.same({ 1, 2 }, h.seqs(rec.steps))
        again:close()
      end)
  end

  it("never wrap: 1,030 steps of input_tokens = 2^53 stop at the first that would pass 2^53", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_tokens = CAP } }
    r:step { kind = "llm", usage = { input_tokens = CAP } }
    for _ = 2, 1030 do
      refused(r, { kind = "llm", usage = { input_tokens = CAP } }, "input_tokens", "2^53")
    end
    assert.equal(CAP, r.usage.input_tokens)
    assert.equal(CAP, r.usage.total_tokens)
    assert.equal("max_tokens", h.budget_error(r.check, r).limit)
    assert.equal(2, r:step { kind = "llm" })
  end)

  it("refuse each of output_tokens, total_tokens and extra counters past 2^53", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm", usage = { output_tokens = CAP, cache_read_tokens = CAP } }
    refused(r, { kind = "llm", usage = { output_tokens = 1 } }, "output_tokens", "2^53")
    refused(r, { kind = "llm", usage = { cache_read_tokens = 1 } }, "cache_read_tokens", "2^53")
    refused(r, { kind = "llm", usage = { input_tokens = 1 } }, "total_tokens", "2^53")
    -- one step whose own input + output is past 2^53, each within it
    local r2 = s:begin { agent = "a", goal = "g" }
    refused(r2, { kind = "llm", usage = { input_tokens = CAP, output_tokens = 1 } }, "total_tokens", "2^53")
    refused(r2, { kind = "llm", usage = { input_tokens = CAP, output_tokens = 1, total_tokens = CAP + 1 } },
      "total_tokens", "2^53")
    assert.equal(1, r2:step { kind = "llm", usage = { input_tokens = CAP // 2, output_tokens = CAP // 2 } })
    assert.equal(2, r:step { kind = "llm" })
    assert.same({ input_tokens = 0, output_tokens = CAP, total_tokens = CAP, cost = 0, cache_read_tokens = CAP },
      s:get(r.id).usage)
  end)

  it("refuse counters given past 2^53 or as huge floats, stating the range", function()
    local r = s:begin { agent = "a", goal = "g" }
    refused(r, { kind = "llm", usage = { input_tokens = CAP + 1 } }, "step.usage.input_tokens must be an integer in 0..2^53")
    refused(r, { kind = "llm", usage = { output_tokens = 1e300 } }, "step.usage.output_tokens must be an integer in 0..2^53")
    refused(r, { kind = "llm", usage = { cache_read_tokens = -3 } }, "step.usage.cache_read_tokens must be an integer in 0..2^53")
    refused(r, { kind = "llm", usage = { input_tokens = -1 } }, "step.usage.input_tokens must be an integer in 0..2^53")
    assert.equal(0, r.iterations)
  end)

  it("continue exactly after a resume near the caps", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_steps = 1 } }
    r:step { kind = "llm", usage = { input_tokens = CAP - 1 }, cost = 4.5e9 }
    r:step { kind = "llm", cost = 4499999999.0 }
    r:step { kind = "llm", cost = 0.999999999 }
    r:exhaust(h.budget_error(r.check, r))
    local again = s:resume(r.id, { budget = {} })
    assert.equal(4, again:step { kind = "llm", usage = { input_tokens = 1 }, cost = 0.000000001 })
    refused(again, { kind = "llm", cost = 0.000000001 }, "cost", "9e9")
    refused(again, { kind = "llm", usage = { input_tokens = 1 } }, "input_tokens", "2^53")
    assert.equal(5, again:step { kind = "llm" })
    local rec = again:complete()
    assert.equal(9e9, rec.usage.cost)
    assert.equal(CAP, rec.usage.input_tokens)
  end)

  it("of records: the factory and store:write refuse steps that sum past a cap and write nothing", function()
    local cases = {
      { { kind = "llm", cost = 5e9 }, "cost" },
      { { kind = "llm", usage = { input_tokens = CAP } }, "input_tokens" },
      { { kind = "llm", usage = { output_tokens = CAP } }, "output_tokens" },
      { { kind = "llm", usage = { cache_read_tokens = CAP } }, "cache_read_tokens" },
      { { kind = "llm", usage = { input_tokens = CAP // 4 + 1, output_tokens = CAP // 4 } }, "total_tokens" },
    }
    for _, c in ipairs(cases) do
      local fields = { agent = "a", goal = "g", steps = { c[1], c[1] } }
      local msg = h.plain_error(agentrun.records.completed, fields)
      assert.truthy(msg:find(c[2], 1, true), msg)
      local record = { agent = "a", goal = "g", status = "failed", error = "x", steps = { c[1], c[1] } }
      msg = h.plain_error(s.write, s, record)
      assert.truthy(msg:find(c[2], 1, true), msg)
    end
    local msg = h.plain_error(s.write, s, { agent = "a", goal = "g", status = "completed",
                                            usage = { input_tokens = 0, cost = 1e10 } })
    assert.truthy(msg:find("usage.cost must be a number in 0..9e9", 1, true), msg)
    assert.equal(0, s:info().runs)
    assert.equal(0, s:info().steps)
  end)

  it("summed by stats are exact past 2^53 and never raise", function()
    for _ = 1, 3 do
      s:write(agentrun.records.completed { agent = "a", goal = "g",
        steps = { { kind = "llm", usage = { input_tokens = CAP }, cost = 9e9 } } })
    end
    s:write(agentrun.records.completed { agent = "a", goal = "g",
      steps = { { kind = "llm", usage = { input_tokens = 1 }, cost = 0.000000001 } } })
    local st = s:stats()
    assert.equal(3 * CAP + 1, st.input_tokens)
    assert.equal(3 * CAP + 1, st.total_tokens)
    assert.equal(2.7e10, st.cost)
    assert.equal(4, st.runs)
  end)
end)

describe("budget limits", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("outside their range are misuse that states the range", function()
    local cases = {
      { { max_cost = 1e13 }, "budget.max_cost must be a number in 0..9e9" },
      { { max_cost = -1 }, "budget.max_cost must be a number in 0..9e9" },
      { { max_cost = 0 / 0 }, "budget.max_cost must be a number in 0..9e9" },
      { { max_tokens = CAP + 1 }, "budget.max_tokens must be an integer in 0..2^53" },
      { { max_tokens = 1e300 }, "budget.max_tokens must be an integer in 0..2^53" },
      { { max_steps = -1 }, "budget.max_steps must be an integer in 0..2^53" },
      { { max_input_tokens = -5 }, "budget.max_input_tokens must be an integer in 0..2^53" },
      { { max_output_tokens = math.maxinteger }, "budget.max_output_tokens must be an integer in 0..2^53" },
      { { max_seconds = -1 }, "budget.max_seconds must be a number in 0..1e12" },
      { { max_seconds = math.huge }, "budget.max_seconds must be a number in 0..1e12" },
    }
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm" }
    local id = r:exhaust { limit = "max_steps", limit_value = 1, value = 1 }.id
    for _, c in ipairs(cases) do
      local msg = h.plain_error(s.begin, s, { agent = "a", goal = "g", budget = c[1] })
      assert.truthy(msg:find(c[2], 1, true), "expected '" .. c[2] .. "' in: " .. msg)
      msg = h.plain_error(s.resume, s, id, { budget = c[1] })
      assert.truthy(msg:find(c[2], 1, true), "expected '" .. c[2] .. "' in: " .. msg)
      msg = h.plain_error(agentrun.records.completed, { agent = "a", goal = "g", budget = c[1] })
      assert.truthy(msg:find(c[2], 1, true), "expected '" .. c[2] .. "' in: " .. msg)
    end
    assert.equal(1, s:count())
    assert.equal("budget_exhausted", s:get(id).status)
  end)

  it("at the ends of their range are accepted", function()
    local budget = { max_cost = 9e9, max_tokens = CAP, max_steps = CAP, max_seconds = 1e12 }
    local r = s:begin { agent = "a", goal = "g", budget = budget }
    assert.same(budget, r:complete().budget)
  end)
end)

describe("a schema-1 store made by release 0.1.0 #sqlite_only", function()
  local dir, path
  before_each(function()
    dir = h.tmpdir()
    path = dir .. "/schema1.db"
    h.write_file(path, h.read_file(FIXTURE))
  end)
  after_each(function() h.rmdir(dir) end)

  it("opened read-only, is refused with EVERSION telling to open it writable once, and is not changed", function()
    local before = h.read_file(path)
    local s, msg, code = agentrun.open(path, { readonly = true })
    assert.is_nil(s)
    assert.equal("EVERSION", code)
    assert.truthy(msg:find("open it writable once", 1, true), msg)
    assert.equal(before, h.read_file(path))
  end)

  it("opened writable, is upgraded to schema 2 and reads back the same costs", function()
    local s = assert(agentrun.open(path))
    assert.equal(3, s:info().schema_version)
    local rec = s:get("01M95K5227000AA3N9S9KFAFZ9", { steps = true })
    assert.equal(0.300002, rec.usage.cost)
    assert.equal(0.1, rec.steps[1].cost)
    assert.equal(0.000002, rec.steps[4].cost)
    local ex = s:get("01M95K523B000818NP3HJB7QD6")
    assert.same({ name = "max_cost", value = 0.005, reached = 0.0063 }, ex.limit)
    assert.equal(0.005, ex.budget.max_cost)
    assert.equal(0.0063, ex.usage.cost)
    assert.equal(39.384831, s:stats().cost)
    s:close()
    local ro = assert(agentrun.open(path, { readonly = true }))
    assert.equal(3, ro:info().schema_version)
    assert.equal(0.0063, ro:get("01M95K523B000818NP3HJB7QD6").usage.cost)
    ro:close()
  end)
end)
