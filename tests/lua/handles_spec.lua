-- handles_spec.lua -- store and run handles: close, <close>, garbage collection, pinning (SPEC §3 conventions, §6).
local agentrun = require "agentrun"
local h = require "helpers"

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

describe("store handle", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("closing twice is harmless", function()
    local s = h.store()
    s:close()
    s:close()
    assert.is_true(pcall(s.close, s))
  end)

  it("raises a plain error for every method once closed", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    local id = r:complete("x").id
    s:close()
    local calls = {
      { "info" }, { "begin", { agent = "a", goal = "g" } }, { "get", id }, { "steps", id },
      { "runs", {} }, { "count", {} }, { "stats", {} }, { "forget_user", "u" },
      { "checkpoint", id }, { "resume", id },
      { "write", { agent = "a", goal = "g", status = "completed" } },
    }
    for _, c in ipairs(calls) do
      local msg = h.plain_error(s[c[1]], s, c[2])
      assert.truthy(msg:find("closed store", 1, true), c[1] .. ": " .. msg)
    end
  end)

  it("prints whether it is open", function()
    local path, o = h.location()
    local s = agentrun.open(path, o)
    assert.equal("agentrun.store (" .. path .. ")", tostring(s))
    s:close()
    assert.equal("agentrun.store (closed)", tostring(s))
  end)

  it("is closed when its <close> variable goes out of scope #sqlite_only", function()
    local outer
    do
      local s <close> = agentrun.open(dir .. "/s.db")
      outer = s
      assert.equal(0, s:info().runs)
    end
    h.plain_error(outer.info, outer)
    assert.is_false(h.exists(dir .. "/s.db-wal"))
  end)

  it("is closed by <close> when an error leaves its scope", function()
    local outer
    local ok, e = pcall(function()
      local s <close> = h.store()
      outer = s
      error("boom", 0)
    end)
    assert.is_false(ok)
    assert.equal("boom", e)
    h.plain_error(outer.info, outer)
  end)

  it("is released by the garbage collector #sqlite_only", function()
    local path = dir .. "/gc.db"
    do
      local s = agentrun.open(path)
      s:begin { agent = "a", goal = "g" }:complete()
      assert.is_true(h.exists(path .. "-wal"))
    end
    full_gc()
    -- the last connection to close removes the WAL and shared-memory files
    assert.is_false(h.exists(path .. "-wal"))
    assert.is_false(h.exists(path .. "-shm"))
    local s = agentrun.open(path)
    assert.equal(1, s:count())
    s:close()
  end)

  it("leaves its still-open runs interrupted (resumable) when closed; their handles then raise ESTATE", function()
    local path, o = h.location()
    local s = agentrun.open(path, o)
    local r1 = s:begin { agent = "a", goal = "g" }
    r1:step { kind = "llm", usage = { input_tokens = 3, output_tokens = 4 } }
    local r2 = s:begin { agent = "a", goal = "g" }
    local done = s:begin { agent = "a", goal = "g" }
    done:complete("fine")
    local ids = { r1.id, r2.id, done.id }
    s:close()

    for _, r in ipairs { r1, r2 } do
      assert.equal("interrupted", r.status)
      h.ar_error("ESTATE", r.step, r, { kind = "x" })
      h.ar_error("ESTATE", r.check, r)
      h.ar_error("ESTATE", r.checkpoint, r, { at = 1 })
      h.ar_error("ESTATE", r.complete, r, "late")
      h.ar_error("ESTATE", r.fail, r, "late")
      h.ar_error("ESTATE", r.exhaust, r)
    end
    assert.equal(1, r1.iterations)
    r1:close()
    r1:close()

    local again = agentrun.open(path, o)
    for i = 1, 2 do
      local rec = again:get(ids[i])
      assert.equal("interrupted", rec.status)
      assert.is_nil(rec.error)
      assert.is_nil(rec.output)
    end
    assert.equal(1, again:get(ids[1]).iterations)
    assert.equal(7, again:get(ids[1]).usage.total_tokens)
    assert.equal("completed", again:get(ids[3]).status)
    assert.equal("fine", again:get(ids[3]).output)
    -- exactly as after a crash and recover: resumed, it goes on from step 2
    local resumed = again:resume(ids[1])
    assert.equal(2, resumed:step { kind = "llm" })
    assert.equal("completed", resumed:complete("done").status)
    again:close()
  end)

  it("leaves its open runs interrupted also when closed through its collector entry", function()
    local path, o = h.location()
    local s = agentrun.open(path, o)
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm" }
    -- a store is only collected after its runs (they pin it); its __gc is the same close
    getmetatable(s).__gc(s)
    assert.equal("interrupted", r.status)
    h.ar_error("ESTATE", r.step, r, { kind = "x" })
    local again = agentrun.open(path, o)
    assert.equal("interrupted", again:get(r.id).status)
    again:close()
  end)

  it("closes a steps iterator left open when the store closes, and a later call raises a plain error", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    for i = 1, 3 do r:step { kind = "k", content = i } end
    local next_step = s:steps(r.id)
    assert.equal(1, next_step().seq)
    s:close()
    local msg = h.plain_error(next_step)
    assert.truthy(msg:find("closed store", 1, true), msg)
    -- and then it stays finished
    assert.is_nil(next_step())
  end)

  it("raises a plain error in a for loop whose body closes the store, and releases the iterator", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    for i = 1, 3 do r:step { kind = "k", content = i } end
    local seen = {}
    local msg = h.plain_error(function()
      for step in s:steps(r.id) do
        seen[#seen + 1] = step.seq
        s:close()
      end
    end)
    assert.truthy(msg:find("closed store", 1, true), msg)
    assert.same({ 1 }, seen)
    full_gc()
  end)

  it("collects an iterator left unfinished after its store closed", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    for i = 1, 3 do r:step { kind = "k", content = i } end
    local next_step = s:steps(r.id)
    assert.equal(1, next_step().seq)
    s:close()
    next_step = nil
    full_gc()
    -- the store's handle, collected after its iterator, closes nothing twice
    s = nil
    full_gc()
  end)
end)

describe("run handle", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("pins its store: the store is not collected while the run is reachable", function()
    local path, o = h.location()
    local s = agentrun.open(path, o)
    local r = s:begin { agent = "a", goal = "g" }
    s = nil -- luacheck: ignore
    full_gc()
    assert.equal(1, r:step { kind = "llm", content = "still here" })
    assert.equal(2, r:step { kind = "tool" })
    r:check()
    local rec = r:complete("ok")
    assert.equal("completed", rec.status)
    assert.equal(2, rec.iterations)
    local id = r.id
    r = nil -- luacheck: ignore
    full_gc()
    local again = agentrun.open(path, o)
    local got = again:get(id, { steps = true })
    assert.equal("completed", got.status)
    assert.equal("still here", got.steps[1].content)
    again:close()
  end)

  it("a run collected while running is finished as failed", function()
    local path, o = h.location()
    local id
    do
      local s = agentrun.open(path, o)
      local r = s:begin { agent = "a", goal = "g" }
      r:step { kind = "llm" }
      id = r.id
    end
    full_gc()
    -- the store was closed too: SQLite's last close removes the WAL file
    if h.backend() == "sqlite" then assert.is_false(h.exists(path .. "-wal")) end
    local again = agentrun.open(path, o)
    local rec = again:get(id)
    assert.equal("failed", rec.status)
    assert.equal("run closed before it finished", rec.error)
    assert.equal(1, rec.iterations)
    again:close()
  end)

  it("close() finishes a running run as failed; closing twice is harmless; a closed run raises plain errors", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    local id = r.id
    r:close()
    r:close()
    local rec = s:get(id)
    assert.equal("failed", rec.status)
    assert.equal("run closed before it finished", rec.error)
    for _, m in ipairs { "step", "check", "checkpoint", "complete", "fail", "exhaust" } do
      local msg = h.plain_error(r[m], r, { kind = "x" })
      assert.truthy(msg:find("closed run", 1, true), m .. ": " .. msg)
    end
    h.plain_error(function() return r.id end)
    h.plain_error(function() return r.status end)
    assert.equal("agentrun.run (closed)", tostring(r))
    s:close()
  end)

  it("close() leaves a finished run as it was", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    local id = r.id
    r:complete({ answer = 42 })
    r:close()
    local rec = s:get(id)
    assert.equal("completed", rec.status)
    assert.same({ answer = 42 }, rec.output)
    assert.is_nil(rec.error)
    s:close()
  end)

  it("<close> of a still-running run without an error finishes it as 'run closed before it finished'", function()
    local s = h.store()
    local id
    do
      local r <close> = s:begin { agent = "a", goal = "g" }
      r:step { kind = "llm" }
      id = r.id
    end
    local rec = s:get(id)
    assert.equal("failed", rec.status)
    assert.equal("run closed before it finished", rec.error)
    assert.equal(1, rec.iterations)
    s:close()
  end)

  it("<close> of a still-running run with an error finishes it as failed with that error's message", function()
    local s = h.store()
    local id
    local ok, e = pcall(function()
      local r <close> = s:begin { agent = "a", goal = "g" }
      id = r.id
      r:step { kind = "llm" }
      error("model timed out", 0)
    end)
    assert.is_false(ok)
    assert.equal("model timed out", e)
    local rec = s:get(id)
    assert.equal("failed", rec.status)
    assert.equal("model timed out", rec.error)
    assert.equal(1, rec.iterations)
    s:close()
  end)

  it("<close> with a non-string error keeps its text", function()
    local s = h.store()
    local id
    local boom = setmetatable({}, { __tostring = function() return "custom failure" end })
    pcall(function()
      local r <close> = s:begin { agent = "a", goal = "g" }
      id = r.id
      error(boom)
    end)
    assert.equal("custom failure", s:get(id).error)
    s:close()
  end)

  it("<close> does not change a run that finished inside its scope", function()
    local s = h.store()
    local id
    do
      local r <close> = s:begin { agent = "a", goal = "g" }
      id = r.id
      r:fail("handled")
    end
    local ok = pcall(function()
      local r <close> = s:begin { agent = "b", goal = "g" }
      r:complete("done")
      error("after completion")
    end)
    assert.is_false(ok)
    assert.equal("handled", s:get(id).error)
    local b = s:runs { agent = "b" }[1]
    assert.equal("completed", b.status)
    assert.equal("done", b.output)
    assert.is_nil(b.error)
    s:close()
  end)

  it("<close> on both store and run in one scope closes the run first", function()
    local path, o = h.location()
    local id
    do
      local s <close> = agentrun.open(path, o)
      local r <close> = s:begin { agent = "a", goal = "g" }
      id = r.id
    end
    local again = agentrun.open(path, o)
    local rec = again:get(id)
    assert.equal("failed", rec.status)
    assert.equal("run closed before it finished", rec.error)
    again:close()
  end)

  it("prints its id and status", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    assert.equal("agentrun.run (" .. r.id .. ", running)", tostring(r))
    r:complete()
    assert.equal("agentrun.run (" .. r.id .. ", completed)", tostring(r))
    s:close()
  end)
end)
