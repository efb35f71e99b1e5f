-- policy.lua -- agentrun.policy(path): loads a retention policy file in a sandbox.
-- The file is a Lua chunk returning a policy table. It sees only pure
-- functions: no io, no os beyond time/date/clock, no require/load/dofile,
-- no debug, package, collectgarbage or metatables but its own. Its top level,
-- and each call of its rule, runs under an instruction budget and a memory
-- budget that nothing inside can escape (core.bounded_call; bindings/budget.c).
-- Nothing it made runs host-side: the table it returns is copied raw, and its
-- rule's errors and verdicts reach the host as strings.
--
-- The budget counts VM instructions, and a library call is one instruction
-- whatever it does. So every library call the sandbox offers either does
-- O(1) work, or work that allocates its result (allocation is charged: one
-- instruction per 16 bytes; string.rep, string.format, whose widths Lua
-- limits to two digits, string.sub, upper, lower, reverse, char, os.date),
-- or is bounded here:
--   string.find/match/gmatch/gsub (and the string methods): backtracking
--     patterns and plain searches take time out of proportion to their
--     input; the sandbox's own matcher charges every step (core.patterns);
--   table.concat/insert/remove/move/sort: loops over a length or range the
--     caller (or a __len, or a C function as __index) makes as large as it
--     likes; they are written in Lua below, so the VM counts their loops,
--     and sort pays n*log2(n) for the comparisons it makes in C;
--   table.unpack, string.byte, utf8.codepoint, select: return up to a
--     million values per call; they pay per value;
--   utf8.len, utf8.offset, tonumber: read a whole string; they pay per 16 bytes.
-- What still does more than O(1) work in one instruction, bounded only by the
-- memory budget (the size of a string or of an argument list): comparing two
-- long strings (==, <), turning a long string into a number in arithmetic
-- ("1" .. s + 0), passing a long argument list on (f(...)), and next/pairs
-- stepping over a table whose array part holds many nils.
local CHUNK_BUDGET = 10000000       -- instructions for the file's top level
local RULE_BUDGET = 1000000         -- instructions per rule call (store:retain gives any rule the same)
local MEMORY_BUDGET = 64 * 1024 * 1024 -- bytes the heap may grow by, for the file and for each rule call

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

-- A read-only view of a library table, so the sandbox cannot alter the host's.
local function frozen(t)
  return setmetatable({}, {
    __index = t,
    __newindex = function() error("the sandbox's libraries are read-only", 2) end,
    __metatable = false,
  })
end

-- The library functions the sandbox bounds (see the top of this file); `core`
-- gives the charging and the matcher.
local function bounded_libraries(core)
  local charge, per_value, P = core.charge, core.per_value, core.patterns
  local host_concat, host_sort, host_unpack, host_select = table.concat, table.sort, table.unpack, select
  local tointeger, type, error = math.tointeger, type, error

  local function table_arg(t, n, fname)
    if type(t) ~= "table" then
      error(("bad argument #%d to '%s' (table expected, got %s)"):format(n, fname, t == nil and "no value" or type(t)), 3)
    end
  end

  local function integer_arg(v, n, fname)
    local i = tointeger(v)
    if i == nil then
      local why = type(v) == "number" and "number has no integer representation"
        or ("number expected, got %s"):format(v == nil and "no value" or type(v))
      error(("bad argument #%d to '%s' (%s)"):format(n, fname, why), 3)
    end
    return i
  end

  local tab = {}

  function tab.insert(t, ...)
    table_arg(t, 1, "insert")
    local e = #t + 1
    local nargs = host_select("#", ...)
    if nargs == 1 then
      t[e] = ...
      return
    end
    if nargs ~= 2 then error("wrong number of arguments to 'insert'", 2) end
    local pos, v = ...
    pos = integer_arg(pos, 2, "insert")
    if pos < 1 or pos > e then error("bad argument #2 to 'insert' (position out of bounds)", 2) end
    for i = e, pos + 1, -1 do t[i] = t[i - 1] end
    t[pos] = v
  end

  function tab.remove(t, pos)
    table_arg(t, 1, "remove")
    local size = #t
    if pos == nil then
      pos = size
    else
      pos = integer_arg(pos, 2, "remove")
      if pos ~= size and (pos < 1 or pos > size + 1) then
        error("bad argument #2 to 'remove' (position out of bounds)", 2)
      end
    end
    local v = t[pos]
    while pos < size do
      t[pos] = t[pos + 1]
      pos = pos + 1
    end
    t[pos] = nil
    return v
  end

  function tab.move(a1, f, e, t, a2)
    f, e, t = integer_arg(f, 2, "move"), integer_arg(e, 3, "move"), integer_arg(t, 4, "move")
    table_arg(a1, 1, "move")
    if a2 == nil then a2 = a1 else table_arg(a2, 5, "move") end
    if e >= f then
      if not (f > 0 or e < math.maxinteger + f) then
        error("bad argument #3 to 'move' (too many elements to move)", 2)
      end
      local n = e - f + 1
      if t > math.maxinteger - n + 1 then error("bad argument #4 to 'move' (destination wrap around)", 2) end
      if t > e or t <= f or a1 ~= a2 then
        for i = 0, n - 1 do a2[t + i] = a1[f + i] end
      else
        for i = n - 1, 0, -1 do a2[t + i] = a1[f + i] end
      end
    end
    return a2
  end

  function tab.concat(t, sep, i, j)
    table_arg(t, 1, "concat")
    local last = #t
    if sep == nil then sep = "" end
    if type(sep) ~= "string" and type(sep) ~= "number" then
      error(("bad argument #2 to 'concat' (string expected, got %s)"):format(type(sep)), 2)
    end
    i = i == nil and 1 or integer_arg(i, 3, "concat")
    j = j == nil and last or integer_arg(j, 4, "concat")
    -- the parts gathered here are a plain list: joining them is linear
    local parts, n = {}, 0
    for k = i, j do
      local v = t[k]
      if type(v) ~= "string" and type(v) ~= "number" then
        error(("invalid value (at index %d) in table for 'concat'"):format(k), 2)
      end
      n = n + 1
      parts[n] = v
    end
    return host_concat(parts, sep)
  end

  function tab.sort(t, comp)
    table_arg(t, 1, "sort")
    local n = #t
    if n <= 1 then return end
    if n >= 0x7fffffff then error("bad argument #1 to 'sort' (array too big)", 2) end
    if comp ~= nil and type(comp) ~= "function" then
      error(("bad argument #2 to 'sort' (function expected, got %s)"):format(type(comp)), 2)
    end
    -- sorted as a plain copy: its elements are read once here, where each
    -- read is counted, and the comparisons made in C are paid for
    local copy = {}
    for k = 1, n do copy[k] = t[k] end
    local log = 1
    while (1 << log) < n do log = log + 1 end
    charge(n * log)
    host_sort(setmetatable(copy, { __len = function() return n end }), comp)
    for k = 1, n do t[k] = copy[k] end
  end

  tab.unpack = per_value(host_unpack)

  local str = {}
  str.find, str.match, str.gmatch, str.gsub = P.find, P.match, P.gmatch, P.gsub
  str.byte = per_value(string.byte)

  local utf = {}
  utf.codepoint = per_value(utf8.codepoint)
  function utf.len(s, ...)
    if type(s) == "string" then charge(#s // 16) end
    return utf8.len(s, ...)
  end
  function utf.offset(s, ...)
    if type(s) == "string" then charge(#s // 16) end
    return utf8.offset(s, ...)
  end

  local base = { select = per_value(host_select) }
  function base.tonumber(v, ...)
    if type(v) == "string" then charge(#v // 16) end
    return tonumber(v, ...)
  end

  return { table = tab, string = str, utf8 = utf, base = base }
end

local function sandbox(bounded)
  -- the metatables the policy set itself: the only ones it may read back, so
  -- it never reaches one of the host's (the metatable shared by every JSON
  -- array, for one, which a rule meets in run.metadata)
  local own = setmetatable({}, { __mode = "k" })
  local function pick(lib, names, over)
    local t = {}
    for _, name in ipairs(names) do t[name] = over[name] or lib[name] end
    return t
  end
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    select = bounded.base.select, tonumber = bounded.base.tonumber, tostring = tostring, type = type,
    xpcall = xpcall, rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset,
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
    string = frozen(pick(string, { "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower",
                                   "match", "rep", "reverse", "sub", "upper" }, bounded.string)),
    table = frozen(pick(table, { "concat", "insert", "move", "pack", "remove", "sort", "unpack" }, bounded.table)),
    math = frozen(pick(math, { "abs", "ceil", "floor", "fmod", "huge", "max", "maxinteger", "min",
                               "mininteger", "modf", "pi", "sqrt", "tointeger", "type", "ult" }, {})),
    utf8 = frozen(pick(utf8, { "char", "charpattern", "codepoint", "codes", "len", "offset" }, bounded.utf8)),
    os = frozen(pick(os, { "time", "date", "clock" }, {})),
  }
  env._G = env
  return env
end

-- Calls fn(...) under the budgets, with the sandbox's string library behind
-- the string methods ("s:find(p)" goes through the string metatable, which
-- the host shares): true, results... or false, error.
local function run_sandboxed(core, env, who, budget, fn, ...)
  local string_mt = getmetatable("")
  local host_index = rawget(string_mt, "__index")
  local restore <close> = setmetatable({}, { __close = function() rawset(string_mt, "__index", host_index) end })
  rawset(string_mt, "__index", env.string)
  return core.bounded_call(who, budget, MEMORY_BUDGET, fn, ...)
end

-- The host's copy of the policy the chunk returned: read raw, fields and
-- types checked, status copied, so none of the sandbox's metatables come along.
local function host_policy(policy, path)
  local copy = {}
  for k, v in next, policy do
    if type(k) ~= "string" then
      local shown = (type(k) == "number" or type(k) == "boolean") and type(k) .. " " .. tostring(k)
        or "a " .. type(k) .. " value"
      error(("policy file %s: field names must be strings (got %s)"):format(path, shown), 3)
    end
    local want = policy_fields[k]
    if not want then
      error(("unknown field '%s' in policy file %s"):format(k, path), 3)
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

-- The rule as the host calls it, under its budgets: errors that are not
-- strings, and verdicts that are neither strings nor nil, become text before
-- they leave the sandbox.
local function host_rule(core, env, rule, path)
  return function(run)
    local ok, verdict = run_sandboxed(core, env, "retention rule", RULE_BUDGET, rule, run)
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

return function(agentrun, core)
  local bounded = bounded_libraries(core)
  --- agentrun.policy(path) -> policy table (its rule, if any, runs sandboxed).
  return function(path)
    if type(path) ~= "string" then
      error(("bad argument #1 to 'policy' (string expected, got %s)"):format(type(path)), 2)
    end
    local f, err = io.open(path, "rb")
    if not f then error(("cannot read policy file: %s"):format(err), 2) end
    local text = f:read("a")
    f:close()
    local env = sandbox(bounded)
    -- text only: a precompiled chunk could break out of the sandbox
    local chunk, cerr = load(text, "@" .. path, "t", env)
    if not chunk then error(("policy file %s: %s"):format(path, cerr), 2) end
    local ok, policy = run_sandboxed(core, env, "policy file " .. path, CHUNK_BUDGET, chunk)
    if not ok then
      if type(policy) == "string" and policy:find("policy file " .. path, 1, true) == 1 then error(policy, 2) end
      error(("policy file %s: %s"):format(path, describe(policy)), 2)
    end
    if type(policy) ~= "table" then
      error(("policy file %s must return a policy table (got %s)"):format(path, type(policy)), 2)
    end
    policy = host_policy(policy, path)
    if policy.rule then policy.rule = host_rule(core, env, policy.rule, path) end
    return policy
  end
end
