-- make_traces.lua -- prints store:otlp's lines for a store that has every kind of run and step.
local agentrun = require "agentrun"
local store <close> = assert(agentrun.open(":memory:"))
local r = store:begin{ agent = "researcher", goal = "été 🌞", edition = "v2", budget = { max_steps = 5 } }
r:step{ kind = "llm", name = "model-x", content = { text = "hi \0" },
        usage = { input_tokens = 120, output_tokens = 30, cache_read_tokens = 100, reasoning_tokens = 4 },
        cost = 0.0123, duration_ms = 850 }
r:step{ kind = "tool", name = "search", content = { q = "lua" }, duration_ms = 40 }
r:step{ kind = "tool" }
r:step{ kind = "llm" }
r:step{ kind = "error", name = "Timeout", content = "slow" }
r:step{ kind = "observation", content = agentrun.array { 1, 2.5 } }
r:complete{ answer = 42 }
local f = store:begin{ agent = "writer", goal = "fails" }
f:step{ kind = "thought" }
f:fail("boom")
local b = store:begin{ agent = "writer", goal = "budget", budget = { max_steps = 1 } }
b:step{ kind = "llm", name = "m", usage = { input_tokens = 1, output_tokens = 1 } }
local ok, e = pcall(b.check, b)
assert(not ok)
b:exhaust(e)
local running = store:begin{ agent = "writer", goal = "still going" }
running:step{ kind = "message", content = "…" }
for _, content in ipairs { false, true } do
  store:otlp(nil, function(line) io.write(line, "\n") end, { content = content })
end
running:close()
