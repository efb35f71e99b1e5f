-- open_store.lua -- require("open_store")(LOCATION): the test's store, in the
-- schema $AGENTRUN_SCHEMA names on PostgreSQL (the fixtures and the Lua
-- snippets of test_cli.sh open it so).
local agentrun = require "agentrun"

return function(loc)
  local schema = os.getenv("AGENTRUN_SCHEMA")
  return assert(agentrun.open(loc, { schema = schema ~= "" and schema or nil }))
end
