-- resume_spec.lua -- checkpoints, store:resume, agentrun.loop with spec.resume, store:recover, resume after kill -9 (SPEC §3.6, §6 Loop).
local agentrun = require "agentrun"
local h = require "helpers"

-- The step of iteration i in these tests: its content and usage follow from i.
local function step_of(i)
  return { kind = "llm", name = "m", content = { i = i }, usage = { input_tokens = 10 * i, output_tokens = i },
           cost = 0.25 }
end

-- Usage of steps 1..n made by step_of.
local function usage_of(n)
  local input, output = 0, 0
  for i = 1, n do input, output = input + 10 * i, output + i end
  return { input_tokens = input, output_tokens = output, total_tokens = input + output, cost = 0.25 * n }
end

-- The contents of a list of steps.
local function contents(steps)
  local t = {}
  for i, st in ipairs(steps) do t[i] = st.content end
  return t
end

-- { {i = 1}, ..., {i = n} }
local function contents_of(n)
  local t = {}
  for i = 1, n do t[i] = { i = i } end
  return t
end

-- 1..n as a list.
local function seqs_of(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

-- A run of agent "a" that took n steps and hit max_steps = n: budget_exhausted.
local function exhausted_run(s, n, extra_budget)
  local budget = { max_steps = n }
  for k, v in pairs(extra_budget or {}) do budget[k] = v end
  local r = s:begin { agent = "a", goal = "g", budget = budget }
  for i = 1, n do r:step(step_of(i)) end
  r:checkpoint { after = n }
  local e = h.budget_error(r.check, r)
  local rec = r:exhaust(e)
  assert.equal("budget_exhausted", rec.status)
  local id = r.id
  r:close()
  return id
end

-- A run of agent "a" that took n steps and then was marked interrupted by
-- store:recover, as if its process had died.
local function interrupted_run(s, n)
  local r = s:begin { agent = "a", goal = "g", budget = { max_steps = 100 } }
  for i = 1, n do r:step(step_of(i)) end
  r:checkpoint { after = n }
  local id = r.id
  assert.equal(1, s:recover { stale_after = 0 })
  assert.equal("interrupted", s:get(id).status)
  r:close()
  return id
end

describe("checkpoints", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("give the latest state and the seq it follows, and nil when there is none", function()
    local r = s:begin { agent = "a", goal = "g" }
    assert.is_nil(s:checkpoint(r.id))
    assert.equal(1, select("#", s:checkpoint(r.id)))
    r:checkpoint { phase = "start" }
    local state, seq = s:checkpoint(r.id)
    assert.same({ phase = "start" }, state)
    assert.equal(0, seq)
    r:step { kind = "llm" }
    r:step { kind = "tool" }
    r:checkpoint { phase = "tools", todo = agentrun.array { "a", "b" }, n = 2 }
    state, seq = s:checkpoint(r.id)
    assert.same({ phase = "tools", todo = { "a", "b" }, n = 2 }, state)
    assert.equal(2, seq)
    assert.equal("integer", math.type(seq))
    r:step { kind = "llm" }
    -- a later step alone does not move the checkpoint
    state, seq = s:checkpoint(r.id)
    assert.same({ phase = "tools", todo = { "a", "b" }, n = 2 }, state)
    assert.equal(2, seq)
    r:checkpoint "plain text"
    state, seq = s:checkpoint(r.id)
    assert.equal("plain text", state)
    assert.equal(3, seq)
    r:complete()
    -- still readable once the run is finished
    assert.equal("plain text", (s:checkpoint(r.id)))
  end)

  it("round-trip any JSON value and keep arrays and empty objects apart", function()
    local r = s:begin { agent = "a", goal = "g" }
    for _, v in ipairs { 42, 1.5, true, false, "x", agentrun.array {}, {}, { a = { b = { c = agentrun.array { 1 } } } } } do
      r:checkpoint(v)
      local state = s:checkpoint(r.id)
      assert.equal(h.canon(v), h.canon(state))
    end
    r:checkpoint(agentrun.array {})
    assert.equal("[]", agentrun.json_encode((s:checkpoint(r.id))))
    r:checkpoint {}
    assert.equal("{}", agentrun.json_encode((s:checkpoint(r.id))))
    r:complete()
  end)

  it("are kept per run", function()
    local r1 = s:begin { agent = "a", goal = "g" }
    local r2 = s:begin { agent = "a", goal = "g" }
    r1:step { kind = "x" }
    r1:checkpoint { run = 1 }
    assert.is_nil(s:checkpoint(r2.id))
    r2:checkpoint { run = 2 }
    assert.same({ run = 1 }, s:checkpoint(r1.id))
    assert.same({ run = 2 }, s:checkpoint(r2.id))
    r1:complete()
    r2:complete()
  end)

  it("raise ENOTFOUND for an unknown run and a plain error for a bad id", function()
    local e = h.ar_error("ENOTFOUND", s.checkpoint, s, "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert.equal("ENOTFOUND", e.code)
    h.ar_error("ENOTFOUND", s.checkpoint, s, "nope")
    h.plain_error(s.checkpoint, s)
    h.plain_error(s.checkpoint, s, 12)
  end)

  it("refuse a missing state with a plain error and unencodable state with EJSON, keeping the last one", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "x" }
    r:checkpoint { good = true }
    h.plain_error(r.checkpoint, r)
    h.plain_error(r.checkpoint, r, nil)
    h.ar_error("EJSON", r.checkpoint, r, { bad = 0 / 0 })
    h.ar_error("EJSON", r.checkpoint, r, { f = print })
    local state, seq = s:checkpoint(r.id)
    assert.same({ good = true }, state)
    assert.equal(1, seq)
    r:complete()
  end)

  it("cannot be saved on a finished run: ESTATE", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:checkpoint { v = 1 }
    r:complete "ok"
    h.ar_error("ESTATE", r.checkpoint, r, { v = 2 })
    assert.same({ v = 1 }, s:checkpoint(r.id))
  end)

  it("survive in the store and are read by another handle", function()
    local path, o = h.location()
    local s1 = assert(agentrun.open(path, o))
    local r = s1:begin { agent = "a", goal = "g" }
    r:step { kind = "x" }
    r:checkpoint { saved = "yes" }
    local s2 = assert(agentrun.open(path, o))
    local state, seq = s2:checkpoint(r.id)
    assert.same({ saved = "yes" }, state)
    assert.equal(1, seq)
    s2:close()
    r:complete()
    s1:close()
  end)
end)

describe("store:resume", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("continues a budget_exhausted run: same id, seq and usage continue, whole transcript kept", function()
    local id = exhausted_run(s, 3)
    local r = s:resume(id, { budget = { max_steps = 5 } })
    assert.equal(id, r.id)
    assert.equal("running", r.status)
    assert.equal(3, r.iterations)
    assert.same(usage_of(3), r.usage)
    assert.equal("running", s:get(id).status)
    assert.equal(4, r:step(step_of(4)))
    assert.equal(5, r:step(step_of(5)))
    assert.same(usage_of(5), r.usage)
    local rec = r:complete "finally"
    assert.equal("completed", rec.status)
    assert.equal("finally", rec.output)
    assert.is_nil(rec.limit)
    assert.equal(5, rec.iterations)
    assert.same(usage_of(5), rec.usage)
    local full = s:get(id, { steps = true })
    assert.same(seqs_of(5), h.seqs(full.steps))
    assert.same(contents_of(5), contents(full.steps))
    assert.same({ max_steps = 5 }, full.budget)
  end)

  it("continues an interrupted run", function()
    local id = interrupted_run(s, 2)
    local r = s:resume(id)
    assert.equal(2, r.iterations)
    assert.same({ max_steps = 100 }, r.budget)
    assert.equal(3, r:step(step_of(3)))
    local rec = r:fail "gave up"
    assert.equal("failed", rec.status)
    assert.equal("gave up", rec.error)
    assert.same(usage_of(3), rec.usage)
    assert.same(seqs_of(3), h.seqs(h.steps(s, id)))
  end)

  it("keeps the old budget without one, and a new budget replaces it entirely", function()
    local id = exhausted_run(s, 2, { max_cost = 10 })
    local r = s:resume(id)
    assert.same({ max_steps = 2, max_cost = 10 }, r.budget)
    local e = h.budget_error(r.check, r)
    assert.equal("max_steps", e.limit)
    r:exhaust(e)
    r:close()
    r = s:resume(id, { budget = { max_tokens = 1000 } })
    assert.same({ max_tokens = 1000 }, r.budget)
    assert.same({ max_tokens = 1000 }, s:get(id).budget)
    r:check() -- max_steps is gone
    r:step(step_of(3))
    r:close()
  end)

  it("raises BudgetExhausted with the whole transcript when the resumed run exhausts again", function()
    local id = exhausted_run(s, 2)
    local r = s:resume(id, { budget = { max_steps = 4 } })
    r:step(step_of(3))
    r:step(step_of(4))
    local e = h.budget_error(r.check, r)
    assert.equal("max_steps", e.limit)
    assert.equal(4, e.value)
    assert.equal(4, e.iterations)
    assert.equal(id, e.run_id)
    assert.same(usage_of(4), e.usage)
    assert.same(seqs_of(4), h.seqs(e.steps))
    assert.same(contents_of(4), contents(e.steps))
    local rec = r:exhaust(e)
    assert.equal("budget_exhausted", rec.status)
    assert.equal(4, rec.iterations)
    -- and can be resumed again
    local r2 = s:resume(id, { budget = { max_steps = 5 } })
    assert.equal(5, r2:step(step_of(5)))
    r2:complete()
    assert.same(seqs_of(5), h.seqs(h.steps(s, id)))
  end)

  it("raises ESTATE for completed, failed and running runs and changes nothing", function()
    local done = s:begin { agent = "a", goal = "g" }
    done:step { kind = "x" }
    done:complete "out"
    local failed = s:begin { agent = "a", goal = "g" }
    failed:fail "boom"
    local running = s:begin { agent = "a", goal = "g" }
    running:step { kind = "x" }
    for _, r in ipairs { done, failed, running } do
      local before = s:get(r.id, { steps = true })
      local e = h.ar_error("ESTATE", s.resume, s, r.id)
      assert.truthy(e.message:find(before.status, 1, true))
      h.ar_error("ESTATE", s.resume, s, r.id, { budget = { max_steps = 9 } })
      assert.same(before, s:get(r.id, { steps = true }))
    end
    -- a run already resumed is running again: a second resume is refused
    local id = exhausted_run(s, 1)
    local again = s:resume(id)
    h.ar_error("ESTATE", s.resume, s, id)
    again:close()
    running:close()
  end)

  it("raises ENOTFOUND for an unknown run and plain errors for bad arguments", function()
    h.ar_error("ENOTFOUND", s.resume, s, "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    local id = exhausted_run(s, 1)
    h.plain_error(s.resume, s)
    h.plain_error(s.resume, s, 5)
    h.plain_error(s.resume, s, id, "fast")
    h.plain_error(s.resume, s, id, { bugdet = { max_steps = 3 } })
    h.plain_error(s.resume, s, id, { budget = { max_steps = -1 } })
    h.plain_error(s.resume, s, id, { budget = { max_step = 3 } })
    h.plain_error(s.resume, s, id, { budget = 3 })
    assert.equal("budget_exhausted", s:get(id).status)
    assert.same({ max_steps = 1 }, s:get(id).budget)
  end)
end)

describe("agentrun.loop with spec.resume", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  -- A first loop that saves a checkpoint per step and exhausts max_steps = n.
  local function first_loop(n)
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = n } }, function(ctx)
      local seq = ctx:record(step_of(ctx.iteration))
      ctx:save { done = seq }
    end)
    assert.equal("budget_exhausted", rec.status)
    assert.equal(n, rec.iterations)
    return rec.id
  end

  it("gives step_fn the earlier steps, the saved checkpoint and the next iteration, and ends with the whole transcript", function()
    local id = first_loop(3)
    local calls = {}
    local rec = agentrun.loop(s, { resume = id, budget = { max_steps = 10 } }, function(ctx)
      calls[#calls + 1] = { iteration = ctx.iteration, n = #ctx.steps, checkpoint = h.copy(ctx.checkpoint),
                            usage = h.copy(ctx.usage) }
      if #calls == 1 then
        assert.equal(id, ctx.run.id)
        assert.same(seqs_of(3), h.seqs(ctx.steps))
        assert.same(contents_of(3), contents(ctx.steps))
      end
      local seq = ctx:record(step_of(ctx.iteration))
      ctx:save { done = seq }
      if seq == 5 then return "resumed and done" end
    end)
    assert.same({ iteration = 4, n = 3, checkpoint = { done = 3 }, usage = usage_of(3) }, calls[1])
    assert.same({ iteration = 5, n = 4, checkpoint = { done = 4 }, usage = usage_of(4) }, calls[2])
    assert.equal(2, #calls)
    assert.equal(id, rec.id)
    assert.equal("completed", rec.status)
    assert.equal("resumed and done", rec.output)
    assert.equal(5, rec.iterations)
    assert.equal(#rec.steps, rec.iterations)
    assert.same(seqs_of(5), h.seqs(rec.steps))
    assert.same(contents_of(5), contents(rec.steps))
    assert.same(usage_of(5), rec.usage)
    assert.same({ max_steps = 10 }, rec.budget)
    assert.same(rec, s:get(id, { steps = true }))
    local state, seq = s:checkpoint(id)
    assert.same({ done = 5 }, state)
    assert.equal(5, seq)
  end)

  it("ends budget_exhausted again with the whole transcript under the new budget", function()
    local id = first_loop(2)
    local seen
    local rec = agentrun.loop(s, { resume = id, budget = { max_steps = 4 } }, function(ctx)
      ctx:record(step_of(ctx.iteration))
    end)
    assert.equal("budget_exhausted", rec.status)
    assert.same({ name = "max_steps", value = 4 }, { name = rec.limit.name, value = rec.limit.value })
    assert.equal(4, rec.iterations)
    assert.same(seqs_of(4), h.seqs(rec.steps))
    assert.same(contents_of(4), contents(rec.steps))
    -- the BudgetExhausted a step_fn sees after a resume carries the whole transcript too
    rec = agentrun.loop(s, { resume = id, budget = { max_steps = 6 } }, function(ctx)
      ctx:record(step_of(ctx.iteration))
      local ok, e = pcall(ctx.run.check, ctx.run)
      if not ok then
        seen = e
        error(e, 0)
      end
    end)
    assert.is_true(agentrun.is_budget_exhausted(seen))
    assert.equal(6, seen.iterations)
    assert.same(seqs_of(6), h.seqs(seen.steps))
    assert.same(contents_of(6), contents(seen.steps))
    assert.equal("budget_exhausted", rec.status)
    assert.same(seqs_of(6), h.seqs(rec.steps))
  end)

  it("without a budget keeps the old one and ends at once when it is still exhausted", function()
    local id = first_loop(2)
    local called = false
    local rec = agentrun.loop(s, { resume = id }, function() called = true end)
    assert.is_false(called)
    assert.equal("budget_exhausted", rec.status)
    assert.same({ max_steps = 2 }, rec.budget)
    assert.same(seqs_of(2), h.seqs(rec.steps))
  end)

  it("resumes an interrupted run, with ctx.checkpoint nil when none was saved", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:step(step_of(1))
    local id = r.id
    s:recover { stale_after = 0 }
    r:close()
    local first
    local rec = agentrun.loop(s, { resume = id }, function(ctx)
      if not first then first = { iteration = ctx.iteration, checkpoint = ctx.checkpoint, n = #ctx.steps } end
      ctx:record(step_of(ctx.iteration))
      if ctx.iteration == 3 then return "ok" end
    end)
    assert.same({ iteration = 2, n = 1 }, first)
    assert.equal("completed", rec.status)
    assert.same(seqs_of(2), h.seqs(rec.steps))
    assert.same(usage_of(2), rec.usage)
  end)

  it("records a failure after a resume with the whole transcript", function()
    local id = first_loop(2)
    local rec = agentrun.loop(s, { resume = id, budget = { max_steps = 10 } }, function(ctx)
      ctx:record(step_of(ctx.iteration))
      error("tool crashed", 0)
    end)
    assert.equal("failed", rec.status)
    assert.equal("tool crashed", rec.error)
    assert.same(seqs_of(3), h.seqs(rec.steps))
  end)

  it("raises ESTATE or ENOTFOUND when the run cannot be resumed, and a plain error for a bad id", function()
    local done = agentrun.loop(s, { agent = "a", goal = "g" }, function() return 1 end)
    local called = false
    local fn = function() called = true end
    h.ar_error("ESTATE", agentrun.loop, s, { resume = done.id }, fn)
    h.ar_error("ENOTFOUND", agentrun.loop, s, { resume = "01ZZZZZZZZZZZZZZZZZZZZZZZZ" }, fn)
    h.plain_error(agentrun.loop, s, { resume = 7 }, fn)
    h.plain_error(agentrun.loop, s, { resume = done.id, budget = { max_steps = -1 } }, fn)
    assert.is_false(called)
    assert.equal("completed", s:get(done.id).status)
  end)
end)

describe("store:recover", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("marks running runs idle for stale_after seconds as interrupted and counts them", function()
    local r1 = s:begin { agent = "a", goal = "g" }
    local r2 = s:begin { agent = "b", goal = "g" }
    r2:step { kind = "x" }
    local done = s:begin { agent = "a", goal = "g" }
    done:complete()
    local failed = s:begin { agent = "a", goal = "g" }
    failed:fail "x"
    local exhausted = exhausted_run(s, 1)
    assert.equal(0, s:recover { stale_after = 3600 })
    assert.equal("running", s:get(r1.id).status)
    assert.equal(2, s:recover { stale_after = 0 })
    assert.equal("interrupted", s:get(r1.id).status)
    assert.equal("interrupted", s:get(r2.id).status)
    assert.equal("completed", s:get(done.id).status)
    assert.equal("failed", s:get(failed.id).status)
    assert.equal("budget_exhausted", s:get(exhausted).status)
    assert.equal(0, s:recover { stale_after = 0 })
    assert.equal(2, s:count { status = "interrupted" })
    -- the steps stay, and the handle can no longer write to the run
    assert.same({ 1 }, h.seqs(h.steps(s, r2.id)))
    h.ar_error("ESTATE", r2.step, r2, { kind = "late" })
    assert.same({ 1 }, h.seqs(h.steps(s, r2.id)))
    local id1 = r1.id
    r1:close()
    r2:close()
    -- closing the handles does not turn the interrupted runs into failed ones
    assert.equal("interrupted", s:get(id1).status)
  end)

  it("leaves runs with recent activity running", function()
    local idle = s:begin { agent = "a", goal = "g" }
    local active = s:begin { agent = "a", goal = "g" }
    os.execute("sleep 0.4")
    active:step { kind = "x" }
    local fresh = s:begin { agent = "a", goal = "g" }
    -- idle has done nothing for 0.4 s; active and fresh did something just now
    assert.equal(1, s:recover { stale_after = 0.2 })
    assert.equal("interrupted", s:get(idle.id).status)
    assert.equal("running", s:get(active.id).status)
    assert.equal("running", s:get(fresh.id).status)
    idle:close()
    active:complete()
    fresh:complete()
  end)

  it("requires a non-negative stale_after with a plain error", function()
    local r = s:begin { agent = "a", goal = "g" }
    h.plain_error(s.recover, s)
    h.plain_error(s.recover, s, {})
    h.plain_error(s.recover, s, { stale_after = -1 })
    h.plain_error(s.recover, s, { stale_after = "1h" })
    h.plain_error(s.recover, s, { stale_after = 0 / 0 })
    h.plain_error(s.recover, s, { stale_after = 0, older_than = 1 })
    assert.equal("running", s:get(r.id).status)
    r:complete()
  end)
end)

describe("a run killed with SIGKILL", function()
  local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

  -- Whether process pid still runs (a zombie counts as dead: it runs no more code).
  local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat", "r")
    if not f then return false end
    local stat = f:read("a")
    f:close()
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= nil and state ~= "Z" and state ~= "X"
  end

  -- The run id and the acknowledged steps (seq -> content JSON) the child reported.
  local function progress(path)
    local f = io.open(path, "r")
    if not f then return nil, {} end
    local text = f:read("a")
    f:close()
    local id, acked = nil, {}
    for line in text:gmatch("([^\n]*)\n") do -- complete lines only
      local rid = line:match("^run (%S+)$")
      if rid then
        id = rid
      else
        local seq, json = line:match("^(%d+)\t(.*)$")
        acked[#acked + 1] = { seq = tonumber(seq), json = json }
      end
    end
    return id, acked
  end

  it("loses and repeats no acknowledged step, is recovered as interrupted and resumed to completion", function()
    local dir = h.tmpdir()
    local db, o = h.location()
    local prog, pidfile = dir .. "/progress", dir .. "/pid"
    local pid
    local ok, err = pcall(function()
      assert(os.execute(("%slua5.4 '%scrash_agent.lua' '%s' '%s' >/dev/null 2>'%s/stderr' & echo $! > '%s'")
        :format(h.child_env(o), here, db, prog, dir, pidfile)))
      pid = h.read_file(pidfile):match("%d+")
      assert(pid, "no pid from the child")
      -- wait for at least 5 acknowledged steps (up to ~10 s on a loaded machine)
      local id, acked
      for _ = 1, 500 do
        id, acked = progress(prog)
        if #acked >= 5 or not alive(pid) then break end
        os.execute("sleep 0.02")
      end
      assert(#acked >= 5, "the child made too few steps: " .. h.read_file(dir .. "/stderr"))
      assert(alive(pid), "the child ended on its own: " .. h.read_file(dir .. "/stderr"))
      os.execute("kill -9 " .. pid)
      for _ = 1, 500 do
        if not alive(pid) then break end
        os.execute("sleep 0.01")
      end
      assert.is_false(alive(pid))
      pid = nil
      id, acked = progress(prog)

      local s = assert(agentrun.open(db, o))
      assert.equal("running", s:get(id).status)
      assert.equal(1, s:recover { stale_after = 0 })
      local before = s:get(id, { steps = true })
      assert.equal("interrupted", before.status)
      local n = before.iterations
      -- every acknowledged step is there, as written; at most one more step
      -- (recorded, then killed before it was reported) may follow them
      assert.is_true(n == #acked or n == #acked + 1, ("%d steps stored, %d acknowledged"):format(n, #acked))
      assert.equal(n, #before.steps)
      for i, a in ipairs(acked) do
        assert.equal(i, a.seq)
        assert.equal(i, before.steps[i].seq)
        assert.equal(h.canon(agentrun.json_decode(a.json)), h.canon(before.steps[i].content))
      end
      for i, st in ipairs(before.steps) do
        assert.equal(i, st.seq)
        assert.equal(i, st.content.i)
        assert.equal("step " .. i, st.content.text)
      end
      local state, cseq = s:checkpoint(id)
      assert.equal(cseq, state.done)
      assert.is_true(cseq == n or cseq == n - 1)

      -- resume it here and complete it three steps later
      local first
      local rec = agentrun.loop(s, { resume = id }, function(ctx)
        if not first then
          first = { iteration = ctx.iteration, n = #ctx.steps, done = ctx.checkpoint.done }
        end
        local i = ctx.iteration
        ctx:record { kind = "tool", name = "t", content = { i = i, text = "step " .. i, nonce = 0 },
                     usage = { input_tokens = i, output_tokens = 1 } }
        if i == n + 3 then return "survived" end
      end)
      assert.same({ iteration = n + 1, n = n, done = cseq }, first)
      assert.equal("completed", rec.status)
      assert.equal("survived", rec.output)
      assert.equal(n + 3, rec.iterations)
      assert.equal(#rec.steps, rec.iterations)
      assert.same(seqs_of(n + 3), h.seqs(rec.steps))
      for i, st in ipairs(rec.steps) do assert.equal(i, st.content.i) end
      for i, a in ipairs(acked) do
        assert.equal(h.canon(agentrun.json_decode(a.json)), h.canon(rec.steps[i].content))
      end
      local m = n + 3
      assert.same({ input_tokens = m * (m + 1) // 2, output_tokens = m, total_tokens = m * (m + 1) // 2 + m, cost = 0 },
                  rec.usage)
      s:close()
    end)
    if pid and alive(pid) then os.execute("kill -9 " .. pid) end
    h.rmdir(dir)
    assert(ok, err)
  end)
end)
