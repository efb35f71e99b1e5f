-- paging_spec.lua -- every listing that pages: limit = 0 gives an empty page and no cursor, and a
-- paging loop always progresses to its end (SPEC §3.5, §3.7, §6 Reading and Cursors).
local h = require "helpers"

-- Writes n finished runs of agent "p", created 1 ms apart, three per millisecond.
local function write_runs(s, n)
  local ids = {}
  for i = 1, n do
    local at = 7000 + (i - 1) // 3
    ids[i] = s:write { agent = "p", goal = "g", status = "completed", created_at = at, finished_at = at }
  end
  return ids
end

local function reversed(t)
  local r = {}
  for i = #t, 1, -1 do r[#r + 1] = t[i] end
  return r
end

-- Pages `list(q)` with `after` until the cursor is nil; fails when a cursor comes back
-- unchanged or the loop runs past `max_pages`. Returns the keys of the items, in visit order.
local function page_to_end(list, q, key, max_pages)
  local seen, cursor, pages = {}, nil, 0
  repeat
    q.after = cursor
    local page, next_cursor = list(q)
    pages = pages + 1
    assert(pages <= max_pages, "paging did not end after " .. max_pages .. " pages")
    assert.is_true(#page <= q.limit)
    if cursor ~= nil then assert.are_not.equal(cursor, next_cursor) end
    if next_cursor ~= nil then assert.equal(q.limit, #page) end
    for _, item in ipairs(page) do seen[#seen + 1] = item[key] end
    cursor = next_cursor
  until cursor == nil
  return seen
end

describe("store:runs with limit = 0", function()
  local s, ids
  before_each(function()
    s = h.store()
    ids = write_runs(s, 5)
  end)
  after_each(function() s:close() end)

  it("gives an empty page and no cursor, in both orders, alone, after a cursor and before one", function()
    for _, order in ipairs { "asc", "desc" } do
      local _, c = s:runs { agent = "p", limit = 2, order = order }
      assert.is_string(c)
      for _, extra in ipairs { {}, { after = c }, { before = c } } do
        local q = { agent = "p", limit = 0, order = order, after = extra.after, before = extra.before }
        local list, cursor = s:runs(q)
        assert.same({}, list)
        assert.is_nil(cursor, ("order %s after %s before %s"):format(order, tostring(q.after), tostring(q.before)))
      end
    end
  end)

  it("still refuses a malformed cursor", function()
    h.plain_error(s.runs, s, { limit = 0, after = "nonsense" })
    h.plain_error(s.runs, s, { limit = 0, before = "nonsense" })
  end)
end)

describe("store:events with limit = 0", function()
  local s
  before_each(function()
    s = h.store()
    for i = 1, 5 do s:event { agent = "x", type = "log", content = tostring(i) } end
  end)
  after_each(function() s:close() end)

  it("gives an empty page and no cursor, in both orders, alone, after a cursor and before one", function()
    for _, order in ipairs { "asc", "desc" } do
      local _, c = s:events { agent = "x", limit = 2, order = order }
      assert.is_string(c)
      for _, extra in ipairs { {}, { after = c }, { before = c } } do
        local q = { agent = "x", limit = 0, order = order, after = extra.after, before = extra.before }
        local list, cursor = s:events(q)
        assert.same({}, list)
        assert.is_nil(cursor, ("order %s after %s before %s"):format(order, tostring(q.after), tostring(q.before)))
      end
    end
  end)

  it("gives no cursor for an agent without events either", function()
    local list, cursor = s:events { agent = "nobody", limit = 0 }
    assert.same({}, list)
    assert.is_nil(cursor)
  end)

  it("still refuses a malformed cursor", function()
    h.plain_error(s.events, s, { agent = "x", limit = 0, after = "nonsense" })
    h.plain_error(s.events, s, { agent = "x", limit = 0, before = "nonsense" })
  end)
end)

describe("store:steps with limit = 0", function()
  it("yields no step", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm" }
    r:step { kind = "llm" }
    assert.same({}, h.steps(s, r.id, { limit = 0 }))
    assert.same({}, h.steps(s, r.id, { from = 2, limit = 0 }))
    assert.equal(2, #h.steps(s, r.id, { limit = 5 }))
    s:close()
  end)
end)

describe("paging every listing to its end", function()
  local s
  before_each(function() s = h.store() end)
  after_each(function() s:close() end)

  it("store:runs visits each run once with every small limit, in both orders, and always progresses", function()
    local ids = write_runs(s, 10)
    for limit = 1, 4 do
      assert.same(ids, page_to_end(function(q) return s:runs(q) end, { agent = "p", limit = limit, order = "asc" },
        "id", 20))
      assert.same(reversed(ids), page_to_end(function(q) return s:runs(q) end, { agent = "p", limit = limit },
        "id", 20))
    end
  end)

  it("store:events visits each event once with every small limit, in both orders, and always progresses", function()
    local ids = {}
    for i = 1, 10 do
      ids[i] = s:event { agent = "x", type = "log" }
      s:event { agent = "other", type = "log" }
    end
    for limit = 1, 4 do
      assert.same(ids, page_to_end(function(q) return s:events(q) end, { agent = "x", limit = limit }, "id", 20))
      assert.same(reversed(ids), page_to_end(function(q) return s:events(q) end,
        { agent = "x", limit = limit, order = "desc" }, "id", 20))
    end
  end)

  it("store:steps reads a run in pieces of every small limit with from", function()
    local r = s:begin { agent = "a", goal = "g" }
    for i = 1, 10 do r:step { kind = "llm", content = i } end
    for limit = 1, 4 do
      local seen, from = {}, 1
      for _ = 1, 20 do
        local piece = h.steps(s, r.id, { from = from, limit = limit })
        assert.is_true(#piece <= limit)
        for _, st in ipairs(piece) do seen[#seen + 1] = st.content end
        if #piece < limit then break end
        from = piece[#piece].seq + 1
      end
      assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, seen)
    end
  end)
end)
