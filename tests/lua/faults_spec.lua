-- faults_spec.lua -- agentrun.loop when the store fails: retries, then raises with the whole transcript (SPEC §3.3).
local agentrun = require "agentrun"
local h = require "helpers"
local fv = require "faultvfs"

-- The step the loop records at iteration i: its content names it.
local function step_of(i)
  return { kind = "llm", name = "model", content = { n = i, text = ("step %d"):format(i) },
           usage = { input_tokens = i, output_tokens = 1 } }
end

-- A step function that records `n` steps, calling before(i) ahead of step i,
-- and then completes with "done".
local function stepper(n, before)
  return function(ctx)
    local i = ctx.iteration
    if i > n then return "done" end
    if before then before(i) end
    ctx:record(step_of(i))
  end
end

-- The contents of a run's steps as the file holds them, in seq order.
local function file_contents(path, id)
  local s = assert(agentrun.open(path))
  local list = {}
  for step in s:steps(id) do
    assert.equal(#list + 1, step.seq)
    list[#list + 1] = step.content.n
  end
  local rec = s:get(id)
  s:close()
  return list, rec
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

describe("agentrun.loop when the store fails (the fault VFS) #sqlite_only", function()
  local dir, path, store

  before_each(function()
    fv.install()
    dir = h.tmpdir()
    path = dir .. "/loop.db"
    store = assert(agentrun.open(path))
  end)

  after_each(function()
    fv.clear()
    store:close()
    collectgarbage()
    fv.uninstall()
    h.rmdir(dir)
  end)

  it("retries a step whose write failed once and keeps every step exactly once", function()
    local rec = agentrun.loop(store, { agent = "a", goal = "g" }, stepper(5, function(i)
      if i == 3 then fv.arm("write", 1) end
    end))
    assert.equal(1, fv.fired())
    assert.equal("completed", rec.status)
    assert.equal("done", rec.output)
    assert.same({ 1, 2, 3, 4, 5 }, h.seqs(rec.steps))
    local contents = file_contents(path, rec.id)
    assert.same(range(5), contents)
  end)

  it("retries a step whose sync failed once and the file holds it once", function()
    local rec = agentrun.loop(store, { agent = "a", goal = "g" }, stepper(4, function(i)
      if i == 2 then fv.arm("sync", 1) end
    end))
    assert.equal(1, fv.fired())
    assert.equal("completed", rec.status)
    assert.same(range(4), (file_contents(path, rec.id)))
  end)

  it("raises EIO with the whole transcript when writes keep failing, and the file has each written step once", function()
    local run_id
    local ok, err = pcall(agentrun.loop, store, { agent = "a", goal = "g", retries = 2 }, stepper(6, function(i)
      if i == 4 then fv.arm("write", 1, { persistent = true }) end
    end))
    assert.is_false(ok)
    assert.equal(agentrun.Error, getmetatable(err))
    assert.equal("EIO", err.code)
    -- the first try and two retries
    assert.equal(3, fv.fired())
    fv.clear()
    -- err.steps: the three written steps and the one that could not be written
    assert.equal(4, #err.steps)
    for i = 1, 4 do
      assert.equal(i, err.steps[i].content.n)
      assert.equal(i <= 3 and i or nil, err.steps[i].seq)
    end
    local list = store:runs { agent = "a" }
    assert.equal(1, #list)
    run_id = list[1].id
    local contents, rec = file_contents(path, run_id)
    assert.same({ 1, 2, 3 }, contents)
    assert.equal(3, rec.iterations)
    assert.equal(6, rec.usage.input_tokens)
  end)

  it("raises EFULL with the whole transcript when the disk stays full", function()
    local ok, err = pcall(agentrun.loop, store, { agent = "a", goal = "g", retries = 1 }, stepper(5, function(i)
      if i == 2 then fv.arm("write", 1, { persistent = true, full = true }) end
    end))
    assert.is_false(ok)
    assert.equal(agentrun.Error, getmetatable(err))
    assert.equal("EFULL", err.code)
    assert.equal(2, fv.fired())
    fv.clear()
    assert.equal(2, #err.steps)
    assert.equal(1, err.steps[1].seq)
    assert.is_nil(err.steps[2].seq)
    assert.same(step_of(2).content, err.steps[2].content)
    local list = store:runs { agent = "a" }
    assert.same({ 1 }, (file_contents(path, list[1].id)))
  end)

  it("raises with the whole transcript when finishing keeps failing; the run stays open in the file", function()
    local ok, err = pcall(agentrun.loop, store, { agent = "a", goal = "g", retries = 1 }, function(ctx)
      if ctx.iteration <= 3 then
        ctx:record(step_of(ctx.iteration))
        return nil
      end
      fv.arm("write", 1, { persistent = true })
      return "done"
    end)
    assert.is_false(ok)
    assert.equal("EIO", err.code)
    fv.clear()
    assert.same({ 1, 2, 3 }, h.seqs(err.steps))
    local list = store:runs { agent = "a" }
    local contents, rec = file_contents(path, list[1].id)
    assert.same({ 1, 2, 3 }, contents)
    assert.equal("running", rec.status)
  end)

  it("works again on the same store once the fault is gone", function()
    local ok, err = pcall(agentrun.loop, store, { agent = "a", goal = "first", retries = 0 }, stepper(3, function(i)
      if i == 2 then fv.arm("write", 1, { persistent = true }) end
    end))
    assert.is_false(ok)
    assert.equal("EIO", err.code)
    fv.clear()
    local rec = agentrun.loop(store, { agent = "a", goal = "second" }, stepper(3))
    assert.equal("completed", rec.status)
    assert.same(range(3), (file_contents(path, rec.id)))
  end)
end)
