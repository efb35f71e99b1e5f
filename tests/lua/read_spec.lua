-- read_spec.lua -- store:get, store:steps, store:runs with filters and cursors, count, stats, forget_user (SPEC §3.5, §6).
local agentrun = require "agentrun"
local h = require "helpers"

local records = agentrun.records
local STATUSES = { "completed", "failed", "budget_exhausted", "interrupted" }

-- Writes a finished run with the given fields; returns its id.
local function write_run(s, f)
  local status = f.status or "completed"
  local rec = { agent = f.agent or "a", goal = "g", user = f.user, edition = f.edition, parent = f.parent,
                status = status, created_at = f.created_at, finished_at = f.finished_at, steps = f.steps }
  if status == "budget_exhausted" then rec.limit = { name = "max_steps", value = 1, reached = 1 } end
  if status == "failed" then rec.error = "x" end
  return s:write(rec)
end

-- Sorts model rows by (created_at, id) in the given order.
local function sorted(rows, order)
  table.sort(rows, function(a, b)
    if a.created_at ~= b.created_at then return a.created_at < b.created_at end
    return a.id < b.id
  end)
  if order ~= "asc" then
    local n = #rows
    for i = 1, n // 2 do rows[i], rows[n + 1 - i] = rows[n + 1 - i], rows[i] end
  end
  return rows
end

local function ids_of(list)
  local t = {}
  for i, r in ipairs(list) do t[i] = r.id end
  return t
end

describe("store:get", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("returns nil for an unknown id", function()
    assert.equal(1, select("#", s:get("01ZZZZZZZZZZZZZZZZZZZZZZZZ")))
    assert.is_nil(s:get("01ZZZZZZZZZZZZZZZZZZZZZZZZ"))
    assert.is_nil(s:get("not an id"))
    assert.is_nil(s:get("01ZZZZZZZZZZZZZZZZZZZZZZZZ", { steps = true }))
  end)

  it("returns the record without steps unless asked", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm", content = "one" }
    r:step { kind = "tool", content = "two" }
    r:complete("out")
    local plain = s:get(r.id)
    assert.is_nil(plain.steps)
    assert.is_nil(s:get(r.id, { steps = false }).steps)
    assert.is_nil(s:get(r.id, {}).steps)
    local full = s:get(r.id, { steps = true })
    assert.equal(getmetatable(agentrun.array {}), getmetatable(full.steps))
    assert.equal(2, #full.steps)
    assert.same({ 1, 2 }, h.seqs(full.steps))
    assert.same({ "one", "two" }, { full.steps[1].content, full.steps[2].content })
    full.steps = nil
    assert.same(plain, full)
  end)

  it("returns every record field of §2", function()
    local r = s:begin { agent = "a", goal = "g", user = "u", edition = "e", metadata = { k = "v" },
                        budget = { max_steps = 9 } }
    r:step { kind = "llm", usage = { input_tokens = 2, output_tokens = 1 }, cost = 0.5 }
    r:complete("out")
    local rec = s:get(r.id)
    local keys = {}
    for k in pairs(rec) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "agent", "budget", "created_at", "edition", "finished_at", "goal", "id", "iterations",
                  "latency_ms", "metadata", "output", "status", "updated_at", "usage", "user" }, keys)
    assert.equal(rec.finished_at, rec.updated_at)
  end)

  it("returns a running run's steps as far as they go", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm" }
    local rec = s:get(r.id, { steps = true })
    assert.equal("running", rec.status)
    assert.equal(1, #rec.steps)
    r:complete()
  end)

  it("raises plain errors for bad arguments", function()
    h.plain_error(s.get, s)
    h.plain_error(s.get, s, 42)
    h.plain_error(s.get, s, "id", { step = true })
    h.plain_error(s.get, s, "id", { steps = 1 })
    h.plain_error(s.get, s, "id", "steps")
  end)
end)

describe("store:steps", function()
  local s, id
  before_each(function()
    s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    for i = 1, 600 do r:step { kind = "k", content = i } end
    id = r:complete().id
  end)
  after_each(function() s:close() end)

  local function range(a, b)
    local t = {}
    for i = a, b do t[#t + 1] = i end
    return t
  end

  it("iterates every step in seq order", function()
    local steps = h.steps(s, id)
    assert.equal(600, #steps)
    assert.same(range(1, 600), h.seqs(steps))
    for i, st in ipairs(steps) do assert.equal(i, st.content) end
  end)

  it("starts at `from`, inclusive, and stops after `limit` steps", function()
    assert.same(range(4, 600), h.seqs(h.steps(s, id, { from = 4 })))
    assert.same(range(1, 3), h.seqs(h.steps(s, id, { limit = 3 })))
    assert.same(range(4, 6), h.seqs(h.steps(s, id, { from = 4, limit = 3 })))
    assert.same(range(250, 269), h.seqs(h.steps(s, id, { from = 250, limit = 20 })))
    assert.same({ 600 }, h.seqs(h.steps(s, id, { from = 600 })))
    assert.same({}, h.steps(s, id, { from = 601 }))
    assert.same({}, h.steps(s, id, { limit = 0 }))
    assert.same(range(1, 600), h.seqs(h.steps(s, id, { limit = 1000 })))
    assert.same(range(1, 600), h.seqs(h.steps(s, id, { from = 1 })))
  end)

  it("yields nothing for a run without steps", function()
    local empty = s:begin { agent = "a", goal = "g" }
    assert.same({}, h.steps(s, empty.id))
    empty:complete()
  end)

  it("raises ENOTFOUND for an unknown run", function()
    h.ar_error("ENOTFOUND", s.steps, s, "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
  end)

  it("raises plain errors for bad options", function()
    h.plain_error(s.steps, s, id, { from = 0 })
    h.plain_error(s.steps, s, id, { limit = -1 })
    h.plain_error(s.steps, s, id, { from = 1.5 })
    h.plain_error(s.steps, s, id, { start = 1 })
    h.plain_error(s.steps, s, 5)
  end)

  it("is released by breaking out of the for loop: the store then closes cleanly", function()
    local path, o = h.location()
    local fs = agentrun.open(path, o)
    local r = fs:begin { agent = "a", goal = "g" }
    for i = 1, 300 do r:step { kind = "k", content = i } end
    local rid = r:complete().id
    local seen = 0
    for st in fs:steps(rid) do
      seen = st.seq
      if st.seq == 3 then break end
    end
    assert.equal(3, seen)
    assert.is_true(pcall(fs.close, fs))
    -- SQLite's last close removes the WAL file
    if h.backend() == "sqlite" then assert.is_false(h.exists(path .. "-wal")) end
    local again = agentrun.open(path, o)
    assert.equal(300, #h.steps(again, rid))
    again:close()
  end)

  it("is released when an error leaves the for loop", function()
    local ok, e = pcall(function()
      for st in s:steps(id) do
        if st.seq == 2 then error("stop", 0) end
      end
    end)
    assert.is_false(ok)
    assert.equal("stop", e)
    assert.is_true(pcall(s.close, s))
  end)

  it("gives each content as its stored JSON text with raw = true, and checks the option", function()
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm", content = { text = "caf\u{e9}", n = 2 } }
    r:step { kind = "tool", content = "plain text" }
    r:step { kind = "none" }
    r:complete()
    local got = {}
    for st in s:steps(r.id, { raw = true, from = 1 }) do got[#got + 1] = st end
    assert.equal(3, #got)
    for _, st in ipairs(got) do assert.is_nil(st.content) end
    assert.same({ text = "caf\u{e9}", n = 2 }, agentrun.json_decode(got[1].content_json))
    assert.equal('"plain text"', got[2].content_json)
    assert.is_nil(got[3].content_json)
    assert.equal("llm", got[1].kind)
    assert.equal(2, got[2].seq)
    -- without it (or with false), contents come decoded and there is no text
    for st in s:steps(r.id, { raw = false }) do assert.is_nil(st.content_json) end
    assert.equal("plain text", h.steps(s, r.id)[2].content)
    h.plain_error(s.steps, s, r.id, { raw = 1 })
  end)

  it("keeps working while the run takes more steps, and the new step can be read afterwards", function()
    local r = s:begin { agent = "a", goal = "g" }
    for i = 1, 3 do r:step { kind = "k", content = i } end
    local seqs = {}
    for st in s:steps(r.id) do
      seqs[#seqs + 1] = st.seq
      if st.seq == 2 then r:step { kind = "k", content = 4 } end
    end
    -- whether a step recorded mid-iteration is seen is not specified; the earlier ones are
    assert.same({ 1, 2, 3 }, { table.unpack(seqs, 1, 3) })
    assert.same({ 1, 2, 3, 4 }, h.seqs(h.steps(s, r.id)))
    r:complete()
  end)
end)

describe("store:runs, count and stats", function()
  local s, model

  before_each(function()
    s = h.store()
    model = {}
    local first
    for i = 1, 12 do
      local f = {
        agent = i % 2 == 1 and "alpha" or "beta",
        user = i <= 4 and "u1" or i <= 8 and "u2" or nil,
        status = STATUSES[(i - 1) % 4 + 1],
        edition = i % 3 == 0 and "v1" or "v2",
        parent = i >= 11 and first or nil,
        created_at = 1000 * i,
        finished_at = 1000 * i + 7 * i + i % 3,
        steps = { { kind = "llm", usage = { input_tokens = i, output_tokens = 2 * i }, cost = i / 100 },
                  { kind = "tool" } },
      }
      f.id = write_run(s, f)
      first = first or f.id
      f.latency = f.finished_at - f.created_at
      f.iterations = 2
      model[#model + 1] = f
    end
    for _ = 1, 2 do
      local r = s:begin { agent = "alpha", goal = "g", user = "u1", edition = "v2" }
      r:step { kind = "llm", usage = { input_tokens = 100 }, cost = 1 }
      model[#model + 1] = { id = r.id, agent = "alpha", user = "u1", edition = "v2", status = "running",
                            created_at = r.created_at, iterations = 1, run = r, cents = 100 }
    end
    for i = 1, 12 do model[i].cents = i end
  end)
  after_each(function()
    for _, m in ipairs(model) do if m.run then m.run:complete() end end
    s:close()
  end)

  -- The model rows a query selects, in its order, without the limit.
  local function expected(q)
    local rows = {}
    local wanted
    if type(q.status) == "string" then wanted = { [q.status] = true }
    elseif q.status then
      wanted = {}
      for _, st in ipairs(q.status) do wanted[st] = true end
    end
    for _, m in ipairs(model) do
      if (q.agent == nil or m.agent == q.agent) and (q.user == nil or m.user == q.user)
        and (q.edition == nil or m.edition == q.edition) and (q.parent == nil or m.parent == q.parent)
        and (wanted == nil or wanted[m.status]) and (q.since == nil or m.created_at >= q.since)
        and (q["until"] == nil or m.created_at < q["until"]) then
        rows[#rows + 1] = m
      end
    end
    return sorted(rows, q.order)
  end

  local function queries()
    return {
      {}, { agent = "alpha" }, { agent = "beta" }, { agent = "nobody" }, { user = "u1" }, { user = "u2" },
      { status = "failed" }, { status = "running" }, { status = { "failed", "completed" } },
      { status = { "interrupted" } }, { edition = "v1" }, { parent = model[1].id },
      { since = 3000 }, { since = 3001 }, { ["until"] = 3000 }, { ["until"] = 3001 },
      { since = 3000, ["until"] = 7000 }, { agent = "beta", status = { "completed", "interrupted" }, order = "asc" },
      { user = "u2", edition = "v2", order = "desc" }, { order = "asc" }, { agent = "alpha", since = 5000 },
    }
  end

  it("lists runs matching each filter, newest first by default", function()
    for _, q in ipairs(queries()) do
      local list, cursor = s:runs(q)
      assert.same(ids_of(expected(q)), ids_of(list))
      assert.is_nil(cursor)
    end
  end)

  it("returns records without steps, as an array", function()
    local list = s:runs { status = "failed" }
    assert.equal(getmetatable(agentrun.array {}), getmetatable(list))
    assert.equal(3, #list)
    for _, rec in ipairs(list) do
      assert.is_nil(rec.steps)
      assert.equal("failed", rec.status)
      assert.equal("x", rec.error)
      assert.same(rec, s:get(rec.id))
    end
    local none = s:runs { agent = "nobody" }
    assert.same({}, none)
    assert.equal("[]", agentrun.json_encode(none))
  end)

  it("treats since as inclusive and until as exclusive", function()
    assert.same({ model[3].id }, ids_of(s:runs { since = 3000, ["until"] = 4000 }))
    assert.same({ model[4].id, model[3].id }, ids_of(s:runs { since = 3000, ["until"] = 4001 }))
    assert.same({}, ids_of(s:runs { since = 3001, ["until"] = 4000 }))
  end)

  it("applies limit, 50 by default", function()
    for i = 1, 45 do write_run(s, { agent = "bulk", created_at = 100 + i, finished_at = 100 + i }) end
    local list, cursor = s:runs()
    assert.equal(50, #list)
    assert.equal("string", type(cursor))
    -- the 14 runs of the model are newer than the 45 bulk ones
    assert.same(ids_of(expected {}), { table.unpack(ids_of(list), 1, 14) })
    list, cursor = s:runs { limit = 3 }
    assert.same({ model[14].id, model[13].id, model[12].id }, ids_of(list))
    assert.equal("string", type(cursor))
    list, cursor = s:runs { limit = 0 }
    assert.same({}, list)
    local all = s:runs { limit = 1000 }
    assert.equal(59, #all)
  end)

  it("counts the runs matching each filter, ignoring limit", function()
    for _, q in ipairs(queries()) do
      assert.equal(#expected(q), s:count(q))
      q.limit = 1
      assert.equal(#expected(q), s:count(q))
    end
    assert.equal(14, s:count())
  end)

  it("sums stats over the runs matching each filter", function()
    for _, q in ipairs(queries()) do
      local rows = expected(q)
      local want = { runs = #rows, iterations = 0, input_tokens = 0, output_tokens = 0, total_tokens = 0,
                     by_status = { running = 0, completed = 0, budget_exhausted = 0, failed = 0, interrupted = 0,
                                   waiting = 0 } }
      local cents, latency, finished = 0, 0, 0
      for _, m in ipairs(rows) do
        local i = m.cents
        want.by_status[m.status] = want.by_status[m.status] + 1
        want.iterations = want.iterations + m.iterations
        if m.status == "running" then
          want.input_tokens = want.input_tokens + 100
          want.total_tokens = want.total_tokens + 100
        else
          want.input_tokens = want.input_tokens + i
          want.output_tokens = want.output_tokens + 2 * i
          want.total_tokens = want.total_tokens + 3 * i
          latency = latency + m.latency
          finished = finished + 1
        end
        cents = cents + i
      end
      want.cost = cents / 100
      want.avg_latency_ms = finished > 0 and latency / finished or 0
      local got = s:stats(q)
      assert.same(want, got)
      assert.equal(want.cost, got.cost)
      assert.equal(want.avg_latency_ms, got.avg_latency_ms)
    end
  end)

  it("gives avg_latency_ms as the unrounded mean over finished runs", function()
    local t = h.store()
    write_run(t, { agent = "x", created_at = 1000, finished_at = 1010 })
    write_run(t, { agent = "x", created_at = 1000, finished_at = 1020 })
    write_run(t, { agent = "x", created_at = 1000, finished_at = 1025, status = "failed" })
    local running = t:begin { agent = "x", goal = "g" }
    local st = t:stats { agent = "x" }
    assert.equal(55 / 3, st.avg_latency_ms)
    assert.equal(4, st.runs)
    assert.equal(1, st.by_status.running)
    running:complete()
    t:close()
  end)

  it("gives zero stats for no runs", function()
    assert.same({ runs = 0, iterations = 0, input_tokens = 0, output_tokens = 0, total_tokens = 0, cost = 0,
                  avg_latency_ms = 0,
                  by_status = { running = 0, completed = 0, budget_exhausted = 0, failed = 0, interrupted = 0,
                                   waiting = 0 } },
      s:stats { agent = "nobody" })
  end)

  it("raises plain errors for a bad query", function()
    local cases = {
      { { agnet = "a" }, "unknown field 'agnet' in query" },
      { { status = "done" }, "unknown status 'done'" },
      { { status = {} }, "status" },
      { { status = { "failed", 3 } }, "status" },
      { { order = "up" }, "query.order must be \"asc\" or \"desc\"" },
      { { limit = -1 }, "query.limit must be >= 0" },
      { { limit = 1.5 }, "query.limit must be an integer" },
      { { since = "yesterday" }, "query.since must be an integer" },
      { { agent = 5 }, "query.agent must be a string" },
      { { after = "garbage" }, "after is not a valid runs cursor" },
      { { before = "r1:abc:def" }, "before is not a valid runs cursor" },
      { { after = "" }, "after is not a valid runs cursor" },
      { "agent", "table expected" },
    }
    for _, c in ipairs(cases) do
      for _, fn in ipairs { s.runs, s.count, s.stats } do
        if fn == s.runs or not (c[1].after or c[1].before) then
          local msg = h.plain_error(fn, s, c[1])
          assert.truthy(msg:find(c[2], 1, true), "expected '" .. c[2] .. "' in: " .. msg)
        end
      end
    end
    local _, cursor = s:runs { limit = 1 }
    h.plain_error(s.runs, s, { after = cursor, before = cursor })
  end)
end)

describe("store:runs cursors", function()
  local s, all_asc

  before_each(function()
    s = h.store()
    local rows = {}
    -- 60 runs, three per millisecond, so that ties are broken by id
    for i = 0, 59 do
      local at = 5000 + i // 3
      rows[#rows + 1] = { id = write_run(s, { agent = "p", created_at = at, finished_at = at }), created_at = at }
    end
    all_asc = ids_of(sorted(rows, "asc"))
  end)
  after_each(function() s:close() end)

  local function reversed(t)
    local r = {}
    for i = #t, 1, -1 do r[#r + 1] = t[i] end
    return r
  end

  -- Pages through the query with `after`; returns the ids in visit order and the page sizes.
  local function page_all(q, between)
    local visited, sizes, cursor = {}, {}, nil
    repeat
      q.after = cursor
      local list
      list, cursor = s:runs(q)
      sizes[#sizes + 1] = #list
      for _, r in ipairs(list) do visited[#visited + 1] = r.id end
      if between then between() end
    until cursor == nil
    return visited, sizes
  end

  it("visits each of 60 runs once, in order, with limit 7, in both orders", function()
    local desc, sizes = page_all { agent = "p", limit = 7 }
    assert.same(reversed(all_asc), desc)
    assert.same({ 7, 7, 7, 7, 7, 7, 7, 7, 4 }, sizes)
    local asc, asc_sizes = page_all { agent = "p", limit = 7, order = "asc" }
    assert.same(all_asc, asc)
    assert.same({ 7, 7, 7, 7, 7, 7, 7, 7, 4 }, asc_sizes)
  end)

  it("gives next_cursor nil on the last page also when the last page is full", function()
    local desc, sizes = page_all { agent = "p", limit = 6 }
    assert.same(reversed(all_asc), desc)
    assert.same({ 6, 6, 6, 6, 6, 6, 6, 6, 6, 6 }, sizes)
    local list, cursor = s:runs { agent = "p", limit = 60 }
    assert.equal(60, #list)
    assert.is_nil(cursor)
  end)

  it("never repeats or skips a run while new runs are written between pages", function()
    local n = 0
    local function write_one()
      n = n + 1
      write_run(s, { agent = "p", created_at = 9000 + n, finished_at = 9000 + n })
    end
    local desc = page_all({ agent = "p", limit = 7 }, write_one)
    assert.same(reversed(all_asc), desc)
    local asc = page_all({ agent = "p", limit = 7, order = "asc" }, write_one)
    local seen = {}
    for _, id in ipairs(asc) do
      assert.is_nil(seen[id])
      seen[id] = true
    end
    for i = 1, 60 do assert.equal(all_asc[i], asc[i]) end
    -- every run written before the last page was reached is listed after the original ones
    assert.equal(60 + n - 1, #asc)
  end)

  it("`before` gives the `limit` runs up to the cursor's position, in the query's order", function()
    local desc = reversed(all_asc)
    local p1, c1 = s:runs { agent = "p", limit = 7 }
    local p2, c2 = s:runs { agent = "p", limit = 7, after = c1 }
    assert.same({ table.unpack(desc, 1, 7) }, ids_of(p1))
    assert.same({ table.unpack(desc, 8, 14) }, ids_of(p2))
    -- c2 stands just after the 14th run: the 7 runs up to it are page 2 again
    local back, back_cursor = s:runs { agent = "p", limit = 7, before = c2 }
    assert.same(ids_of(p2), ids_of(back))
    -- and its cursor continues after the last run of that page
    local fwd = s:runs { agent = "p", limit = 7, after = back_cursor }
    assert.same({ table.unpack(desc, 15, 21) }, ids_of(fwd))
    assert.same(ids_of(p1), ids_of(s:runs { agent = "p", limit = 7, before = c1 }))
    -- fewer runs than the limit lie up to the first position
    local _, c_first = s:runs { agent = "p", limit = 1 }
    assert.same({ desc[1] }, ids_of(s:runs { agent = "p", limit = 7, before = c_first }))
    -- a position off a 5-run boundary
    local _, c10 = s:runs { agent = "p", limit = 10 }
    assert.same({ table.unpack(desc, 6, 10) }, ids_of(s:runs { agent = "p", limit = 5, before = c10 }))
  end)

  it("`before` works in ascending order too", function()
    local _, c1 = s:runs { agent = "p", limit = 10, order = "asc" }
    local back = s:runs { agent = "p", limit = 4, order = "asc", before = c1 }
    assert.same({ table.unpack(all_asc, 7, 10) }, ids_of(back))
  end)

  it("a cursor from one order keeps its position when used with filters", function()
    local _, c = s:runs { agent = "p", limit = 30, order = "asc" }
    local rest = s:runs { agent = "p", limit = 100, order = "asc", after = c }
    assert.same({ table.unpack(all_asc, 31, 60) }, ids_of(rest))
  end)
end)

describe("store:forget_user", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("clears the user on that user's runs, keeps their history, and returns the count", function()
    local ids = {}
    for i = 1, 3 do
      local r = s:begin { agent = "a", goal = "g", user = "alice" }
      r:step { kind = "llm", content = i }
      ids[i] = r:complete("done").id
    end
    local running = s:begin { agent = "a", goal = "g", user = "alice" }
    local bob = s:begin { agent = "a", goal = "g", user = "bob" }
    bob:complete()
    assert.equal(4, s:forget_user("alice"))
    for i = 1, 3 do
      local rec = s:get(ids[i], { steps = true })
      assert.is_nil(rec.user)
      assert.equal("completed", rec.status)
      assert.equal("done", rec.output)
      assert.equal(i, rec.steps[1].content)
    end
    assert.is_nil(s:get(running.id).user)
    assert.equal("bob", s:get(bob.id).user)
    assert.equal(0, s:count { user = "alice" })
    assert.same({}, s:runs { user = "alice" })
    assert.equal(1, s:count { user = "bob" })
    assert.equal(3, s:info().steps)
    assert.equal(0, s:forget_user("alice"))
    assert.equal(0, s:forget_user("nobody"))
    running:complete()
  end)

  it("raises plain errors for a bad user", function()
    h.plain_error(s.forget_user, s)
    h.plain_error(s.forget_user, s, 5)
    h.plain_error(s.forget_user, s, "")
  end)
end)
