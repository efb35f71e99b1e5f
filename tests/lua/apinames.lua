-- apinames.lua -- the names the Lua API really has (introspected) and the names types/agentrun.lua declares.
-- Shared by types_spec.lua and docs_spec.lua, which keep the definitions and
-- docs/lua.md naming exactly what the module has.
local agentrun = require "agentrun"

local M = {}

--- The project's root: two folders above this file.
M.root = (debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/[^/]*$")) or "."

--- The set of keys of t whose value is a function.
local function function_keys(t)
  local set = {}
  for k, v in pairs(t) do
    if type(k) == "string" and type(v) == "function" then set[k] = true end
  end
  return set
end

--- The method table behind a metatable's __index: the table itself, or the
--- table a C __index function reads its methods from (its first table upvalue).
local function method_table(mt)
  local index = mt.__index
  if type(index) == "table" then return index end
  assert(type(index) == "function", "__index is neither a table nor a function")
  for i = 1, 255 do
    local name, v = debug.getupvalue(index, i)
    if name == nil then break end
    if type(v) == "table" then return v end
  end
  error("no method table behind __index")
end

--- What the real module has:
---   module[name]  = "function" | "value"   (agentrun.*)
---   records[name] = "function"             (agentrun.records.*)
---   store, run, ctx = sets of method names (metamethods aside)
---   ctx_fields = the set of public fields of a loop context
function M.real()
  local r = { module = {}, records = {}, ctx_fields = {} }
  for k, v in pairs(agentrun) do
    r.module[k] = type(v) == "function" and "function" or "value"
  end
  for k in pairs(function_keys(agentrun.records)) do r.records[k] = "function" end
  local store <close> = assert(agentrun.open(":memory:"))
  r.store = function_keys(method_table(getmetatable(store)))
  local run <close> = store:begin { agent = "a", goal = "g" }
  r.run = function_keys(method_table(getmetatable(run)))
  -- a run that waited and has its answer: its loop context has ctx.response
  local waited = store:begin { agent = "a", goal = "g" }
  waited:wait "?"
  store:respond(waited.id, "yes")
  agentrun.loop(store, { resume = waited.id }, function(ctx)
    r.ctx = function_keys(method_table(getmetatable(ctx)))
    ctx:save(1) -- ctx.checkpoint is nil until a state is saved or resumed
    for k in pairs(ctx) do
      if type(k) == "string" and k:sub(1, 1) ~= "_" then r.ctx_fields[k] = true end
    end
    return "done"
  end)
  return r
end

--- Parses a ---@meta file with plain patterns. Returns
---   classes[name] = { fields = {name = true}, parent = name|nil, open = bool }
---     (open: it has an index field such as [string], so any key may appear)
---   members[class] = { name = "function" | "method" | "value" }
---     for `function V.f`, `function V:m` and `V.x =` on a local V declared
---     right after `---@class class`
---   aliases[name] = true
function M.meta(path)
  local classes, members, aliases, locals = {}, {}, {}, {}
  local current -- the class whose ---@field lines are being read
  for line in io.lines(path) do
    local name, parent = line:match("^%-%-%-@class%s+([%w_.]+)%s*:?%s*([%w_.]*)")
    if name then
      current = name
      classes[name] = { fields = {}, parent = parent ~= "" and parent or nil, open = false }
      members[name] = members[name] or {}
    elseif line:match("^%-%-%-@field%s") then
      assert(current, "---@field outside a class: " .. line)
      local field = line:match("^%-%-%-@field%s+([%a_][%w_]*)%??%s")
      if field then
        classes[current].fields[field] = true
      elseif line:match("^%-%-%-@field%s+%[") then
        classes[current].open = true
      else
        error("unreadable ---@field line: " .. line)
      end
    elseif line:match("^%-%-%-@alias%s") then
      aliases[line:match("^%-%-%-@alias%s+([%w_.]+)")] = true
      current = nil
    elseif line:match("^local%s+[%a_][%w_]*%s*=%s*{}") then
      local var = line:match("^local%s+([%a_][%w_]*)")
      assert(current, "a local table with no ---@class right above it: " .. line)
      locals[var] = current
      current = nil
    elseif not line:match("^%-%-%-") then
      current = nil
      local var, sep, fname = line:match("^function%s+([%a_][%w_]*)([.:])([%a_][%w_]*)%s*%(")
      if var then
        local class = assert(locals[var], "function on an undeclared table: " .. line)
        members[class][fname] = sep == ":" and "method" or "function"
      else
        local v, field = line:match("^([%a_][%w_]*)%.([%a_][%w_]*)%s*=")
        if v then
          local class = assert(locals[v], "field of an undeclared table: " .. line)
          members[class][field] = "value"
        end
      end
    end
  end
  return { classes = classes, members = members, aliases = aliases }
end

--- The fields of a class, its parents' included.
function M.fields(defs, class)
  local set, c = {}, defs.classes[class]
  assert(c, "no class " .. class)
  while c do
    for f in pairs(c.fields) do set[f] = true end
    c = c.parent and assert(defs.classes[c.parent], "no class " .. tostring(c.parent))
  end
  return set
end

--- The names of a that are also in b.
function M.restrict(a, b)
  local set = {}
  for k in pairs(a) do
    if b[k] then set[k] = true end
  end
  return set
end

--- The sorted names of a set, for messages.
function M.sorted(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

--- The names in a but not in b, sorted.
function M.missing(a, b)
  local list = {}
  for k in pairs(a) do
    if not b[k] then list[#list + 1] = k end
  end
  table.sort(list)
  return list
end

return M
