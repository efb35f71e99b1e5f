-- retain_spec.lua -- store:retain and store:retain_events: criteria, status filter, Lua rules, dry runs, vacuum, the example (SPEC §3.8, §6).
local agentrun = require "agentrun"
local h = require "helpers"

local SECOND, DAY = 1000, 24 * 3600 * 1000
-- Record times are set relative to this; every age used below is at least
-- hours away from any limit, so the seconds a test takes never matter.
local NOW = os.time() * 1000
local BUDGET_ERROR = "retention rule exceeded its budget of 1000000 instructions"

-- The repository's root, from this file's own path (tests/lua/retain_spec.lua).
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/[^/]*$")) or "."

-- Writes a finished run and returns its id. o: agent (default "a"), status
-- (default "completed"), age (ms since it finished), created (ms since it
-- began; default age), steps (how many; default 1), metadata.
local function put(s, o)
  local age = o.age or 0
  local steps = {}
  for i = 1, o.steps or 1 do steps[i] = { kind = "llm", content = "step " .. i } end
  local fields = { agent = o.agent or "a", goal = "g", steps = steps, metadata = o.metadata,
                   created_at = NOW - (o.created or age), finished_at = NOW - age }
  local status = o.status or "completed"
  local rec
  if status == "completed" then
    fields.output = "done"
    rec = agentrun.records.completed(fields)
  elseif status == "failed" then
    rec = agentrun.records.failed("boom", fields)
  else
    rec = agentrun.records.budget_exhausted({ limit = "max_steps", limit_value = 3, value = 3 }, fields)
  end
  return s:write(rec)
end

-- The ids of every run in the store, sorted.
local function left(s)
  local list = s:runs { limit = 10000 }
  local ids = {}
  for i, r in ipairs(list) do ids[i] = r.id end
  table.sort(ids)
  return ids
end

local function sorted(t)
  table.sort(t)
  return t
end

-- The counts of a report, without the byte sizes.
local function counts(r)
  return { considered = r.considered, deleted = r.deleted, kept_by_rule = r.kept_by_rule,
           deleted_by_rule = r.deleted_by_rule, steps_deleted = r.steps_deleted }
end

describe("store:retain criteria", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("returns a report with exactly the documented fields", function()
    put(s, { age = 2 * DAY })
    local r = s:retain { older_than = 3600 }
    local keys = {}
    for k in pairs(r) do keys[#keys + 1] = k end
    assert.same(sorted { "considered", "deleted", "kept_by_rule", "deleted_by_rule", "steps_deleted",
                         "bytes_before", "bytes_after", "dry_run" }, sorted(keys))
    for _, k in ipairs { "considered", "deleted", "kept_by_rule", "deleted_by_rule", "steps_deleted",
                         "bytes_before", "bytes_after" } do
      assert.equal("integer", math.type(r[k]), k)
    end
    assert.is_false(r.dry_run)
  end)

  it("older_than deletes the runs that finished longer ago, judged by finished_at not created_at", function()
    local recent = put(s, { age = 1 * DAY, created = 10 * DAY }) -- began long ago, finished lately
    local old = put(s, { age = 3 * DAY })
    local older = put(s, { age = 2.5 * DAY, created = 5 * DAY })
    local young = put(s, { age = 1.5 * DAY })
    local r = s:retain { older_than = 2 * 24 * 3600 }
    assert.same({ considered = 4, deleted = 2, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 2 }, counts(r))
    assert.same(sorted { recent, young }, left(s))
    assert.is_nil(s:get(old))
    assert.is_nil(s:get(older))
  end)

  it("an empty policy deletes nothing and still counts every finished run as considered", function()
    for i = 1, 3 do put(s, { age = i * 100 * DAY }) end
    local r = s:retain {}
    assert.same({ considered = 3, deleted = 0, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 0 }, counts(r))
    assert.equal(3, s:count {})
  end)

  it("keep_last keeps each agent's newest runs by created_at, whatever their finish times", function()
    -- agent a: created 5, 4, 3, 2, 1 days ago; the finish times run the other way round
    local a = {}
    for i = 1, 5 do a[i] = put(s, { agent = "a", created = (6 - i) * DAY, age = i * 3600 * SECOND }) end
    -- agent b has fewer runs than keep_last: all stay
    local b1 = put(s, { agent = "b", age = 50 * DAY })
    local b2 = put(s, { agent = "b", age = 60 * DAY })
    local r = s:retain { keep_last = 3 }
    assert.same({ considered = 7, deleted = 2, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 2 }, counts(r))
    assert.same(sorted { a[3], a[4], a[5], b1, b2 }, left(s))
    assert.equal(3, s:count { agent = "a" })
  end)

  it("keep_last breaks a tie in created_at at the boundary by id: the later id is newer", function()
    local t = 2 * DAY
    local oldest = put(s, { agent = "a", age = 3 * DAY })
    local first = put(s, { agent = "a", age = t })
    local second = put(s, { agent = "a", age = t }) -- same created_at, later id
    local third = put(s, { agent = "a", age = t })
    -- created_at decides before the id: written later, created earlier
    local b_new = put(s, { agent = "b", age = 1 * DAY })
    local written_later_but_older = put(s, { agent = "b", age = 4 * DAY })
    -- ids sort by creation time, and within one millisecond by writing order
    assert.is_true(first < second and second < third and written_later_but_older < b_new)
    local r = s:retain { keep_last = 2 }
    assert.equal(2, r.deleted)
    assert.same(sorted { second, third, written_later_but_older, b_new }, left(s))
    assert.is_nil(s:get(first))
    assert.is_nil(s:get(oldest))
    r = s:retain { keep_last = 1 }
    assert.equal(2, r.deleted)
    assert.same(sorted { third, b_new }, left(s))
  end)

  it("keep_last leaves exactly keep_last runs per agent, and 0 deletes every finished run", function()
    for i = 1, 12 do put(s, { agent = "a", age = (i % 4) * DAY, created = (i % 4) * DAY }) end
    for i = 1, 5 do put(s, { agent = "b", age = i * DAY }) end
    local r = s:retain { keep_last = 4 }
    assert.equal(8 + 1, r.deleted)
    assert.equal(4, s:count { agent = "a" })
    assert.equal(4, s:count { agent = "b" })
    r = s:retain { keep_last = 0 }
    assert.same({ considered = 8, deleted = 8, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 8 }, counts(r))
    assert.equal(0, s:count {})
  end)

  it("older_than and keep_last together delete a run when either says so", function()
    local new1 = put(s, { agent = "a", age = 1 * DAY })
    local new2 = put(s, { agent = "a", age = 2 * DAY })
    local old3 = put(s, { agent = "a", age = 10 * DAY })  -- within keep_last, too old
    local old4 = put(s, { agent = "a", age = 11 * DAY })  -- both
    local new5 = put(s, { agent = "a", age = 3 * DAY, created = 12 * DAY }) -- young, beyond keep_last
    local b_old = put(s, { agent = "b", age = 10 * DAY })
    local r = s:retain { older_than = 5 * 24 * 3600, keep_last = 3 }
    assert.same({ considered = 6, deleted = 4, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 4 }, counts(r))
    assert.same(sorted { new1, new2 }, left(s))
    for _, id in ipairs { old3, old4, new5, b_old } do assert.is_nil(s:get(id)) end
  end)

  it("a status filter as a string considers only that status", function()
    local f_old = put(s, { status = "failed", age = 10 * DAY })
    local f_new = put(s, { status = "failed", age = 1 * DAY })
    local c_old = put(s, { status = "completed", age = 10 * DAY })
    local x_old = put(s, { status = "budget_exhausted", age = 10 * DAY })
    local r = s:retain { status = "failed", older_than = 5 * 24 * 3600 }
    assert.same({ considered = 2, deleted = 1, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 1 }, counts(r))
    assert.same(sorted { f_new, c_old, x_old }, left(s))
    assert.is_nil(s:get(f_old))
  end)

  it("a status filter as a list considers each listed status", function()
    put(s, { status = "failed", age = 10 * DAY })
    put(s, { status = "budget_exhausted", age = 10 * DAY })
    local c_old = put(s, { status = "completed", age = 10 * DAY })
    local kept = put(s, { status = "budget_exhausted", age = 1 * DAY })
    local r = s:retain { status = { "failed", "budget_exhausted" }, older_than = 5 * 24 * 3600 }
    assert.same({ considered = 3, deleted = 2, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 2 }, counts(r))
    assert.same(sorted { c_old, kept }, left(s))
  end)

  it("a status list of any length names a set, as in the C API (no query limit applies)", function()
    put(s, { status = "failed", age = 10 * DAY })
    local c_old = put(s, { status = "completed", age = 10 * DAY })
    local list = {}
    for i = 1, 40 do list[i] = i % 2 == 0 and "failed" or "budget_exhausted" end
    local r = s:retain { status = list, older_than = 5 * 24 * 3600 }
    assert.same({ considered = 1, deleted = 1, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 1 }, counts(r))
    assert.same({ c_old }, left(s))
  end)

  it("with a status filter, keep_last counts only the runs of those statuses", function()
    local f1 = put(s, { status = "failed", age = 3 * DAY })
    local f2 = put(s, { status = "failed", age = 2 * DAY })
    local c = put(s, { status = "completed", age = 1 * DAY }) -- the newest, but not considered
    local r = s:retain { status = "failed", keep_last = 1 }
    assert.same({ considered = 2, deleted = 1, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 1 }, counts(r))
    assert.same(sorted { f2, c }, left(s))
    assert.is_nil(s:get(f1))
  end)

  it("refuses \"running\" in the status filter with a plain error and deletes nothing", function()
    put(s, { age = 10 * DAY })
    local e = h.plain_error(s.retain, s, { status = "running", keep_last = 0 })
    assert.matches("running runs are never subject to retention", e, 1, true)
    h.plain_error(s.retain, s, { status = { "completed", "running" }, keep_last = 0 })
    assert.equal(1, s:count {})
  end)

  it("never considers, shows the rule or deletes a running run", function()
    local run = s:begin { agent = "a", goal = "g" }
    run:step { kind = "llm", content = "working" }
    run:checkpoint { at = 1 }
    local done = put(s, { age = 10 * DAY })
    local seen = {}
    local r = s:retain { older_than = 0, keep_last = 0, rule = function(x)
      seen[#seen + 1] = x.id
      return "delete"
    end }
    assert.same({ considered = 1, deleted = 1, kept_by_rule = 0, deleted_by_rule = 1, steps_deleted = 1 }, counts(r))
    assert.same({ done }, seen)
    assert.same({ run.id }, left(s))
    assert.equal("running", s:get(run.id).status)
    assert.equal(1, #h.steps(s, run.id))
    assert.same({ at = 1 }, (s:checkpoint(run.id)))
    run:complete("ok")
  end)

  it("considers interrupted runs like the other finished ones", function()
    local run = s:begin { agent = "a", goal = "g" }
    assert.equal(1, s:recover { stale_after = 0 })
    local r = s:retain { status = "interrupted", keep_last = 0 }
    assert.same({ considered = 1, deleted = 1, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 0 }, counts(r))
    assert.is_nil(s:get(run.id))
  end)

  it("takes a run's steps, checkpoints and events with it, and leaves the others' alone", function()
    local function record(agent)
      local run = s:begin { agent = agent, goal = "g" }
      for i = 1, 3 do run:step { kind = "llm", content = i } end
      run:checkpoint { n = 3 }
      s:event { agent = agent, type = "log", run = run.id, content = "of the run" }
      run:complete("ok")
      return run.id
    end
    local doomed, kept = record("a"), record("b")
    s:event { agent = "a", type = "log", content = "no run" }
    local r = s:retain { rule = function(x) if x.id == doomed then return "delete" end end }
    assert.same({ considered = 2, deleted = 1, kept_by_rule = 0, deleted_by_rule = 1, steps_deleted = 3 }, counts(r))
    local info = s:info()
    assert.equal(1, info.runs)
    assert.equal(3, info.steps)
    assert.equal(2, info.events)
    assert.is_nil(s:get(doomed))
    h.ar_error("ENOTFOUND", s.checkpoint, s, doomed)
    local a_events = s:events { agent = "a" }
    assert.equal(1, #a_events)
    assert.equal("no run", a_events[1].content)
    assert.equal(kept, s:events { agent = "b" }[1].run)
    assert.same({ n = 3 }, (s:checkpoint(kept)))
    assert.equal(3, #h.steps(s, kept))
  end)

  it("refuses unknown and ill-typed policy fields with a plain error and deletes nothing", function()
    put(s, { age = 10 * DAY })
    local e = h.plain_error(s.retain, s, { keep = 1 })
    assert.equal("bad argument #1 to 'retain' (unknown field 'keep' in retention policy)", e)
    assert.equal("bad argument #1 to 'retain' (unknown field 'max_age' in retention policy)",
                 h.plain_error(s.retain, s, { keep_last = 0, max_age = 1 }))
    for _, bad in ipairs {
      { older_than = "7d" }, { older_than = -1 }, { older_than = 0 / 0 }, { older_than = math.huge },
      { keep_last = -1 }, { keep_last = 1.5 }, { keep_last = "3" },
      { status = "done" }, { status = {} }, { status = 42 }, { status = { "failed", 7 } },
      { rule = "keep" }, { dry_run = "yes" }, { vacuum = 1 }, { [1] = 0 },
    } do
      h.plain_error(s.retain, s, bad)
    end
    h.plain_error(s.retain, s)
    h.plain_error(s.retain, s, "keep_last=0")
    assert.equal(1, s:count {})
  end)

  it("refuses a closed store with a plain error", function()
    local t = h.store()
    t:close()
    assert.matches("closed", h.plain_error(t.retain, t, {}))
  end)
end)

describe("store:retain with a rule", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("\"keep\" overrides both criteria and is counted in kept_by_rule", function()
    local pinned = put(s, { age = 30 * DAY, metadata = { tags = { "pinned" } } })
    local plain = put(s, { age = 30 * DAY, metadata = { tags = { "x" } } })
    local newest = put(s, { age = 1 * DAY })
    local r = s:retain { older_than = 7 * 24 * 3600, keep_last = 1, rule = function(run)
      if run.metadata.tags and run.metadata.tags[1] == "pinned" then return "keep" end
    end }
    assert.same({ considered = 3, deleted = 1, kept_by_rule = 1, deleted_by_rule = 0, steps_deleted = 1 }, counts(r))
    assert.same(sorted { pinned, newest }, left(s))
    assert.is_nil(s:get(plain))
  end)

  it("\"delete\" deletes a run no criterion would, counted in deleted_by_rule", function()
    local f = put(s, { status = "failed", age = 1 * SECOND })
    local c = put(s, { status = "completed", age = 1 * SECOND })
    local r = s:retain { keep_last = 10, older_than = 365 * 24 * 3600, rule = function(run)
      if run.status == "failed" then return "delete" end
    end }
    assert.same({ considered = 2, deleted = 1, kept_by_rule = 0, deleted_by_rule = 1, steps_deleted = 1 }, counts(r))
    assert.same({ c }, left(s))
    assert.is_nil(s:get(f))
  end)

  it("nil leaves the run to the criteria", function()
    local old = put(s, { age = 10 * DAY })
    local young = put(s, { age = 1 * DAY })
    local calls = 0
    local r = s:retain { older_than = 5 * 24 * 3600, rule = function() calls = calls + 1 end }
    assert.same({ considered = 2, deleted = 1, kept_by_rule = 0, deleted_by_rule = 0, steps_deleted = 1 }, counts(r))
    assert.equal(2, calls)
    assert.same({ young }, left(s))
    assert.is_nil(s:get(old))
  end)

  it("counts every verdict: kept_by_rule, deleted_by_rule, and considered within the status filter", function()
    for i = 1, 4 do put(s, { status = "failed", age = i * DAY }) end
    for i = 1, 3 do put(s, { status = "completed", age = i * DAY }) end
    put(s, { status = "budget_exhausted", age = 1 * DAY })
    local n = 0
    local r = s:retain { status = { "failed", "completed" }, keep_last = 0, rule = function()
      n = n + 1
      if n % 3 == 1 then return "keep" elseif n % 3 == 2 then return "delete" end
    end }
    -- seven calls: keep, delete, nil, keep, delete, nil, keep; nil falls to keep_last = 0
    assert.equal(7, n)
    assert.same({ considered = 7, deleted = 4, kept_by_rule = 3, deleted_by_rule = 2, steps_deleted = 4 }, counts(r))
    assert.equal(3 + 1, s:count {})
    assert.equal(1, s:count { status = "budget_exhausted" })
  end)

  it("hands the rule the run's record without steps and its age in seconds since finished_at", function()
    local id = put(s, { agent = "bot", status = "failed", age = 2 * DAY, created = 3 * DAY, steps = 2,
                        metadata = { team = "x" } })
    local seen
    local before = os.time()
    s:retain { rule = function(run) seen = run end }
    local after = os.time() + 2 -- os.time() reads a coarse clock
    local stored = s:get(id)
    assert.equal(id, seen.id)
    assert.equal("bot", seen.agent)
    assert.equal("failed", seen.status)
    assert.equal("boom", seen.error)
    assert.equal(2, seen.iterations)
    assert.same({ team = "x" }, seen.metadata)
    assert.equal(stored.created_at, seen.created_at)
    assert.equal(stored.finished_at, seen.finished_at)
    assert.is_nil(seen.steps)
    -- age = (now - finished_at) / 1000, with now read during the call
    assert.equal("float", math.type(seen.age))
    local finished = (NOW - 2 * DAY) / 1000
    assert.is_true(seen.age >= before - finished - 1 and seen.age <= after - finished,
                   ("age %s"):format(seen.age))
    assert.is_true(seen.age > 2 * 24 * 3600 - 5 and seen.age < 3 * 24 * 3600)
  end)

  it("runs every rule before deleting anything", function()
    for i = 1, 5 do put(s, { age = i * DAY }) end
    local during = {}
    local r = s:retain { rule = function()
      during[#during + 1] = s:count {}
      return "delete"
    end }
    assert.equal(5, r.deleted)
    assert.same({ 5, 5, 5, 5, 5 }, during)
    assert.equal(0, s:count {})
  end)

  it("a rule that raises makes store:retain raise that very error value and deletes nothing", function()
    for i = 1, 5 do put(s, { age = i * DAY }) end
    local n = 0
    local value = { reason = "no" }
    local ok, e = pcall(s.retain, s, { keep_last = 0, rule = function()
      n = n + 1
      if n == 5 then error(value) end
      return "delete"
    end })
    assert.is_false(ok)
    assert.is_true(rawequal(value, e))
    assert.equal(5, n)
    assert.equal(5, s:count {})
    ok, e = pcall(s.retain, s, { keep_last = 0, rule = function() error("plain text", 0) end })
    assert.is_false(ok)
    assert.equal("plain text", e)
    assert.equal(5, s:count {})
    -- a later call works as usual
    assert.equal(5, s:retain { keep_last = 0 }.deleted)
  end)

  it("a rule returning anything but \"keep\", \"delete\" or nil raises and deletes nothing", function()
    put(s, { age = 10 * DAY })
    for _, v in ipairs { "remove", "KEEP", 1, true, false, {} } do
      local e = h.plain_error(s.retain, s, { keep_last = 0, rule = function() return v end })
      assert.matches('"keep", "delete" or nil', e, 1, true)
    end
    assert.equal(1, s:count {})
  end)

  it("names a wrong verdict by its type and value, without running any of its metamethods", function()
    put(s, { age = 10 * DAY })
    local loud = setmetatable({}, { __tostring = function() error("the host ran the verdict's __tostring") end,
                                    __name = "loud" })
    local cases = {
      { "nil", 'got string "nil"' }, { "", 'got string ""' }, { 1, "got number 1" }, { 2.5, "got number 2.5" },
      { true, "got boolean true" }, { false, "got boolean false" }, { loud, "got a table value" },
      { print, "got a function value" },
    }
    for _, c in ipairs(cases) do
      local e = h.plain_error(s.retain, s, { keep_last = 0, rule = function() return c[1] end })
      assert.is_truthy(e:find('must return "keep", "delete" or nil (' .. c[2] .. ")", 1, true), e)
    end
    assert.equal(1, s:count {})
  end)

  it("names a status list entry that is not a status name by its type and value", function()
    put(s, { age = 10 * DAY })
    local e = h.plain_error(s.retain, s, { status = { "failed", 1 } })
    assert.is_truthy(e:find("status[2] must be a status name (got number 1)", 1, true), e)
    e = h.plain_error(s.retain, s, { status = { "failed", "1" } })
    assert.is_truthy(e:find("status[2]: unknown status '1'", 1, true), e)
    assert.equal(1, s:count {})
  end)

  it("stops a rule that loops forever with a budget error and deletes nothing", function()
    for i = 1, 3 do put(s, { age = i * DAY }) end
    local e = h.plain_error(s.retain, s, { keep_last = 0, rule = function() while true do end end })
    assert.equal(BUDGET_ERROR, e)
    assert.equal(3, s:count {})
  end)

  it("still stops a rule that catches the budget error with pcall and loops again", function()
    put(s, { age = 1 * DAY })
    local caught = 0
    local e = h.plain_error(s.retain, s, { keep_last = 0, rule = function()
      while true do
        pcall(function() while true do end end)
        caught = caught + 1
      end
    end })
    assert.equal(BUDGET_ERROR, e)
    assert.equal(0, caught)
    assert.equal(1, s:count {})
  end)

  -- Rules given to store:retain directly run in the caller's state, under
  -- the same budgets as a policy file's rule: nothing inside escapes them.
  local escapes = {
    { "loops in xpcall's message handler", function() xpcall(error, function() while true do end end) end,
      BUDGET_ERROR },
    { "catches the budget error in a message handler and loops again", function()
        xpcall(error, function() while true do pcall(function() while true do end end) end end)
      end, BUDGET_ERROR },
    { "fails in its message handler, again and again", function()
        xpcall(function() while true do end end, function(e) for _ = 1, 100000 do end error(e) end)
      end, BUDGET_ERROR },
    { "loops in a __close handler", function()
        local guard <close> = setmetatable({}, { __close = function() while true do end end })
        while true do end
      end, BUDGET_ERROR },
    { "loops in a metamethod", function()
        local t = setmetatable({}, { __index = function() while true do end end })
        xpcall(function() return t.x end, function() while true do end end)
      end, BUDGET_ERROR },
    { "loops in a coroutine it makes", function()
        coroutine.wrap(function() while true do end end)()
      end, BUDGET_ERROR },
    { "doubles a string 40 times", function()
        local x = "x"
        for _ = 1, 40 do x = x .. x end
      end, "retention rule exceeded its " },
    { "asks for two gigabytes at once", function() return ("x"):rep((1 << 31) - 2) end,
      "retention rule exceeded its memory budget of 67108864 bytes" },
    { "catches every memory error and asks again", function()
        local keep = {}
        while true do pcall(function() keep[#keep + 1] = ("x"):rep(1 << 20) .. #keep end) end
      end, "retention rule exceeded its " },
  }
  for _, c in ipairs(escapes) do
    it(("stops a rule that %s, deletes nothing and leaves the host as it was"):format(c[1]), function()
      for i = 1, 3 do put(s, { age = i * DAY }) end
      local function host_hook() end
      debug.sethook(host_hook, "", 1000000000)
      local e = h.plain_error(s.retain, s, { keep_last = 0, rule = c[2] })
      local hook, _, count = debug.gethook()
      debug.sethook()
      assert.is_truthy(e:find(c[3], 1, true), e)
      assert.equal(host_hook, hook)
      assert.equal(1000000000, count)
      assert.equal(3, s:count {})
      -- the host's own instructions are its own again
      local n = 0
      for i = 1, 3000000 do n = n + i end
      assert.equal(3, s:retain { keep_last = 0 }.deleted)
    end)
  end

  it("gives the host its memory back once a rule ran out of its own", function()
    put(s, { age = DAY })
    local e = h.plain_error(s.retain, s, { rule = function() return ("x"):rep((1 << 31) - 2) end })
    assert.equal("retention rule exceeded its memory budget of 67108864 bytes", e)
    assert.equal(80 * 2 ^ 20, #("x"):rep(1 << 20):rep(80))
  end)

  it("counts what a rule keeps from call to call against one memory budget per retain", function()
    for i = 1, 40 do put(s, { age = i * DAY }) end
    local keep = {}
    local e = h.plain_error(s.retain, s, { keep_last = 0, rule = function(run)
      keep[#keep + 1] = ("x"):rep(1 << 22) .. run.id
    end })
    assert.equal("retention rule exceeded its memory budget of 67108864 bytes", e)
    assert.equal(40, s:count {})
    keep = nil
    -- the next retain has a budget of its own
    local calls = 0
    assert.equal(40, s:retain { keep_last = 0, rule = function() calls = calls + 1 end }.deleted)
    assert.equal(40, calls)
  end)

  it("leaves a coroutine made by a rule free of the rule's budget once retain returns", function()
    put(s, { age = DAY })
    local co
    s:retain { rule = function()
      co = coroutine.create(function() local n = 0 for i = 1, 3000000 do n = n + i end return n end)
    end }
    local ok, n = coroutine.resume(co)
    assert.is_true(ok, tostring(n))
    assert.equal(4500001500000, n)
  end)

  it("gives each rule call its own budget and gives the caller's hook back", function()
    for i = 1, 3 do put(s, { age = i * DAY }) end
    local function host_hook() end
    debug.sethook(host_hook, "", 1000000000)
    -- 3 calls of 400,000 iterations of two instructions: more than one budget
    -- in all, less than one per call
    local ok, r = pcall(s.retain, s, { rule = function()
      local x = 0
      for i = 1, 400000 do x = i end
      return x > 0 and "keep" or nil
    end })
    local hook, mask, count = debug.gethook()
    debug.sethook()
    assert.is_true(ok, tostring(r))
    assert.equal(3, r.kept_by_rule)
    assert.equal(host_hook, hook)
    assert.equal("", mask)
    assert.equal(1000000000, count)
    -- and no hook is left behind once a rule ran out of budget
    h.plain_error(s.retain, s, { rule = function() while true do end end })
    assert.is_nil(debug.gethook())
  end)
end)

describe("store:retain with a rule that uses its own store", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  -- What the store holds, to show that a refused call changed nothing.
  local function contents(st)
    local ids = left(st)
    local events = st:events { agent = "a", limit = 1000 }
    return { ids = ids, events = #events, steps = st:info().steps,
             statuses = (function()
               local t = {}
               for i, id in ipairs(ids) do t[i] = st:get(id).status end
               return t
             end)() }
  end

  -- Each way a rule can write to or close the store it runs on. `setup`
  -- (optional) runs before retain and returns what the attempt needs.
  local attempts = {
    { "begin", function() s:begin { agent = "a", goal = "new" }:fail("x") end },
    { "write", function() s:write(agentrun.records.completed { agent = "a", goal = "w" }) end },
    { "step on a run begun earlier", function(r) r:step { kind = "llm" } end, true },
    { "checkpoint of a run begun earlier", function(r) r:checkpoint { n = 1 } end, true },
    { "complete of a run begun earlier", function(r) r:complete("out") end, true },
    { "fail of a run begun earlier", function(r) r:fail("no") end, true },
    { "exhaust of a run begun earlier", function(r)
        r:exhaust { limit = "max_steps", limit_value = 1, value = 1 }
      end, true },
    { "close of a running run begun earlier", function(r) r:close() end, true },
    { "<close> of a running run begun earlier", function(r) do local _ <close> = r end end, true },
    { "event", function() s:event { agent = "a", type = "log", content = "x" } end },
    { "delete_events", function() s:delete_events("a") end },
    { "retain_events", function() s:retain_events { keep_last = 0 } end },
    { "forget_user", function() s:forget_user("u") end },
    { "recover", function() s:recover { stale_after = 0 } end },
    { "resume", function(_, paused) s:resume(paused) end },
    { "retain", function() s:retain { keep_last = 0 } end },
    { "close", function() s:close() end },
  }
  for _, a in ipairs(attempts) do
    local name, attempt, uses_run = a[1], a[2], a[3]
    it(("refuses %s from inside the rule with ESTATE, and retain raises it and deletes nothing"):format(name),
      function()
        put(s, { age = 3 * DAY, metadata = { n = 1 } })
        put(s, { age = 2 * DAY })
        local paused = put(s, { age = DAY, status = "budget_exhausted" })
        s:forget_user("nobody")
        s:event { agent = "a", type = "log", content = "old", at = NOW - 10 * DAY }
        local running = s:begin { agent = "a", goal = "running", user = "u" }
        running:step { kind = "llm" }
        local before = contents(s)
        local calls = 0
        local e = h.ar_error("ESTATE", s.retain, s, { keep_last = 0, rule = function()
          calls = calls + 1
          attempt(running, paused)
          return "delete"
        end })
        assert.equal(1, calls)
        assert.matches("retention rule", e.message, 1, true)
        assert.same(before, contents(s))
        -- the store and the run handle are as they were, and work as usual
        assert.equal("running", running.status)
        assert.equal(2, running:step { kind = "llm" })
        running:complete("done")
        assert.equal(4, s:retain { keep_last = 0 }.deleted)
      end)
  end

  it("lets a rule that catches the refusal go on: retain completes and nothing was written", function()
    for i = 1, 3 do put(s, { age = i * DAY }) end
    local refused = 0
    local r = s:retain { keep_last = 0, rule = function()
      local ok, e = pcall(s.begin, s, { agent = "a", goal = "new" })
      if not ok and getmetatable(e) == agentrun.Error and e.code == "ESTATE" then refused = refused + 1 end
      local ok2 = pcall(s.close, s)
      if not ok2 then refused = refused + 1 end
    end }
    assert.equal(6, refused)
    assert.same({ 3, 3 }, { r.considered, r.deleted })
    assert.equal(0, s:count {})
  end)

  it("lets a rule read its own store: get, steps, runs, count, stats, checkpoint, events, info", function()
    local id = put(s, { age = 2 * DAY, steps = 3 })
    put(s, { age = DAY, agent = "b" })
    local r0 = s:begin { agent = "a", goal = "kept going" }
    r0:checkpoint { at = 1 }
    s:event { agent = "a", type = "log", content = "hello" }
    local seen = {}
    local r = s:retain { rule = function(run)
      seen[#seen + 1] = {
        s:get(run.id).id == run.id, #h.steps(s, id), #s:runs {}, s:count {}, s:stats {}.runs,
        s:checkpoint(r0.id).at, #s:events { agent = "a" }, s:count_events { agent = "a" },
        s:event_summary("a").total, s:info().runs,
      }
      return "keep"
    end }
    assert.equal(2, r.kept_by_rule)
    for _, v in ipairs(seen) do assert.same({ true, 3, 3, 3, 3, 1, 1, 1, 1, 3 }, v) end
    r0:close()
  end)

  it("does not show the rule runs finished after retain began, nor loop on them", function()
    local path, o = h.location()
    local a = assert(agentrun.open(path, o))
    local b = assert(agentrun.open(path, o))
    for i = 1, 3 do put(a, { age = i * DAY }) end
    local calls, written = 0, {}
    local r = a:retain { keep_last = 0, rule = function()
      calls = calls + 1
      -- another handle on the same store is another writer: never blocked, never seen
      written[#written + 1] = b:write(agentrun.records.failed("x", { agent = "a", goal = "meanwhile" }))
      local late = b:begin { agent = "a", goal = "meanwhile" }
      late:fail("x")
      return "delete"
    end }
    assert.equal(3, calls)
    assert.same({ 3, 3 }, { r.considered, r.deleted })
    assert.equal(6, a:count {})
    for _, id in ipairs(written) do assert.equal("failed", a:get(id).status) end
    a:close()
    b:close()
  end)

  it("finishes a running run whose handle is collected during the rule once retain returns", function()
    put(s, { age = DAY })
    -- no collection before the rule's own: the handle must die inside it
    collectgarbage("stop")
    local id
    coroutine.wrap(function() id = s:begin { agent = "a", goal = "dropped" }.id end)()
    local during
    local ok, rep = pcall(s.retain, s, { rule = function()
      collectgarbage()
      collectgarbage()
      during = s:get(id).status
      return "keep"
    end })
    collectgarbage("restart")
    assert.is_true(ok, tostring(rep))
    assert.equal(1, rep.kept_by_rule)
    assert.equal(1, rep.considered)
    assert.equal("running", during)
    local after = s:get(id)
    assert.equal("failed", after.status)
    assert.equal("run closed before it finished", after.error)
  end)
end)

describe("store:retain dry_run and vacuum", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  -- A store holding runs of three statuses, some with many steps.
  local function filled()
    local s = h.store()
    for i = 1, 30 do put(s, { agent = "a" .. i % 3, status = "failed", age = i * DAY, steps = 3 }) end
    for i = 1, 30 do put(s, { agent = "a" .. i % 3, status = "completed", age = i * DAY, steps = 2 }) end
    put(s, { agent = "p", age = 100 * DAY, metadata = { pin = true } })
    return s
  end

  local policy = { older_than = 10 * 24 * 3600, keep_last = 5, status = { "failed", "completed" },
                   rule = function(run)
                     if run.metadata.pin then return "keep" end
                     if run.status == "failed" and run.age < 2.5 * 24 * 3600 then return "delete" end
                   end }

  it("reports what the real run then does, and deletes nothing", function()
    local s <close> = filled()
    local ids = left(s)
    local info = s:info()
    policy.dry_run = true
    local dry = s:retain(policy)
    assert.is_true(dry.dry_run)
    assert.same(ids, left(s))
    assert.same(info.steps, s:info().steps)
    assert.equal(dry.bytes_before, dry.bytes_after)
    policy.dry_run = nil
    local real = s:retain(policy)
    assert.is_false(real.dry_run)
    assert.same(counts(dry), counts(real))
    -- per agent, its newest five by created_at (a failed and a completed run
    -- of one age tie; the completed one, written later, is newer) less the
    -- failed ones under 2.5 days old, which the rule deletes: a0 keeps
    -- c3 f3 c6 f6 c9, a1 c1 c4 f4 c7, a2 c2 c5 f5 c8; the pinned run stays.
    -- Gone: 26 failed runs (3 steps each), 21 completed (2 steps each).
    assert.same({ considered = 61, deleted = 47, kept_by_rule = 1, deleted_by_rule = 2, steps_deleted = 120 },
                counts(real))
    assert.equal(14, s:count {})
    assert.equal(4, s:count { status = "failed" })
    assert.equal(info.steps - 120, s:info().steps)
  end)

  it("measures the store before and after, and vacuum gives freed pages back to the file system #sqlite_only", function()
    local s <close> = assert(agentrun.open(dir .. "/v.db", { durability = "normal" }))
    local big = ("x"):rep(20000)
    for i = 1, 60 do
      s:write(agentrun.records.completed { agent = "a", goal = "g", created_at = NOW - i * DAY,
                                           finished_at = NOW - i * DAY,
                                           steps = { { kind = "llm", content = big .. i } } })
    end
    local info = s:info()
    local r = s:retain { older_than = 12 * 3600, vacuum = true }
    assert.equal(60, r.deleted)
    assert.equal(info.file_bytes + info.wal_bytes, r.bytes_before)
    assert.is_true(r.bytes_before > 60 * 20000)
    assert.is_true(r.bytes_after < r.bytes_before / 4, ("%d -> %d"):format(r.bytes_before, r.bytes_after))
    info = s:info()
    assert.equal(info.file_bytes + info.wal_bytes, r.bytes_after)
    assert.equal(0, info.free_bytes)
  end)
end)

describe("store:retain_events", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  -- Appends an event of `agent` that happened `age` ms ago.
  local function ev(agent, age) return s:event { agent = agent, type = "log", at = NOW - age } end

  it("older_than deletes events older than that many seconds and returns the count", function()
    for i = 1, 4 do ev("a", i * DAY) end
    for i = 1, 2 do ev("b", i * 10 * DAY) end
    assert.equal(2 + 2, s:retain_events { older_than = 2.5 * 24 * 3600 })
    assert.equal(2, s:count_events { agent = "a" })
    assert.equal(0, s:count_events { agent = "b" })
  end)

  it("keep_last keeps each agent's newest events by at, then id", function()
    local a = {}
    for i = 1, 5 do a[i] = ev("a", 1 * DAY) end -- one instant: the later ids are newer
    ev("a", 2 * DAY)
    ev("b", 3 * DAY)
    assert.equal(4, s:retain_events { keep_last = 2 })
    local list = s:events { agent = "a" }
    assert.same({ a[4], a[5] }, { list[1].id, list[2].id })
    assert.equal(1, s:count_events { agent = "b" })
  end)

  it("applies both limits together, and refuses unknown fields", function()
    for i = 1, 6 do ev("a", i * DAY) end
    assert.equal(3, s:retain_events { older_than = 4.5 * 24 * 3600, keep_last = 3 })
    assert.equal(3, s:count_events { agent = "a" })
    assert.equal("bad argument #1 to 'retain_events' (unknown field 'older' in retain_events policy)",
                 h.plain_error(s.retain_events, s, { older = 1 }))
    assert.equal(3, s:count_events { agent = "a" })
  end)
end)

describe("examples/retention_policy.lua #sqlite_only", function()
  it("fills a store, applies the policy file and prints the dry run and the real report", function()
    local dir = h.tmpdir()
    local p = assert(io.popen(("lua5.4 '%s/examples/retention_policy.lua' '%s/demo.db' 2>&1"):format(ROOT, dir)))
    local out = p:read("a")
    local ok, how, code = p:close()
    local exists = h.exists(dir .. "/demo.db")
    h.rmdir(dir)
    assert.is_true(ok, out)
    assert.same({ "exit", 0 }, { how, code })
    assert.is_true(exists)
    assert.matches("\nDry run:   considered 1652, would delete 528 runs %(327 by the rule%) and 1584 steps; "
                   .. "23 kept by the rule\n", out)
    assert.matches("\nRetention: considered 1652, deleted 528 runs %(327 by the rule%) and 1584 steps; "
                   .. "23 kept by the rule\n", out)
    assert.matches("by agent:  support%-bot 1006, research%-agent 59, nightly%-report 59", out)
  end)
end)
