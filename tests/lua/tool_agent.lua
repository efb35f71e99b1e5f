-- tool_agent.lua -- child process of intents_spec's kill -9 test: an agent that calls tools through ctx:tool.
--
--   lua5.4 tool_agent.lua <db> <id-file> <calls-file> <pending-file>
--
-- Begins a run (its id written to <id-file> before any tool is called), or
-- resumes the run named there, and calls tools t1..tN through ctx:tool in one
-- step function, completing with output N. Each real call of a tool appends
-- "<key>\tbegin" to <calls-file> before its work and "<key>\tend" after it;
-- each call of on_pending appends "<key>" to <pending-file>. Lines are flushed
-- at once: a SIGKILL loses only what the process still holds, never what it
-- handed to the kernel.
local agentrun = require "agentrun"
local core = require "agentrun.core"

local db, idfile, callsfile, pendfile = arg[1], arg[2], arg[3], arg[4]
assert(db and idfile and callsfile and pendfile, "usage: tool_agent.lua <db> <id-file> <calls-file> <pending-file>")
local N = 30

local schema = os.getenv("AGENTRUN_TEST_STORE_SCHEMA")
local store = assert(agentrun.open(db, { schema = schema, durability = "normal" }))

local function append(path, line)
  local f = assert(io.open(path, "a"))
  f:write(line, "\n")
  f:flush()
  f:close()
end

local f = io.open(idfile, "r")
local id = f and f:read("a")
if f then f:close() end
if id == "" then id = nil end
-- a run a killed process had finished: nothing left to do
if id and store:get(id).status == "completed" then
  store:close()
  return
end

local function tool(args)
  local key = "t" .. args.i
  append(callsfile, key .. "\tbegin")
  core.sleep(30) -- the side effect, a moment a kill may cut
  append(callsfile, key .. "\tend")
  return { by = "tool", i = args.i }
end

local spec = {
  agent = "tools", goal = "call each tool once",
  on_pending = function(_, intent)
    append(pendfile, intent.key)
    return { by = "on_pending", i = intent.args.i }
  end,
}
if id then spec.resume = id end

agentrun.loop(store, spec, function(ctx)
  if not id then
    -- named durably (write, then rename) before any tool runs
    local tmp = idfile .. ".tmp"
    local out = assert(io.open(tmp, "w"))
    out:write(ctx.run.id)
    out:close()
    assert(os.rename(tmp, idfile))
    id = ctx.run.id
  end
  for i = 1, N do
    ctx:tool("t" .. i, "work", { i = i }, tool)
  end
  return N
end)
store:close()
