-- run_spec.lua -- store:begin, run views, run:step, usage and cost, run:check and budgets, finishing (SPEC §3.2, §6).
local agentrun = require "agentrun"
local h = require "helpers"

local FFFD = "\u{FFFD}"

describe("store:begin", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("returns a running run with an id, no iterations and zero usage", function()
    local r = s:begin { agent = "a", goal = "g" }
    assert.equal("string", type(r.id))
    assert.equal(26, #r.id)
    assert.equal("running", r.status)
    assert.equal(0, r.iterations)
    assert.equal("integer", math.type(r.iterations))
    assert.same({ input_tokens = 0, output_tokens = 0, total_tokens = 0, cost = 0 }, r.usage)
    local rec = s:get(r.id)
    assert.equal("running", rec.status)
    assert.equal("a", rec.agent)
    assert.equal("g", rec.goal)
    assert.is_nil(rec.finished_at)
    assert.is_nil(rec.latency_ms)
    r:complete()
  end)

  it("keeps every spec field", function()
    local parent = s:begin { agent = "boss", goal = "plan" }
    local r = s:begin {
      agent = "worker", goal = "do it", user = "u-1", edition = "v2", parent = parent.id,
      metadata = { tags = agentrun.array { "x", "y" }, n = 3 },
      budget = { max_steps = 5, max_input_tokens = 100, max_output_tokens = 50, max_tokens = 120,
                 max_cost = 0.25, max_seconds = 30 },
    }
    local rec = s:get(r.id)
    assert.equal("worker", rec.agent)
    assert.equal("do it", rec.goal)
    assert.equal("u-1", rec.user)
    assert.equal("v2", rec.edition)
    assert.equal(parent.id, rec.parent)
    assert.same({ tags = { "x", "y" }, n = 3 }, rec.metadata)
    assert.same({ max_steps = 5, max_input_tokens = 100, max_output_tokens = 50, max_tokens = 120,
                  max_cost = 0.25, max_seconds = 30 }, rec.budget)
    assert.same(rec.budget, r.budget)
    r:complete()
    parent:complete()
  end)

  it("gives ids that sort in creation order, also within one millisecond", function()
    local ids = {}
    for i = 1, 200 do
      local r = s:begin { agent = "a", goal = "g" .. i }
      ids[i] = r.id
      r:complete()
    end
    for i = 2, #ids do
      assert.truthy(ids[i - 1] < ids[i], ids[i - 1] .. " !< " .. ids[i])
    end
  end)

  it("raises plain string errors (not agentrun.Error) for a bad spec and begins nothing", function()
    local cases = {
      { nil, "table expected" },
      { "agent", "table expected" },
      { { goal = "g" }, "run spec.agent is required" },
      { { agent = "a" }, "run spec.goal is required" },
      { { agent = "", goal = "g" }, "agent must not be empty" },
      { { agent = 1, goal = "g" }, "run spec.agent must be a string (got number)" },
      { { agent = "a", goal = true }, "run spec.goal must be a string (got boolean)" },
      { { agent = "a", goal = "g", user = 7 }, "run spec.user must be a string" },
      { { agent = "a", goal = "g", edition = {} }, "run spec.edition must be a string" },
      { { agent = "a", goal = "g", parent = 1 }, "run spec.parent must be a string" },
      { { agent = "a\255", goal = "g" }, "run spec.agent is not valid UTF-8" },
      { { agent = "a\0b", goal = "g" }, "run spec.agent contains a NUL byte" },
      { { agent = "a", goal = "g", agnet = "x" }, "unknown field 'agnet' in run spec" },
      { { agent = "a", goal = "g", max_steps = 3 }, "unknown field 'max_steps' in run spec" },
      { { agent = "a", goal = "g", [1] = "x" }, "field names must be strings" },
      { { agent = "a", goal = "g", metadata = "tags" }, "metadata must be a table (got string)" },
      { { agent = "a", goal = "g", budget = 5 }, "budget must be a table (got number)" },
      { { agent = "a", goal = "g", budget = { max_step = 3 } }, "unknown field 'max_step' in budget" },
      { { agent = "a", goal = "g", budget = { max_tokens_total = 3 } }, "unknown field 'max_tokens_total' in budget" },
      { { agent = "a", goal = "g", budget = { max_steps = -1 } }, "budget.max_steps must be an integer in 0..2^53" },
      { { agent = "a", goal = "g", budget = { max_input_tokens = -5 } }, "budget.max_input_tokens must be an integer in 0..2^53" },
      { { agent = "a", goal = "g", budget = { max_output_tokens = -1 } }, "budget.max_output_tokens must be an integer in 0..2^53" },
      { { agent = "a", goal = "g", budget = { max_tokens = -1 } }, "budget.max_tokens must be an integer in 0..2^53" },
      { { agent = "a", goal = "g", budget = { max_cost = -0.01 } }, "budget.max_cost must be a number in 0..9e9" },
      { { agent = "a", goal = "g", budget = { max_seconds = -1 } }, "budget.max_seconds must be a number in 0..1e12" },
      { { agent = "a", goal = "g", budget = { max_steps = 2.5 } }, "budget.max_steps must be an integer (got a non-integral number)" },
      { { agent = "a", goal = "g", budget = { max_steps = "3" } }, "budget.max_steps must be an integer (got string)" },
      { { agent = "a", goal = "g", budget = { max_cost = "1" } }, "budget.max_cost must be a number (got string)" },
      { { agent = "a", goal = "g", budget = { max_cost = 0 / 0 } }, "budget.max_cost must be a number in 0..9e9" },
      { { agent = "a", goal = "g", budget = { max_seconds = math.huge } }, "budget.max_seconds must be a number in 0..1e12" },
    }
    for _, c in ipairs(cases) do
      local msg = h.plain_error(s.begin, s, c[1])
      assert.truthy(msg:find(c[2], 1, true), "expected '" .. c[2] .. "' in: " .. msg)
    end
    assert.equal(0, s:count())
    assert.equal(0, s:info().runs)
  end)

  it("refuses metadata that is not a JSON object and begins nothing", function()
    local ok, e = pcall(s.begin, s, { agent = "a", goal = "g", metadata = agentrun.array { 1, 2 } })
    assert.is_false(ok)
    assert.truthy(tostring(e):find("metadata", 1, true), tostring(e))
    local e2 = h.ar_error("EJSON", s.begin, s, { agent = "a", goal = "g", metadata = { x = 0 / 0 } })
    assert.equal("metadata.x: NaN is not valid JSON", e2.message)
    assert.equal(0, s:count())
  end)

  it("accepts a budget with zero limits and integral floats", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_steps = 0, max_cost = 0, max_tokens = 2.0 } }
    assert.same({ max_steps = 0, max_cost = 0, max_tokens = 2 }, r.budget)
    r:complete()
  end)
end)

describe("run views", function()
  local s, r
  before_each(function()
    s = h.store()
    r = s:begin { agent = "a", goal = "g" }
  end)
  after_each(function() s:close() end)

  it("are read-only: assigning id, status, iterations, usage or a new field raises", function()
    for _, k in ipairs { "id", "status", "iterations", "usage", "budget", "anything" } do
      local msg = h.plain_error(function() r[k] = 1 end)
      assert.truthy(msg:find("read-only", 1, true), msg)
    end
    assert.equal("running", r.status)
    assert.equal(0, r.iterations)
  end)

  it("return copies: changing a returned usage table changes nothing", function()
    local u = r.usage
    u.input_tokens = 1000
    u.cost = 5
    assert.equal(0, r.usage.input_tokens)
    assert.equal(0, r.usage.cost)
  end)

  it("follow the steps and the ending", function()
    r:step { kind = "llm", usage = { input_tokens = 10, output_tokens = 5 }, cost = 0.01 }
    assert.equal(1, r.iterations)
    assert.same({ input_tokens = 10, output_tokens = 5, total_tokens = 15, cost = 0.01 }, r.usage)
    r:complete("x")
    assert.equal("completed", r.status)
    assert.equal(1, r.iterations)
  end)

  it("give nil for unknown names", function()
    assert.is_nil(r.nope)
    assert.is_nil(r.goal)
  end)
end)

describe("run:step", function()
  local s, r
  before_each(function()
    s = h.store()
    r = s:begin { agent = "a", goal = "g" }
  end)
  after_each(function() s:close() end)

  it("returns seq 1..n and stores each step as given", function()
    for i = 1, 5 do
      assert.equal(i, r:step { kind = "llm", name = "model-" .. i, content = { i = i }, duration_ms = i * 10 })
    end
    local steps = h.steps(s, r.id)
    assert.equal(5, #steps)
    for i, st in ipairs(steps) do
      assert.equal(i, st.seq)
      assert.equal("llm", st.kind)
      assert.equal("model-" .. i, st.name)
      assert.same({ i = i }, st.content)
      assert.equal(i * 10, st.duration_ms)
      assert.equal("integer", math.type(st.at))
    end
  end)

  it("needs only a kind; the rest defaults", function()
    r:step { kind = "thought" }
    local st = h.steps(s, r.id)[1]
    assert.same({ seq = 1, kind = "thought", duration_ms = 0, cost = 0, at = st.at,
                  usage = { input_tokens = 0, output_tokens = 0, total_tokens = 0 } }, st)
  end)

  it("raises plain errors for a bad step and records nothing; the next step takes the next seq", function()
    r:step { kind = "first" }
    local cases = {
      { nil, "step must be a table (got nil)" },
      { "llm", "step must be a table (got string)" },
      { {}, "step.kind is required" },
      { { kind = "" }, "step.kind must not be empty" },
      { { kind = 3 }, "step.kind must be a string (got number)" },
      { { kind = "x", name = 5 }, "step.name must be a string (got number)" },
      { { kind = "x", knid = "y" }, "unknown field 'knid' in step" },
      { { kind = "x", seq = 1 }, "unknown field 'seq' in step" },
      { { kind = "x", tokens = 1 }, "unknown field 'tokens' in step" },
      { { kind = "x", usage = 5 }, "step.usage must be a table (got number)" },
      { { kind = "x", usage = { input_tokens = -1 } }, "step.usage.input_tokens must be an integer in 0..2^53" },
      { { kind = "x", usage = { output_tokens = 1.5 } }, "step.usage.output_tokens must be an integer (got a non-integral number)" },
      { { kind = "x", usage = { cache_read_tokens = "3" } }, "step.usage.cache_read_tokens must be an integer (got string)" },
      { { kind = "x", usage = { cache_read_tokens = -3 } }, "step.usage.cache_read_tokens must be an integer in 0..2^53" },
      { { kind = "x", usage = { [1] = 3 } }, "counter names must be strings" },
      { { kind = "x", usage = { input_tokens = 1, output_tokens = 2, total_tokens = 4 } },
        "step.usage.total_tokens (4) must equal input_tokens + output_tokens (3)" },
      { { kind = "x", usage = { total_tokens = 1 } }, "step.usage.total_tokens (1) must equal input_tokens + output_tokens (0)" },
      { { kind = "x", usage = { cost = 0.1 } }, "step.usage.cost: give cost as step.cost" },
      { { kind = "x", cost = -0.5 }, "step.cost must be a number in 0..9e9" },
      { { kind = "x", cost = 0 / 0 }, "step.cost must be a number in 0..9e9" },
      { { kind = "x", cost = math.huge }, "step.cost must be a number in 0..9e9" },
      { { kind = "x", cost = "0.1" }, "step.cost must be a number (got string)" },
      { { kind = "x", duration_ms = -1 }, "step.duration_ms must be >= 0" },
      { { kind = "x", duration_ms = 1.5 }, "step.duration_ms must be an integer" },
      { { kind = "x\255" }, "step.kind is not valid UTF-8" },
    }
    for _, c in ipairs(cases) do
      local msg = h.plain_error(r.step, r, c[1])
      assert.truthy(msg:find(c[2], 1, true), "expected '" .. c[2] .. "' in: " .. msg)
    end
    assert.equal(1, r.iterations)
    assert.same({ input_tokens = 0, output_tokens = 0, total_tokens = 0, cost = 0 }, r.usage)
    assert.equal(2, r:step { kind = "second" })
    assert.same({ 1, 2 }, h.seqs(h.steps(s, r.id)))
    assert.equal(2, s:info().steps)
  end)

  it("sums input, output, total tokens and extra counters like cache_read_tokens", function()
    r:step { kind = "llm", usage = { input_tokens = 100, output_tokens = 20, cache_read_tokens = 80 } }
    r:step { kind = "llm", usage = { input_tokens = 50, output_tokens = 30, total_tokens = 80,
                                     cache_read_tokens = 40, reasoning_tokens = 7 } }
    r:step { kind = "tool" }
    local expected = { input_tokens = 150, output_tokens = 50, total_tokens = 200, cost = 0,
                       cache_read_tokens = 120, reasoning_tokens = 7 }
    assert.same(expected, r.usage)
    assert.equal("integer", math.type(r.usage.cache_read_tokens))
    local steps = h.steps(s, r.id)
    assert.same({ input_tokens = 100, output_tokens = 20, total_tokens = 120, cache_read_tokens = 80 }, steps[1].usage)
    assert.same({ input_tokens = 50, output_tokens = 30, total_tokens = 80, cache_read_tokens = 40,
                  reasoning_tokens = 7 }, steps[2].usage)
    assert.same({ input_tokens = 0, output_tokens = 0, total_tokens = 0 }, steps[3].usage)
    local rec = r:complete()
    assert.same(expected, rec.usage)
    assert.same(expected, s:get(r.id).usage)
  end)

  it("does not count extra counters toward total_tokens", function()
    r:step { kind = "llm", usage = { input_tokens = 1, output_tokens = 1, cache_read_tokens = 1000 } }
    assert.equal(2, r.usage.total_tokens)
  end)

  it("accepts integral floats as token counts", function()
    r:step { kind = "llm", usage = { input_tokens = 2.0, output_tokens = 3.0 } }
    assert.equal(5, r.usage.total_tokens)
    assert.equal("integer", math.type(r.usage.input_tokens))
  end)

  it("keeps each step's cost exactly (0.1 + 0.2 reads back as 0.3)", function()
    r:step { kind = "llm", cost = 0.1 }
    r:step { kind = "llm", cost = 0.2 }
    assert.equal(0.3, r.usage.cost)
    local steps = h.steps(s, r.id)
    assert.equal(0.1, steps[1].cost)
    assert.equal(0.2, steps[2].cost)
    r:complete()
    assert.equal(0.3, s:get(r.id).usage.cost)
    assert.equal(0.3, s:stats().cost)
  end)

  it("rounds cost to the nano-unit", function()
    r:step { kind = "llm", cost = 0.0000004 }
    r:step { kind = "llm", cost = 0.1234567891 }
    r:step { kind = "llm", cost = 0.0000000001 }
    local steps = h.steps(s, r.id)
    assert.equal(0.0000004, steps[1].cost)
    assert.equal(0.123456789, steps[2].cost)
    assert.equal(0, steps[3].cost)
    assert.equal(0.123457189, r.usage.cost)
  end)

  it("sums 10,000 steps of cost 0.0001 to exactly 1.0", function()
    for _ = 1, 10000 do r:step { kind = "llm", cost = 0.0001 } end
    assert.equal(10000, r.iterations)
    assert.equal(1.0, r.usage.cost)
    r:complete()
    assert.equal(1.0, s:get(r.id).usage.cost)
    assert.equal(1.0, s:stats().cost)
  end)

  it("sums 10,000 steps of cost 0.0001 to exactly 1.0 in a stored run with durability 'normal'", function()
    local path, o = h.location { durability = "normal" }
    local fs = agentrun.open(path, o)
    local fr = fs:begin { agent = "a", goal = "g" }
    for _ = 1, 10000 do fr:step { kind = "llm", cost = 0.0001 } end
    assert.equal(1.0, fr.usage.cost)
    local id = fr:complete().id
    fs:close()
    local again = agentrun.open(path, h.same_store(o))
    assert.equal(1.0, again:get(id).usage.cost)
    assert.equal(10000, again:get(id).iterations)
    again:close()
  end)

  it("never raises for budget reasons: steps past every limit are kept", function()
    local b = s:begin { agent = "a", goal = "g",
                        budget = { max_steps = 1, max_tokens = 1, max_cost = 0.01, max_seconds = 0 } }
    for i = 1, 3 do
      assert.equal(i, b:step { kind = "llm", usage = { input_tokens = 10, output_tokens = 10 }, cost = 1 })
    end
    assert.equal(3, b.iterations)
    assert.equal(60, b.usage.total_tokens)
    local e = h.budget_error(b.check, b)
    assert.equal("max_steps", e.limit)
    assert.equal(3, e.value)
    assert.equal(3, #e.steps)
    b:complete()
  end)
end)

describe("run:check", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("never raises without a budget", function()
    local r = s:begin { agent = "a", goal = "g" }
    for _ = 1, 20 do
      r:check()
      r:step { kind = "llm", usage = { input_tokens = 1000, output_tokens = 1000 }, cost = 10 }
    end
    r:check()
    r:complete()
  end)

  it("raises agentrun.BudgetExhausted with every field when max_steps is reached", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_steps = 3 } }
    local contents = { "plan", { tool = "search", args = { q = "x" } }, agentrun.array { 1, 2 } }
    local kinds = { "thought", "tool", "observation" }
    for i = 1, 3 do
      r:check()
      r:step { kind = kinds[i], content = contents[i], usage = { input_tokens = i, output_tokens = 1 }, cost = 0.5 }
    end
    local e = h.budget_error(r.check, r)
    assert.equal(agentrun.BudgetExhausted, getmetatable(e))
    assert.equal("EBUDGET", e.code)
    assert.equal("max_steps", e.limit)
    assert.equal(3, e.limit_value)
    assert.equal(3, e.value)
    assert.equal("integer", math.type(e.limit_value))
    assert.equal("integer", math.type(e.value))
    assert.equal(r.id, e.run_id)
    assert.equal(3, e.iterations)
    assert.same({ input_tokens = 6, output_tokens = 3, total_tokens = 9, cost = 1.5 }, e.usage)
    assert.equal(3, #e.steps)
    for i, st in ipairs(e.steps) do
      assert.equal(i, st.seq)
      assert.equal(kinds[i], st.kind)
      assert.same(contents[i], st.content)
      assert.equal(0.5, st.cost)
      assert.same({ input_tokens = i, output_tokens = 1, total_tokens = i + 1 }, st.usage)
    end
    assert.equal(agentrun.json_encode(contents[3]), agentrun.json_encode(e.steps[3].content))
    assert.equal("string", type(e.message))
    assert.equal("agentrun: EBUDGET: " .. e.message, tostring(e))
    assert.is_true(agentrun.is_budget_exhausted(e))
    assert.is_false(agentrun.is_error(e))
    -- checking does not finish the run
    assert.equal("running", r.status)
    assert.equal(4, r:step { kind = "late" })
    r:complete()
  end)

  it("raises at once for max_steps = 0 with an empty transcript", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_steps = 0 } }
    local e = h.budget_error(r.check, r)
    assert.equal("max_steps", e.limit)
    assert.equal(0, e.limit_value)
    assert.equal(0, e.value)
    assert.equal(0, e.iterations)
    assert.same({}, e.steps)
    assert.equal("[]", agentrun.json_encode(e.steps))
    r:complete()
  end)

  local token_cases = {
    { "max_input_tokens", { input_tokens = 60, output_tokens = 1 }, { input_tokens = 40 }, 100, 100 },
    { "max_output_tokens", { output_tokens = 30 }, { output_tokens = 25, input_tokens = 500 }, 50, 55 },
    { "max_tokens", { input_tokens = 4, output_tokens = 3 }, { input_tokens = 2, output_tokens = 1 }, 10, 10 },
  }
  for _, c in ipairs(token_cases) do
    local limit, first, second, limit_value, value = c[1], c[2], c[3], c[4], c[5]
    it("raises for " .. limit .. " only once the total reaches the limit, value in tokens", function()
      local r = s:begin { agent = "a", goal = "g", budget = { [limit] = limit_value } }
      r:step { kind = "llm", usage = first }
      r:check()
      r:step { kind = "llm", usage = second }
      local e = h.budget_error(r.check, r)
      assert.equal(limit, e.limit)
      assert.equal(limit_value, e.limit_value)
      assert.equal(value, e.value)
      assert.equal("integer", math.type(e.value))
      assert.equal("integer", math.type(e.limit_value))
      assert.equal(2, e.iterations)
      assert.equal(2, #e.steps)
      r:complete()
    end)
  end

  it("does not count extra counters toward max_tokens", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_tokens = 10 } }
    r:step { kind = "llm", usage = { input_tokens = 1, cache_read_tokens = 500 } }
    r:check()
    r:complete()
  end)

  it("raises for max_cost once the cost reaches it, value in cost units", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_cost = 0.5 } }
    r:step { kind = "llm", cost = 0.2 }
    r:check()
    r:step { kind = "llm", cost = 0.29 }
    r:check()
    r:step { kind = "llm", cost = 0.01 }
    local e = h.budget_error(r.check, r)
    assert.equal("max_cost", e.limit)
    assert.equal(0.5, e.limit_value)
    assert.equal(0.5, e.value)
    assert.equal("float", math.type(e.value))
    assert.equal(3, e.iterations)
    assert.equal(0.5, e.usage.cost)
    r:complete()
  end)

  it("raises for max_seconds with float seconds", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_seconds = 0 } }
    local e = h.budget_error(r.check, r)
    assert.equal("max_seconds", e.limit)
    assert.equal(0.0, e.limit_value)
    assert.equal("float", math.type(e.limit_value))
    assert.equal("float", math.type(e.value))
    assert.truthy(e.value >= 0)
    r:complete()
  end)

  it("does not raise for max_seconds before the limit", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_seconds = 3600 } }
    r:step { kind = "llm" }
    r:check()
    r:complete()
  end)

  it("reports max_steps first when several limits are reached", function()
    local r = s:begin { agent = "a", goal = "g",
                        budget = { max_steps = 1, max_tokens = 1, max_cost = 0.1, max_seconds = 0 } }
    r:step { kind = "llm", usage = { input_tokens = 5 }, cost = 1 }
    assert.equal("max_steps", h.budget_error(r.check, r).limit)
    r:complete()
  end)

  it("reports token limits before max_cost", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_cost = 0.1, max_input_tokens = 5 } }
    r:step { kind = "llm", usage = { input_tokens = 5 }, cost = 1 }
    assert.equal("max_input_tokens", h.budget_error(r.check, r).limit)
    r:complete()
  end)

  it("tells BudgetExhausted apart from other values", function()
    assert.is_false(agentrun.is_budget_exhausted(nil))
    assert.is_false(agentrun.is_budget_exhausted("budget exhausted"))
    assert.is_false(agentrun.is_budget_exhausted({ code = "EBUDGET", limit = "max_steps" }))
    assert.is_false(agentrun.is_budget_exhausted(setmetatable({}, agentrun.Error)))
    assert.is_true(agentrun.is_budget_exhausted(setmetatable({}, agentrun.BudgetExhausted)))
  end)
end)

describe("finishing a run", function()
  local s, r
  before_each(function()
    s = h.store()
    r = s:begin { agent = "a", goal = "g", budget = { max_steps = 2 } }
    r:step { kind = "llm", usage = { input_tokens = 3, output_tokens = 2 }, cost = 0.25 }
  end)
  after_each(function() s:close() end)

  local function expect_finished_state(status)
    assert.equal(status, r.status)
    for _, m in ipairs { "step", "complete", "fail", "exhaust", "check", "checkpoint" } do
      local arg = m == "step" and { kind = "x" } or m == "checkpoint" and { n = 1 } or nil
      local e = h.ar_error("ESTATE", r[m], r, arg)
      assert.equal(agentrun.Error, getmetatable(e))
      assert.truthy(e.message:find(status, 1, true), e.message)
    end
    assert.equal(status, r.status)
    assert.equal(1, r.iterations)
    assert.equal(1, s:info().steps)
  end

  it("complete(output) returns the final record and further calls raise ESTATE", function()
    local rec = r:complete({ answer = "42", sources = agentrun.array { "a", "b" } })
    assert.equal(r.id, rec.id)
    assert.equal("completed", rec.status)
    assert.same({ answer = "42", sources = { "a", "b" } }, rec.output)
    assert.equal(1, rec.iterations)
    assert.same({ input_tokens = 3, output_tokens = 2, total_tokens = 5, cost = 0.25 }, rec.usage)
    assert.same({ max_steps = 2 }, rec.budget)
    assert.equal("a", rec.agent)
    assert.equal("g", rec.goal)
    assert.is_nil(rec.error)
    assert.is_nil(rec.limit)
    assert.is_nil(rec.steps)
    assert.equal("integer", math.type(rec.finished_at))
    assert.equal(rec.finished_at - rec.created_at, rec.latency_ms)
    assert.truthy(rec.latency_ms >= 0)
    local got = s:get(r.id)
    assert.same(rec, got)
    expect_finished_state("completed")
  end)

  it("complete() without output stores no output", function()
    local rec = r:complete()
    assert.equal("completed", rec.status)
    assert.is_nil(rec.output)
    assert.is_nil(s:get(r.id).output)
  end)

  it("complete(false) and complete(0) keep those outputs", function()
    assert.equal(false, r:complete(false).output)
    local r2 = s:begin { agent = "a", goal = "g" }
    local out = r2:complete(0).output
    assert.equal(0, out)
    assert.equal("integer", math.type(out))
  end)

  it("fail(err) records the message and further calls raise ESTATE", function()
    local rec = r:fail("tool crashed")
    assert.equal("failed", rec.status)
    assert.equal("tool crashed", rec.error)
    assert.is_nil(rec.output)
    assert.equal(1, rec.iterations)
    assert.equal("tool crashed", s:get(r.id).error)
    expect_finished_state("failed")
  end)

  it("fail() without an error records 'failed'", function()
    assert.equal("failed", r:fail().error)
  end)

  it("fail(err) keeps the text of non-string errors", function()
    local e = setmetatable({}, { __tostring = function() return "custom" end })
    assert.equal("custom", r:fail(e).error)
    local r2 = s:begin { agent = "a", goal = "g" }
    local ok, store_err = pcall(r.step, r, { kind = "x" })
    assert.is_false(ok)
    assert.equal(tostring(store_err), r2:fail(store_err).error)
  end)

  it("fail(err) never refuses the text: invalid UTF-8 and NUL bytes become U+FFFD", function()
    local rec = r:fail("bad \255 byte and a \0 NUL")
    assert.equal("bad " .. FFFD .. " byte and a " .. FFFD .. " NUL", rec.error)
    assert.equal(rec.error, s:get(r.id).error)
  end)

  it("exhaust(err) records the limit and further calls raise ESTATE", function()
    r:step { kind = "llm" }
    local e = h.budget_error(r.check, r)
    local rec = r:exhaust(e)
    assert.equal("budget_exhausted", rec.status)
    assert.same({ name = "max_steps", value = 2, reached = 2 }, rec.limit)
    assert.equal(2, rec.iterations)
    assert.is_nil(rec.output)
    assert.is_nil(rec.error)
    assert.same(rec, s:get(r.id))
    -- the partial transcript stays
    assert.equal(2, #h.steps(s, r.id))
    assert.equal("budget_exhausted", r.status)
    for _, m in ipairs { "step", "complete", "fail", "exhaust" } do
      h.ar_error("ESTATE", r[m], r, m == "step" and { kind = "x" } or nil)
    end
  end)

  it("exhaust(err) raises a plain error for a value that is not a BudgetExhausted error", function()
    h.plain_error(r.exhaust, r, "max_steps")
    h.plain_error(r.exhaust, r, { limit_value = 2 })
    assert.equal("running", r.status)
  end)

  it("a finished run's handle keeps its id and iterations", function()
    local id = r.id
    r:complete()
    assert.equal(id, r.id)
    assert.equal(1, r.iterations)
    assert.equal(0.25, r.usage.cost)
  end)
end)

describe("run:checkpoint", function()
  it("saves a state after the latest step that store:checkpoint reads back", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    assert.is_nil(s:checkpoint(r.id))
    r:step { kind = "llm" }
    r:checkpoint({ todo = agentrun.array { "a", "b" }, n = 1 })
    r:step { kind = "llm" }
    r:checkpoint({ todo = agentrun.array {}, n = 2 })
    local state, seq = s:checkpoint(r.id)
    assert.same({ todo = {}, n = 2 }, state)
    assert.equal("[]", agentrun.json_encode(state.todo))
    assert.equal(2, seq)
    h.plain_error(r.checkpoint, r)
    h.ar_error("EJSON", r.checkpoint, r, { bad = 0 / 0 })
    assert.equal(2, select(2, s:checkpoint(r.id)))
    h.ar_error("ENOTFOUND", s.checkpoint, s, "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    r:complete()
    s:close()
  end)
end)
