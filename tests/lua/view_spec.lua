-- view_spec.lua -- agentrun.view: the page's data, escaping, size limits, streaming and argument errors.
-- (What the page shows, in a browser: tests/browser/run.js.)
local agentrun = require "agentrun"
local view = require "agentrun.view"
local h = require "helpers"

local DATA_OPEN = '<script type="application/json" id="agentrun-data">'

-- The page written through a function, and the chunks it was handed.
local function page_of(store, query, opts)
  local chunks = {}
  local summary = view.write(store, query, function(c) chunks[#chunks + 1] = c end, opts)
  return table.concat(chunks), summary, chunks
end

-- The data block of a page, decoded.
local function data_of(html)
  local i = assert(html:find(DATA_OPEN, 1, true), "no data block")
  local j = assert(html:find("</script>", i, true), "data block not closed")
  return agentrun.json_decode(html:sub(i + #DATA_OPEN, j - 1))
end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

local function finished(store, spec, steps, status)
  local run = store:begin(spec)
  for _, st in ipairs(steps or {}) do run:step(st) end
  if status == "failed" then return run:fail("boom") end
  return run:complete("done")
end

describe("agentrun.view.write", function()
  local store
  before_each(function() store = h.store() end)
  after_each(function() store:close() end)

  it("writes every selected run with its record, steps and checkpoint, newest first", function()
    local a = store:begin { agent = "a", goal = "first", budget = { max_steps = 9 }, metadata = { k = "v" } }
    a:step { kind = "llm", name = "m", content = { text = "hi", list = agentrun.array { 1, 2 } },
      usage = { input_tokens = 3, output_tokens = 4 }, cost = 0.25, duration_ms = 7 }
    a:checkpoint { page = 2 }
    a:step { kind = "tool", content = "result" }
    local ra = a:fail("it broke")
    local rb = finished(store, { agent = "b", goal = "second" }, { { kind = "thought", content = "x" } })
    local html, summary = page_of(store)
    local d = data_of(html)
    assert.equal(2, #d.runs)
    assert.same({ rb.id, ra.id }, { d.runs[1].id, d.runs[2].id })
    local r = d.runs[2]
    assert.equal("failed", r.status)
    assert.equal("it broke", r.error)
    assert.same({ max_steps = 9 }, r.budget)
    assert.same({ k = "v" }, r.metadata)
    assert.equal(2, #r.steps)
    assert.same({ text = "hi", list = { 1, 2 } }, r.steps[1].content)
    assert.equal(0.25, r.steps[1].cost)
    assert.equal(7, r.steps[1].duration_ms)
    assert.equal("result", r.steps[2].content)
    assert.same({ state = { page = 2 }, seq = 1 }, r.checkpoint)
    assert.is_nil(d.runs[1].checkpoint)
    assert.same({ runs = 2, steps = 3, trimmed = 0, steps_left_out = 0, bytes = #html }, summary)
    assert.same({ runs = 2, matching = 2, steps = 3, trimmed = 0, steps_left_out = 0 }, d.summary)
  end)

  it("escapes <, >, & and U+2028/U+2029 in the data, so no content can end the script element", function()
    local evil = "</script><script>alert(1)</script><!-- & \u{2028}\u{2029} -->"
    local rec = finished(store, { agent = "x</script>", goal = evil, metadata = { [evil] = evil } },
      { { kind = "</script>", name = evil, content = { evil, { nested = evil } } } })
    local html = page_of(store)
    -- the data's end and the page script's end, nothing else
    assert.equal(2, count(html, "</script"))
    assert.equal(2, count(html, "<script"))
    assert.is_nil(html:find("\u{2028}", 1, true))
    assert.is_nil(html:find("\u{2029}", 1, true))
    local r = data_of(html).runs[1]
    assert.equal(rec.id, r.id)
    assert.equal(evil, r.goal)
    assert.equal("x</script>", r.agent)
    assert.same({ [evil] = evil }, r.metadata)
    assert.equal("</script>", r.steps[1].kind)
    assert.equal(evil, r.steps[1].name)
    assert.same({ evil, { nested = evil } }, r.steps[1].content)
    assert.equal('"\\u003c/script\\u003e\\u0026\\u2028\\u2029"', view.script_safe('"</script>&\u{2028}\u{2029}"'))
  end)

  it("makes a page that needs nothing outside it", function()
    finished(store, { agent = "a", goal = "see http://example.org/x.png" }, { { kind = "k", content = "https://example.org" } })
    local html = page_of(store)
    assert.truthy(html:find("Content-Security-Policy\" content=\"default-src 'none'", 1, true))
    -- outside the data block: no URL but the SVG namespace, no src, no external link or import
    local i = html:find(DATA_OPEN, 1, true)
    local j = html:find("</script>", i, true)
    local markup = html:sub(1, i) .. html:sub(j)
    for url in markup:gmatch("https?://[^%s'\"]+") do assert.equal("http://www.w3.org/2000/svg", url) end
    assert.is_nil(markup:find("src=", 1, true))
    assert.is_nil(markup:find("@import", 1, true))
    assert.is_nil(markup:find("url(", 1, true))
    assert.is_nil(markup:find("fetch(", 1, true))
    assert.is_nil(markup:find("XMLHttpRequest", 1, true))
    assert.is_nil(markup:find("innerHTML", 1, true))
  end)

  it("streams: the listing is paged with cursors, and the page reaches the writer in chunks", function()
    for i = 1, 230 do
      store:write(agentrun.records.completed { agent = "a", goal = "run " .. i,
        steps = { { kind = "llm", content = ("x"):rep(300) } } })
    end
    local html, summary, chunks = page_of(store)
    assert.is_true(#chunks > 1)
    for _, c in ipairs(chunks) do assert.is_true(#c < 2 * 64 * 1024) end
    local d = data_of(html)
    assert.equal(230, #d.runs)
    local seen = {}
    for _, r in ipairs(d.runs) do
      assert.is_nil(seen[r.id])
      seen[r.id] = true
      assert.equal(1, #r.steps)
    end
    assert.equal(230, summary.runs)
  end)

  it("writes a file whole: the same bytes as through a function, and no part file left", function()
    finished(store, { agent = "a", goal = "g" }, { { kind = "k", content = "c" } })
    local dir = h.tmpdir()
    local path = dir .. "/runs.html"
    local summary = view.write(store, {}, path)
    local html = h.read_file(path)
    assert.equal(summary.bytes, #html)
    -- the pages differ only by when they were written
    local again = page_of(store)
    assert.equal(#again, #html)
    assert.is_false(h.exists(path .. ".part"))
    h.rmdir(dir)
  end)

  it("refuses a selection of more than max_runs runs, suggesting filters, and writes nothing", function()
    for i = 1, 3 do finished(store, { agent = i == 1 and "a" or "b", goal = "g" }) end
    local called = false
    local e = h.plain_error(view.write, store, {}, function() called = true end, { max_runs = 2 })
    assert.truthy(e:find("3 runs match, more than a page holds (max_runs = 2)", 1, true))
    assert.truthy(e:find("filters", 1, true))
    assert.is_false(called)
    -- an existing page stays as it was
    local dir = h.tmpdir()
    local path = dir .. "/runs.html"
    h.write_file(path, "old page")
    h.plain_error(view.write, store, {}, path, { max_runs = 2 })
    assert.equal("old page", h.read_file(path))
    assert.is_false(h.exists(path .. ".part"))
    h.rmdir(dir)
    -- a narrower selection fits
    assert.equal(2, view.write(store, { agent = "b" }, function() end, { max_runs = 2 }).runs)
    assert.equal(2, view.write(store, { limit = 2 }, function() end, { max_runs = 2 }).runs)
  end)

  it("query.limit keeps the newest runs; filters go to the store", function()
    local ids = {}
    for i = 1, 5 do ids[i] = finished(store, { agent = i % 2 == 0 and "even" or "odd", goal = "g" }, {}, i == 5 and "failed" or nil).id end
    local d = data_of((page_of(store, { limit = 2 })))
    assert.same({ ids[5], ids[4] }, { d.runs[1].id, d.runs[2].id })
    assert.equal(5, d.summary.matching)
    d = data_of((page_of(store, { agent = "odd" })))
    assert.equal(3, #d.runs)
    d = data_of((page_of(store, { status = { "failed" } })))
    assert.equal(1, #d.runs)
    assert.equal(ids[5], d.runs[1].id)
    assert.same({ status = { "failed" } }, d.meta.filters)
  end)

  it("cuts a value longer than max_text to its head on a character boundary, and records its size", function()
    local text = ("é"):rep(100) -- 200 bytes
    local rec = finished(store, { agent = "a", goal = text }, { { kind = "k", content = text }, { kind = "k", content = { t = text } } })
    local html, summary = page_of(store, {}, { max_text = 101 })
    local r = data_of(html).runs[1]
    assert.equal(rec.id, r.id)
    assert.equal(("é"):rep(50), r.goal)
    assert.same({ goal = 200 }, r.trimmed)
    assert.equal(("é"):rep(50), r.steps[1].content)
    assert.same({ content = 200 }, r.steps[1].trimmed)
    -- a JSON value becomes the head of its JSON text
    local json = agentrun.json_encode({ t = text })
    assert.same({ content = #json }, r.steps[2].trimmed)
    assert.equal("string", type(r.steps[2].content))
    assert.equal(json:sub(1, #r.steps[2].content), r.steps[2].content)
    assert.equal(3, summary.trimmed)
  end)

  it("past max_bytes, later values are cut to a short preview", function()
    local big = ("a"):rep(2000)
    finished(store, { agent = "a", goal = "g" }, { { kind = "k", content = big }, { kind = "k", content = big }, { kind = "k", content = big } })
    local r = data_of((page_of(store, {}, { max_bytes = 3000 }))).runs[1]
    assert.equal(big, r.steps[1].content)
    assert.is_nil(r.steps[1].trimmed)
    assert.equal(256, #r.steps[3].content)
    assert.same({ content = 2000 }, r.steps[3].trimmed)
  end)

  it("keeps at most max_steps steps of a run and says how many are left out", function()
    local steps = {}
    for i = 1, 7 do steps[i] = { kind = "k", content = i } end
    finished(store, { agent = "a", goal = "g" }, steps)
    local html, summary = page_of(store, {}, { max_steps = 3 })
    local r = data_of(html).runs[1]
    assert.equal(3, #r.steps)
    assert.equal(7, r.iterations)
    assert.equal(4, r.steps_left_out)
    assert.equal(4, summary.steps_left_out)
  end)

  it("writes an empty selection as a page with no runs", function()
    local d = data_of((page_of(store, { agent = "nobody" })))
    assert.equal(0, #d.runs)
    assert.equal(0, d.summary.runs)
  end)

  it("raises a clear error for bad arguments and calls nothing", function()
    local called = false
    local function w() called = true end
    local function bad(pattern, ...)
      local e = h.plain_error(view.write, ...)
      assert.truthy(e:find(pattern, 1, true), e)
    end
    bad("bad argument #1 to 'write' (agentrun store expected, got table)", {}, {}, w)
    local run <close> = store:begin { agent = "a", goal = "g" }
    bad("bad argument #1 to 'write' (agentrun store expected, got another userdata)", run, {}, w)
    bad("bad argument #1 to 'write' (agentrun store expected, got another userdata)", io.stdout, {}, w)
    bad("bad argument #2 to 'write' (table expected, got string)", store, "agent", w)
    bad("bad argument #2 to 'write' (unknown field 'agnet' in query)", store, { agnet = "a" }, w)
    bad("bad argument #2 to 'write' (query.after is not a filter of a page", store, { after = "x" }, w)
    bad("bad argument #2 to 'write' (query.order is not a filter of a page", store, { order = "asc" }, w)
    bad("bad argument #2 to 'write' (query.limit must be an integer >= 0)", store, { limit = -1 }, w)
    bad("bad argument #2 to 'write' (", store, { status = "done" }, w)
    bad("bad argument #2 to 'write' (", store, { since = "yesterday" }, w)
    bad("bad argument #3 to 'write' (a file name or a write function expected, got nil)", store, {})
    bad("bad argument #3 to 'write' (the file name is empty)", store, {}, "")
    bad("bad argument #4 to 'write' (unknown field 'max_run' in opts)", store, {}, w, { max_run = 1 })
    bad("bad argument #4 to 'write' (opts.max_bytes must be an integer >= 1)", store, {}, w, { max_bytes = 0 })
    bad("bad argument #4 to 'write' (opts.max_text must be an integer >= 1)", store, {}, w, { max_text = 1.5 })
    bad("bad argument #4 to 'write' (opts.title must be a string)", store, {}, w, { title = 1 })
    assert.is_false(called)
  end)

  it("a file it cannot write, or a writer that fails, raises and leaves no part file", function()
    finished(store, { agent = "a", goal = "g" })
    local e = h.plain_error(view.write, store, {}, "/nonexistent-dir/runs.html")
    assert.truthy(e:find("agentrun.view: cannot write /nonexistent-dir/runs.html.part", 1, true), e)
    local ok, err = pcall(view.write, store, {}, function() error({ mine = true }) end)
    assert.is_false(ok)
    assert.same({ mine = true }, err)
  end)

  it("a closed store is an error", function()
    local s = h.store()
    s:close()
    local e = h.plain_error(view.write, s, {}, function() end)
    assert.truthy(e:find("closed store", 1, true), e)
  end)

  it("carries forks, waits and intents when the store has them", function()
    if not (store.fork and store.respond and store.intents) then
      pending("this build has no forks, waits or intents")
      return
    end
    local base = finished(store, { agent = "a", goal = "g" }, { { kind = "k" }, { kind = "k" } })
    local fork = store:fork(base.id, { at = 1 }):complete("f")
    local w = store:begin { agent = "a", goal = "w" }
    w:wait { q = "?" }
    store:respond(w.id, "yes")
    local i = store:begin { agent = "a", goal = "i" }
    i:intend { key = "k1", name = "t", args = { x = 1 } }
    i:settle("k1", "r")
    local irec = i:complete("ok")
    local byid = {}
    for _, r in ipairs(data_of((page_of(store))).runs) do byid[r.id] = r end
    assert.same({ run = base.id, seq = 1 }, byid[fork.id].forked_from)
    assert.same({ q = "?" }, byid[w.id].request)
    assert.equal("yes", byid[w.id].response)
    assert.equal("k1", byid[irec.id].intents[1].key)
    assert.equal("settled", byid[irec.id].intents[1].status)
  end)
end)
