-- fixture.lua -- builds a store with every status and feature, and the page agentrun.view makes of it.
--
--   lua5.4 tests/browser/fixture.lua LOCATION OUT.html EXPECTED.json [SCHEMA]
--   lua5.4 tests/browser/fixture.lua --large LOCATION OUT.html EXPECTED.json [SCHEMA]
--
-- LOCATION is a new SQLite file or a PostgreSQL URL (then SCHEMA names a
-- fresh schema). EXPECTED.json tells the browser tests what the page must
-- show: the counts, the ids of the runs they open, and which features (forks,
-- waits, intents) this build of the library has. --large makes 1,000 runs of
-- 20 steps instead.
local agentrun = require "agentrun"
local view = require "agentrun.view"

local large = arg[1] == "--large"
local a = large and 1 or 0
local location, out, expected_path, schema = arg[a + 1], arg[a + 2], arg[a + 3], arg[a + 4]
assert(location and out and expected_path, "usage: fixture.lua [--large] LOCATION OUT.html EXPECTED.json [SCHEMA]")

local store = assert(agentrun.open(location, { durability = "normal", schema = schema }))
local DAY, HOUR, MIN = 86400000, 3600000, 60000
-- A fixed past week, so the charts have several days whatever the date.
local T0 = 1795000000000 - 1795000000000 % DAY + 9 * HOUR
local expected = { runs = 0, by_status = {}, features = {}, ids = {} }

local function count(rec)
  expected.runs = expected.runs + 1
  expected.by_status[rec.status] = (expected.by_status[rec.status] or 0) + 1
end

-- Steps of a made-up agent: a model call, a tool call, a thought, each
-- placed in time after the one before.
local function steps_from(t, n, seed)
  local steps = {}
  for i = 1, n do
    local kind = ({ "llm", "tool", "thought", "llm", "observation" })[(i + seed) % 5 + 1]
    local d = 200 + ((i * 7919 + seed * 104729) % 4000)
    t = t + d + 50
    local step = { kind = kind, duration_ms = d, at = t }
    if kind == "llm" then
      step.name = "gpt-test"
      step.usage = { input_tokens = 300 + i * 11 + seed, output_tokens = 40 + i * 3 }
      step.cost = (step.usage.input_tokens * 2 + step.usage.output_tokens * 8) / 1e6
      step.content = { role = "assistant", text = "Answer part " .. i, tool_calls = agentrun.array { { name = "search", args = { q = "term " .. i } } } }
    elseif kind == "tool" then
      step.name = "search"
      step.content = { query = "term " .. i, results = agentrun.array { "first result", "second result" } }
    elseif kind == "thought" then
      step.content = "Thinking about step " .. i .. " of run " .. seed
    else
      step.content = { observed = i, ok = true }
    end
    steps[i] = step
  end
  return steps, t
end

if large then
  for r = 1, 1000 do
    local created = T0 + (r % 7) * DAY + r * 1000
    local steps, t = steps_from(created, 20, r)
    local fields = { agent = ({ "researcher", "coder", "planner" })[r % 3 + 1], goal = "Large run " .. r,
      created_at = created, finished_at = t + 10, steps = steps }
    local rec
    if r % 10 == 0 then
      rec = agentrun.records.failed("error " .. r, fields)
    else
      fields.output = "done " .. r
      rec = agentrun.records.completed(fields)
    end
    store:write(rec)
    count(rec)
  end
  local summary = view.write(store, {}, out)
  expected.steps = summary.steps
  expected.bytes = summary.bytes
  local f = assert(io.open(expected_path, "w"))
  f:write(agentrun.json_encode(expected))
  f:close()
  store:close()
  return
end

-- The run every test opens: a research run with a checkpoint, a long
-- thought, pretty-printable JSON and a sub-run.
local long_thought = {}
for i = 1, 120 do long_thought[i] = ("Line %d of a long chain of thought about the quarterly figures."):format(i) end
local main_steps = {
  { kind = "llm", name = "gpt-test", duration_ms = 1800, at = T0 + 2000, cost = 0.0042,
    usage = { input_tokens = 1200, output_tokens = 150, cache_read_tokens = 800 },
    content = { role = "assistant", text = "I will search for the report.",
      tool_calls = agentrun.array { { id = "call_1", name = "search", args = { q = "Q3 report" } } } } },
  { kind = "tool", name = "search", duration_ms = 900, at = T0 + 3000,
    content = { query = "Q3 report", results = agentrun.array { "q3.pdf", "q3-notes.txt" } } },
  { kind = "thought", duration_ms = 400, at = T0 + 3500, content = table.concat(long_thought, "\n") },
  { kind = "llm", name = "gpt-test", duration_ms = 2500, at = T0 + 6200, cost = 0.0061,
    usage = { input_tokens = 2100, output_tokens = 420 }, content = { role = "assistant", text = "Revenue grew 12%." } },
  { kind = "message", duration_ms = 10, at = T0 + 6300, content = "Revenue grew 12% in Q3." },
}
local main = agentrun.records.completed { agent = "researcher", goal = "Summarise the Q3 report",
  user = "ada", edition = "v2", created_at = T0, finished_at = T0 + 6400, steps = main_steps,
  output = { summary = "Revenue grew 12% in Q3.", sources = agentrun.array { "q3.pdf" } },
  metadata = { team = "finance", tags = agentrun.array { "report", "q3" } },
  budget = { max_steps = 20, max_cost = 1.0 }, checkpoint = { state = { page = 3, notes = "read up to page 3" }, seq = 4 } }
main.id = store:write(main)
count(main)
expected.ids.main = main.id
expected.main_steps = #main_steps

-- A sub-run of it: linked both ways through `parent`.
local sub = agentrun.records.completed { agent = "searcher", goal = "Find the Q3 report", parent = main.id,
  created_at = T0 + 2100, finished_at = T0 + 2900, output = "q3.pdf",
  steps = { { kind = "tool", name = "search", duration_ms = 600, at = T0 + 2800, content = { q = "Q3" }, cost = 8e-7 } } }
sub.id = store:write(sub)
count(sub)
expected.ids.sub = sub.id

-- A failed run: its error shows in the table.
local failed = agentrun.records.failed("tool crashed: segfault in the PDF parser\nat parse_page (pdf.c:120)", {
  agent = "coder", goal = "Fix the flaky test", created_at = T0 + DAY, finished_at = T0 + DAY + 5000,
  steps = (steps_from(T0 + DAY, 3, 1)) })
failed.id = store:write(failed)
count(failed)
expected.ids.failed = failed.id

-- A budget-exhausted run: the limit it reached shows in the table.
local exhausted = agentrun.records.budget_exhausted({ limit = "max_cost", limit_value = 0.01, value = 0.0112 }, {
  agent = "planner", goal = "Plan the offsite", created_at = T0 + DAY + HOUR, finished_at = T0 + DAY + HOUR + 9000,
  budget = { max_cost = 0.01 }, steps = (steps_from(T0 + DAY + HOUR, 8, 2)) })
exhausted.id = store:write(exhausted)
count(exhausted)
expected.ids.exhausted = exhausted.id

-- Step content and a goal that try to leave the data block and run script.
local evil = "</script><script>window.__pwned = 1; alert(1)</script>"
local injection = agentrun.records.completed { agent = "coder", goal = evil, created_at = T0 + 2 * DAY,
  finished_at = T0 + 2 * DAY + 3000, output = "<img src=x onerror=\"window.__pwned = 2\">",
  metadata = { note = "<!-- \u{2028} \u{2029} & -->" },
  steps = {
    { kind = "tool", name = "shell", duration_ms = 500, at = T0 + 2 * DAY + 1000, content = evil },
    { kind = "observation", duration_ms = 500, at = T0 + 2 * DAY + 2000,
      content = { html = "<img src=x onerror=\"window.__pwned = 3\">", sep = "a\u{2028}b\u{2029}c" } },
  } }
injection.id = store:write(injection)
count(injection)
expected.ids.injection = injection.id
expected.evil = evil

-- Runs over the week, for the charts and the sorting.
for i = 1, 18 do
  local created = T0 + (i % 6) * DAY + 3 * HOUR + i * MIN
  local steps, t = steps_from(created, 2 + i % 6, i)
  local rec = agentrun.records.completed { agent = ({ "researcher", "coder", "planner" })[i % 3 + 1],
    goal = "Routine task " .. i, created_at = created, finished_at = t + 100, steps = steps, output = "ok " .. i }
  store:write(rec)
  count(rec)
end

-- An interrupted run: left running by a store that closed.
do
  local other = assert(agentrun.open(location, { durability = "normal", schema = schema }))
  local run = other:begin { agent = "coder", goal = "Refactor the parser" }
  run:step { kind = "llm", name = "gpt-test", usage = { input_tokens = 50, output_tokens = 5 }, content = "hm" }
  expected.ids.interrupted = run.id
  other:close()
  count({ status = "interrupted" })
end

-- A run still running while the page is written (its handle stays open).
local live = store:begin { agent = "researcher", goal = "Watch the inbox", budget = { max_steps = 100 } }
live:step { kind = "tool", name = "imap", content = { unread = 3 }, duration_ms = 120 }
expected.ids.running = live.id
count({ status = "running" })

-- The features that come with forks, waits and intents, when this build has them.
if store.fork then
  local fork = store:fork(main.id, { at = 2 })
  fork:step { kind = "llm", name = "gpt-test", content = "A different ending.", duration_ms = 300 }
  local rec = fork:complete("forked answer")
  count(rec)
  expected.ids.fork = rec.id
  expected.features.fork = true
end
if live.wait and store.respond then
  local w = store:begin { agent = "planner", goal = "Book the venue" }
  w:step { kind = "llm", name = "gpt-test", content = "Which date?" }
  w:wait { question = "Approve the booking for 12 March?" }
  count({ status = "waiting" })
  expected.ids.waiting = w.id
  local w2 = store:begin { agent = "planner", goal = "Order the catering" }
  w2:wait { question = "Vegetarian options?" }
  store:respond(w2.id, { answer = "yes, 10 of 40" })
  count({ status = "waiting" })
  expected.ids.answered = w2.id
  expected.features.wait = true
end
if live.intend and store.intents then
  local r = store:begin { agent = "coder", goal = "Send the weekly mail" }
  r:intend { key = "mail-1", name = "send_mail", args = { to = "team@example.org" } }
  r:settle("mail-1", { sent = true })
  r:intend { key = "mail-2", name = "send_mail", args = { to = "boss@example.org" } }
  r:settle("mail-2", "smtp refused", { failed = true })
  r:intend { key = "mail-3", name = "send_mail", args = { to = "all@example.org" } }
  local rec = r:fail("stopped with an intent pending")
  count(rec)
  expected.ids.intents = rec.id
  expected.features.intents = true
end

local summary = view.write(store, {}, out, { title = "agentrun fixture" })
assert(summary.runs == expected.runs, ("page has %d runs, expected %d"):format(summary.runs, expected.runs))
live:close()
store:close()
local f = assert(io.open(expected_path, "w"))
f:write(agentrun.json_encode(expected))
f:close()
