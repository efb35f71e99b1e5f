-- same_as_store.lua LOCATION KIND -- reads the command's --json lines on
-- stdin and checks that each is, field for field, what the Lua API reads
-- from the store: KIND "run" (store:get of its id) or "step" (store:steps of
-- its run). Prints the number of lines checked.
local agentrun = require "agentrun"
local loc, kind = arg[1], arg[2]
local schema = os.getenv("AGENTRUN_SCHEMA")
local s = assert(agentrun.open(loc, { schema = schema ~= "" and schema or nil, readonly = true }))

local function same(a, b, path)
  if type(a) == "number" and type(b) == "number" then
    assert(math.abs(a - b) <= 1e-12 * math.max(1, math.abs(a)), path .. ": " .. a .. " ~= " .. b)
    return
  end
  assert(type(a) == type(b), path .. ": " .. type(a) .. " ~= " .. type(b))
  if type(a) ~= "table" then
    assert(a == b, path .. ": " .. tostring(a) .. " ~= " .. tostring(b))
    return
  end
  for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k)) end
  for k in pairs(b) do assert(a[k] ~= nil, path .. "." .. tostring(k) .. " is missing") end
end

local n = 0
for line in io.lines() do
  local got = agentrun.json_decode(line)
  if kind == "run" then
    local want = assert(s:get(got.id), "no run " .. tostring(got.id))
    got.checkpoint = nil
    same(got, want, got.id)
  else
    local want
    for st in s:steps(got.run, { from = got.seq, limit = 1 }) do want = st end
    got.run = nil
    same(got, want, "step " .. got.seq)
  end
  n = n + 1
end
print(n)
