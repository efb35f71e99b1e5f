-- owner_agent.lua -- child process of ownership_spec: a run handle whose run another process resumes.
--
--   lua5.4 owner_agent.lua <db> <write> <out-file>
--
-- Begins a run on <db>, records step 1 and a checkpoint, writes "run <id>" to
-- <out-file>, then waits for a line on stdin (the parent resumes the run
-- meanwhile). Then it makes one write <write> with its old handle and appends
-- "<ok|error>\t<code>\t<status>\t<message>" to <out-file>, and ends normally,
-- so the handle and the store are closed and collected as in any program.
local agentrun = require "agentrun"

local db, write, out_path = arg[1], arg[2], arg[3]
assert(db and write and out_path, "usage: owner_agent.lua <db> <write> <out-file>")

-- the schema of a PostgreSQL store, given by the spec that started this process
local schema = os.getenv("AGENTRUN_TEST_STORE_SCHEMA")
local store = assert(agentrun.open(db, schema and { schema = schema } or nil))
local run = store:begin { agent = "agent", goal = "goal" }
run:step { kind = "own", usage = { input_tokens = 1 } }
run:checkpoint "a1"
local out = assert(io.open(out_path, "w"))
out:write("run ", run.id, "\n")
out:flush()
assert(io.read("l"), "no go from the parent")

local writes = {
  step = function() return run:step { kind = "late", usage = { input_tokens = 100 } } end,
  checkpoint = function() return run:checkpoint "late" end,
  complete = function() return run:complete "late" end,
  fail = function() return run:fail "late" end,
  wait = function() return run:wait { approve = "late" } end,
  exhaust = function() return run:exhaust { limit = "max_steps", limit_value = 1, value = 1 } end,
  close = function() run:close() end,
  scope_error = function()
    pcall(function()
      local r <close> = run
      error("boom", 0)
    end)
  end,
  gc = function()
    run = nil
    collectgarbage("collect")
    collectgarbage("collect")
  end,
  store_close = function() store:close() end,
}
local ok, e = pcall(assert(writes[write], "unknown write"))
local status = (write == "store_close" or not ok) and run.status or ""
if ok then
  out:write("ok\t\t", status, "\t\n")
else
  out:write("error\t", tostring(e.code), "\t", status, "\t", tostring(e.message), "\n")
end
out:close()
