-- export_spec.lua -- store:export / import / copy (SPEC §3.9) and store:otlp (§3.10).
local agentrun = require "agentrun"
local h = require "helpers"

-- A store with every kind of run: completed (checkpoint, counters, metadata,
-- unicode), failed, budget exhausted, interrupted, running; and events.
local function fill(store)
  local r = store:begin{ agent = "researcher", goal = "été 🌞 \"q\"\n", user = "alice", edition = "v1",
                         metadata = { tags = agentrun.array { "x" } }, budget = { max_steps = 9, max_cost = 0.5 } }
  r:step{ kind = "llm", name = "model-x", content = { text = "hi \0 there", calls = agentrun.array {} },
          usage = { input_tokens = 120, output_tokens = 30, cache_read_tokens = 100 }, cost = 0.0123, duration_ms = 850 }
  r:checkpoint{ plan = agentrun.array { 1, 2 } }
  r:step{ kind = "tool", name = "search", content = { q = "lua" }, duration_ms = 40 }
  r:step{ kind = "observation", content = "seen" }
  r:complete{ answer = 42 }
  local f = store:begin{ agent = "researcher", goal = "fails" }
  f:step{ kind = "llm", name = "model-y", usage = { input_tokens = 1, output_tokens = 1 } }
  f:fail("boom")
  local b = store:begin{ agent = "writer", goal = "too long", budget = { max_steps = 1 } }
  b:step{ kind = "thought" }
  local ok, e = pcall(b.check, b)
  assert(not ok and agentrun.is_budget_exhausted(e))
  b:exhaust(e)
  local i = store:begin{ agent = "writer", goal = "cut off" }
  i:step{ kind = "thought" }
  assert(store:recover{ stale_after = 0 } == 1)
  local running = store:begin{ agent = "writer", goal = "still going" }
  running:step{ kind = "message", content = "…" }
  store:event{ agent = "researcher", type = "output", content = "nul \0 byte é", metadata = { k = 1 }, session = 2 }
  store:event{ agent = "writer", type = "log" }
  return { completed = r.id, failed = f.id, exhausted = b.id, interrupted = i.id, running = running.id }, running
end

local function export_lines(store, query)
  local lines = {}
  local report = store:export(query, function(line) lines[#lines + 1] = line end)
  return lines, report
end

local function reader(lines)
  local i = 0
  return function()
    i = i + 1
    return lines[i]
  end
end

describe("store:export and store:import", function()
  it("export | import | export gives the same lines, header aside", function()
    local a = h.store()
    local _, running = fill(a)
    local lines, report = export_lines(a)
    assert.are.equal(5, report.runs)
    assert.are.equal(2, report.events)
    assert.are.equal(1 + 5 + 2, #lines)
    local header = agentrun.json_decode(lines[1])
    assert.are.equal("agentrun", header.type)
    assert.are.equal(1, header.format)
    assert.is_true(math.type(header.exported_at) == "integer")
    for i = 2, #lines do assert.is_nil(lines[i]:find("\n", 1, true)) end
    local b = h.store()
    local got = b:import(reader(lines))
    assert.are.same({ runs = 5, events = 2, skipped = 0, lines = 8 }, got)
    local again = export_lines(b)
    assert.are.equal(#lines, #again)
    for i = 2, #lines do assert.are.equal(lines[i], again[i]) end
    running:close()
    a:close()
    b:close()
  end)

  it("writes every field of a run as store:get reads it back, steps and checkpoint included", function()
    local a = h.store()
    local ids, running = fill(a)
    running:close()
    local lines = export_lines(a, { agent = "researcher" })
    local run = agentrun.json_decode(lines[2])
    local rec = a:get(ids.completed, { steps = true })
    assert.are.equal("run", run.type)
    for _, k in ipairs { "id", "agent", "goal", "user", "edition", "status", "iterations", "created_at",
                         "finished_at", "updated_at", "latency_ms" } do
      assert.are.same(rec[k], run[k], k)
    end
    assert.are.same(h.canon(rec.output), h.canon(run.output))
    assert.are.same(h.canon(rec.metadata), h.canon(run.metadata))
    assert.are.same(h.canon(rec.budget), h.canon(run.budget))
    assert.are.same(h.canon(rec.usage), h.canon(run.usage))
    assert.are.same(h.canon(rec.steps), h.canon(run.steps))
    local state, seq = a:checkpoint(ids.completed)
    assert.are.same(h.canon({ state = state, seq = seq }), h.canon(run.checkpoint))
    -- the events of the selected runs' agents only
    local event = agentrun.json_decode(lines[#lines])
    assert.are.equal("event", event.type)
    assert.are.equal("researcher", event.agent)
    assert.are.equal("output", event.event_type)
    assert.are.equal("nul \0 byte é", event.content)
    assert.are.equal(4, #lines)
    local failed = agentrun.json_decode(lines[3])
    assert.are.equal("boom", failed.error)
    a:close()
  end)

  it("importing twice imports nothing the second time", function()
    local a = h.store()
    local _, running = fill(a)
    running:close()
    local lines = export_lines(a)
    local b = h.store()
    b:import(reader(lines))
    assert.are.same({ runs = 0, events = 0, skipped = 7, lines = 8 }, b:import(reader(lines)))
    assert.are.equal(5, b:info().runs)
    a:close()
    b:close()
  end)

  it("a bad line raises EJSON naming its line, and nothing of it is stored", function()
    local a = h.store()
    local r = a:begin{ agent = "a", goal = "g" }
    r:step{ kind = "llm" }
    r:complete("x")
    local lines = export_lines(a)
    local cases = {
      '{"type":"run","id":',
      '{"type":"run","goal":"g","status":"completed","created_at":1}',
      '{"type":"event","id":"seven","agent":"a","event_type":"t","at":1}',
      '{"type":"nothing"}',
    }
    for _, bad in ipairs(cases) do
      local b = h.store()
      local e = h.ar_error("EJSON", b.import, b, reader{ lines[1], lines[2], bad, lines[2] })
      assert.matches("^line 3: ", e.message)
      assert.are.equal(1, b:info().runs)
      assert.are.equal(1, b:info().steps)
      assert.are.equal(0, b:info().events)
      b:close()
    end
    a:close()
  end)

  it("errors of the write and read functions come out as they were raised, and stop the call", function()
    local a = h.store()
    local r = a:begin{ agent = "a", goal = "g" }
    r:complete("x")
    local boom = setmetatable({}, { __tostring = function() return "boom" end })
    local ok, e = pcall(a.export, a, nil, function() error(boom) end)
    assert.is_false(ok)
    assert.are.equal(boom, e)
    ok, e = pcall(a.otlp, a, nil, function() error("no room") end)
    assert.is_false(ok)
    assert.matches("no room", e)
    local b = h.store()
    local n = 0
    ok, e = pcall(b.import, b, function()
      n = n + 1
      if n == 1 then return '{"type":"agentrun","format":1,"exported_at":1}' end
      return 42
    end)
    assert.is_false(ok)
    assert.matches("read must return a string or nil", e)
    a:close()
    b:close()
  end)

  it("the write function may read the store but not close it", function()
    local a = h.store()
    local r = a:begin{ agent = "a", goal = "g" }
    r:complete("x")
    local seen, closed
    a:export(nil, function()
      seen = a:count()
      local ok, e = pcall(a.close, a)
      closed = ok or e.code
    end)
    assert.are.equal(1, seen)
    assert.are.equal("ESTATE", closed)
    assert.are.equal(1, a:count())
    a:close()
  end)

  it("checks its arguments", function()
    local a = h.store()
    assert.matches("bad argument #1 to 'export' %(unknown field 'limit' in query%)",
      h.plain_error(a.export, a, { limit = 5 }, print))
    assert.matches("bad argument #2 to 'export'", h.plain_error(a.export, a, nil, 5))
    assert.matches("bad argument #1 to 'import'", h.plain_error(a.import, a, "lines"))
    assert.matches("unknown field 'contents'", h.plain_error(a.otlp, a, nil, print, { contents = true }))
    a:close()
  end)

  it("store:copy copies a whole store, and the two export the same lines", function()
    local a = h.store()
    local _, running = fill(a)
    local b = h.store()
    assert.are.same({ runs = 5, events = 2, skipped = 0, lines = 8 }, a:copy(b))
    local la, lb = export_lines(a), export_lines(b)
    for i = 2, #la do assert.are.equal(la[i], lb[i]) end
    assert.are.equal(#la, #lb)
    running:close()
    a:close()
    b:close()
  end)
end)

-- ---- OpenTelemetry --------------------------------------------------------

local function attributes(span)
  local t = {}
  for _, a in ipairs(span.attributes) do
    local v = a.value
    t[a.key] = v.stringValue or v.intValue or v.doubleValue or v.boolValue
  end
  return t
end

local function nanos(ms) return tostring(ms) .. "000000" end

describe("store:otlp", function()
  it("names a tool call made through an intent by the intent's key", function()
    local a = h.store()
    local r = a:begin{ agent = "payer", goal = "pay" }
    r:intend{ key = "charge-7 \"x\"", name = "charge", args = { amount = 5 } }
    r:settle("charge-7 \"x\"", { ok = true })
    r:complete("paid")
    local lines = {}
    a:otlp(nil, function(l) lines[#lines + 1] = l end)
    local spans = agentrun.json_decode(lines[1]).resourceSpans[1].scopeSpans[1].spans
    assert.are.same({ "invoke_agent payer", "intent", "execute_tool charge" },
                    { spans[1].name, spans[2].name, spans[3].name })
    local tool = attributes(spans[3])
    assert.are.equal("charge", tool["gen_ai.tool.name"])
    assert.are.equal("charge-7 \"x\"", tool["gen_ai.tool.call.id"])
    assert.is_nil(attributes(spans[2])["gen_ai.tool.call.id"])
    a:close()
  end)

  it("writes one OTLP/JSON request a run: a root span per run, a child span per step", function()
    local a = h.store()
    local ids, running = fill(a)
    running:close()
    local lines = {}
    local report = a:otlp({ agent = "researcher" }, function(l) lines[#lines + 1] = l end)
    assert.are.equal(2, report.runs)
    assert.are.equal(2, #lines)
    local req = agentrun.json_decode(lines[1])
    local rs = req.resourceSpans[1]
    assert.are.same({ ["service.name"] = "researcher" }, attributes(rs.resource))
    local scope = rs.scopeSpans[1]
    assert.are.equal("agentrun", scope.scope.name)
    local spans = scope.spans
    local rec = a:get(ids.completed, { steps = true })
    assert.are.equal(1 + #rec.steps, #spans)

    local root = spans[1]
    assert.are.equal("invoke_agent researcher", root.name)
    assert.matches("^%x+$", root.traceId)
    assert.are.equal(32, #root.traceId)
    assert.are.equal(16, #root.spanId)
    assert.is_nil(root.parentSpanId)
    assert.are.equal(nanos(rec.created_at), root.startTimeUnixNano)
    assert.are.equal(nanos(rec.finished_at), root.endTimeUnixNano)
    assert.are.same({ code = 1 }, root.status)
    local ra = attributes(root)
    assert.are.equal("invoke_agent", ra["gen_ai.operation.name"])
    assert.are.equal("researcher", ra["gen_ai.agent.name"])
    assert.are.equal(rec.id, ra["gen_ai.agent.id"])
    assert.are.equal(rec.id, ra["gen_ai.conversation.id"])
    assert.are.equal("120", ra["gen_ai.usage.input_tokens"])
    assert.are.equal("30", ra["gen_ai.usage.output_tokens"])
    assert.are.equal("100", ra["gen_ai.usage.cache_read.input_tokens"])
    assert.is_nil(root.events)

    local names = {}
    for i = 2, #spans do
      local s, step = spans[i], rec.steps[i - 1]
      names[#names + 1] = s.name
      assert.are.equal(root.traceId, s.traceId)
      assert.are.equal(root.spanId, s.parentSpanId)
      assert.are.not_equal(root.spanId, s.spanId)
      assert.are.equal(nanos(step.at), s.endTimeUnixNano)
      assert.are.equal(nanos(step.at - step.duration_ms), s.startTimeUnixNano)
    end
    assert.are.same({ "chat model-x", "execute_tool search", "observation" }, names)
    local chat, tool, obs = attributes(spans[2]), attributes(spans[3]), attributes(spans[4])
    assert.are.equal("chat", chat["gen_ai.operation.name"])
    assert.are.equal("model-x", chat["gen_ai.request.model"])
    assert.are.equal("120", chat["gen_ai.usage.input_tokens"])
    assert.are.equal("100", chat["gen_ai.usage.cache_read.input_tokens"])
    assert.are.equal(3, spans[2].kind)
    assert.are.equal("execute_tool", tool["gen_ai.operation.name"])
    assert.are.equal("search", tool["gen_ai.tool.name"])
    assert.is_nil(tool["gen_ai.tool.call.id"])   -- recorded by hand: no intent names the call
    assert.are.equal("observation", obs["agentrun.step.kind"])
    assert.is_nil(obs["gen_ai.operation.name"])

    -- the failed run: status ERROR with the message, error.type
    local failed = agentrun.json_decode(lines[2]).resourceSpans[1].scopeSpans[1].spans[1]
    assert.are.equal(2, failed.status.code)
    assert.are.equal("boom", failed.status.message)
    assert.is_truthy(attributes(failed)["error.type"])

    -- the same ids at every export; content only when asked for
    local again = {}
    a:otlp({ agent = "researcher" }, function(l) again[#again + 1] = l end, { content = true })
    local with = agentrun.json_decode(again[1]).resourceSpans[1].scopeSpans[1].spans
    assert.are.equal(root.traceId, with[1].traceId)
    assert.are.equal(spans[3].spanId, with[3].spanId)
    assert.are.equal("agentrun.goal", with[1].events[1].name)
    local content = with[2].events[1].attributes[1].value.stringValue
    assert.are.same(h.canon(rec.steps[1].content), h.canon(agentrun.json_decode(content)))
    a:close()
  end)
end)
