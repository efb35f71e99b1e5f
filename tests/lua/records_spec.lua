-- records_spec.lua -- agentrun.records factory and store:write; whole vs step-by-step equivalence (SPEC §3.4).
local agentrun = require "agentrun"
local h = require "helpers"

local records = agentrun.records

-- The transcript used by the equivalence tests: every step field, extra counters, nested JSON.
local function transcript()
  return {
    { kind = "llm", name = "model-x", content = { role = "assistant", text = "thinking", calls = agentrun.array {} },
      usage = { input_tokens = 120, output_tokens = 30, cache_read_tokens = 100 }, cost = 0.0123, duration_ms = 850 },
    { kind = "tool", name = "search", content = { args = { q = "lua" }, results = agentrun.array { "a", "b" } },
      duration_ms = 40 },
    { kind = "observation", content = "found \0 two" },
    { kind = "llm", name = "model-x", content = agentrun.array { 1, 2.5, true, agentrun.null, {} },
      usage = { input_tokens = 200, output_tokens = 60, total_tokens = 260, reasoning_tokens = 12 }, cost = 0.1 },
  }
end

local function run_fields()
  return { agent = "researcher", goal = "find things", user = "alice", edition = "v3",
           metadata = { tags = agentrun.array { "x" }, priority = 2 },
           budget = { max_steps = 4, max_cost = 5, max_seconds = 600 } }
end

-- Records the transcript step by step with the run API; returns the run.
local function record_steps(store, fields, steps)
  local r = store:begin(fields)
  for _, st in ipairs(steps) do r:step(st) end
  return r
end

-- Fields for the factory: the run fields plus the steps.
local function factory_fields(steps)
  local f = run_fields()
  f.steps = steps
  return f
end

describe("agentrun.records", function()
  it("completed builds a record with usage and iterations computed from the steps", function()
    local rec = records.completed { agent = "a", goal = "g", output = { answer = 1 },
      steps = { { kind = "llm", usage = { input_tokens = 1, output_tokens = 2, cache_read_tokens = 3 }, cost = 0.1,
                  content = agentrun.array { 1, 2 } },
                { kind = "tool", usage = { input_tokens = 4, cache_read_tokens = 1 }, cost = 0.2 } } }
    assert.equal("completed", rec.status)
    assert.same({ answer = 1 }, rec.output)
    assert.equal("a", rec.agent)
    assert.equal("g", rec.goal)
    assert.is_nil(rec.id)
    assert.is_nil(rec.error)
    assert.is_nil(rec.limit)
    assert.equal(2, rec.iterations)
    assert.same({ input_tokens = 5, output_tokens = 2, total_tokens = 7, cost = 0.3, cache_read_tokens = 4 }, rec.usage)
    assert.equal(2, #rec.steps)
    assert.same({ 1, 2 }, h.seqs(rec.steps))
    assert.equal("[1,2]", agentrun.json_encode(rec.steps[1].content))
    assert.same({ input_tokens = 1, output_tokens = 2, total_tokens = 3, cache_read_tokens = 3 }, rec.steps[1].usage)
    assert.equal(0.2, rec.steps[2].cost)
    assert.equal(rec.finished_at, rec.steps[1].at)
    assert.equal(rec.finished_at - rec.created_at, rec.latency_ms)
    assert.same({}, rec.budget)
    assert.same({}, rec.metadata)
  end)

  it("completed without steps has zero usage and an empty transcript", function()
    local rec = records.completed { agent = "a", goal = "g", output = "x" }
    assert.equal(0, rec.iterations)
    assert.same({ input_tokens = 0, output_tokens = 0, total_tokens = 0, cost = 0 }, rec.usage)
    assert.same({}, rec.steps)
  end)

  it("accepts usage and iterations that agree with the steps, and refuses any that do not", function()
    local steps = { { kind = "llm", usage = { input_tokens = 1, output_tokens = 2, cache_read_tokens = 3 }, cost = 0.5 },
                    { kind = "tool" } }
    local rec = records.completed { agent = "a", goal = "g", steps = steps, iterations = 2,
                                    usage = { input_tokens = 1, output_tokens = 2, cost = 0.5, cache_read_tokens = 3 } }
    assert.equal(2, rec.iterations)
    assert.same({ input_tokens = 1, output_tokens = 2, total_tokens = 3, cost = 0.5, cache_read_tokens = 3 }, rec.usage)
    local cases = {
      { { iterations = 5 }, "iterations (5) disagrees with the number of steps (2)" },
      { { usage = { input_tokens = 999, output_tokens = 2, cost = 0.5, cache_read_tokens = 3 } },
        "usage.input_tokens (999) disagrees with the sum of the steps (1)" },
      { { usage = { input_tokens = 1, output_tokens = 2, cost = 2, cache_read_tokens = 3 } }, "usage.cost" },
      { { usage = { input_tokens = 1, output_tokens = 2, cost = 0.5 } }, "usage.cache_read_tokens (0) disagrees" },
      { { usage = { input_tokens = 1, output_tokens = 2, cost = 0.5, cache_read_tokens = 3, images = 1 } },
        "usage.images (1) disagrees" },
    }
    for _, c in ipairs(cases) do
      local f = { agent = "a", goal = "g", steps = steps }
      for k, v in pairs(c[1]) do f[k] = v end
      local msg = h.plain_error(records.completed, f)
      assert.truthy(msg:find(c[2], 1, true), msg)
    end
    -- without steps the figures can only be zero
    h.plain_error(records.completed, { agent = "a", goal = "g", usage = { input_tokens = 3 } })
    h.plain_error(records.completed, { agent = "a", goal = "g", iterations = 1 })
  end)

  it("keeps a given id, takes created_at from it, and refuses an invalid one", function()
    local s = h.store()
    local id = s:write(records.completed { agent = "a", goal = "g", created_at = 5000, finished_at = 6000 })
    s:close()
    local rec = records.completed { id = id, agent = "a", goal = "g", finished_at = 6000 }
    assert.equal(id, rec.id)
    assert.equal(5000, rec.created_at)
    assert.equal(1000, rec.latency_ms)
    local msg = h.plain_error(records.completed, { id = id, agent = "a", goal = "g", created_at = 5001 })
    assert.truthy(msg:find("created_at (5001) disagrees with the time of id " .. id .. " (5000)", 1, true), msg)
    for _, bad in ipairs { "x", "", id:lower(), id .. "0", "8" .. id:sub(2), id:sub(1, 25) .. "U" } do
      msg = h.plain_error(records.completed, { id = bad, agent = "a", goal = "g" })
      assert.truthy(msg:find("id is not a valid agentrun id", 1, true), msg)
    end
    h.plain_error(records.completed, { id = 42, agent = "a", goal = "g" })
  end)

  it("keeps step seqs that number the steps 1..n in order and refuses any other", function()
    local rec = records.completed { agent = "a", goal = "g",
                                    steps = { { kind = "a", seq = 1 }, { kind = "b" }, { kind = "c", seq = 3 } } }
    assert.same({ 1, 2, 3 }, h.seqs(rec.steps))
    for _, seqs in ipairs { { 5, 9 }, { 1, 1 }, { 2, 1 }, { 2, 3 } } do
      local steps = {}
      for i, q in ipairs(seqs) do steps[i] = { kind = "k", seq = q } end
      local msg = h.plain_error(records.completed, { agent = "a", goal = "g", steps = steps })
      assert.truthy(msg:find("steps must number 1..n in order", 1, true), msg)
    end
    h.plain_error(records.completed, { agent = "a", goal = "g", steps = { { kind = "k", seq = 0 } } })
    h.plain_error(records.completed, { agent = "a", goal = "g", steps = { { kind = "k", seq = 1.5 } } })
  end)

  it("carries a checkpoint, after the last step unless its seq says otherwise", function()
    local steps = { { kind = "a" }, { kind = "b" } }
    local rec = records.completed { agent = "a", goal = "g", steps = steps, checkpoint = { state = { plan = 1 } } }
    assert.same({ state = { plan = 1 }, seq = 2 }, rec.checkpoint)
    rec = records.completed { agent = "a", goal = "g", steps = steps, checkpoint = { state = "s", seq = 0 } }
    assert.same({ state = "s", seq = 0 }, rec.checkpoint)
    local msg = h.plain_error(records.completed, { agent = "a", goal = "g", steps = steps,
                                                   checkpoint = { state = "s", seq = 3 } })
    assert.truthy(msg:find("checkpoint.seq (3) must be a step of the record (0..2)", 1, true), msg)
    h.plain_error(records.completed, { agent = "a", goal = "g", checkpoint = { seq = 0 } })
    h.plain_error(records.completed, { agent = "a", goal = "g", checkpoint = { state = 1, at = 5 } })
    h.plain_error(records.completed, { agent = "a", goal = "g", checkpoint = "s" })
    local e = h.ar_error("EJSON", records.completed, { agent = "a", goal = "g", checkpoint = { state = { 0 / 0 } } })
    assert.truthy(e.message:find("checkpoint.state", 1, true), e.message)
  end)

  it("keeps created_at and finished_at when given", function()
    local rec = records.completed { agent = "a", goal = "g", created_at = 1000, finished_at = 4500,
                                    steps = { { kind = "llm" }, { kind = "llm", at = 2000 } } }
    assert.equal(1000, rec.created_at)
    assert.equal(4500, rec.finished_at)
    assert.equal(3500, rec.latency_ms)
    assert.equal(4500, rec.steps[1].at)
    assert.equal(2000, rec.steps[2].at)
  end)

  it("budget_exhausted takes the limit from the error and keeps the partial transcript", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g", budget = { max_cost = 0.3 } }
    r:step { kind = "llm", cost = 0.2, content = "one" }
    r:step { kind = "llm", cost = 0.15, content = "two" }
    local e = h.budget_error(r.check, r)
    local rec = records.budget_exhausted(e, { agent = "a", goal = "g", budget = { max_cost = 0.3 }, steps = e.steps,
                                              output = "dropped" })
    assert.equal("budget_exhausted", rec.status)
    assert.same({ name = "max_cost", value = 0.3, reached = 0.35 }, rec.limit)
    assert.is_nil(rec.output)
    assert.equal(2, rec.iterations)
    assert.equal(0.35, rec.usage.cost)
    assert.equal("one", rec.steps[1].content)
    assert.equal("two", rec.steps[2].content)
    r:close()
    s:close()
  end)

  it("budget_exhausted accepts a hand-made error with limit, limit_value and value", function()
    local rec = records.budget_exhausted({ limit = "max_steps", limit_value = 3, value = 3 }, { agent = "a", goal = "g" })
    assert.same({ name = "max_steps", value = 3, reached = 3 }, rec.limit)
  end)

  it("budget_exhausted raises a plain error for a value that is not a budget error, or an unknown limit", function()
    h.plain_error(records.budget_exhausted, "max_steps", { agent = "a", goal = "g" })
    h.plain_error(records.budget_exhausted, { limit_value = 1 }, { agent = "a", goal = "g" })
    local msg = h.plain_error(records.budget_exhausted, { limit = "max_stepz", limit_value = 1, value = 1 },
      { agent = "a", goal = "g" })
    assert.truthy(msg:find("known limit", 1, true), msg)
  end)

  it("failed records the error text of strings, message tables, printable values and nil", function()
    local f = { agent = "a", goal = "g" }
    assert.equal("it broke", records.failed("it broke", f).error)
    assert.equal("from a table", records.failed({ message = "from a table" }, f).error)
    assert.equal("42", records.failed(42, f).error)
    assert.equal("failed", records.failed(nil, f).error)
    local printable = setmetatable({ message = "ignored" }, { __tostring = function() return "printed" end })
    assert.equal("printed", records.failed(printable, f).error)
    local rec = records.failed("x", { agent = "a", goal = "g", output = "dropped" })
    assert.equal("failed", rec.status)
    assert.is_nil(rec.output)
  end)

  it("failed never refuses the error text: invalid UTF-8 and NUL bytes become U+FFFD", function()
    local f = { agent = "a", goal = "g" }
    assert.equal("bad \u{FFFD} byte", records.failed("bad \255 byte", f).error)
    assert.equal("nul \u{FFFD} byte", records.failed("nul \0 byte", f).error)
    local s = h.store()
    local id = s:write(records.failed("both \255 and \0", f))
    assert.equal("both \u{FFFD} and \u{FFFD}", s:get(id).error)
    id = s:write { agent = "a", goal = "g", status = "failed", error = "raw \255\0" }
    assert.equal("raw \u{FFFD}\u{FFFD}", s:get(id).error)
    h.plain_error(s.write, s, { agent = "a", goal = "g", status = "failed", error = 42 })
    s:close()
  end)

  it("raises a plain error for unknown fields and wrong types", function()
    local cases = {
      { function() return records.completed { agent = "a", goal = "g", stauts = "completed" } end,
        "unknown field 'stauts' in record fields" },
      { function() return records.completed { agent = "a", goal = "g", status = "failed" } end,
        "unknown field 'status' in record fields" },
      { function() return records.completed { agent = "a", goal = "g", id = "x" } end, "id is not a valid agentrun id" },
      { function() return records.failed("e", { agent = "a", goal = "g", error = "e" }) end, "unknown field 'error'" },
      { function() return records.completed "fields" end, "record fields must be a table (got string)" },
      { function() return records.completed { goal = "g" } end, "agent is required" },
      { function() return records.completed { agent = "a" } end, "goal is required" },
      { function() return records.completed { agent = "a", goal = "g", steps = "none" } end, "steps" },
      { function() return records.completed { agent = "a", goal = "g", steps = { { kind = "x", foo = 1 } } } end,
        "unknown field 'foo' in record.steps[1]" },
      { function() return records.completed { agent = "a", goal = "g", steps = { { kind = "x" }, { name = "y" } } } end,
        "record.steps[2].kind is required" },
      { function() return records.completed { agent = "a", goal = "g", budget = { max_step = 1 } } end,
        "unknown field 'max_step' in budget" },
      { function() return records.completed { agent = "a", goal = "g", iterations = -1 } end, "iterations" },
      { function() return records.completed { agent = "a", goal = "g", created_at = 5, finished_at = 3 } end,
        "finished_at is before created_at" },
      { function() return records.completed { agent = "a", goal = "g", usage = { input_tokens = 1, total_tokens = 2 } } end,
        "total_tokens" },
    }
    for _, c in ipairs(cases) do
      local msg = h.plain_error(c[1])
      assert.truthy(msg:find(c[2], 1, true), "expected '" .. c[2] .. "' in: " .. msg)
    end
  end)

  it("raises EJSON for output or step content that is not JSON, naming the path", function()
    local e = h.ar_error("EJSON", records.completed, { agent = "a", goal = "g", output = { x = 0 / 0 } })
    assert.equal("output.x: NaN is not valid JSON", e.message)
    e = h.ar_error("EJSON", records.completed,
      { agent = "a", goal = "g", steps = { { kind = "x" }, { kind = "y", content = { args = { "\255" } } } } })
    assert.equal("record.steps[2].content.args[1]: invalid UTF-8", e.message)
  end)
end)

describe("store:write", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("persists a record with its steps and returns its id", function()
    local rec = records.completed { agent = "a", goal = "g", output = "done",
                                    steps = { { kind = "llm", content = "x" }, { kind = "tool" } } }
    local id = s:write(rec)
    assert.equal("string", type(id))
    assert.equal(26, #id)
    assert.equal(1, s:count())
    assert.equal(2, s:info().steps)
    local got = s:get(id, { steps = true })
    assert.equal(id, got.id)
    assert.equal("completed", got.status)
    assert.equal("done", got.output)
    assert.equal(2, #got.steps)
    assert.equal("x", got.steps[1].content)
    assert.equal(rec.created_at, got.created_at)
    assert.equal(rec.finished_at, got.finished_at)
    -- writing the same record again makes another run
    local id2 = s:write(rec)
    assert.are_not.equal(id, id2)
    assert.equal(2, s:count())
  end)

  it("reads back exactly the record the factory built, id aside", function()
    for _, rec in ipairs {
      records.completed(factory_fields(transcript())),
      records.failed("it failed", factory_fields(transcript())),
      records.budget_exhausted({ limit = "max_cost", limit_value = 0.1, value = 0.1123 }, factory_fields(transcript())),
    } do
      local id = s:write(rec)
      local got = s:get(id, { steps = true })
      got.id = nil
      assert.same(rec, got)
      assert.equal(h.canon(rec), h.canon(got))
    end
  end)

  -- A run of each ending, recorded step by step in s; returns their ids.
  local function every_ending()
    local ids = {}
    local r = record_steps(s, run_fields(), transcript())
    r:complete({ final = agentrun.array {} })
    ids[#ids + 1] = r.id
    r = record_steps(s, run_fields(), transcript())
    r:fail("the tool crashed")
    ids[#ids + 1] = r.id
    r = record_steps(s, run_fields(), transcript())
    r:exhaust(h.budget_error(r.check, r))
    ids[#ids + 1] = r.id
    -- exhausted, resumed with another budget, then completed
    r = record_steps(s, run_fields(), transcript())
    r:exhaust(h.budget_error(r.check, r))
    r = s:resume(r.id, { budget = { max_steps = 9 } })
    r:step { kind = "llm", usage = { input_tokens = 1 } }
    r:complete "after a resume"
    ids[#ids + 1] = r.id
    -- marked interrupted by recover: its updated_at is not its finished_at
    r = record_steps(s, run_fields(), transcript())
    r:checkpoint { plan = "next" }
    require("agentrun.core").sleep(3)
    assert.equal(1, s:recover { stale_after = 0 })
    ids[#ids + 1] = r.id
    r:close()
    return ids
  end

  it("writes a record read back by get into another store as the very same run", function()
    local other = h.store()
    for _, id in ipairs(every_ending()) do
      local orig = s:get(id, { steps = true })
      assert.equal(id, other:write(orig))
      local copy = other:get(id, { steps = true })
      assert.same(orig, copy)
      assert.equal(h.canon(orig), h.canon(copy))
      -- get does not return the checkpoint: it is written when the record carries it
      local state, seq = s:checkpoint(id)
      if state ~= nil then
        local third = h.store()
        orig.checkpoint = { state = state, seq = seq }
        third:write(orig)
        local state3, seq3 = third:checkpoint(id)
        assert.same(state, state3)
        assert.equal(seq, seq3)
        third:close()
      end
    end
    assert.equal(5, other:count())
    other:close()
  end)

  it("refuses to write a run whose id the store already holds, and writes nothing", function()
    local r = record_steps(s, run_fields(), transcript())
    r:complete "done"
    local orig = s:get(r.id, { steps = true })
    local e = h.ar_error("ESTATE", s.write, s, orig)
    assert.equal("run " .. r.id .. " is already in the store", e.message)
    assert.equal(1, s:count())
    assert.equal(#orig.steps, s:info().steps)
  end)

  it("refuses an invalid id, a created_at other than the id's, bad seqs and disagreeing totals", function()
    local other = h.store()
    local r = record_steps(s, run_fields(), transcript())
    r:complete "done"
    local orig = s:get(r.id, { steps = true })
    local function bad(change, text)
      local rec = h.copy(orig)
      setmetatable(rec.steps, getmetatable(orig.steps))
      change(rec)
      local msg = h.plain_error(other.write, other, rec)
      assert.truthy(msg:find(text, 1, true), msg)
    end
    bad(function(rec) rec.id = "x" end, "id is not a valid agentrun id")
    bad(function(rec) rec.created_at = rec.created_at + 1 end, "disagrees with the time of id")
    bad(function(rec) rec.steps[1].seq, rec.steps[2].seq = 5, 9 end, "steps must number 1..n in order")
    bad(function(rec) rec.steps[2].seq = 1 end, "steps must number 1..n in order")
    bad(function(rec) rec.usage = { input_tokens = 999 } end, "usage.input_tokens (999) disagrees")
    bad(function(rec) rec.iterations = rec.iterations + 1 end, "iterations")
    bad(function(rec) rec.latency_ms = rec.latency_ms + 1 end, "latency_ms")
    bad(function(rec) rec.updated_at = rec.finished_at - 1 end, "updated_at is before finished_at")
    bad(function(rec) rec.steps[1].usage.total_tokens = 1 end, "total_tokens")
    bad(function(rec) rec.checkpoint = { state = 1, seq = #rec.steps + 1 } end, "checkpoint.seq")
    bad(function(rec) rec.error = "and yet" end, "error is only for a failed record")
    bad(function(rec) rec.status = "failed" end, "output is only for a completed record")
    assert.equal(0, other:count())
    assert.equal(0, other:info().steps)
    other:close()
  end)

  it("writes an interrupted record", function()
    local id = s:write { agent = "a", goal = "g", status = "interrupted", steps = { { kind = "llm" } } }
    local got = s:get(id)
    assert.equal("interrupted", got.status)
    assert.equal(1, got.iterations)
  end)

  it("refuses a running or unknown status with a plain error and writes nothing", function()
    h.plain_error(s.write, s, { agent = "a", goal = "g", status = "running" })
    h.plain_error(s.write, s, { agent = "a", goal = "g", status = "done" })
    h.plain_error(s.write, s, { agent = "a", goal = "g" })
    h.plain_error(s.write, s, "record")
    local msg = h.plain_error(s.write, s, { agent = "a", goal = "g", status = "completed", colour = "red" })
    assert.truthy(msg:find("unknown field 'colour' in record", 1, true), msg)
    assert.equal(0, s:count())
  end)

  it("writes nothing when one step is refused", function()
    local steps = {}
    for i = 1, 50 do steps[i] = { kind = "llm", content = i } end
    steps[37] = { kind = "llm", content = { bad = 0 / 0 } }
    local e = h.ar_error("EJSON", s.write, s, { agent = "a", goal = "g", status = "completed", steps = steps })
    assert.equal("record.steps[37].content.bad: NaN is not valid JSON", e.message)
    steps[37] = { kind = "llm", usage = { input_tokens = -1 } }
    h.plain_error(s.write, s, { agent = "a", goal = "g", status = "completed", steps = steps })
    assert.equal(0, s:count())
    assert.equal(0, s:info().steps)
  end)

  it("writes a 2,000-step record in one call", function()
    local steps = {}
    for i = 1, 2000 do steps[i] = { kind = "llm", content = i, cost = 0.0005 } end
    local id = s:write(records.completed { agent = "a", goal = "g", steps = steps, output = "ok" })
    local got = s:get(id, { steps = true })
    assert.equal(2000, got.iterations)
    assert.equal(2000, #got.steps)
    assert.equal(1.0, got.usage.cost)
    assert.equal(2000, got.steps[2000].content)
    assert.equal(2000, got.steps[2000].seq)
  end)
end)

describe("a run written whole and the same run recorded step by step", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  local function compare(id_steps, id_whole)
    local a = s:get(id_steps, { steps = true })
    local b = s:get(id_whole, { steps = true })
    assert.equal(#a.steps, #b.steps)
    local ta, tb = h.timeless(a), h.timeless(b)
    assert.same(ta, tb)
    assert.equal(h.canon(ta), h.canon(tb))
    -- the values keep their Lua types too
    for i = 1, #a.steps do
      assert.equal(h.canon(a.steps[i].content), h.canon(b.steps[i].content))
      for k, v in pairs(a.steps[i].usage) do assert.equal(math.type(v), math.type(b.steps[i].usage[k]), k) end
    end
    for k, v in pairs(a.usage) do assert.equal(math.type(v), math.type(b.usage[k]), k) end
  end

  it("read back identically when completed", function()
    local r = record_steps(s, run_fields(), transcript())
    r:complete({ answer = "42", refs = agentrun.array {} })
    local f = factory_fields(transcript())
    f.output = { answer = "42", refs = agentrun.array {} }
    compare(r.id, s:write(records.completed(f)))
  end)

  it("read back identically when failed", function()
    local r = record_steps(s, run_fields(), transcript())
    r:fail("the tool crashed")
    compare(r.id, s:write(records.failed("the tool crashed", factory_fields(transcript()))))
  end)

  it("read back identically when the budget ran out, the loop keeping the transcript from the error", function()
    local r = record_steps(s, run_fields(), transcript())
    local e = h.budget_error(r.check, r)
    r:exhaust(e)
    local f = run_fields()
    f.steps = e.steps
    compare(r.id, s:write(records.budget_exhausted(e, f)))
  end)

  it("read back identically for a run recorded by agentrun.loop", function()
    local steps = transcript()
    local rec = agentrun.loop(s, run_fields(), function(ctx)
      ctx:record(steps[ctx.iteration])
      if ctx.iteration > #steps then return "done" end
    end)
    assert.equal("completed", rec.status)
    local f = factory_fields(transcript())
    f.output = "done"
    compare(rec.id, s:write(records.completed(f)))
  end)
end)
