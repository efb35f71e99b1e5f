-- crash_agent.lua -- child process of resume_spec's crash test: an agent loop the parent kills with SIGKILL.
--
--   lua5.4 crash_agent.lua <db> <progress-file>
--
-- Runs agentrun.loop on <db>, recording one step and saving one checkpoint per
-- iteration, and never completes on its own. The progress file gets the run id
-- on its first line ("run <id>"), then one line per acknowledged step
-- ("<seq>\t<content as JSON>"), written and flushed only after run:step returned,
-- so every line names a step the store has acknowledged. A budget of a few
-- thousand steps or seconds stops it if the parent never kills it.
local agentrun = require "agentrun"
local core = require "agentrun.core"

local db, progress = arg[1], arg[2]
assert(db and progress, "usage: crash_agent.lua <db> <progress-file>")

-- the schema of a PostgreSQL store, given by the spec that started this process
local schema = os.getenv("AGENTRUN_TEST_STORE_SCHEMA")
local store = assert(agentrun.open(db, schema and { schema = schema } or nil))
local out = assert(io.open(progress, "w"))
math.randomseed(os.time())

agentrun.loop(store, { agent = "crash", goal = "survive a kill -9", budget = { max_steps = 5000, max_seconds = 30 } },
  function(ctx)
    if ctx.iteration == 1 then
      out:write("run ", ctx.run.id, "\n")
      out:flush()
    end
    local i = ctx.iteration
    -- the random part makes "as the child wrote it" checkable, not just recomputable
    local content = { i = i, text = "step " .. i, nonce = math.random(1, 1000000000) }
    local seq = ctx:record { kind = "tool", name = "t", content = content,
                             usage = { input_tokens = i, output_tokens = 1 } }
    ctx:save { done = seq }
    out:write(seq, "\t", agentrun.json_encode(content), "\n")
    out:flush()
    core.sleep(2)
  end)

out:close()
store:close()
