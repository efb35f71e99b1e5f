-- respond_agent.lua -- child process of fork_spec: answers a waiting run.
--
--   lua5.4 respond_agent.lua <db> <run-id> <answer> <go-file>
--
-- Opens <db>, waits until <go-file> exists (so that the children answer at
-- once), answers run <run-id> with the string <answer>, and prints "ok" or
-- the error's code.
local agentrun = require "agentrun"

local db, id, answer, go = arg[1], arg[2], arg[3], arg[4]
assert(db and id and answer and go, "usage: respond_agent.lua <db> <run-id> <answer> <go-file>")
local schema = os.getenv("AGENTRUN_TEST_STORE_SCHEMA")
local store = assert(agentrun.open(db, schema and { schema = schema } or nil))
for _ = 1, 2000 do
  local f = io.open(go, "r")
  if f then f:close() break end
  os.execute("sleep 0.005")
end
local ok, e = pcall(store.respond, store, id, answer)
io.write(ok and "ok" or tostring(e.code), "\n")
store:close()
