-- agentrun.lua -- require "agentrun": the store API (C), the agent loop, the record factory.
local core = require "agentrun.core"

local M = {
  version = core.version,
  open = core.open,
  array = core.array,
  null = core.null,
  json_encode = core.json_encode,
  json_decode = core.json_decode,
  -- metatables of the error objects: getmetatable(e) == agentrun.Error
  Error = core.Error,
  BudgetExhausted = core.BudgetExhausted,
}

--- True when v is the error run:check() raises when a budget limit is reached.
function M.is_budget_exhausted(v)
  return type(v) == "table" and getmetatable(v) == core.BudgetExhausted
end

--- True when v is an agentrun.Error (a store failure, bad JSON, wrong state...).
function M.is_error(v)
  return type(v) == "table" and getmetatable(v) == core.Error
end

M.records = require("agentrun.records")(core)
M.loop = require("agentrun.loop")(M, core)
M.policy = require("agentrun.policy")(M)

return M
