-- policy.lua -- agentrun.policy(path): loads a retention policy file in a sandbox.
-- The file is a Lua chunk returning a policy table. It sees only pure
-- functions: no io, no os beyond time/date/clock, no require/load/dofile,
-- no debug, package, collectgarbage or metatables of strings. Its top level
-- runs under an instruction budget; its rule runs under one per call (store:retain).
local CHUNK_BUDGET = 10000000

local policy_fields = {
  older_than = true, keep_last = true, status = true, rule = true, dry_run = true, vacuum = true,
}

-- A read-only copy of a library table, so the sandbox cannot alter the host's.
local function frozen(lib, names)
  local t = {}
  for _, name in ipairs(names) do t[name] = lib[name] end
  return setmetatable({}, {
    __index = t,
    __newindex = function() error("the sandbox's libraries are read-only", 2) end,
    __metatable = false,
  })
end

local function sandbox()
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    select = select, tonumber = tonumber, tostring = tostring, type = type, xpcall = xpcall,
    rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset,
    -- metatables on the sandbox's own tables, but no finalizers: a __gc
    -- would run later, outside every budget
    setmetatable = function(t, mt)
      if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("finalizers (__gc) are not allowed in a policy", 2)
      end
      return setmetatable(t, mt)
    end,
    -- getmetatable of a string would hand out the host's string library
    getmetatable = function(v)
      if type(v) ~= "table" then return nil end
      return getmetatable(v)
    end,
    string = frozen(string, { "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower",
                              "match", "rep", "reverse", "sub", "upper" }),
    table = frozen(table, { "concat", "insert", "move", "pack", "remove", "sort", "unpack" }),
    math = frozen(math, { "abs", "ceil", "floor", "fmod", "huge", "max", "maxinteger", "min",
                          "mininteger", "modf", "pi", "sqrt", "tointeger", "type", "ult" }),
    utf8 = frozen(utf8, { "char", "charpattern", "codepoint", "codes", "len", "offset" }),
    os = frozen(os, { "time", "date", "clock" }),
  }
  env._G = env
  return env
end

return function(agentrun)
  --- agentrun.policy(path) -> policy table (its rule, if any, runs sandboxed).
  return function(path)
    if type(path) ~= "string" then
      error(("bad argument #1 to 'policy' (string expected, got %s)"):format(type(path)), 2)
    end
    local f, err = io.open(path, "rb")
    if not f then error(("cannot read policy file: %s"):format(err), 2) end
    local text = f:read("a")
    f:close()
    -- text only: a precompiled chunk could break out of the sandbox
    local chunk, cerr = load(text, "@" .. path, "t", sandbox())
    if not chunk then error(("policy file %s: %s"):format(path, cerr), 2) end
    local co = coroutine.create(chunk)
    local function over_budget()
      -- from now on every instruction raises: a pcall in the chunk cannot swallow it
      debug.sethook(over_budget, "", 1)
      error(("policy file %s exceeded its budget of %d instructions"):format(path, CHUNK_BUDGET), 2)
    end
    debug.sethook(co, over_budget, "", CHUNK_BUDGET)
    local ok, policy = coroutine.resume(co)
    if not ok then error(("policy file %s: %s"):format(path, tostring(policy)), 2) end
    if coroutine.status(co) ~= "dead" then error(("policy file %s must not yield"):format(path), 2) end
    if type(policy) ~= "table" then
      error(("policy file %s must return a policy table (got %s)"):format(path, type(policy)), 2)
    end
    for k in pairs(policy) do
      if not policy_fields[k] then
        error(("unknown field '%s' in policy file %s"):format(tostring(k), path), 2)
      end
    end
    if policy.rule ~= nil and type(policy.rule) ~= "function" then
      error(("policy file %s: rule must be a function"):format(path), 2)
    end
    return policy
  end
end
