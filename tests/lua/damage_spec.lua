-- damage_spec.lua -- a row damaged by another program raises ECORRUPT naming the run (or event) and the field (SPEC §6).
local agentrun = require "agentrun"
local fv = require "faultvfs"
local h = require "helpers"

describe("a row damaged by another program #sqlite_only", function()
  local dir, path, s, id, eid

  before_each(function()
    dir = h.tmpdir()
    path = dir .. "/damaged.db"
    s = assert(agentrun.open(path))
    for k = 1, 3 do
      local r = s:begin { agent = "a", goal = "g", metadata = { tag = k }, budget = { max_steps = 2 } }
      r:step { kind = "llm", content = { text = "one" }, usage = { input_tokens = 1, cache = 1 } }
      r:step { kind = "tool", name = "grep", content = { text = "two" } }
      r:checkpoint { at = 2 }
      if k == 2 then id = r.id end
      r:exhaust()
    end
    eid = s:event { agent = "a", type = "output", content = "hello", metadata = { k = 1 } }
  end)

  after_each(function()
    s:close()
    h.rmdir(dir)
  end)

  local function damage(sql)
    sql = sql:gsub("{id}", id):gsub("{event}", tostring(eid))
    assert.equal(1, fv.exec(path, sql))
  end

  -- the error names the row and the field: "run <id>: stored metadata is damaged: ..."
  local function corrupt(owner, field, fn, ...)
    local e = h.ar_error("ECORRUPT", fn, ...)
    assert.is_truthy(e.message:find(owner .. ": stored " .. field .. " is damaged", 1, true), e.message)
    return e
  end

  it("runs, get, steps, resume and a retention rule name the run and its metadata", function()
    damage("UPDATE runs SET metadata = '[1,2' WHERE id = '{id}'")
    local owner = "run " .. id
    local e = corrupt(owner, "metadata", s.runs, s, {})
    assert.is_truthy(e.message:find("expected a JSON object at byte 0", 1, true), e.message)
    corrupt(owner, "metadata", s.get, s, id)
    corrupt(owner, "metadata", s.get, s, id, { steps = true })
    corrupt(owner, "metadata", s.resume, s, id)
    corrupt(owner, "metadata", s.retain, s, { dry_run = true, rule = function() return "keep" end })
    -- counting reads no JSON
    assert.equal(3, s:count {})
  end)

  it("names output, budget and usage counters of the run", function()
    for _, c in ipairs {
      { "UPDATE runs SET output = '{\"a\":' WHERE id = '{id}'", "output" },
      { "UPDATE runs SET budget = '[1,2' WHERE id = '{id}'", "budget" },
      { "UPDATE runs SET budget = '{\"max_steps\":\"2\"}' WHERE id = '{id}'", "budget" },
      { "UPDATE runs SET counters = '{\"cache\":' WHERE id = '{id}'", "counters" },
    } do
      damage(c[1])
      corrupt("run " .. id, c[2], s.get, s, id)
      corrupt("run " .. id, c[2], s.runs, s, { agent = "a" })
      corrupt("run " .. id, c[2], s.resume, s, id)
      damage("UPDATE runs SET output = NULL, budget = '{\"max_steps\":2}', counters = '{\"cache\":2}' WHERE id = '{id}'")
      assert.equal(id, s:get(id).id)
    end
  end)

  it("names the run and the step for step content and counters, in get and the steps iterator", function()
    for _, c in ipairs {
      { "UPDATE steps SET content = '[1,2' WHERE run = (SELECT n FROM runs WHERE id = '{id}') AND seq = 2", "content" },
      { "UPDATE steps SET counters = '7' WHERE run = (SELECT n FROM runs WHERE id = '{id}') AND seq = 2", "counters" },
    } do
      damage(c[1])
      local owner = "run " .. id .. " step 2"
      corrupt(owner, c[2], s.get, s, id, { steps = true })
      corrupt(owner, c[2], function()
        for _ in s:steps(id) do end
      end)
      -- the first step is read before the damaged one
      for step in s:steps(id, { limit = 1 }) do assert.equal(1, step.seq) end
      -- the run itself still reads
      assert.equal(2, s:get(id).iterations)
      damage("UPDATE steps SET content = '{}', counters = NULL"
             .. " WHERE run = (SELECT n FROM runs WHERE id = '{id}') AND seq = 2")
    end
  end)

  it("names the run's checkpoint state", function()
    damage("UPDATE checkpoints SET state = '{' WHERE run = (SELECT n FROM runs WHERE id = '{id}')")
    corrupt("run " .. id .. " checkpoint", "state", s.checkpoint, s, id)
  end)

  it("names the event and its metadata or content in events", function()
    damage("UPDATE events SET metadata = '[1,2' WHERE id = {event}")
    corrupt("event " .. eid, "metadata", s.events, s, { agent = "a" })
    damage("UPDATE events SET metadata = NULL, content = CAST(X'68FF' AS TEXT) WHERE id = {event}")
    corrupt("event " .. eid, "content", s.events, s, { agent = "a" })
  end)

  it("names text that is not UTF-8 or holds a NUL byte", function()
    damage("UPDATE runs SET goal = CAST(X'67FF' AS TEXT) WHERE id = '{id}'")
    corrupt("run " .. id, "goal", s.get, s, id)
    damage("UPDATE runs SET goal = CAST(X'670068' AS TEXT) WHERE id = '{id}'")
    corrupt("run " .. id, "goal", s.get, s, id)
  end)

  it("store:check lists every damaged row by id and field, and goes on past each", function()
    local sound = s:check()
    assert.same({ ok = true, runs = 3, steps = 6, checkpoints = 3, events = 1, problems = {} }, sound)
    damage("UPDATE runs SET metadata = '[1,2' WHERE id = '{id}'")
    damage("UPDATE steps SET content = '[1,2' WHERE run = (SELECT n FROM runs WHERE id = '{id}') AND seq = 2")
    damage("UPDATE checkpoints SET state = '{' WHERE run = (SELECT n FROM runs WHERE id = '{id}')")
    damage("UPDATE events SET content = CAST(X'68FF' AS TEXT) WHERE id = {event}")
    local rep = s:check()
    assert.is_false(rep.ok)
    assert.equal(3, rep.runs)
    assert.equal(6, rep.steps)
    assert.equal(1, rep.events)
    local seen = {}
    for _, p in ipairs(rep.problems) do seen[#seen + 1] = p.kind .. ":" .. tostring(p.field) end
    assert.same({ "run:metadata", "step:content", "checkpoint:state", "event:content" }, seen)
    assert.equal(id, rep.problems[1].id)
    assert.truthy(rep.problems[1].message:find("run " .. id .. ": stored metadata is damaged", 1, true))
    assert.equal(id, rep.problems[2].id)
    assert.equal(2, rep.problems[2].seq)
    assert.truthy(rep.problems[2].message:find("run " .. id .. " step 2: stored content", 1, true))
    assert.truthy(rep.problems[3].message:find("run " .. id .. " checkpoint: stored state", 1, true))
    assert.equal(eid, rep.problems[4].id)
    -- a run whose id is not an id is named by its key
    damage("UPDATE runs SET id = 'x' WHERE id = '{id}'")
    rep = s:check()
    assert.is_nil(rep.problems[1].id)
    assert.equal("metadata", rep.problems[1].field)
    assert.equal("integer", math.type(rep.problems[1].key))
  end)

  it("store:check reports what SQLite's integrity_check finds in the file", function()
    -- an index that no longer matches its table
    fv.exec(path, "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql ="
      .. " 'CREATE INDEX runs_by_agent ON runs(user)' WHERE name = 'runs_by_agent'")
    local fresh <close> = assert(agentrun.open(path))
    local rep = fresh:check()
    assert.is_false(rep.ok)
    assert.equal("file", rep.problems[1].kind)
    assert.truthy(rep.problems[1].message:find("missing from index runs_by_agent", 1, true))
  end)
end)
