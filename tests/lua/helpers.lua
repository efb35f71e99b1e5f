-- helpers.lua -- shared helpers of the Lua specs: temp dirs, error capture, record comparison.
local agentrun = require "agentrun"

local M = {}

local TMP_PREFIX = "/tmp/agentrun-lua-"

--- A fresh empty directory under /tmp; remove it with M.rmdir.
function M.tmpdir()
  local p = assert(io.popen("mktemp -d " .. TMP_PREFIX .. "XXXXXX"))
  local dir = p:read("l")
  p:close()
  assert(dir and dir:sub(1, #TMP_PREFIX) == TMP_PREFIX, "mktemp failed")
  return dir
end

--- Removes a directory made by M.tmpdir (refuses any other path).
function M.rmdir(dir)
  assert(type(dir) == "string" and dir:sub(1, #TMP_PREFIX) == TMP_PREFIX and not dir:find("'", 1, true),
    "not a helpers temp dir: " .. tostring(dir))
  os.execute("rm -rf '" .. dir .. "'")
end

--- True when a file exists at path.
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The bytes of a file.
function M.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Writes bytes to a file.
function M.write_file(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

--- Calls fn(...) expecting it to raise a plain string error; returns the message.
function M.plain_error(fn, ...)
  local ok, e = pcall(fn, ...)
  if ok then error("expected a plain error, but the call succeeded", 2) end
  if type(e) ~= "string" then
    error("expected a plain string error, got a " .. type(e) .. ": " .. tostring(e), 2)
  end
  return e
end

--- Calls fn(...) expecting an agentrun.Error with `code`; returns the error object.
function M.ar_error(code, fn, ...)
  local ok, e = pcall(fn, ...)
  if ok then error("expected agentrun.Error " .. code .. ", but the call succeeded", 2) end
  if getmetatable(e) ~= agentrun.Error then
    error("expected agentrun.Error " .. code .. ", got a " .. type(e) .. ": " .. tostring(e), 2)
  end
  if e.code ~= code then
    error("expected agentrun.Error " .. code .. ", got " .. tostring(e), 2)
  end
  return e
end

--- Calls fn(...) expecting agentrun.BudgetExhausted; returns the error object.
function M.budget_error(fn, ...)
  local ok, e = pcall(fn, ...)
  if ok then error("expected BudgetExhausted, but the call succeeded", 2) end
  if getmetatable(e) ~= agentrun.BudgetExhausted then
    error("expected BudgetExhausted, got " .. tostring(e), 2)
  end
  return e
end

--- A deep copy of a plain value, without metatables.
function M.copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = M.copy(x) end
  return t
end

-- Fields of a record (and of its steps) that differ between two recordings of the same run.
local TIME_FIELDS = { id = true, created_at = true, finished_at = true, updated_at = true, latency_ms = true }

--- A copy of a record without its id and times (steps lose `at`), for comparing two recordings.
function M.timeless(record)
  local t = {}
  for k, v in pairs(record) do
    if not TIME_FIELDS[k] then t[k] = M.copy(v) end
  end
  if t.steps then
    for _, s in ipairs(t.steps) do s.at = nil end
  end
  return t
end

--- Number of entries of any table (pairs count).
function M.size(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

--- A list of the steps store:steps(id, opts) yields.
function M.steps(store, id, opts)
  local list = {}
  for s in store:steps(id, opts) do list[#list + 1] = s end
  return list
end

--- A list of the seq of each step in a list.
function M.seqs(steps)
  local t = {}
  for i, s in ipairs(steps) do t[i] = s.seq end
  return t
end

--- JSON text of v with object keys sorted, arrays told apart by the agentrun.array
--- metatable (as the encoder does), so two equal values give the same text.
function M.canon(v)
  if type(v) ~= "table" then return agentrun.json_encode(v) end
  local parts = {}
  if getmetatable(v) == getmetatable(agentrun.array {}) or (next(v) ~= nil and #v == M.size(v)) then
    for i = 1, #v do parts[i] = M.canon(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do parts[i] = agentrun.json_encode(k) .. ":" .. M.canon(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- The backend the specs run on: "sqlite", or "postgresql" when
--- tests/lua/run.sh runs them against the server of AGENTRUN_TEST_PG.
function M.backend()
  return os.getenv("AGENTRUN_TEST_BACKEND") or "sqlite"
end

local function random_hex(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(n)
  f:close()
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- A location for a new, empty store on the backend under test, and the
--- options that open it: `opts` (copied; may be nil) plus, on PostgreSQL,
--- a fresh `schema`. On SQLite the location is a file in a fresh directory
--- under the run's temporary directory (AGENTRUN_TEST_TMP, which
--- tests/lua/run.sh removes), or under /tmp when busted runs alone; on
--- PostgreSQL it is the server's URL, and run.sh drops the schemas
--- (named after AGENTRUN_TEST_SCHEMA_PREFIX) when the run ends.
function M.location(opts)
  local o = M.copy(opts or {})
  if M.backend() == "postgresql" then
    local url = assert(os.getenv("AGENTRUN_TEST_PG"), "AGENTRUN_TEST_PG is not set")
    o.schema = (os.getenv("AGENTRUN_TEST_SCHEMA_PREFIX") or "lua_") .. random_hex(6)
    return url, o
  end
  local root = os.getenv("AGENTRUN_TEST_TMP")
  local dir
  if root then
    dir = root .. "/" .. random_hex(6)
    assert(os.execute("mkdir '" .. dir .. "'"), "cannot make " .. dir)
  else
    dir = M.tmpdir()
  end
  return dir .. "/store.db", o
end

--- A copy of opts (may be nil) that opens the store base (options from
--- M.location) again: base's schema, on PostgreSQL.
function M.same_store(base, opts)
  local o = M.copy(opts or {})
  o.schema = base.schema
  return o
end

--- The environment assignment (a shell word and a space, or "") that tells a
--- child process (crash_agent.lua, owner_agent.lua) the schema of the store
--- opened with opts, which the child's location alone does not name.
function M.child_env(opts)
  if not opts.schema then return "" end
  assert(opts.schema:match("^[%w_]+$"), "schema name: " .. opts.schema)
  return "AGENTRUN_TEST_STORE_SCHEMA=" .. opts.schema .. " "
end

--- A new, empty store on the backend under test, opened with opts (durability
--- "normal" unless opts says otherwise, so that long loops stay quick).
function M.store(opts)
  local o = M.copy(opts or {})
  if o.durability == nil then o.durability = "normal" end
  return assert(agentrun.open(M.location(o)))
end

return M
