-- loop_spec.lua -- agentrun.loop: completion, budget exhaustion, failures, ctx, validation (SPEC §3.3, §6 Loop).
local agentrun = require "agentrun"
local h = require "helpers"

describe("agentrun.loop", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("completes with the value step_fn returns and returns the record with its steps", function()
    local calls = 0
    local rec = agentrun.loop(s, { agent = "writer", goal = "write a haiku", user = "u", edition = "v1",
                                   metadata = { tag = "t" } }, function(ctx)
      calls = calls + 1
      ctx:record { kind = "llm", name = "m", content = { draft = calls },
                   usage = { input_tokens = 10, output_tokens = 5 }, cost = 0.01 }
      if calls == 3 then return { poem = "old pond", lines = agentrun.array { "a", "b", "c" } } end
    end)
    assert.equal(3, calls)
    assert.equal("completed", rec.status)
    assert.same({ poem = "old pond", lines = { "a", "b", "c" } }, rec.output)
    assert.equal("writer", rec.agent)
    assert.equal("write a haiku", rec.goal)
    assert.equal("u", rec.user)
    assert.equal("v1", rec.edition)
    assert.same({ tag = "t" }, rec.metadata)
    assert.equal(3, rec.iterations)
    assert.same({ input_tokens = 30, output_tokens = 15, total_tokens = 45, cost = 0.03 }, rec.usage)
    assert.equal(3, #rec.steps)
    assert.same({ 1, 2, 3 }, h.seqs(rec.steps))
    for i, st in ipairs(rec.steps) do assert.same({ draft = i }, st.content) end
    assert.same(rec, s:get(rec.id, { steps = true }))
  end)

  it("ends on any non-nil value, false included", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      ctx:record { kind = "thought" }
      return false
    end)
    assert.equal("completed", rec.status)
    assert.equal(false, rec.output)
    assert.equal(1, rec.iterations)
  end)

  it("ends as failed, not raising, when step_fn returns a value that cannot be stored", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      ctx:record { kind = "llm" }
      return { answer = 0 / 0 }
    end)
    assert.equal("failed", rec.status)
    assert.equal("agentrun: EJSON: output.answer: NaN is not valid JSON", rec.error)
    assert.is_nil(rec.output)
    assert.equal(1, #rec.steps)
    assert.equal("failed", s:get(rec.id).status)
    rec = agentrun.loop(s, { agent = "a", goal = "g" }, function() return print end)
    assert.equal("failed", rec.status)
    assert.equal("agentrun: EJSON: output: cannot encode a function", rec.error)
    assert.equal(0, s:count { status = "running" })
  end)

  it("may complete without recording a step", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function() return "instant" end)
    assert.equal("completed", rec.status)
    assert.equal("instant", rec.output)
    assert.equal(0, rec.iterations)
    assert.same({}, rec.steps)
    assert.equal("[]", agentrun.json_encode(rec.steps))
  end)

  it("gives ctx.iteration = 1 in the first call, then the number of the step about to be made", function()
    local seen = {}
    agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      seen[#seen + 1] = ctx.iteration
      local seq = ctx:record { kind = "llm" }
      assert.equal(seen[#seen], seq)
      if #seen == 4 then return "done" end
    end)
    assert.same({ 1, 2, 3, 4 }, seen)
  end)

  it("exposes ctx.run, ctx.steps and ctx.usage as the run goes", function()
    local snapshots = {}
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      assert.equal("running", ctx.run.status)
      assert.equal(ctx.iteration - 1, ctx.run.iterations)
      snapshots[#snapshots + 1] = { n = #ctx.steps, tokens = ctx.usage.total_tokens, cost = ctx.usage.cost,
                                    id = ctx.run.id }
      ctx:record { kind = "llm", content = "s" .. ctx.iteration, usage = { input_tokens = 1, output_tokens = 1,
                   cache_read_tokens = 2 }, cost = 0.1 }
      assert.equal(2 * ctx.run.iterations, ctx.usage.total_tokens)
      assert.equal(2 * ctx.run.iterations, ctx.usage.cache_read_tokens)
      if #snapshots == 3 then return "ok" end
    end)
    assert.same({ n = 0, tokens = 0, cost = 0, id = rec.id }, snapshots[1])
    assert.same({ n = 1, tokens = 2, cost = 0.1, id = rec.id }, snapshots[2])
    assert.same({ n = 2, tokens = 4, cost = 0.2, id = rec.id }, snapshots[3])
  end)

  it("keeps the recorded steps in ctx.steps in order, each with its seq", function()
    local seen
    agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      ctx:record { kind = "llm", content = "a" }
      ctx:record { kind = "tool", name = "search", content = { q = "x" } }
      seen = ctx.steps
      return "done"
    end)
    assert.equal(2, #seen)
    assert.equal(1, seen[1].seq)
    assert.equal("llm", seen[1].kind)
    assert.equal("a", seen[1].content)
    assert.equal(2, seen[2].seq)
    assert.equal("search", seen[2].name)
    assert.same({ q = "x" }, seen[2].content)
  end)

  it("ends as budget_exhausted with the partial transcript when a limit is reached", function()
    local calls = 0
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 2 } }, function(ctx)
      calls = calls + 1
      ctx:record { kind = "llm", content = calls }
    end)
    assert.equal(2, calls)
    assert.equal("budget_exhausted", rec.status)
    assert.same({ name = "max_steps", value = 2, reached = 2 }, rec.limit)
    assert.same({ max_steps = 2 }, rec.budget)
    assert.equal(2, rec.iterations)
    assert.equal(2, #rec.steps)
    assert.equal(1, rec.steps[1].content)
    assert.equal(2, rec.steps[2].content)
    assert.is_nil(rec.output)
    assert.equal("budget_exhausted", s:get(rec.id).status)
  end)

  -- A guard that turns a loop that would never end into a failure of the test.
  local function bounded(step_fn, max_calls)
    local calls = 0
    return function(ctx)
      calls = calls + 1
      if calls > max_calls then error("the loop did not stop after " .. max_calls .. " calls", 0) end
      return step_fn(ctx, calls)
    end, function() return calls end
  end

  it("counts every call toward max_steps: a step function that records nothing stops", function()
    local fn, calls = bounded(function() end, 100)
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 3 } }, fn)
    assert.equal(3, calls())
    assert.equal("budget_exhausted", rec.status)
    -- value: the calls made
    assert.same({ name = "max_steps", value = 3, reached = 3 }, rec.limit)
    assert.equal(0, rec.iterations)
    assert.same({}, rec.steps)
    assert.equal("budget_exhausted", s:get(rec.id).status)
  end)

  it("counts a call that records nothing between calls that record", function()
    local seen = {}
    local fn, calls = bounded(function(ctx, n)
      seen[#seen + 1] = ctx.iteration
      if n % 2 == 0 then ctx:record { kind = "llm", content = n } end
    end, 100)
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 4 } }, fn)
    assert.equal(4, calls())
    assert.equal("budget_exhausted", rec.status)
    assert.same({ name = "max_steps", value = 4, reached = 4 }, rec.limit)
    assert.equal(2, rec.iterations)
    -- ctx.iteration stays the number of the step about to be made
    assert.same({ 1, 1, 2, 2 }, seen)
  end)

  it("stops a step function that records several steps per call on the steps it recorded", function()
    local fn, calls = bounded(function(ctx)
      ctx:record { kind = "llm" }
      ctx:record { kind = "tool" }
    end, 100)
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 3 } }, fn)
    assert.equal(2, calls())
    assert.equal("budget_exhausted", rec.status)
    -- recording never refuses a step for budget reasons: the fourth is kept
    assert.same({ name = "max_steps", value = 3, reached = 4 }, rec.limit)
    assert.equal(4, rec.iterations)
  end)

  it("counts the calls of a resumed run from the steps it already has", function()
    local first = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 2 } }, function(ctx)
      ctx:record { kind = "llm" }
    end)
    assert.equal(2, first.iterations)
    local seen = {}
    local fn, calls = bounded(function(ctx) seen[#seen + 1] = ctx.iteration end, 100)
    local rec = agentrun.loop(s, { resume = first.id, budget = { max_steps = 5 } }, fn)
    assert.equal(3, calls())
    assert.same({ 3, 3, 3 }, seen)
    assert.equal("budget_exhausted", rec.status)
    assert.same({ name = "max_steps", value = 5, reached = 5 }, rec.limit)
    assert.equal(2, rec.iterations)
    assert.equal(2, #rec.steps)
  end)

  it("leaves run:check to count steps while the loop counts the calls", function()
    local caught
    local fn = bounded(function(ctx)
      local ok, e = pcall(ctx.run.check, ctx.run)
      if not ok then caught = e end
    end, 100)
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 2 } }, fn)
    assert.is_nil(caught) -- run:check counts steps; the loop counts the calls
    assert.equal("budget_exhausted", rec.status)
    assert.same({ name = "max_steps", value = 2, reached = 2 }, rec.limit)
  end)

  it("ends a step function that records nothing on max_seconds", function()
    local fn = bounded(function() end, 100000000)
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_seconds = 0.02 } }, fn)
    assert.equal("budget_exhausted", rec.status)
    assert.equal("max_seconds", rec.limit.name)
    assert.is_true(rec.limit.reached >= 0.02)
  end)

  it("ends a step function that records nothing on max_steps while other limits are unreachable", function()
    local fn, calls = bounded(function() end, 100)
    local rec = agentrun.loop(s, { agent = "a", goal = "g",
                                   budget = { max_steps = 2, max_tokens = 10, max_cost = 1 } }, fn)
    assert.equal(2, calls())
    assert.same({ name = "max_steps", value = 2, reached = 2 }, rec.limit)
  end)

  it("ends as budget_exhausted on max_cost with value in cost units", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_cost = 0.3 } }, function(ctx)
      ctx:record { kind = "llm", cost = 0.1 }
    end)
    assert.equal("budget_exhausted", rec.status)
    assert.same({ name = "max_cost", value = 0.3, reached = 0.3 }, rec.limit)
    assert.equal(3, rec.iterations)
    assert.equal(0.3, rec.usage.cost)
  end)

  it("ends as budget_exhausted before the first call when max_steps is 0", function()
    local called = false
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 0 } }, function()
      called = true
    end)
    assert.is_false(called)
    assert.equal("budget_exhausted", rec.status)
    assert.equal(0, rec.iterations)
    assert.same({}, rec.steps)
  end)

  it("ends as budget_exhausted when step_fn raises BudgetExhausted itself", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_tokens = 100 } }, function(ctx)
      ctx:record { kind = "llm", usage = { input_tokens = 100 } }
      ctx.run:check()
      return "unreachable"
    end)
    assert.equal("budget_exhausted", rec.status)
    assert.same({ name = "max_tokens", value = 100, reached = 100 }, rec.limit)
    assert.equal(1, #rec.steps)
  end)

  it("ends as failed with the message when step_fn raises, keeping the steps", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      ctx:record { kind = "llm", content = "before" }
      error("the model refused", 0)
    end)
    assert.equal("failed", rec.status)
    assert.equal("the model refused", rec.error)
    assert.equal(1, rec.iterations)
    assert.equal("before", rec.steps[1].content)
    assert.is_nil(rec.output)
    assert.equal("the model refused", s:get(rec.id).error)
  end)

  it("keeps the position in the message of an error raised with a level", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function() error("boom") end)
    assert.equal("failed", rec.status)
    assert.truthy(rec.error:match("^.*loop_spec%.lua:%d+: boom$"), rec.error)
  end)

  it("records the message of a table error, and 'failed' for error(nil)", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function() error({ message = "structured" }) end)
    assert.equal("structured", rec.error)
    rec = agentrun.loop(s, { agent = "a", goal = "g" }, function() error(nil) end)
    assert.equal("failed", rec.status)
    assert.equal("failed", rec.error)
    rec = agentrun.loop(s, { agent = "a", goal = "g" }, function()
      error(setmetatable({}, { __tostring = function() return "printable" end }))
    end)
    assert.equal("printable", rec.error)
  end)

  it("never leaves a run half-written when step_fn raises a Lua error midway", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      ctx:record { kind = "llm", usage = { input_tokens = 7, output_tokens = 3 }, cost = 0.05 }
      if ctx.iteration == 4 then
        local missing
        return missing.field -- a runtime error after the step was recorded
      end
    end)
    assert.equal("failed", rec.status)
    assert.truthy(rec.error:find("attempt to index a nil value", 1, true), rec.error)
    assert.equal(3, rec.iterations)
    assert.equal(3, #rec.steps)
    assert.same({ 1, 2, 3 }, h.seqs(rec.steps))
    assert.same({ input_tokens = 21, output_tokens = 9, total_tokens = 30, cost = 0.15 }, rec.usage)
    local stored = s:get(rec.id, { steps = true })
    assert.same(rec, stored)
    assert.equal(3, s:info().steps)
  end)

  it("ctx:record raises a plain error for a bad step, which fails the run when not caught", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      ctx:record { kind = "ok" }
      ctx:record { knid = "typo" }
    end)
    assert.equal("failed", rec.status)
    assert.truthy(rec.error:find("unknown field 'knid' in step", 1, true), rec.error)
    assert.equal(1, #rec.steps)
  end)

  it("a refused step caught in step_fn leaves ctx.steps and the seq unchanged", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      ctx:record { kind = "ok" }
      local ok, e = pcall(ctx.record, ctx, { kind = "bad", content = { x = 0 / 0 } })
      assert.is_false(ok)
      assert.equal("EJSON", e.code)
      assert.equal(1, #ctx.steps)
      assert.equal(2, ctx.iteration)
      assert.equal(2, ctx:record { kind = "ok again" })
      return "done"
    end)
    assert.equal("completed", rec.status)
    assert.same({ "ok", "ok again" }, { rec.steps[1].kind, rec.steps[2].kind })
  end)

  it("ctx:save saves a checkpoint that store:checkpoint reads back, and ctx.checkpoint follows it", function()
    local id
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      id = ctx.run.id
      assert.is_nil(ctx.checkpoint)
      ctx:record { kind = "llm" }
      ctx:save { next = "tool", pending = agentrun.array {} }
      assert.same({ next = "tool", pending = {} }, ctx.checkpoint)
      local state, seq = s:checkpoint(id)
      assert.same({ next = "tool", pending = {} }, state)
      assert.equal("[]", agentrun.json_encode(state.pending))
      assert.equal(1, seq)
      ctx:record { kind = "tool" }
      ctx:save { next = "done" }
      return "ok"
    end)
    assert.equal(id, rec.id)
    local state, seq = s:checkpoint(id)
    assert.same({ next = "done" }, state)
    assert.equal(2, seq)
  end)

  it("ctx:save of a value that is not JSON raises EJSON and keeps the old checkpoint", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      ctx:record { kind = "llm" }
      ctx:save { n = 1 }
      local ok, e = pcall(ctx.save, ctx, { n = 0 / 0 })
      assert.is_false(ok)
      assert.equal("EJSON", e.code)
      assert.same({ n = 1 }, ctx.checkpoint)
      return "ok"
    end)
    assert.same({ n = 1 }, (s:checkpoint(rec.id)))
  end)

  it("validates its arguments and spec with plain errors, beginning nothing", function()
    local fn = function() return 1 end
    local cases = {
      { s, { agent = "a", goal = "g", max_steps = 3 }, fn, "unknown field 'max_steps' in loop spec" },
      { s, { agent = "a", goal = "g", retry = 3 }, fn, "unknown field 'retry' in loop spec" },
      { s, { agent = "a", goal = "g", retries = -1 }, fn, "retries must be a non-negative integer" },
      { s, { agent = "a", goal = "g", retries = 1.5 }, fn, "retries must be a non-negative integer" },
      { s, { agent = "a", goal = "g", retries = "3" }, fn, "retries must be a non-negative integer" },
      { s, { agent = "a", goal = "g", budget = { max_step = 1 } }, fn, "unknown field 'max_step' in budget" },
      { s, { agent = "a", goal = "g", budget = { max_cost = -1 } }, fn, "max_cost" },
      { s, { goal = "g" }, fn, "agent is required" },
      { s, { agent = "a", goal = "g", resume = 5 }, fn, "resume must be a run id" },
      { s, "spec", fn, "bad argument #2 to 'loop'" },
      { s, { agent = "a", goal = "g" }, "fn", "bad argument #3 to 'loop'" },
      { s, { agent = "a", goal = "g" }, nil, "bad argument #3 to 'loop'" },
      { "store", { agent = "a", goal = "g" }, fn, "bad argument #1 to 'loop'" },
    }
    for _, c in ipairs(cases) do
      local msg = h.plain_error(agentrun.loop, c[1], c[2], c[3])
      assert.truthy(msg:find(c[4], 1, true), "expected '" .. c[4] .. "' in: " .. msg)
    end
    assert.equal(0, s:count())
  end)

  it("accepts retries = 0 and a positive integer", function()
    for _, n in ipairs { 0, 5 } do
      local rec = agentrun.loop(s, { agent = "a", goal = "g", retries = n }, function(ctx)
        ctx:record { kind = "x" }
        return n
      end)
      assert.equal("completed", rec.status)
      assert.equal(n, rec.output)
    end
  end)

  it("resumes a budget-exhausted run with a new budget; the transcript and seq continue", function()
    local first = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 2 } }, function(ctx)
      ctx:record { kind = "llm", content = ctx.iteration }
      ctx:save { at = ctx.iteration }
    end)
    assert.equal("budget_exhausted", first.status)
    local seen = {}
    local second = agentrun.loop(s, { resume = first.id, budget = { max_steps = 4 } }, function(ctx)
      seen[#seen + 1] = { iteration = ctx.iteration, n = #ctx.steps, checkpoint = ctx.checkpoint }
      ctx:record { kind = "llm", content = ctx.iteration }
    end)
    -- the state saved after step 2, when ctx.iteration had moved on to 3
    assert.same({ { iteration = 3, n = 2, checkpoint = { at = 3 } }, { iteration = 4, n = 3, checkpoint = { at = 3 } } },
      seen)
    assert.equal(first.id, second.id)
    assert.equal("budget_exhausted", second.status)
    assert.same({ max_steps = 4 }, second.budget)
    assert.same({ name = "max_steps", value = 4, reached = 4 }, second.limit)
    assert.equal(4, #second.steps)
    for i = 1, 4 do assert.equal(i, second.steps[i].content) end
  end)

  it("gives BudgetExhausted.steps the whole transcript after a resume", function()
    local first = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 1 } }, function(ctx)
      ctx:record { kind = "llm", content = "one" }
    end)
    local caught
    agentrun.loop(s, { resume = first.id, budget = { max_steps = 2 } }, function(ctx)
      ctx:record { kind = "llm", content = "two" }
      local ok, e = pcall(ctx.run.check, ctx.run)
      caught = e
      assert.is_false(ok)
      error(e)
    end)
    assert.is_true(agentrun.is_budget_exhausted(caught))
    assert.equal(2, #caught.steps)
    assert.equal("one", caught.steps[1].content)
    assert.equal("two", caught.steps[2].content)
  end)

  it("refuses to resume a completed run with ESTATE", function()
    local done = agentrun.loop(s, { agent = "a", goal = "g" }, function() return 1 end)
    h.ar_error("ESTATE", agentrun.loop, s, { resume = done.id }, function() return 2 end)
    h.ar_error("ENOTFOUND", agentrun.loop, s, { resume = "01ZZZZZZZZZZZZZZZZZZZZZZZZ" }, function() return 2 end)
    local msg = h.plain_error(agentrun.loop, s, { resume = done.id, budget = { max_stepz = 1 } }, function() end)
    assert.truthy(msg:find("unknown field 'max_stepz' in budget", 1, true), msg)
    msg = h.plain_error(s.resume, s, done.id, { budgte = {} })
    assert.truthy(msg:find("unknown field 'budgte' in resume options", 1, true), msg)
    assert.equal("completed", s:get(done.id).status)
    assert.equal(1, s:get(done.id).output)
  end)
end)
