-- intents_spec.lua -- tool calls that must not run twice: run:intend, run:settle, store:intents, ctx:tool,
-- ctx.pending, spec.on_pending (SPEC §3.3, §3.6 Intents), including kill -9 at random moments.
local agentrun = require "agentrun"
local h = require "helpers"

-- A store and a way to open it again (as another process would).
local function fresh()
  local loc, o = h.location { durability = "normal" }
  local s = assert(agentrun.open(loc, o))
  return s, function() return assert(agentrun.open(loc, h.same_store(o, { durability = "normal" }))) end
end

-- A run whose process "died" with what it had recorded: its store is closed
-- (the run becomes interrupted, as after kill -9 and recover) and opened again.
local function crash(s, reopen)
  s:close()
  return reopen()
end

describe("run:intend and run:settle", function()
  local s, reopen
  before_each(function() s, reopen = fresh() end)
  after_each(function() s:close() end)

  it("records an intent step before the tool runs and a tool step linked to its key after", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm", content = "plan" }
    assert.equal(2, r:intend { key = "refund-1", name = "refund", args = { amount = 5 } })
    local st = h.steps(s, r.id)
    assert.equal(2, #st)
    assert.equal("intent", st[2].kind)
    assert.equal("refund", st[2].name)
    assert.same({ key = "refund-1", args = { amount = 5 } }, st[2].content)
    assert.equal(3, r:settle("refund-1", { ok = true, id = "R7" }))
    st = h.steps(s, r.id)
    assert.equal("tool", st[3].kind)
    assert.equal("refund", st[3].name)
    assert.same({ intent = 2, key = "refund-1", result = { ok = true, id = "R7" } }, st[3].content)
    assert.equal(3, r.iterations)
    r:complete()
  end)

  it("raises ESTATE for a key already used in the run, and stores nothing", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:intend { key = "k", name = "t" }
    h.ar_error("ESTATE", r.intend, r, { key = "k", name = "t" })
    h.ar_error("ESTATE", r.intend, r, { key = "k", name = "other", args = 1 })
    r:settle("k", 1)
    local e = h.ar_error("ESTATE", r.intend, r, { key = "k", name = "t" })
    assert.truthy(e.message:find("already used", 1, true), e.message)
    assert.equal(2, r.iterations)
    assert.equal(2, #h.steps(s, r.id))
    r:complete()
  end)

  it("raises ESTATE to settle a key never intended or already settled, and stores nothing", function()
    local r = s:begin { agent = "a", goal = "g" }
    local e = h.ar_error("ESTATE", r.settle, r, "nope", 1)
    assert.truthy(e.message:find("never intended", 1, true), e.message)
    r:intend { key = "k", name = "t" }
    r:settle("k", 1)
    e = h.ar_error("ESTATE", r.settle, r, "k", 2)
    assert.truthy(e.message:find("already settled", 1, true), e.message)
    h.ar_error("ESTATE", r.settle, r, "k", 2, { failed = true })
    assert.equal(2, #h.steps(s, r.id))
    r:complete()
  end)

  it("keys are separate per run", function()
    local a = s:begin { agent = "a", goal = "g" }
    local b = s:begin { agent = "a", goal = "g" }
    a:intend { key = "k", name = "t" }
    b:intend { key = "k", name = "t" }
    h.ar_error("ESTATE", b.settle, b, "x", 1)
    a:settle("k", "a")
    b:settle("k", "b")
    assert.equal("a", s:intents(a.id)[1].result)
    assert.equal("b", s:intents(b.id)[1].result)
    a:complete()
    b:complete()
  end)

  it("refuses values that are not JSON with EJSON and stores nothing", function()
    local r = s:begin { agent = "a", goal = "g" }
    h.ar_error("EJSON", r.intend, r, { key = "k", name = "t", args = 0 / 0 })
    h.ar_error("EJSON", r.intend, r, { key = "k", name = "t", args = { f = print } })
    local cyclic = {}
    cyclic.self = cyclic
    h.ar_error("EJSON", r.intend, r, { key = "k", name = "t", args = cyclic })
    assert.equal(0, #h.steps(s, r.id))
    -- the key was not taken by the refused calls
    r:intend { key = "k", name = "t", args = 1 }
    h.ar_error("EJSON", r.settle, r, "k", math.huge)
    h.ar_error("EJSON", r.settle, r, "k", { 1, nil, 3 })
    h.ar_error("EJSON", r.settle, r, "k", 1 << 60)
    assert.equal(1, #h.steps(s, r.id))
    assert.equal("pending", s:intents(r.id)[1].status)
    r:settle("k", "ok")
    assert.equal("settled", s:intents(r.id)[1].status)
    r:complete()
  end)

  it("raises plain errors for bad arguments, and stores nothing", function()
    local r = s:begin { agent = "a", goal = "g" }
    assert.truthy(h.plain_error(r.intend, r):find("bad argument #1 to 'intend'", 1, true))
    h.plain_error(r.intend, r, "k")
    h.plain_error(r.intend, r, { name = "t" })
    h.plain_error(r.intend, r, { key = "k" })
    h.plain_error(r.intend, r, { key = 1, name = "t" })
    h.plain_error(r.intend, r, { key = "", name = "t" })
    h.plain_error(r.intend, r, { key = "k", name = "" })
    h.plain_error(r.intend, r, { key = "k\0z", name = "t" })
    h.plain_error(r.intend, r, { key = "k", name = "t", arg = 1 })
    h.plain_error(r.intend, r, { key = "\xff", name = "t" })
    assert.equal(0, #h.steps(s, r.id))
    r:intend { key = "k", name = "t" }
    assert.truthy(h.plain_error(r.settle, r):find("bad argument #1 to 'settle'", 1, true))
    h.plain_error(r.settle, r, 1, "x")
    h.plain_error(r.settle, r, "", "x")
    h.plain_error(r.settle, r, "k", "x", { failed = "yes" })
    h.plain_error(r.settle, r, "k", "x", { fail = true })
    h.plain_error(r.settle, r, "k", "x", true)
    assert.equal(1, #h.steps(s, r.id))
    r:complete()
  end)

  it("is refused on a finished or closed run", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:intend { key = "k", name = "t" }
    r:complete()
    h.ar_error("ESTATE", r.intend, r, { key = "k2", name = "t" })
    h.ar_error("ESTATE", r.settle, r, "k", 1)
    r:close()
    h.plain_error(r.intend, r, { key = "k3", name = "t" })
  end)

  it("counts intent and tool steps as steps: in iterations and toward max_steps", function()
    local r = s:begin { agent = "a", goal = "g", budget = { max_steps = 2 } }
    r:intend { key = "k", name = "t" }
    r:check()
    -- recording never raises for budget reasons: the outcome is always kept
    r:settle("k", 1)
    assert.equal(2, r.iterations)
    h.budget_error(r.check, r)
    r:complete()
  end)

  it("knows the run's keys after a resume in another handle, and settles a key left pending", function()
    local r = s:begin { agent = "a", goal = "g" }
    local id = r.id
    r:intend { key = "done", name = "t", args = { n = 1 } }
    r:settle("done", "first")
    r:intend { key = "cut", name = "t", args = { n = 2 } }
    s = crash(s, reopen)
    assert.equal("interrupted", s:get(id).status)
    local r2 = s:resume(id)
    h.ar_error("ESTATE", r2.intend, r2, { key = "done", name = "t" })
    h.ar_error("ESTATE", r2.intend, r2, { key = "cut", name = "t" })
    h.ar_error("ESTATE", r2.settle, r2, "done", "again")
    assert.equal(4, r2:settle("cut", "checked"))
    h.ar_error("ESTATE", r2.settle, r2, "cut", "again")
    assert.equal(5, r2:intend { key = "new", name = "t" })
    assert.equal(5, r2.iterations)
    r2:complete()
  end)

  it("cannot intend or settle through a handle whose run was resumed elsewhere", function()
    local r = s:begin { agent = "a", goal = "g" }
    local id = r.id
    r:intend { key = "k", name = "t" }
    assert.equal(1, s:recover { stale_after = 0 })
    local s2 = reopen()
    local r2 = s2:resume(id)
    local e = h.ar_error("ESTATE", r.intend, r, { key = "k2", name = "t" })
    h.ar_error("ESTATE", r.settle, r, "k", "old")
    assert.truthy(e.message:find("interrupted", 1, true) or e.message:find("resumed elsewhere", 1, true), e.message)
    assert.equal(1, #h.steps(s2, id))
    assert.equal(2, r2:settle("k", "new"))
    h.ar_error("ESTATE", r.settle, r, "k", "old")
    assert.equal("new", s2:intents(id)[1].result)
    r2:complete()
    s2:close()
  end)
end)

describe("store:intents", function()
  local s, reopen
  before_each(function() s, reopen = fresh() end)
  after_each(function() s:close() end)

  it("lists a run's intents in seq order with their status, args, result and seqs", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:intend { key = "a", name = "search", args = { q = "x" } }
    r:intend { key = "b", name = "refund", args = agentrun.array { 1, 2 } }
    r:step { kind = "thought", content = "hm" }
    r:settle("b", "boom", { failed = true })
    r:intend { key = "c", name = "mail" }
    r:settle("a", { hits = 3 })
    assert.same({
      { key = "a", name = "search", args = { q = "x" }, status = "settled", result = { hits = 3 },
        intent_seq = 1, result_seq = 6 },
      { key = "b", name = "refund", args = { 1, 2 }, status = "failed", result = "boom", intent_seq = 2, result_seq = 4 },
      { key = "c", name = "mail", status = "pending", intent_seq = 5 },
    }, s:intents(r.id))
    r:complete()
  end)

  it("is empty for a run without intents, ignores steps of the same kinds that are not intents", function()
    local r = s:begin { agent = "a", goal = "g" }
    assert.same({}, s:intents(r.id))
    r:step { kind = "tool", name = "t", content = { key = "x", result = 1 } }
    r:step { kind = "tool", name = "t", content = { intent = 1, key = "x", result = 1 } }
    r:step { kind = "intent", content = "free text" }
    assert.same({}, s:intents(r.id))
    r:complete()
  end)

  it("raises ENOTFOUND for an unknown run and a plain error for a bad id", function()
    h.ar_error("ENOTFOUND", s.intents, s, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    h.ar_error("ENOTFOUND", s.intents, s, "nope")
    h.plain_error(s.intents, s)
    h.plain_error(s.intents, s, 1)
  end)

  it("survives a copy of the run: store:write of the record read back gives the same intents", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:intend { key = "a", name = "t", args = { x = 1 } }
    r:settle("a", "ok")
    r:intend { key = "b", name = "t" }
    r:fail("cut")
    local s2 = h.store()
    local id = s2:write(s:get(r.id, { steps = true }))
    assert.equal(r.id, id)
    assert.same(s:intents(r.id), s2:intents(id))
    s2:close()
  end)

  it("reads keys with quotes, escapes and non-ASCII text back exactly", function()
    local r = s:begin { agent = "a", goal = "g" }
    local keys = { 'say "hi"\n', "tab\tback\\slash", "ключ-🔑", "\u{1}" }
    for _, k in ipairs(keys) do r:intend { key = k, name = "t", args = k } end
    for _, k in ipairs(keys) do r:settle(k, k) end
    local got = s:intents(r.id)
    for i, k in ipairs(keys) do
      assert.equal(k, got[i].key)
      assert.equal(k, got[i].args)
      assert.equal(k, got[i].result)
    end
    s = crash(s, reopen)
    local r2 = s:resume(r.id)
    for _, k in ipairs(keys) do h.ar_error("ESTATE", r2.intend, r2, { key = k, name = "t" }) end
    r2:complete()
  end)
end)

describe("ctx:tool", function()
  local s, reopen
  before_each(function() s, reopen = fresh() end)
  after_each(function() s:close() end)

  it("intends, calls fn(args) once, settles with its result and returns it", function()
    local calls = 0
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      assert.same({}, ctx.pending)
      local out = ctx:tool("k", "add", { 1, 2 }, function(args)
        calls = calls + 1
        assert.equal(1, ctx.run.iterations) -- the intent is durable before the call
        return args[1] + args[2]
      end)
      assert.equal(3, out)
      assert.equal(3, ctx.iteration)
      assert.equal(2, #ctx.steps)
      return out
    end)
    assert.equal(1, calls)
    assert.equal("completed", rec.status)
    assert.equal(3, rec.output)
    assert.same({ "intent", "tool" }, { rec.steps[1].kind, rec.steps[2].kind })
    assert.same({ { key = "k", name = "add", args = { 1, 2 }, status = "settled", result = 3, intent_seq = 1,
                    result_seq = 2 } }, s:intents(rec.id))
  end)

  it("settles a failing call as failed and raises its error again", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      ctx:tool("k", "t", nil, function() error("the tool broke", 0) end)
    end)
    assert.equal("failed", rec.status)
    assert.equal("the tool broke", rec.error)
    local i = s:intents(rec.id)[1]
    assert.equal("failed", i.status)
    assert.equal("the tool broke", i.result)
  end)

  it("returns the recorded result after a resume without calling fn again", function()
    local calls = 0
    local function tool() calls = calls + 1; return "charged" end
    local id
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      id = ctx.run.id
      ctx:tool("charge", "pay", { amount = 5 }, tool)
      error("crashed after the tool", 0)
    end)
    assert.equal("failed", rec.status)
    -- a failed run is not resumable; do it again, interrupted this time
    local r = s:begin { agent = "a", goal = "g" }
    id = r.id
    r:intend { key = "charge", name = "pay", args = { amount = 5 } }
    r:settle("charge", "charged")
    s = crash(s, reopen)
    calls = 0
    rec = agentrun.loop(s, { resume = id }, function(ctx)
      assert.same({}, ctx.pending)
      assert.equal("charged", ctx:tool("charge", "pay", { amount = 5 }, tool))
      return "done"
    end)
    assert.equal(0, calls)
    assert.equal("completed", rec.status)
    assert.equal(2, rec.iterations)
  end)

  it("hands a key cut off by a crash to on_pending and settles its answer; fn is not called", function()
    local r = s:begin { agent = "a", goal = "g" }
    local id = r.id
    r:intend { key = "charge", name = "pay", args = { amount = 5 } }
    s = crash(s, reopen)
    local seen, calls = nil, 0
    local rec = agentrun.loop(s, {
      resume = id,
      on_pending = function(ctx, intent)
        seen = { ctx = ctx, key = intent.key, name = intent.name, args = intent.args, status = intent.status,
                 pending = #ctx.pending }
        return "already charged"
      end,
    }, function(ctx)
      assert.equal(1, #ctx.pending)
      assert.equal("charge", ctx.pending[1].key)
      local out = ctx:tool("charge", "pay", { amount = 5 }, function() calls = calls + 1 end)
      assert.equal("already charged", out)
      assert.same({}, ctx.pending)
      return out
    end)
    assert.equal(0, calls)
    assert.same({ key = "charge", name = "pay", args = { amount = 5 }, status = "pending", pending = 1 },
                { key = seen.key, name = seen.name, args = seen.args, status = seen.status, pending = seen.pending })
    assert.equal("completed", rec.status)
    local i = s:intents(id)[1]
    assert.same({ "settled", "already charged", 1, 2 }, { i.status, i.result, i.intent_seq, i.result_seq })
  end)

  it("calls fn again for a pending key when no on_pending is given", function()
    local r = s:begin { agent = "a", goal = "g" }
    local id = r.id
    r:intend { key = "k", name = "t", args = { 7 } }
    s = crash(s, reopen)
    local got
    local rec = agentrun.loop(s, { resume = id }, function(ctx)
      return ctx:tool("k", "t", { 7 }, function(args) got = args; return "again" end)
    end)
    assert.same({ 7 }, got)
    assert.equal("again", rec.output)
    assert.equal("settled", s:intents(id)[1].status)
  end)

  it("raises the recorded error again for a key that failed, without calling fn", function()
    local r = s:begin { agent = "a", goal = "g" }
    local id = r.id
    r:intend { key = "k", name = "t" }
    r:settle("k", "it broke", { failed = true })
    s = crash(s, reopen)
    local calls = 0
    local rec = agentrun.loop(s, { resume = id }, function(ctx)
      ctx:tool("k", "t", nil, function() calls = calls + 1 end)
    end)
    assert.equal(0, calls)
    assert.equal("failed", rec.status)
    assert.equal("it broke", rec.error)
  end)

  it("counts its steps toward max_steps", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g", budget = { max_steps = 3 } }, function(ctx)
      ctx:tool("k" .. ctx.iteration, "t", nil, function() return 1 end)
    end)
    assert.equal("budget_exhausted", rec.status)
    assert.equal(4, rec.iterations) -- two calls of step_fn, each an intent and its outcome
  end)

  it("raises plain errors for bad arguments and a bad on_pending", function()
    local rec = agentrun.loop(s, { agent = "a", goal = "g" }, function(ctx)
      assert.truthy(h.plain_error(ctx.tool, ctx, 1, "t", nil, print):find("bad argument #1 to 'tool'", 1, true))
      assert.truthy(h.plain_error(ctx.tool, ctx, "k", nil, nil, print):find("bad argument #2 to 'tool'", 1, true))
      assert.truthy(h.plain_error(ctx.tool, ctx, "k", "t", nil, "fn"):find("bad argument #4 to 'tool'", 1, true))
      h.plain_error(ctx.tool, {}, "k", "t", nil, print)
      h.plain_error(ctx.tool, ctx, "", "t", nil, print)
      h.ar_error("EJSON", ctx.tool, ctx, "k", "t", 0 / 0, print)
      assert.equal(0, ctx.run.iterations)
      return "ok"
    end)
    assert.equal("completed", rec.status)
    h.plain_error(agentrun.loop, s, { agent = "a", goal = "g", on_pending = "no" }, function() end)
  end)
end)

describe("ctx:tool under kill -9", function()
  local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

  local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat", "r")
    if not f then return false end
    local stat = f:read("a")
    f:close()
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= nil and state ~= "Z" and state ~= "X"
  end

  -- Counts of the complete lines of a file by their first field.
  local function tally(path, pattern)
    local t = {}
    local f = io.open(path, "r")
    if not f then return t end
    for line in f:read("a"):gmatch("([^\n]*)\n") do
      local k = line:match(pattern)
      if k then t[k] = (t[k] or 0) + 1 end
    end
    f:close()
    return t
  end

  it("never calls a settled tool twice and hands every cut-off call to on_pending, never re-running it", function()
    local dir = h.tmpdir()
    local db, o = h.location()
    local idfile, callsfile, pendfile = dir .. "/id", dir .. "/calls", dir .. "/pending"
    local child = ("%slua5.4 '%stool_agent.lua' '%s' '%s' '%s' '%s' >/dev/null 2>>'%s/stderr'")
      :format(h.child_env(o), here, db, idfile, callsfile, pendfile, dir)
    local pid
    local ok, err = pcall(function()
      math.randomseed(os.time())
      local kills = 0
      for _ = 1, 20 do
        assert(os.execute(("%s & echo $! > '%s/pid'"):format(child, dir)))
        pid = h.read_file(dir .. "/pid"):match("%d+")
        -- a random moment: before the store is open, between an intent and
        -- its call, inside a call, between a call and its settle...
        os.execute(("sleep %.3f"):format(math.random(0, 120) / 1000))
        if not alive(pid) then break end -- it got to the end
        os.execute("kill -9 " .. pid)
        kills = kills + 1
        for _ = 1, 500 do
          if not alive(pid) then break end
          os.execute("sleep 0.01")
        end
        pid = nil
        local s = assert(agentrun.open(db, o))
        s:recover { stale_after = 0 }
        s:close()
      end
      -- the last one runs to the end
      assert(os.execute(child), h.read_file(dir .. "/stderr"))
      assert.is_true(kills >= 5, "too few kills: " .. kills)

      local id = h.read_file(idfile)
      local s = assert(agentrun.open(db, o))
      local rec = s:get(id)
      assert.equal("completed", rec.status, h.read_file(dir .. "/stderr"))
      local begun = tally(callsfile, "^(%S+)\tbegin$")
      local ended = tally(callsfile, "^(%S+)\tend$")
      local handed = tally(pendfile, "^(%S+)$")
      local intents = s:intents(id)
      assert.equal(30, #intents)
      local cut = 0
      for i, x in ipairs(intents) do
        assert.equal("t" .. i, x.key)
        assert.equal("settled", x.status)
        assert.equal(i, x.result.i)
        -- at most one real call per key, ever
        assert.is_true((begun[x.key] or 0) <= 1, ("%s called %d times"):format(x.key, begun[x.key] or 0))
        if x.result.by == "tool" then
          -- settled by the call itself: it ran once, whole, and was never handed over
          assert.equal(1, begun[x.key])
          assert.equal(1, ended[x.key])
          assert.equal(nil, handed[x.key])
        else
          -- cut off after its intent: reported pending, handed to on_pending
          -- (again if a kill cut that too), and not run again
          assert.equal("on_pending", x.result.by)
          assert.is_true((handed[x.key] or 0) >= 1, x.key .. " was never handed to on_pending")
          cut = cut + 1
        end
      end
      if os.getenv("INTENT_DEBUG") then io.stderr:write(("kills %d cut %d\n"):format(kills, cut)) end
      -- a key handed over is one whose intent was durable and unsettled
      for key in pairs(handed) do
        local n = tonumber(key:match("^t(%d+)$"))
        assert.equal("on_pending", intents[n].result.by)
      end
      s:close()
    end)
    if pid and alive(pid) then os.execute("kill -9 " .. pid) end
    h.rmdir(dir)
    assert(ok, err)
  end)
end)
