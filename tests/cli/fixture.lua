-- fixture.lua LOCATION -- writes the store the command's tests read, and
-- prints NAME=ID for each of its runs. $AGENTRUN_SCHEMA names the
-- PostgreSQL schema. It exits without closing, so the run left running stays
-- running.
local agentrun = require "agentrun"
local s = require("open_store")(assert(arg[1], "usage: fixture.lua LOCATION"))

-- a run of 2020, written whole
local old = s:write(agentrun.records.completed {
  agent = "alpha", goal = "an old run", created_at = 1577836800000, finished_at = 1577836801000,
  steps = { { kind = "llm", name = "model-a", content = "old answer", usage = { input_tokens = 5, output_tokens = 2 } } },
  output = "old",
})
print("old=" .. old)

local done = s:begin { agent = "alpha", goal = "summarise the quarterly report", user = "u-1", edition = "v2",
                       budget = { max_steps = 10, max_cost = 0.5 }, metadata = { team = "ops" } }
done:step { kind = "llm", name = "model-a", content = { text = "I will search" },
            usage = { input_tokens = 812, output_tokens = 96, cache_read_tokens = 512 }, cost = 0.0021, duration_ms = 740 }
done:step { kind = "tool", name = "search", content = { query = "quarterly report" }, duration_ms = 15 }
done:step { kind = "llm", name = "model-a", content = "final answer:\nline two of the WHOLE-CONTENT-MARKER "
              .. ("x"):rep(300) .. " END-OF-CONTENT", usage = { input_tokens = 900, output_tokens = 120 }, cost = 0.0025 }
done:checkpoint { page = 2 }
done:complete { text = "the summary" }
print("done=" .. done.id)

local failed = s:begin { agent = "beta", goal = "fetch the weather" }
failed:step { kind = "tool", name = "weather", content = { city = "Oslo" } }
failed:fail("tool crashed")
print("failed=" .. failed.id)

local exhausted = s:begin { agent = "beta", goal = "loop forever", budget = { max_steps = 1 } }
exhausted:step { kind = "llm", content = "again" }
exhausted:exhaust()
print("exhausted=" .. exhausted.id)

local running = s:begin { agent = "gamma", goal = "still going" }
running:step { kind = "thought", content = "thinking" }
print("running=" .. running.id)

s:event { agent = "alpha", type = "prompt_sent", session = 1, content = "hello model" }
s:event { agent = "alpha", type = "output", session = 1, content = "hello human", run = done.id }
s:event { agent = "alpha", type = "tool_use", session = 2, content = "search(quarterly)" }
s:event { agent = "beta", type = "log", content = "beta's line" }
io.stdout:flush()
os.exit(0)
