-- docs_spec.lua -- docs/lua.md names every function, method and field of the Lua API, and nothing the API lacks.
local names = require "apinames"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local doc = read(names.root .. "/docs/lua.md")
local defs = names.meta(names.root .. "/types/agentrun.lua")
local real = names.real()

--- True when `name` appears in the page as a whole name (not a prefix of a longer one).
local function mentions(name)
  local at = 1
  while true do
    local i, j = doc:find(name, at, true)
    if not i then return false end
    if not doc:sub(j + 1, j + 1):match("[%w_]") then return true end
    at = j + 1
  end
end

--- Asserts that the page mentions prefix .. name for each name of a set.
local function all_mentioned(prefix, set)
  local absent = {}
  for _, name in ipairs(names.sorted(set)) do
    if not mentions(prefix .. name) then absent[#absent + 1] = prefix .. name end
  end
  assert(#absent == 0, "docs/lua.md does not mention: " .. table.concat(absent, ", "))
end

--- The names the page uses after `prefix` (a handle and ":"), as a set.
local function used_after(prefix)
  local set = {}
  for name in doc:gmatch("%f[%w_]" .. prefix .. "([%a_][%w_]*)") do set[name] = true end
  return set
end

describe("docs/lua.md", function()
  it("mentions every function and value of the module as agentrun.NAME", function()
    all_mentioned("agentrun.", real.module)
  end)

  it("mentions every function of agentrun.records", function()
    all_mentioned("agentrun.records.", real.records)
  end)

  it("mentions every store method as store:NAME", function()
    all_mentioned("store:", real.store)
  end)

  it("mentions every run method as run:NAME and every run field as run.NAME", function()
    all_mentioned("run:", real.run)
    all_mentioned("run.", defs.classes["agentrun.Run"].fields)
  end)

  it("mentions every method and field of the loop context", function()
    all_mentioned("ctx:", real.ctx)
    all_mentioned("ctx.", real.ctx_fields)
  end)

  it("names no method the handles lack", function()
    for prefix, set in pairs { ["store:"] = real.store, ["run:"] = real.run, ["ctx:"] = real.ctx } do
      local unknown = names.missing(used_after(prefix), set)
      assert(#unknown == 0, "docs/lua.md names methods that do not exist: " .. prefix .. table.concat(unknown, ", " .. prefix))
    end
  end)

  it("names no module function the module lacks", function()
    local unknown = {}
    -- code spans that are a module name, or a call of one
    for span in doc:gmatch("`([^`\n]+)`") do
      local path = span:match("^agentrun%.([%a_][%w_.]*)$") or span:match("^agentrun%.([%a_][%w_.]*)[%({]")
      if path then
        local first, rest = path:match("^([%a_][%w_]*)%.?(.*)$")
        if not real.module[first] or (first == "records" and rest ~= "" and not real.records[rest]) then
          unknown[#unknown + 1] = "agentrun." .. path
        end
      end
    end
    assert(#unknown == 0, "docs/lua.md names what the module lacks: " .. table.concat(unknown, ", "))
  end)

  it("states list and counter limits the calls keep: 1,000 event types, 16 statuses, 64 counters", function()
    local agentrun = require "agentrun"
    assert.truthy(doc:find("`type` (a type or a list of 1..1,000)", 1, true))
    assert.truthy(doc:find("a status name or a list of 1..16 of them", 1, true))
    assert.truthy(doc:find("a step has at most 64 counters", 1, true))
    local store <close> = assert(agentrun.open(":memory:"))
    local function list(n, v)
      local t = {}
      for i = 1, n do t[i] = v or ("t" .. i) end
      return t
    end
    store:events { agent = "a", type = list(1000) }
    assert.equal("string", type((select(2, pcall(store.events, store, { agent = "a", type = list(1001) })))))
    store:runs { status = list(16, "failed") }
    assert.equal("string", type((select(2, pcall(store.runs, store, { status = list(17, "failed") })))))
    local run <close> = store:begin { agent = "a", goal = "g" }
    local function counters(n)
      local u = {}
      for i = 1, n do u["c" .. i] = 1 end
      return u
    end
    run:step { kind = "k", usage = counters(64) }
    assert.equal("string", type((select(2, pcall(run.step, run, { kind = "k", usage = counters(65) })))))
  end)

  it("links the README to it, and it to the README and the C reference", function()
    assert.truthy(read(names.root .. "/README.md"):find("docs/lua.md", 1, true))
    assert.truthy(doc:find("../README.md", 1, true))
    assert.truthy(doc:find("(c.md)", 1, true))
  end)
end)
