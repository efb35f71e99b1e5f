-- policy.lua -- agentrun.policy(path): loads a retention policy file in a sandbox.
-- The file is a Lua chunk returning a policy table. It sees only pure
-- functions: no io, no os beyond time/date/clock, no require/load/dofile,
-- no debug, package, collectgarbage or metatables but its own. Its top level
-- runs under an instruction budget; its rule runs under one per call (store:retain).
-- Nothing it made runs host-side: the table it returns is copied raw, and its
-- rule's errors and verdicts reach the host as strings.
local CHUNK_BUDGET = 10000000

-- The type each policy field may have (status may also be a list of strings).
local policy_fields = {
  older_than = "number", keep_last = "number", status = "string", rule = "function",
  dry_run = "boolean", vacuum = "boolean",
}

-- A value from the sandbox as text, without running any of its metamethods:
-- a __tostring, __index or __pairs would run host-side, outside every budget.
local function describe(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  return "a " .. t .. " value"
end

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
  -- the metatables the policy set itself: the only ones it may read back, so
  -- it never reaches one of the host's (the metatable shared by every JSON
  -- array, for one, which a rule meets in run.metadata)
  local own = setmetatable({}, { __mode = "k" })
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
      setmetatable(t, mt)
      if mt ~= nil then own[mt] = true end
      return t
    end,
    -- getmetatable("") would hand out the host's string library
    getmetatable = function(v)
      local mt = debug.getmetatable(v)
      if mt == nil or not own[mt] then return nil end
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

-- The host's copy of the policy the chunk returned: read raw, fields and
-- types checked, status copied, so none of the sandbox's metatables come along.
local function host_policy(policy, path)
  local copy = {}
  for k, v in next, policy do
    local want = type(k) == "string" and policy_fields[k]
    if not want then
      error(("unknown field '%s' in policy file %s"):format(describe(k), path), 3)
    end
    if k == "status" and type(v) == "table" then
      local list = {}
      for i = 1, rawlen(v) do
        local name = rawget(v, i)
        if type(name) ~= "string" then
          error(("policy file %s: status[%d] must be a string (got %s)"):format(path, i, type(name)), 3)
        end
        list[i] = name
      end
      v = list
    elseif type(v) ~= want then
      error(("policy file %s: %s must be a %s (got %s)"):format(path, k, want, type(v)), 3)
    end
    copy[k] = v
  end
  return copy
end

-- The rule as the host calls it: errors that are not strings, and verdicts
-- that are neither strings nor nil, become text before they leave the sandbox.
local function host_rule(rule, path)
  return function(run)
    local ok, verdict = pcall(rule, run)
    if not ok then
      if type(verdict) == "string" then error(verdict, 0) end
      error(("policy file %s: the rule raised %s"):format(path, describe(verdict)), 0)
    end
    local t = type(verdict)
    if t == "number" or t == "boolean" then
      error(("policy file %s: the rule must return \"keep\", \"delete\" or nil (got %s %s)")
        :format(path, t, tostring(verdict)), 0)
    elseif verdict ~= nil and t ~= "string" then
      error(("policy file %s: the rule must return \"keep\", \"delete\" or nil (got a %s value)")
        :format(path, t), 0)
    end
    return verdict
  end
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
    if not ok then error(("policy file %s: %s"):format(path, describe(policy)), 2) end
    if coroutine.status(co) ~= "dead" then error(("policy file %s must not yield"):format(path), 2) end
    if type(policy) ~= "table" then
      error(("policy file %s must return a policy table (got %s)"):format(path, type(policy)), 2)
    end
    policy = host_policy(policy, path)
    if policy.rule then policy.rule = host_rule(policy.rule, path) end
    return policy
  end
end
