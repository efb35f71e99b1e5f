-- fork_spec.lua -- store:fork and the loop's spec.fork; run:wait, ctx:wait, store:respond and the resume of an answered run (SPEC §3.6).
local agentrun = require "agentrun"
local h = require "helpers"

local here = (debug.getinfo(1, "S").source:match("^@(.*/)")) or "./"

-- The step of iteration i: its content and usage follow from i.
local function step_of(i)
  return { kind = "llm", name = "m", content = { i = i }, usage = { input_tokens = i, output_tokens = 2 * i,
           cache_read_tokens = i }, cost = 0.001 * i, duration_ms = i }
end

-- A run of n steps (still running) with a checkpoint after step ckpt (optional).
local function run_of(s, n, ckpt, spec)
  local r = s:begin(spec or { agent = "a", goal = "g", budget = { max_steps = 100 } })
  for i = 1, n do
    r:step(step_of(i))
    if i == ckpt then r:checkpoint { after = i } end
  end
  return r
end

-- A step without the fields a copy keeps apart (none: a copy keeps them all).
local function same_steps(a, b, n)
  for i = 1, n do assert.same(a[i], b[i]) end
end

describe("store:fork", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("copies steps 1..at with their usage, times and the checkpoint before them, and names its origin", function()
    local r = run_of(s, 8, 3)
    local failed = r:fail("went wrong at step 7")
    local before = s:get(failed.id, { steps = true })
    local f = s:fork(failed.id, { at = 6 })
    assert.not_equal(failed.id, f.id)
    assert.equal("running", f.status)
    assert.equal(6, f.iterations)
    assert.same({ input_tokens = 21, output_tokens = 42, total_tokens = 63, cost = 0.021, cache_read_tokens = 21 },
      f.usage)
    local rec = s:get(f.id, { steps = true })
    assert.same({ run = failed.id, seq = 6 }, rec.forked_from)
    assert.equal("a", rec.agent)
    assert.equal("g", rec.goal)
    assert.same({ max_steps = 100 }, rec.budget)
    same_steps(before.steps, rec.steps, 6)
    assert.equal(6, #rec.steps)
    local state, seq = s:checkpoint(f.id)
    assert.same({ after = 3 }, state)
    assert.equal(3, seq)
    assert.equal(7, f:step { kind = "llm" })
    -- the original is untouched
    assert.same(before, s:get(failed.id, { steps = true }))
  end)

  it("forks at the last step by default, at 0, any status, and forks of forks", function()
    local r = run_of(s, 3)
    local done = r:complete("x")
    local last = s:fork(done.id)
    assert.equal(3, last.iterations)
    local zero = s:fork(done.id, { at = 0 })
    assert.equal(0, zero.iterations)
    assert.is_nil(s:checkpoint(zero.id))
    last:step(step_of(9))
    local again = s:fork(last.id, { at = 4 })
    local rec = s:get(again.id, { steps = true })
    assert.same({ run = last.id, seq = 4 }, rec.forked_from)
    assert.same({ i = 9 }, rec.steps[4].content)
    local w = run_of(s, 1)
    w:wait("ok?")
    assert.equal(2, s:fork(w.id).iterations)
    local forks = s:runs { forked_from = done.id, order = "asc" }
    assert.same({ last.id, zero.id }, { forks[1].id, forks[2].id })
    assert.equal(2, #forks)
    assert.equal(1, s:count { forked_from = last.id })
    assert.equal(2, s:stats { forked_from = done.id }.runs)
  end)

  it("takes a new budget and metadata", function()
    local r = run_of(s, 2, nil, { agent = "a", goal = "g", metadata = { tag = "one" }, budget = { max_steps = 5 } })
    local f = s:fork(r.id, { budget = { max_cost = 1 }, metadata = { tag = "two" } })
    local rec = s:get(f.id)
    assert.same({ max_cost = 1 }, rec.budget)
    assert.same({ tag = "two" }, rec.metadata)
    assert.same({ tag = "one" }, s:get(r.id).metadata)
  end)

  it("refuses an at outside 0..iterations, non-integers, unknown fields and runs, and writes nothing", function()
    local r = run_of(s, 4)
    local before = s:get(r.id, { steps = true })
    assert.matches("0%.%.4", h.plain_error(s.fork, s, r.id, { at = 5 }))
    assert.matches("at", h.plain_error(s.fork, s, r.id, { at = -1 }))
    assert.matches("integer", h.plain_error(s.fork, s, r.id, { at = 1.5 }))
    assert.matches("integer", h.plain_error(s.fork, s, r.id, { at = "2" }))
    assert.matches("unknown field", h.plain_error(s.fork, s, r.id, { att = 2 }))
    assert.matches("bad argument #1 to 'fork'", h.plain_error(s.fork, s, 42))
    h.ar_error("ENOTFOUND", s.fork, s, "01M95K521M0003BBGNPZYFC8GS")
    h.ar_error("EJSON", s.fork, s, r.id, { metadata = { bad = 0 / 0 } })
    assert.equal(1, s:count())
    assert.same(before, s:get(r.id, { steps = true }))
  end)
end)

describe("run:wait and store:respond", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("appends a wait step, sets the run waiting and releases the handle", function()
    local r = run_of(s, 2)
    local rec = r:wait { approve = "refund", amount = 30 }
    assert.equal("waiting", rec.status)
    assert.same({ approve = "refund", amount = 30 }, rec.request)
    assert.is_nil(rec.response)
    assert.is_nil(rec.finished_at)
    assert.equal(3, rec.iterations)
    local steps = h.steps(s, r.id)
    assert.equal("wait", steps[3].kind)
    assert.same({ approve = "refund", amount = 30 }, steps[3].content)
    for _, write in ipairs {
      function() r:step { kind = "llm" } end, function() r:checkpoint(1) end, function() r:complete("x") end,
      function() r:fail("x") end, function() r:wait("again") end,
    } do
      h.ar_error("ESTATE", write)
    end
    assert.equal("waiting", r.status)
    local id = r.id
    r:close()
    assert.equal("waiting", s:get(id).status)
    h.ar_error("ESTATE", s.resume, s, id)
    assert.equal(1, s:stats().by_status.waiting)
    assert.equal(0, s:stats().by_status.running)
    assert.equal(1, #s:runs { status = "waiting" })
  end)

  it("is refused for a request that is not JSON, and the run goes on", function()
    local r = run_of(s, 1)
    h.ar_error("EJSON", r.wait, r, { x = 0 / 0 })
    assert.equal(2, r:step { kind = "llm" })
  end)

  it("takes one response; resume gives it as run.response and the run goes on", function()
    local r = run_of(s, 1)
    r:wait "may I?"
    local e = h.ar_error("ESTATE", s.resume, s, r.id)
    assert.matches("still waiting for a response", e.message)
    local rec = s:respond(r.id, { approved = true })
    assert.equal("waiting", rec.status)
    assert.same({ approved = true }, rec.response)
    assert.equal(3, rec.iterations)
    h.ar_error("ESTATE", s.respond, s, r.id, { approved = false })
    local back = s:resume(r.id)
    assert.same({ approved = true }, back.response)
    assert.equal(4, back:step { kind = "tool" })
    local done = back:complete "refunded"
    assert.equal("may I?", done.request)
    assert.same({ approved = true }, done.response)
    local steps = h.steps(s, r.id)
    assert.equal("response", steps[3].kind)
    assert.same({ approved = true }, steps[3].content)
  end)

  it("refuses to answer running, completed and unknown runs, and non-JSON answers, changing nothing", function()
    local running = run_of(s, 1)
    local done = run_of(s, 1)
    done:complete()
    local waiting = run_of(s, 1)
    waiting:wait "q"
    local before = { s:get(running.id, { steps = true }), s:get(done.id, { steps = true }),
                     s:get(waiting.id, { steps = true }) }
    h.ar_error("ESTATE", s.respond, s, running.id, "yes")
    h.ar_error("ESTATE", s.respond, s, done.id, "yes")
    h.ar_error("ENOTFOUND", s.respond, s, "01M95K521M0003BBGNPZYFC8GS", "yes")
    h.ar_error("EJSON", s.respond, s, waiting.id, { 0 / 0 })
    h.ar_error("EJSON", s.respond, s, waiting.id, "\xff")
    assert.matches("bad argument #2 to 'respond'", h.plain_error(s.respond, s, waiting.id))
    assert.matches("bad argument #1 to 'wait'", h.plain_error(running.wait, running))
    assert.same(before, { s:get(running.id, { steps = true }), s:get(done.id, { steps = true }),
                          s:get(waiting.id, { steps = true }) })
  end)

  it("leaves a waiting run alone on close, recover and retention", function()
    local db, o = h.location { durability = "normal" }
    local s1 = assert(agentrun.open(db, o))
    local r = run_of(s1, 1)
    r:wait "later"
    local c = run_of(s1, 1)
    c:complete()
    s1:close()
    local s2 = assert(agentrun.open(db, o))
    assert.equal("waiting", s2:get(r.id).status)
    assert.equal(0, s2:recover { stale_after = 0 })
    local report = s2:retain { older_than = 0, keep_last = 0 }
    assert.equal(1, report.deleted)
    assert.matches("never subject to retention", h.plain_error(s2.retain, s2, { status = "waiting", older_than = 0 }))
    assert.equal("waiting", s2:get(r.id).status)
    s2:close()
  end)

  it("is written whole and read back the same, waiting or forked", function()
    local r = run_of(s, 2)
    local f = s:fork(r.id, { at = 1 })
    f:complete "forked"
    r:wait { ask = agentrun.array { 1, 2 } }
    local other = h.store()
    for _, id in ipairs { r.id, f.id } do
      local rec = s:get(id, { steps = true })
      assert.equal(id, other:write(rec))
      assert.same(rec, other:get(id, { steps = true }))
    end
    other:respond(r.id, "yes")
    assert.equal("yes", other:resume(r.id).response)
    assert.matches("request", h.plain_error(other.write, other, { agent = "a", goal = "g", status = "waiting" }))
    other:close()
  end)

  it("lets exactly one of several processes answer at once", function()
    local db, o = h.location()
    local s1 = assert(agentrun.open(db, o))
    local r = run_of(s1, 1)
    r:wait "who?"
    local dir = h.tmpdir()
    local go = dir .. "/go"
    local children = {}
    for k = 1, 3 do
      children[k] = assert(io.popen(("%slua5.4 '%srespond_agent.lua' '%s' '%s' 'answer %d' '%s' 2>'%s/stderr%d'")
        :format(h.child_env(o), here, db, r.id, k, go, dir, k)))
    end
    h.write_file(go, "")
    local results = {}
    for k = 1, 3 do
      local line = children[k]:read("l")
      assert(children[k]:close(), "a child failed: " .. h.read_file(dir .. "/stderr" .. k))
      results[line] = (results[line] or 0) + 1
    end
    assert.same({ ok = 1, ESTATE = 2 }, results)
    local rec = s1:get(r.id, { steps = true })
    assert.equal(3, #rec.steps)
    assert.equal(rec.response, rec.steps[3].content)
    s1:close()
    h.rmdir(dir)
  end)
end)

describe("agentrun.loop with spec.fork and ctx:wait", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("re-runs a failed run from the step before it went wrong with another budget", function()
    local failed = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      if ctx.iteration == 4 then error("tool broke") end
      ctx:record(step_of(ctx.iteration))
    end)
    assert.equal("failed", failed.status)
    local seen
    local rec = agentrun.loop(s, { fork = { run = failed.id, at = 2 }, budget = { max_steps = 5 } }, function(ctx)
      seen = seen or { #ctx.steps, ctx.iteration }
      ctx:record { kind = "llm", content = "other way" }
    end)
    assert.same({ 2, 3 }, seen)
    assert.equal("budget_exhausted", rec.status)
    assert.same({ run = failed.id, seq = 2 }, rec.forked_from)
    assert.equal(5, #rec.steps)
    assert.same({ i = 2 }, rec.steps[2].content)
    assert.equal("other way", rec.steps[3].content)
  end)

  it("refuses a bad fork spec", function()
    assert.matches("spec.fork", h.plain_error(agentrun.loop, s, { fork = "x" }, function() end))
    assert.matches("unknown field", h.plain_error(agentrun.loop, s, { fork = { run = "x", seq = 1 } }, function() end))
    assert.matches("together", h.plain_error(agentrun.loop, s, { fork = { run = "x" }, resume = "y" }, function() end))
    assert.matches("agent", h.plain_error(agentrun.loop, s, { fork = { run = "x" }, agent = "a" }, function() end))
  end)

  it("ends with the waiting record at ctx:wait, and a resume after the answer has ctx.response", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "refund" }, function(ctx)
      ctx:record { kind = "llm", content = "plan: refund 30" }
      ctx:wait { approve = "refund 30" }
      error("not reached")
    end)
    assert.equal("waiting", rec.status)
    assert.same({ approve = "refund 30" }, rec.request)
    assert.equal(2, #rec.steps)
    assert.equal("wait", rec.steps[2].kind)
    s:respond(rec.id, "approved")
    local got
    local done = agentrun.loop(s, { resume = rec.id }, function(ctx)
      got = ctx.response
      return "refunded"
    end)
    assert.equal("approved", got)
    assert.equal("completed", done.status)
    assert.equal(3, #done.steps)
  end)
end)
