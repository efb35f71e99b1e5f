-- ownership_spec.lua -- one writer per run (SPEC §3.2): a resume fences the handle it replaces, also across processes.
local agentrun = require "agentrun"
local h = require "helpers"

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Each write of a run handle that raises: step, checkpoint and the three endings.
local raising = {
  step = function(r) return r:step { kind = "late", usage = { input_tokens = 100 } } end,
  checkpoint = function(r) return r:checkpoint "late" end,
  complete = function(r) return r:complete "late" end,
  fail = function(r) return r:fail "late" end,
  exhaust = function(r) return r:exhaust { limit = "max_steps", limit_value = 1, value = 1 } end,
}

-- The implicit writes, which never raise: they are given a holder so that
-- the collector can take the handle. Each ends with the handle gone.
local implicit = {
  close = function(holder) holder.run:close() end,
  scope_error = function(holder)
    pcall(function()
      local r <close> = holder.run
      error("boom", 0)
    end)
  end,
  gc = function(holder)
    holder.run = nil
    full_gc()
  end,
  store_close = function(holder, store) store:close() end,
}

-- The run in the store: its status, n steps all "own" steps of one token, and its checkpoint.
local function expect_run(s, id, status, n, checkpoint, checkpoint_seq)
  local rec = s:get(id, { steps = true })
  assert.equal(status, rec.status)
  assert.equal(n, rec.iterations)
  assert.equal(n, #rec.steps)
  assert.equal(n, rec.usage.input_tokens)
  for i, st in ipairs(rec.steps) do
    assert.equal(i, st.seq)
    assert.equal("own", st.kind)
  end
  assert.is_nil(rec.error)
  if status == "completed" then assert.equal("mine", rec.output) else assert.is_nil(rec.output) end
  local state, seq = s:checkpoint(id)
  assert.equal(checkpoint, state)
  assert.equal(checkpoint_seq, seq)
end

local function own_step(r) return r:step { kind = "own", usage = { input_tokens = 1 } } end

describe("one writer per run", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  -- A begins a run in a new store, records step 1 and a checkpoint; B (another
  -- handle on the store, or A itself) recovers and resumes it and, with
  -- b_first, records step 2.
  local function setup(b_first, same)
    local path, o = h.location()
    local a = assert(agentrun.open(path, o))
    local b = same and a or assert(agentrun.open(path, o))
    local holder = { run = a:begin { agent = "agent", goal = "goal" } }
    local id = holder.run.id
    assert.equal(1, own_step(holder.run))
    holder.run:checkpoint "a1"
    assert.equal(1, b:recover { stale_after = 0 })
    local rb = b:resume(id)
    local done = 1
    if b_first then
      done = done + 1
      assert.equal(done, own_step(rb))
    end
    return a, b, holder, id, rb, done
  end

  -- B carries on and completes: the old handle never got in its way.
  local function finish_b(b, id, rb, done)
    expect_run(b, id, "running", done, "a1", 1)
    done = done + 1
    assert.equal(done, own_step(rb))
    rb:checkpoint "b"
    rb:complete "mine"
    expect_run(b, id, "completed", done, "b", done)
  end

  for name, write in pairs(raising) do
    for _, b_first in ipairs { false, true } do
      for _, same in ipairs { false, true } do
        it(("refuses %s by the old handle with ESTATE and changes nothing (%s, %s)")
            :format(name, b_first and "after the new owner wrote" or "before the new owner wrote",
                    same and "same store" or "other store"), function()
          local a, b, holder, id, rb, done = setup(b_first, same)
          local ra = holder.run
          local e = h.ar_error("ESTATE", write, ra)
          assert.truthy(e.message:find("run " .. id .. " was resumed elsewhere", 1, true), e.message)
          assert.equal("interrupted", ra.status)
          -- the handle stays refused, whatever it tries next
          for _, again in pairs(raising) do h.ar_error("ESTATE", again, ra) end
          h.ar_error("ESTATE", ra.check, ra)
          expect_run(b, id, "running", done, "a1", 1)
          ra:close()
          if not same then a:close() end
          finish_b(b, id, rb, done)
          b:close()
        end)
      end
    end
  end

  for name, write in pairs(implicit) do
    for _, b_first in ipairs { false, true } do
      it(("does not let %s of the old handle end the resumed run (%s)")
          :format(name, b_first and "after the new owner wrote" or "before the new owner wrote"), function()
        local a, b, holder, id, rb, done = setup(b_first, false)
        write(holder, a)
        expect_run(b, id, "running", done, "a1", 1)
        holder.run = nil
        a:close()
        full_gc()
        finish_b(b, id, rb, done)
        b:close()
      end)
    end
  end

  it("refuses the writes of a handle whose run recover marked interrupted, and leaves the run resumable", function()
    local path, o = h.location()
    for name, write in pairs(raising) do
      local a, b = assert(agentrun.open(path, o)), assert(agentrun.open(path, o))
      local ra = a:begin { agent = "agent", goal = "goal" }
      local id = ra.id
      own_step(ra)
      ra:checkpoint "a1"
      assert.equal(1, b:recover { stale_after = 0 })
      local e = h.ar_error("ESTATE", write, ra)
      assert.truthy(e.message:find("run " .. id .. " is interrupted", 1, true), name .. ": " .. e.message)
      assert.equal("interrupted", ra.status)
      h.ar_error("ESTATE", raising.step, ra)
      ra:close()
      a:close()
      expect_run(b, id, "interrupted", 1, "a1", 1)
      local rb = b:resume(id)
      assert.equal(2, own_step(rb))
      rb:complete "mine"
      expect_run(b, id, "completed", 2, "a1", 1)
      b:close()
    end
  end)

  it("leaves a recovered run interrupted when its handle or store is closed or collected", function()
    local path, o = h.location()
    for name, write in pairs(implicit) do
      local a, b = assert(agentrun.open(path, o)), assert(agentrun.open(path, o))
      local holder = { run = a:begin { agent = "agent", goal = "goal" } }
      local id = holder.run.id
      own_step(holder.run)
      holder.run:checkpoint "a1"
      assert.equal(1, b:recover { stale_after = 0 })
      write(holder, a)
      holder.run = nil
      a:close()
      full_gc()
      assert.equal("interrupted", b:get(id).status, name)
      expect_run(b, id, "interrupted", 1, "a1", 1)
      b:close()
    end
  end)
end)

describe("one writer per run in agentrun.loop", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("raises ESTATE from a loop whose run was resumed elsewhere and leaves the new owner's run alone", function()
    local path, o = h.location()
    local s, other = assert(agentrun.open(path, o)), assert(agentrun.open(path, o))
    local id, rb
    local ok, e = pcall(agentrun.loop, s, { agent = "agent", goal = "goal" }, function(ctx)
      id = ctx.run.id
      if ctx.iteration == 2 then
        assert.equal(1, other:recover { stale_after = 0 })
        rb = other:resume(id)
        assert.equal(2, own_step(rb))
      end
      ctx:record { kind = "own", usage = { input_tokens = 1 } }
      ctx:save "loop"
    end)
    assert.is_false(ok)
    assert.equal(agentrun.Error, getmetatable(e))
    assert.equal("ESTATE", e.code)
    assert.truthy(e.message:find("resumed elsewhere", 1, true), e.message)
    expect_run(other, id, "running", 2, "loop", 1)
    rb:complete "mine"
    expect_run(other, id, "completed", 2, "loop", 1)
    s:close()
    other:close()
  end)
end)

describe("one writer per run across processes", function()
  local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  -- The lines the child wrote so far.
  local function lines(path)
    local f = io.open(path, "r")
    if not f then return {} end
    local t = {}
    for line in f:read("a"):gmatch("([^\n]*)\n") do t[#t + 1] = line end
    f:close()
    return t
  end

  local writes = { "step", "checkpoint", "complete", "fail", "exhaust", "wait", "close", "scope_error", "gc", "store_close" }
  for _, write in ipairs(writes) do
    it(("fences the old handle's %s in another process once this one resumed the run"):format(write), function()
      local db, o = h.location()
      local out = dir .. "/out"
      local child = assert(io.popen(("%slua5.4 '%sowner_agent.lua' '%s' '%s' '%s' 2>'%s/stderr'")
        :format(h.child_env(o), here, db, write, out, dir), "w"))
      -- wait until the child has begun its run (up to ~10 s on a loaded machine)
      local id
      for _ = 1, 500 do
        id = (lines(out)[1] or ""):match("^run (%S+)$")
        if id then break end
        os.execute("sleep 0.02")
      end
      if not id then
        child:close()
        error("the child did not begin its run: " .. h.read_file(dir .. "/stderr"))
      end
      local s = assert(agentrun.open(db, o))
      assert.equal(1, s:recover { stale_after = 0 })
      local rb = s:resume(id)
      assert.equal(2, own_step(rb))
      child:write("go\n")
      assert(child:close(), "the child failed: " .. h.read_file(dir .. "/stderr"))
      local result, code, status, message = (lines(out)[2] or ""):match("^(%a+)\t(%u*)\t(%a*)\t(.*)$")
      if write == "step" or write == "checkpoint" or write == "complete" or write == "fail" or write == "exhaust"
        or write == "wait" then
        assert.equal("error", result)
        assert.equal("ESTATE", code)
        assert.equal("interrupted", status)
        assert.truthy(message:find("run " .. id .. " was resumed elsewhere", 1, true), message)
      else
        assert.equal("ok", result)
      end
      expect_run(s, id, "running", 2, "a1", 1)
      assert.equal(3, own_step(rb))
      rb:complete "mine"
      expect_run(s, id, "completed", 3, "a1", 1)
      s:close()
    end)
  end
end)
