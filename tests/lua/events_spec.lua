-- events_spec.lua -- conversation events: append, listing with filters and cursors, count, summary, delete, retention (SPEC §3.7, §6).
local agentrun = require "agentrun"
local h = require "helpers"

-- The ids of a list of events.
local function ids(list)
  local t = {}
  for i, e in ipairs(list) do t[i] = e.id end
  return t
end

-- Appends n events of `agent` (type "log", content "<agent> i") and returns their ids.
local function append(s, agent, n)
  local t = {}
  for i = 1, n do t[i] = s:event { agent = agent, type = "log", content = agent .. " " .. i } end
  return t
end

describe("store:event", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("returns increasing integer ids across agents", function()
    local a1 = s:event { agent = "a", type = "prompt_sent" }
    local b1 = s:event { agent = "b", type = "output" }
    local a2 = s:event { agent = "a", type = "output" }
    assert.equal("integer", math.type(a1))
    assert.is_true(a1 < b1 and b1 < a2)
    assert.same({ a1, a2 }, ids(s:events { agent = "a" }))
    assert.same({ b1 }, ids(s:events { agent = "b" }))
  end)

  it("keeps every field and reads it back", function()
    local r = s:begin { agent = "a", goal = "g" }
    local id = s:event { agent = "a", session = 7, type = "tool_use", content = "grep -n foo",
                         metadata = { tool = "shell", args = agentrun.array { "-n", "foo" }, n = 2 },
                         run = r.id, at = 1700000000123 }
    local list = s:events { agent = "a" }
    assert.same({ { id = id, agent = "a", session = 7, type = "tool_use", content = "grep -n foo",
                    metadata = { tool = "shell", args = { "-n", "foo" }, n = 2 }, run = r.id,
                    at = 1700000000123 } }, list)
    assert.equal("integer", math.type(list[1].at))
    r:complete()
  end)

  it("defaults session to 0, metadata to an empty object and at to now, and leaves content and run out", function()
    -- os.time() reads a coarse clock that may lag the store's by a few ms
    local before = (os.time() - 1) * 1000
    local id = s:event { agent = "a", type = "log" }
    local after = (os.time() + 2) * 1000
    local e = s:events { agent = "a" }[1]
    assert.equal(id, e.id)
    assert.equal(0, e.session)
    assert.same({}, e.metadata)
    assert.equal("{}", agentrun.json_encode(e.metadata))
    assert.is_nil(e.content)
    assert.is_nil(e.run)
    assert.is_true(e.at >= before and e.at < after)
  end)

  it("stores content exactly, multibyte text and NUL bytes included, as step content is", function()
    s:event { agent = "a", type = "output", content = "b \u{1F600} é" }
    s:event { agent = "a", type = "output", content = "a\0b\0" }
    s:event { agent = "a", type = "output", content = "\0" }
    local list = s:events { agent = "a" }
    assert.equal(3, #list)
    assert.equal("b \u{1F600} é", list[1].content)
    assert.equal("a\0b\0", list[2].content)
    assert.equal("\0", list[3].content)
    -- the same bytes as a step's content read back the same
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "message", content = "a\0b\0" }
    assert.equal(list[2].content, s:get(r.id, { steps = true }).steps[1].content)
    r:complete()
  end)

  it("refuses names with a NUL byte and content that is not UTF-8, storing nothing", function()
    h.plain_error(s.event, s, { agent = "a\0b", type = "output" })
    h.plain_error(s.event, s, { agent = "a", type = "out\0put" })
    h.plain_error(s.event, s, { agent = "a", type = "output", run = "r\0" })
    local e = h.plain_error(s.event, s, { agent = "a", type = "output", content = "ok\0\255" })
    assert.is_truthy(e:find("content is not valid UTF-8", 1, true), e)
    h.plain_error(s.event, s, { agent = "a", type = "output", content = 42 })
    assert.equal(0, s:info().events)
  end)

  it("refuses a missing or empty agent or type with a plain error and stores nothing", function()
    h.plain_error(s.event, s, { type = "log" })
    h.plain_error(s.event, s, { agent = "a" })
    h.plain_error(s.event, s, { agent = "", type = "log" })
    h.plain_error(s.event, s, { agent = "a", type = "" })
    assert.equal(0, s:count_events { agent = "a" })
    assert.equal(0, s:info().events)
  end)

  it("refuses a negative session, unknown fields and wrong types with a plain error and stores nothing", function()
    local bad = {
      { agent = "a", type = "log", session = -1 },
      { agent = "a", type = "log", session = 1.5 },
      { agent = "a", type = "log", session = "1" },
      { agent = "a", type = "log", sesion = 1 },
      { agent = "a", type = "log", kind = "llm" },
      { agent = 1, type = "log" },
      { agent = "a", type = true },
      { agent = "a", type = "log", content = 5 },
      { agent = "a", type = "log", content = {} },
      { agent = "a", type = "log", metadata = "tag" },
      { agent = "a", type = "log", run = 1 },
      { agent = "a", type = "log", at = "now" },
      { agent = "a", type = "log", at = 1.25 },
      { agent = "a", type = "log", content = "\xff\xfe" },
    }
    for i, e in ipairs(bad) do
      local ok, err = pcall(s.event, s, e)
      assert.is_false(ok, "case " .. i)
      assert.equal("string", type(err), "case " .. i .. ": " .. tostring(err))
    end
    h.plain_error(s.event, s, "log")
    h.plain_error(s.event, s)
    assert.equal(0, s:info().events)
  end)

  it("raises agentrun.Error EJSON for metadata that cannot be serialised and stores nothing", function()
    local e = h.ar_error("EJSON", s.event, s, { agent = "a", type = "log", metadata = { score = 0 / 0 } })
    assert.truthy(e.message:find("metadata.score", 1, true))
    e = h.ar_error("EJSON", s.event, s, { agent = "a", type = "log", metadata = { cb = print } })
    assert.truthy(e.message:find("metadata.cb", 1, true))
    h.ar_error("EJSON", s.event, s, { agent = "a", type = "log", metadata = { x = math.huge } })
    local cyclic = {}
    cyclic.self = cyclic
    h.ar_error("EJSON", s.event, s, { agent = "a", type = "log", metadata = cyclic })
    h.ar_error("EJSON", s.event, s, { agent = "a", type = "log", metadata = agentrun.array { 1, 2 } })
    assert.equal(0, s:count_events { agent = "a" })
    assert.equal(0, s:info().events)
    -- the store still works after the refusals
    local id = s:event { agent = "a", type = "log", metadata = { ok = true } }
    assert.same({ id }, ids(s:events { agent = "a" }))
  end)
end)

describe("store:events", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("requires the agent and lists only that agent's events", function()
    h.plain_error(s.events, s, {})
    h.plain_error(s.events, s, { agent = "" })
    h.plain_error(s.events, s)
    local a = append(s, "a", 3)
    append(s, "ab", 2)
    append(s, "A", 1)
    local list, cursor = s:events { agent = "a" }
    assert.same(a, ids(list))
    assert.same({ "a 1", "a 2", "a 3" }, { list[1].content, list[2].content, list[3].content })
    assert.is_nil(cursor)
    local none, c2 = s:events { agent = "nobody" }
    assert.same({}, none)
    assert.equal("[]", agentrun.json_encode(none))
    assert.is_nil(c2)
  end)

  it("filters by session", function()
    local e0 = s:event { agent = "a", type = "log" }
    local e1 = s:event { agent = "a", type = "log", session = 1 }
    local e2 = s:event { agent = "a", type = "log", session = 2 }
    local e1b = s:event { agent = "a", type = "log", session = 1 }
    s:event { agent = "b", type = "log", session = 1 }
    assert.same({ e0 }, ids(s:events { agent = "a", session = 0 }))
    assert.same({ e1, e1b }, ids(s:events { agent = "a", session = 1 }))
    assert.same({ e2 }, ids(s:events { agent = "a", session = 2 }))
    assert.same({}, ids(s:events { agent = "a", session = 3 }))
    assert.same({ e0, e1, e2, e1b }, ids(s:events { agent = "a" }))
  end)

  it("filters by one type or a list of types", function()
    local p = s:event { agent = "a", type = "prompt_sent" }
    local o = s:event { agent = "a", type = "output" }
    local t = s:event { agent = "a", type = "tool_use" }
    local o2 = s:event { agent = "a", type = "output" }
    s:event { agent = "b", type = "output" }
    assert.same({ o, o2 }, ids(s:events { agent = "a", type = "output" }))
    assert.same({ p, t }, ids(s:events { agent = "a", type = { "tool_use", "prompt_sent" } }))
    assert.same({ o, o2 }, ids(s:events { agent = "a", type = { "output" } }))
    assert.same({}, ids(s:events { agent = "a", type = "thinking" }))
    assert.same({ p, o, t, o2 }, ids(s:events { agent = "a", type = { "output", "prompt_sent", "tool_use" } }))
  end)

  it("takes a list of up to 1,000 types, the C API's limit, and refuses 1,001 with a plain error", function()
    local o = s:event { agent = "a", type = "output" }
    s:event { agent = "a", type = "log" }
    local types = {}
    for i = 1, 999 do types[i] = "t" .. i end
    types[1000] = "output"
    assert.same({ o }, ids(s:events { agent = "a", type = types }))
    assert.equal(1, s:count_events { agent = "a", type = types })
    types[1001] = "log"
    local e = h.plain_error(s.events, s, { agent = "a", type = types })
    assert.truthy(e:find("events query.type must list 1 to 1000 types", 1, true), e)
    h.plain_error(s.count_events, s, { agent = "a", type = types })
    h.plain_error(s.events, s, { agent = "a", type = {} })
  end)

  it("filters by at with since inclusive and until exclusive", function()
    local e = {}
    for i, at in ipairs { 1000, 2000, 3000, 4000, 5000 } do
      e[i] = s:event { agent = "a", type = "log", at = at }
    end
    assert.same({ e[2], e[3], e[4] }, ids(s:events { agent = "a", since = 2000, ["until"] = 5000 }))
    assert.same({ e[2], e[3], e[4], e[5] }, ids(s:events { agent = "a", since = 1001 }))
    assert.same({ e[1], e[2] }, ids(s:events { agent = "a", ["until"] = 3000 }))
    assert.same({ e[3] }, ids(s:events { agent = "a", since = 3000, ["until"] = 3001 }))
    assert.same({}, ids(s:events { agent = "a", since = 3000, ["until"] = 3000 }))
  end)

  it("combines filters", function()
    local want = {}
    for i = 1, 12 do
      local id = s:event { agent = "a", session = i % 2, type = i % 3 == 0 and "output" or "log", at = i * 100 }
      if i % 2 == 1 and i % 3 == 0 and i * 100 >= 300 and i * 100 < 1000 then want[#want + 1] = id end
    end
    assert.same(want, ids(s:events { agent = "a", session = 1, type = "output", since = 300, ["until"] = 1000 }))
    assert.equal(2, #want)
    assert.equal(2, s:count_events { agent = "a", session = 1, type = "output", since = 300, ["until"] = 1000 })
  end)

  it("returns 100 events by default and a cursor to the rest", function()
    local all = append(s, "a", 130)
    local page, cursor = s:events { agent = "a" }
    assert.equal(100, #page)
    assert.same({ table.unpack(all, 1, 100) }, ids(page))
    assert.equal("string", type(cursor))
    local rest, c2 = s:events { agent = "a", after = cursor }
    assert.same({ table.unpack(all, 101, 130) }, ids(rest))
    assert.is_nil(c2)
  end)

  it("lists by id, ascending by default and descending on request, whatever the at values", function()
    local e1 = s:event { agent = "a", type = "log", at = 3000 }
    local e2 = s:event { agent = "a", type = "log", at = 1000 }
    local e3 = s:event { agent = "a", type = "log", at = 2000 }
    assert.same({ e1, e2, e3 }, ids(s:events { agent = "a" }))
    assert.same({ e1, e2, e3 }, ids(s:events { agent = "a", order = "asc" }))
    assert.same({ e3, e2, e1 }, ids(s:events { agent = "a", order = "desc" }))
    assert.same({ e3, e2 }, ids(s:events { agent = "a", order = "desc", limit = 2 }))
  end)

  it("gives no cursor when the page holds the last event", function()
    append(s, "a", 4)
    local _, c = s:events { agent = "a", limit = 4 }
    assert.is_nil(c)
    _, c = s:events { agent = "a", limit = 5 }
    assert.is_nil(c)
    _, c = s:events { agent = "a", limit = 3 }
    assert.equal("string", type(c))
  end)

  it("pages ascending with after, never repeating or skipping while new events arrive", function()
    local want = append(s, "a", 7)
    local seen, cursor, pages = {}, nil, 0
    repeat
      local page
      page, cursor = s:events { agent = "a", limit = 3, after = cursor }
      pages = pages + 1
      for _, e in ipairs(page) do seen[#seen + 1] = e.id end
      -- between pages: new events of this agent and of another one
      if cursor then
        want[#want + 1] = s:event { agent = "a", type = "log" }
        s:event { agent = "b", type = "log" }
      end
    until cursor == nil
    assert.same(want, seen)
    assert.equal(9, #seen)
    assert.equal(3, pages)
  end)

  it("pages descending with after, never repeating or skipping while new events arrive", function()
    local old = append(s, "a", 8)
    local seen, cursor, pages, newer = {}, nil, 0, {}
    repeat
      local page
      page, cursor = s:events { agent = "a", limit = 3, order = "desc", after = cursor }
      pages = pages + 1
      for _, e in ipairs(page) do seen[#seen + 1] = e.id end
      newer[#newer + 1] = s:event { agent = "a", type = "log" }
    until cursor == nil
    assert.same({ old[8], old[7], old[6], old[5], old[4], old[3], old[2], old[1] }, seen)
    assert.equal(3, pages)
    -- the events written meanwhile are all newer than the first page
    for _, id in ipairs(newer) do assert.is_true(id > old[8]) end
    assert.same({ newer[3], newer[2], newer[1], old[8] }, ids(s:events { agent = "a", order = "desc", limit = 4 }))
  end)

  it("gives, before a cursor, the limit events preceding it in ascending order", function()
    local e = append(s, "a", 9)
    local p1, c1 = s:events { agent = "a", limit = 3 }
    local p2, c2 = s:events { agent = "a", limit = 3, after = c1 }
    assert.same({ e[1], e[2], e[3] }, ids(p1))
    assert.same({ e[4], e[5], e[6] }, ids(p2))
    -- new events arrive: the positions the cursors mark do not move
    local e10 = s:event { agent = "a", type = "log" }
    local b1, bc1 = s:events { agent = "a", limit = 3, before = c1 }
    assert.same(ids(p1), ids(b1))
    assert.equal(c1, bc1)
    local b2, bc2 = s:events { agent = "a", limit = 3, before = c2 }
    assert.same(ids(p2), ids(b2))
    assert.equal(c2, bc2)
    -- the two events right before c2, still ascending
    assert.same({ e[5], e[6] }, ids(s:events { agent = "a", limit = 2, before = c2 }))
    -- a limit larger than what precedes gives everything before, and the cursor continues after it
    local all_before, c = s:events { agent = "a", limit = 50, before = c2 }
    assert.same({ e[1], e[2], e[3], e[4], e[5], e[6] }, ids(all_before))
    local rest, last = s:events { agent = "a", limit = 50, after = c }
    assert.same({ e[7], e[8], e[9], e10 }, ids(rest))
    assert.is_nil(last)
    -- filters apply to before pages too
    local odd = s:event { agent = "a", session = 1, type = "log" }
    assert.same({}, ids(s:events { agent = "a", session = 1, limit = 3, before = c2 }))
    assert.same({ odd }, ids(s:events { agent = "a", session = 1, limit = 3, after = c2 }))
  end)

  it("gives, before a cursor, the limit events preceding it in descending order", function()
    local e = append(s, "a", 9)
    local p1, c1 = s:events { agent = "a", limit = 3, order = "desc" }
    local p2, c2 = s:events { agent = "a", limit = 3, order = "desc", after = c1 }
    local p3, c3 = s:events { agent = "a", limit = 3, order = "desc", after = c2 }
    assert.same({ e[9], e[8], e[7] }, ids(p1))
    assert.same({ e[6], e[5], e[4] }, ids(p2))
    assert.same({ e[3], e[2], e[1] }, ids(p3))
    assert.is_nil(c3)
    local new = s:event { agent = "a", type = "log" }
    local b2, bc2 = s:events { agent = "a", limit = 3, order = "desc", before = c2 }
    assert.same(ids(p2), ids(b2))
    assert.equal(c2, bc2)
    assert.same({ e[7], e[6], e[5], e[4] }, ids((s:events { agent = "a", limit = 4, order = "desc", before = c2 })))
    -- everything before c1 in descending order: the new event, then the first page
    assert.same({ new, e[9], e[8], e[7] }, ids((s:events { agent = "a", limit = 10, order = "desc", before = c1 })))
  end)

  it("refuses malformed cursors, after with before, and bad query fields with a plain error", function()
    append(s, "a", 3)
    s:begin({ agent = "r", goal = "g" }):complete()
    s:begin({ agent = "r", goal = "g" }):complete()
    local _, runs_cursor = s:runs { limit = 1 }
    assert.equal("string", type(runs_cursor))
    local _, c = s:events { agent = "a", limit = 1 }
    for _, bad in ipairs { "", "bogus", "e1:", "e1:-1", "e1:1x", "e1:01", "e1: 1", "e2:1",
                           "e1:99999999999999999999", runs_cursor } do
      h.plain_error(s.events, s, { agent = "a", after = bad })
      h.plain_error(s.events, s, { agent = "a", before = bad })
      h.plain_error(s.count_events, s, { agent = "a", after = bad })
    end
    h.plain_error(s.events, s, { agent = "a", after = 1 })
    h.plain_error(s.events, s, { agent = "a", after = c, before = c })
    h.plain_error(s.events, s, { agent = "a", limit = -1 })
    h.plain_error(s.events, s, { agent = "a", limit = 2.5 })
    h.plain_error(s.events, s, { agent = "a", session = -1 })
    h.plain_error(s.events, s, { agent = "a", order = "newest" })
    h.plain_error(s.events, s, { agent = "a", type = 3 })
    h.plain_error(s.events, s, { agent = "a", type = {} })
    h.plain_error(s.events, s, { agent = "a", type = { "log", 2 } })
    h.plain_error(s.events, s, { agent = "a", since = "yesterday" })
    h.plain_error(s.events, s, { agent = "a", sessions = 1 })
    h.plain_error(s.events, s, { agent = "a", status = "completed" })
    h.plain_error(s.count_events, s, { agent = "a", lmit = 1 })
  end)
end)

describe("store:count_events", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("counts one agent's events matching the filters, ignoring limit and cursors", function()
    for i = 1, 6 do s:event { agent = "a", type = i <= 4 and "log" or "output", session = i % 2, at = i * 10 } end
    append(s, "b", 5)
    local _, c = s:events { agent = "a", limit = 2 }
    assert.equal(6, s:count_events { agent = "a" })
    assert.equal(5, s:count_events { agent = "b" })
    assert.equal(0, s:count_events { agent = "c" })
    assert.equal(4, s:count_events { agent = "a", type = "log" })
    assert.equal(6, s:count_events { agent = "a", type = { "log", "output" } })
    assert.equal(3, s:count_events { agent = "a", session = 0 })
    assert.equal(2, s:count_events { agent = "a", session = 1, type = "log" })
    assert.equal(3, s:count_events { agent = "a", since = 20, ["until"] = 50 })
    assert.equal(6, s:count_events { agent = "a", limit = 1 })
    assert.equal(6, s:count_events { agent = "a", after = c })
    assert.equal("integer", math.type(s:count_events { agent = "a" }))
    h.plain_error(s.count_events, s, {})
  end)
end)

describe("store:event_summary", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("gives total, counts by type, distinct sessions and the first and last at", function()
    s:event { agent = "a", type = "prompt_sent", session = 3, at = 5000 }
    s:event { agent = "a", type = "output", session = 3, at = 2000 }
    s:event { agent = "a", type = "output", session = 0, at = 9000 }
    s:event { agent = "a", type = "tool_use", session = 7, at = 4000 }
    s:event { agent = "a", type = "output", session = 7, at = 3000 }
    s:event { agent = "b", type = "log", session = 11, at = 100 }
    s:event { agent = "b", type = "log", session = 12, at = 99999 }
    assert.same({ total = 5, by_type = { prompt_sent = 1, output = 3, tool_use = 1 }, sessions = 3,
                  first_at = 2000, last_at = 9000 }, s:event_summary("a"))
    assert.same({ total = 2, by_type = { log = 2 }, sessions = 2, first_at = 100, last_at = 99999 },
                s:event_summary("b"))
  end)

  it("gives zeros and no times for an agent without events", function()
    s:event { agent = "a", type = "log" }
    assert.same({ total = 0, by_type = {}, sessions = 0 }, s:event_summary("z"))
    h.plain_error(s.event_summary, s)
    h.plain_error(s.event_summary, s, 5)
  end)
end)

describe("store:delete_events", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("deletes every event of one agent and leaves the others' events", function()
    append(s, "a", 4)
    local b = append(s, "b", 3)
    local ab = append(s, "ab", 2)
    assert.equal(4, s:delete_events("a"))
    assert.equal(0, s:count_events { agent = "a" })
    assert.same(b, ids(s:events { agent = "b" }))
    assert.same(ab, ids(s:events { agent = "ab" }))
    assert.equal(0, s:delete_events("a"))
    assert.equal(0, s:delete_events("nobody"))
    assert.equal(5, s:info().events)
    -- new events after a delete get new, larger ids
    local again = s:event { agent = "a", type = "log" }
    assert.is_true(again > ab[2])
    h.plain_error(s.delete_events, s)
    h.plain_error(s.delete_events, s, {})
  end)
end)

describe("store:retain_events", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("deletes events older than older_than seconds, by at, for every agent", function()
    local now = os.time() * 1000
    local keep, old = {}, {}
    old[#old + 1] = s:event { agent = "a", type = "log", at = now - 3600 * 1000 }
    keep[#keep + 1] = s:event { agent = "a", type = "log", at = now - 10 * 1000 }
    old[#old + 1] = s:event { agent = "b", type = "log", at = now - 120 * 1000 }
    keep[#keep + 1] = s:event { agent = "b", type = "log", at = now - 30 * 1000 }
    keep[#keep + 1] = s:event { agent = "b", type = "log" }
    assert.equal(2, s:retain_events { older_than = 60 })
    local left = {}
    for _, id in ipairs(ids(s:events { agent = "a" })) do left[#left + 1] = id end
    for _, id in ipairs(ids(s:events { agent = "b" })) do left[#left + 1] = id end
    assert.same(keep, left)
    assert.equal(0, s:retain_events { older_than = 60 })
  end)

  it("keeps the newest keep_last events of each agent, by at and then id", function()
    local a = {}
    a.old = s:event { agent = "a", type = "log", at = 1000 }
    a.newest = s:event { agent = "a", type = "log", at = 9000 }
    a.tie_first = s:event { agent = "a", type = "log", at = 5000 }
    a.tie_second = s:event { agent = "a", type = "log", at = 5000 }
    a.older = s:event { agent = "a", type = "log", at = 2000 }
    local b1 = s:event { agent = "b", type = "log", at = 1 }
    local c = { s:event { agent = "c", type = "log", at = 10 }, s:event { agent = "c", type = "log", at = 10 },
                s:event { agent = "c", type = "log", at = 10 } }
    assert.equal(3 + 1, s:retain_events { keep_last = 2 })
    assert.same({ a.newest, a.tie_second }, ids(s:events { agent = "a" }))
    assert.same({ b1 }, ids(s:events { agent = "b" }))
    assert.same({ c[2], c[3] }, ids(s:events { agent = "c" }))
    assert.equal(0, s:retain_events { keep_last = 2 })
    assert.equal(2, s:retain_events { keep_last = 1 })
    assert.same({ a.newest }, ids(s:events { agent = "a" }))
    assert.same({ c[3] }, ids(s:events { agent = "c" }))
    assert.equal(3, s:retain_events { keep_last = 0 })
    assert.equal(0, s:info().events)
  end)

  it("applies both limits together and does nothing with neither", function()
    local now = os.time() * 1000
    local a_old = s:event { agent = "a", type = "log", at = now - 7200 * 1000 }
    local a1 = s:event { agent = "a", type = "log", at = now - 5000 }
    local a2 = s:event { agent = "a", type = "log", at = now - 4000 }
    local a3 = s:event { agent = "a", type = "log", at = now - 3000 }
    s:event { agent = "b", type = "log", at = now - 7200 * 1000 }
    assert.equal(0, s:retain_events {})
    assert.equal(5, s:info().events)
    -- a: a_old by age, a1 by count; b: b_old by age (the only one, still old)
    assert.equal(3, s:retain_events { older_than = 3600, keep_last = 2 })
    assert.same({ a2, a3 }, ids(s:events { agent = "a" }))
    assert.same({}, ids(s:events { agent = "b" }))
  end)

  it("refuses unknown fields and bad values with a plain error and deletes nothing", function()
    append(s, "a", 3)
    h.plain_error(s.retain_events, s, { keep = 1 })
    h.plain_error(s.retain_events, s, { older_than = -1 })
    h.plain_error(s.retain_events, s, { older_than = "1d" })
    h.plain_error(s.retain_events, s, { older_than = 0 / 0 })
    h.plain_error(s.retain_events, s, { keep_last = -1 })
    h.plain_error(s.retain_events, s, { keep_last = 1.5 })
    h.plain_error(s.retain_events, s)
    assert.equal(3, s:count_events { agent = "a" })
  end)
end)

describe("events across agents", function()
  it("are isolated per agent in listing, counting, summary, delete and keep_last, also read back by a new handle", function()
    local path, o = h.location()
    local s = assert(agentrun.open(path, o))
    local a, b = {}, {}
    for i = 1, 6 do
      a[#a + 1] = s:event { agent = "a", type = "log", session = 1, at = 1000 + i }
      b[#b + 1] = s:event { agent = "b", type = "log", session = 1, at = 1000 + i }
    end
    local p1, c = s:events { agent = "a", limit = 4 }
    assert.same({ a[1], a[2], a[3], a[4] }, ids(p1))
    assert.same({ a[5], a[6] }, ids(s:events { agent = "a", after = c }))
    assert.equal(6, s:count_events { agent = "b", session = 1 })
    assert.equal(1, s:event_summary("b").sessions)
    assert.equal(6, s:retain_events { keep_last = 3 })
    assert.same({ a[4], a[5], a[6] }, ids(s:events { agent = "a" }))
    assert.same({ b[4], b[5], b[6] }, ids(s:events { agent = "b" }))
    assert.equal(3, s:delete_events("b"))
    assert.same({ a[4], a[5], a[6] }, ids(s:events { agent = "a" }))
    s:close()
    -- what is stored is what a fresh handle reads
    local s2 = assert(agentrun.open(path, o))
    assert.same({ a[4], a[5], a[6] }, ids(s2:events { agent = "a" }))
    assert.equal(0, s2:count_events { agent = "b" })
    s2:close()
  end)

  it("keep each agent's listing in id order however their appends interleave", function()
    local s = h.store()
    local all = {}
    for i = 1, 10 do all[i] = s:event { agent = i % 2 == 0 and "even" or "odd", type = "log" } end
    assert.same({ all[1], all[3], all[5], all[7], all[9] }, ids(s:events { agent = "odd" }))
    assert.same({ all[10], all[8], all[6] }, ids(s:events { agent = "even", order = "desc", limit = 3 }))
    assert.equal(5, s:event_summary("odd").total)
    s:close()
  end)
end)
