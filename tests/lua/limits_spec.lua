-- limits_spec.lua -- a value the store cannot hold raises agentrun.Error EJSON and nothing is written (SPEC §5, §6).
local agentrun = require "agentrun"
local fv = require "faultvfs"
local h = require "helpers"

-- SQLite's length limit while these specs run: the largest value and row the
-- store's connection holds (lowered for the test; the library's own bound is
-- 64 MiB).
local LIMIT = 4096

describe("a value the store cannot hold (SQLite's length limit lowered) #sqlite_only", function()
  local dir, s
  local big = string.rep("x", LIMIT + 1)
  local half = string.rep("h", LIMIT // 2 + 64)

  before_each(function()
    fv.limit_length(LIMIT)
    dir = h.tmpdir()
    s = assert(agentrun.open(dir .. "/limits.db"))
  end)

  after_each(function()
    s:close()
    fv.limit_length(0)
    h.rmdir(dir)
  end)

  it("store:event raises agentrun.Error EJSON, not a plain string, and stores nothing", function()
    local events = {
      { agent = "a", type = "output", content = big },
      { agent = "a", type = "output", metadata = { k = big } },
      { agent = big, type = "output" },
      { agent = "a", type = big },
      { agent = "a", type = "output", run = big },
      -- each fits alone, the row holding both does not
      { agent = "a", type = "output", content = half, metadata = { k = half } },
    }
    for _, e in ipairs(events) do
      local err = h.ar_error("EJSON", s.event, s, e)
      assert.is_truthy(err.message:find("store holds", 1, true), err.message)
    end
    assert.equal(0, s:info().events)
    local id = s:event { agent = "a", type = "output", content = half }
    local list = s:events { agent = "a" }
    assert.equal(id, list[1].id)
    assert.equal(half, list[1].content)
  end)

  it("run:step raises EJSON for content, name and kind; nothing is written and the next step gets the next seq", function()
    local r = s:begin { agent = "a", goal = "g" }
    assert.equal(1, r:step { kind = "llm", content = "first" })
    h.ar_error("EJSON", r.step, r, { kind = "llm", content = big })
    h.ar_error("EJSON", r.step, r, { kind = "llm", content = { text = big } })
    h.ar_error("EJSON", r.step, r, { kind = "tool", name = big })
    h.ar_error("EJSON", r.step, r, { kind = big })
    h.ar_error("EJSON", r.step, r, { kind = "tool", name = half, content = half })
    h.ar_error("EJSON", r.step, r, { kind = "llm", content = big, usage = { input_tokens = 5 }, cost = 1 })
    assert.equal(1, r.iterations)
    assert.equal(0, r.usage.input_tokens)
    assert.equal(2, r:step { kind = "llm", content = half })
    local rec = s:get(r.id, { steps = true })
    assert.equal(2, #rec.steps)
    assert.equal("first", rec.steps[1].content)
    assert.equal(half, rec.steps[2].content)
    assert.equal(2, s:info().steps)
  end)

  it("run:checkpoint and run:complete raise EJSON and leave the run open", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm" }
    h.ar_error("EJSON", r.checkpoint, r, { state = big })
    assert.is_nil(s:checkpoint(r.id))
    h.ar_error("EJSON", r.complete, r, big)
    h.ar_error("EJSON", r.complete, r, { answer = big })
    assert.equal("running", r.status)
    assert.equal("running", s:get(r.id).status)
    assert.equal(2, r:step { kind = "llm" })
    r:checkpoint { state = half }
    assert.same({ state = half }, (s:checkpoint(r.id)))
    local rec = r:complete(half)
    assert.equal("completed", rec.status)
    assert.equal(half, rec.output)
    assert.equal(half, s:get(r.id).output)
  end)

  it("store:begin raises EJSON for goal, metadata and names, and creates no run", function()
    h.ar_error("EJSON", s.begin, s, { agent = "a", goal = big })
    h.ar_error("EJSON", s.begin, s, { agent = "a", goal = "g", metadata = { k = big } })
    h.ar_error("EJSON", s.begin, s, { agent = big, goal = "g" })
    h.ar_error("EJSON", s.begin, s, { agent = "a", goal = "g", user = big })
    h.ar_error("EJSON", s.begin, s, { agent = "a", goal = half, metadata = { k = half } })
    assert.equal(0, s:info().runs)
  end)

  it("store:write raises EJSON for a record it cannot hold and writes nothing", function()
    h.ar_error("EJSON", s.write, s, { agent = "a", goal = big, status = "completed" })
    h.ar_error("EJSON", s.write, s, { agent = "a", goal = "g", status = "completed", output = big })
    h.ar_error("EJSON", s.write, s, { agent = "a", goal = "g", status = "completed",
                                      steps = { { kind = "llm" }, { kind = "llm", content = big } } })
    assert.equal(0, s:info().runs)
    assert.equal(0, s:info().steps)
  end)

  it("run:fail never refuses its error text: what the store cannot hold is cut at a character and marked", function()
    local r = s:begin { agent = "a", goal = "g" }
    local text = string.rep("é", LIMIT)
    local rec = r:fail(text)
    assert.equal("failed", rec.status)
    local kept, marker = rec.error:match("^(.-)( %[cut from %d+ bytes%])$")
    assert.is_truthy(kept, rec.error:sub(-40))
    assert.is_true(#kept > 0 and #rec.error <= LIMIT)
    assert.equal(text:sub(1, #kept), kept)
    assert.is_truthy(utf8.len(kept))
    assert.equal(" [cut from " .. #text .. " bytes]", marker)
    assert.equal(rec.error, s:get(r.id).error)
  end)

  it("a run closed by an error too large to store is still finished as failed", function()
    local r = s:begin { agent = "a", goal = "g" }
    local id = r.id
    r:close(big)
    local rec = s:get(id)
    assert.equal("failed", rec.status)
    assert.is_truthy(rec.error:find(" [cut from " .. #big .. " bytes]", 1, true))
  end)
end)
