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

-- Misuse errors of the Lua functions, worded as the C functions word theirs
-- ("bad argument #1 to 'record' (...)"), so that every misuse error names the
-- call the caller made, also when a C function did the checking for it.
local misuse = {}

--- Raises a misuse error about argument `arg` of `name`; `level` as error's.
function misuse.argerror(name, arg, detail, level)
  error(("bad argument #%d to '%s' (%s)"):format(arg, name, detail), level + 1)
end

--- Raises a misuse error about the handle a method `name` was called on.
function misuse.badself(name, expected, got, level)
  error(("calling '%s' on bad self (%s expected, got %s)"):format(name, expected, type(got)), level + 1)
end

--- Re-raises `e`, raised by a call made through pcall on behalf of `name`
--- (so a string error carries no position yet): a misuse error about an
--- argument becomes one about `name`'s argument `arg`; another string error
--- gets the position of `name`'s caller; error objects go on unchanged.
function misuse.reraise(e, name, arg, level)
  if type(e) ~= "string" then error(e, 0) end
  local detail = e:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or e:match("^calling '[^']*' on bad self %((.*)%)$")
  if detail then misuse.argerror(name, arg, detail, level + 1) end
  error(e, level + 1)
end

M.records = require("agentrun.records")(core, misuse)
M.loop = require("agentrun.loop")(M, core, misuse)
M.policy = require("agentrun.policy")(M, core)

return M
