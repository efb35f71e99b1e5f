-- types_spec.lua -- types/agentrun.lua (the LuaLS definitions) names exactly what the module has: no drift either way.
local agentrun = require "agentrun"
local names = require "apinames"

local defs = names.meta(names.root .. "/types/agentrun.lua")
local real = names.real()

-- A value no field of any input table accepts: every probe below fails, and
-- the message says whether the field was known.
local ODD = coroutine.create(function() end)

--- Asserts that two sets hold the same names, naming the differences.
local function same_names(what, documented, actual)
  local undocumented = names.missing(actual, documented)
  local extra = names.missing(documented, actual)
  assert(#undocumented == 0 and #extra == 0,
    ("%s: missing from the definitions: {%s}; defined but absent: {%s}")
      :format(what, table.concat(undocumented, ", "), table.concat(extra, ", ")))
end

--- The members of a class of the definitions of one kind ("function", "method", "value").
local function members(class, kind)
  local set = {}
  for name, k in pairs(assert(defs.members[class], "no class " .. class)) do
    if k == kind then set[name] = true end
  end
  return set
end

describe("the LuaLS definitions (types/agentrun.lua)", function()
  it("start with ---@meta agentrun and return the module table", function()
    local f = assert(io.open(names.root .. "/types/agentrun.lua"))
    local text = f:read("a")
    f:close()
    assert.truthy(text:match("^%-%-%-@meta agentrun\n"))
    assert.truthy(text:match("\nreturn agentrun\n$"))
    -- a definitions file is still Lua: it must load
    assert(load(text, "=types/agentrun.lua", "t", {}))
  end)

  it("name every function and value of the module, and nothing else", function()
    local functions, values = {}, {}
    for k, kind in pairs(real.module) do
      if kind == "function" then functions[k] = true else values[k] = true end
    end
    same_names("agentrun functions", members("agentrun", "function"), functions)
    same_names("agentrun values", members("agentrun", "value"), values)
    assert.same({}, members("agentrun", "method"))
  end)

  it("name every function of agentrun.records, and nothing else", function()
    local functions = {}
    for k in pairs(real.records) do functions[k] = true end
    same_names("agentrun.records", members("agentrun.records", "function"), functions)
  end)

  it("name every method of the store handle, and nothing else", function()
    same_names("store methods", members("agentrun.Store", "method"), real.store)
    assert.same({}, defs.classes["agentrun.Store"].fields)
  end)

  it("name every method of the run handle, and nothing else", function()
    same_names("run methods", members("agentrun.Run", "method"), real.run)
  end)

  it("name every method and field of the loop context, and nothing else", function()
    same_names("loop context methods", members("agentrun.LoopContext", "method"), real.ctx)
    same_names("loop context fields", defs.classes["agentrun.LoopContext"].fields, real.ctx_fields)
  end)

  it("name run handle fields that a live run has", function()
    local store <close> = assert(agentrun.open(":memory:"))
    -- a run resumed after it waited and got its answer has every field (run.response too)
    local waited = store:begin { agent = "a", goal = "g", budget = { max_steps = 3 } }
    waited:wait "?"
    store:respond(waited.id, "yes")
    local run <close> = store:resume(waited.id)
    for field in pairs(defs.classes["agentrun.Run"].fields) do
      assert(run[field] ~= nil, "run." .. field .. " is defined but a run has none")
    end
  end)
end)

-- ---------------------------------------------------------------------------
-- Tables given to the API: every field the definitions name is one the call
-- knows (a wrong value of it is refused for its value, not as an unknown
-- field), and a closed shape refuses a name it does not define.

-- For each input class, calls that pass `fields` (a table with one odd field
-- set) where that shape goes. Each returns the error it raised (or nil).
local function probe(fn)
  return function(field)
    local ok, e = pcall(fn, { [field] = ODD })
    if ok then return nil end
    return tostring(e)
  end
end

local function with_store(fn)
  return function(t)
    local store <close> = assert(agentrun.open(":memory:"))
    return fn(store, t)
  end
end

local function merged(base, extra)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(extra) do t[k] = v end
  return t
end

local FAILED = { agent = "a", goal = "g", status = "failed" }

local input_probes = {
  ["agentrun.OpenOptions"] = { probe(function(t) return agentrun.open(":memory:", t) end) },
  ["agentrun.RunSpec"] = { probe(with_store(function(s, t) return s:begin(merged({ agent = "a", goal = "g" }, t)) end)) },
  ["agentrun.Budget"] = { probe(with_store(function(s, t) return s:begin { agent = "a", goal = "g", budget = t } end)) },
  ["agentrun.LoopSpec"] = { probe(with_store(function(s, t)
    return agentrun.loop(s, merged({ agent = "a", goal = "g" }, t), function() return "done" end)
  end)) },
  ["agentrun.StepSpec"] = { probe(with_store(function(s, t)
    local run <close> = s:begin { agent = "a", goal = "g" }
    return run:step(merged({ kind = "k" }, t))
  end)) },
  ["agentrun.StepUsage"] = { probe(with_store(function(s, t)
    local run <close> = s:begin { agent = "a", goal = "g" }
    return run:step { kind = "k", usage = t }
  end)) },
  ["agentrun.RecordStep"] = { probe(with_store(function(s, t)
    return s:write(merged(FAILED, { steps = { merged({ kind = "k" }, t) } }))
  end)) },
  ["agentrun.RecordInput"] = { probe(with_store(function(s, t) return s:write(merged(FAILED, t)) end)) },
  ["agentrun.CheckpointInput"] = { probe(with_store(function(s, t)
    return s:write(merged(FAILED, { checkpoint = merged({ state = 1 }, t) }))
  end)) },
  ["agentrun.RecordFields"] = { probe(function(t) return agentrun.records.failed("x", merged({ agent = "a", goal = "g" }, t)) end) },
  ["agentrun.GetOptions"] = { probe(with_store(function(s, t) return s:get("x", t) end)) },
  ["agentrun.StepsOptions"] = { probe(with_store(function(s, t) return s:steps("x", t) end)) },
  ["agentrun.RunQuery"] = {
    probe(with_store(function(s, t) return s:runs(t) end)),
    probe(with_store(function(s, t) return s:count(t) end)),
    probe(with_store(function(s, t) return s:stats(t) end)),
  },
  ["agentrun.ResumeOptions"] = { probe(with_store(function(s, t) return s:resume("x", t) end)) },
  ["agentrun.ForkOptions"] = { probe(with_store(function(s, t) return s:fork("x", t) end)) },
  ["agentrun.RecoverOptions"] = { probe(with_store(function(s, t) return s:recover(t) end)) },
  ["agentrun.EventSpec"] = { probe(with_store(function(s, t) return s:event(merged({ agent = "a", type = "t" }, t)) end)) },
  ["agentrun.EventQuery"] = {
    probe(with_store(function(s, t) return s:events(merged({ agent = "a" }, t)) end)),
    probe(with_store(function(s, t) return s:count_events(merged({ agent = "a" }, t)) end)),
  },
  ["agentrun.EventRetention"] = { probe(with_store(function(s, t) return s:retain_events(t) end)) },
  ["agentrun.ExportQuery"] = {
    probe(with_store(function(s, t) return s:export(t, function() end) end)),
    probe(with_store(function(s, t) return s:otlp(t, function() end) end)),
  },
  ["agentrun.RetentionPolicy"] = {
    probe(with_store(function(s, t) return s:retain(t) end)),
    -- what a policy file may return: agentrun.policy checks it as store:retain does
    function(field)
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(("return { [%q] = function() end }"):format(field))
      f:close()
      local ok, e = pcall(agentrun.policy, path)
      os.remove(path)
      if ok then return nil end
      return tostring(e)
    end,
  },
}

describe("the definitions' input tables", function()
  for class, probes in pairs(input_probes) do
    it(("name only fields the calls taking %s know"):format(class), function()
      assert(defs.classes[class], "no class " .. class .. " in the definitions")
      for _, p in ipairs(probes) do
        for field in pairs(names.fields(defs, class)) do
          local e = p(field)
          assert(not (e and e:find("unknown field '" .. field .. "'", 1, true)),
            ("%s.%s is defined, but the call does not know it: %s"):format(class, field, e))
        end
        if not defs.classes[class].open then
          -- the probe reaches the field check: an undefined name is refused
          local e = p("no_such_field")
          assert(e and e:find("unknown field 'no_such_field'", 1, true),
            ("%s: a call that knows no_such_field? got %s"):format(class, tostring(e)))
        end
      end
    end)
  end
end)

-- ---------------------------------------------------------------------------
-- Tables the API returns: the fields of real instances are the fields the
-- definitions name, no more (each instance) and no fewer (all of them).

local function keys_of(list)
  local set = {}
  for _, t in ipairs(list) do
    for k in pairs(t) do set[k] = true end
  end
  return set
end

-- Real instances of each output class, made as a user makes them.
local function output_instances()
  local out = {}
  local store <close> = assert(agentrun.open(":memory:"))
  local spec = { agent = "a", goal = "g", user = "u", edition = "e1", parent = "p", metadata = { k = 1 },
                 budget = { max_steps = 2 } }
  local run <close> = store:begin(spec)
  run:step { kind = "llm", name = "m", content = { x = 1 }, usage = { input_tokens = 2, output_tokens = 1 },
             cost = 0.5, duration_ms = 3 }
  run:step { kind = "tool" }
  local ok, budget_err = pcall(run.check, run)
  assert(not ok and agentrun.is_budget_exhausted(budget_err))
  local exhausted = run:exhaust(budget_err)
  local completed = store:begin(spec):complete("answer")
  local failed = store:begin(spec):fail("boom")
  local running <close> = store:begin(spec)
  local with_steps = store:get(exhausted.id, { steps = true })
  local made = agentrun.records.completed { agent = "a", goal = "g", output = 1, steps = { { kind = "k" } },
                                            checkpoint = { state = { plan = 1 } } }
  -- a fork that waited and got its answer: forked_from, request, response
  local fork = store:fork(completed.id)
  fork:wait { approve = true }
  local answered = store:respond(fork.id, "yes")
  out["agentrun.Record"] = { exhausted, completed, failed, store:get(running.id), with_steps, made, answered }
  out["agentrun.Limit"] = { exhausted.limit }
  local raw = {}
  for st in store:steps(with_steps.id, { raw = true }) do raw[#raw + 1] = st end
  out["agentrun.Step"] = { with_steps.steps[1], with_steps.steps[2], raw[1] }
  out["agentrun.StepUsage"] = { with_steps.steps[1].usage }
  out["agentrun.Usage"] = { exhausted.usage, running.usage }
  out["agentrun.BudgetExhausted"] = { budget_err }
  out["agentrun.Info"] = { store:info() }
  do
    -- a file with a damaged step gives a problem with every field
    local path = os.tmpname()
    local damaged <close> = assert(agentrun.open(path))
    damaged:begin(spec):step { kind = "llm", content = 1 }
    require("faultvfs").exec(path, "UPDATE steps SET content = '['")
    local rep = damaged:check()
    out["agentrun.CheckReport"] = { store:check(), rep }
    out["agentrun.CheckProblem"] = rep.problems
    damaged:close()
    for _, f in ipairs { path, path .. "-wal", path .. "-shm" } do os.remove(f) end
  end
  local stats = store:stats()
  out["agentrun.Stats"] = { stats }
  out["agentrun.StatusCounts"] = { stats.by_status }
  store:event { agent = "a", type = "t", content = "c", metadata = { m = 1 }, run = completed.id }
  out["agentrun.Event"] = { (store:events { agent = "a" })[1] }
  out["agentrun.EventSummary"] = { store:event_summary("a") }
  local seen = {}
  out["agentrun.RetentionReport"] = { store:retain { dry_run = true, rule = function(r) seen[#seen + 1] = r end } }
  out["agentrun.RuleRun"] = seen
  local lines = {}
  out["agentrun.ExportReport"] = { store:export(nil, function(l) lines[#lines + 1] = l end) }
  local other <close> = assert(agentrun.open(":memory:"))
  local i = 0
  out["agentrun.ImportReport"] = { other:import(function() i = i + 1; return lines[i] end), store:copy(other) }
  local _, json_err = pcall(agentrun.json_encode, 0 / 0)
  -- the loop hands a store failure that may pass back with its transcript
  local _, loop_err = pcall(agentrun.loop, store, { agent = "a", goal = "g", retries = 0 }, function(ctx)
    ctx:record { kind = "k" }
    error(setmetatable({ code = "EBUSY", message = "busy" }, agentrun.Error))
  end)
  out["agentrun.Error"] = { json_err, loop_err }
  local tools <close> = store:begin(spec)
  tools:intend { key = "a", name = "t", args = 1 }
  tools:settle("a", "r")
  tools:intend { key = "b", name = "t", args = 2 }
  out["agentrun.Intent"] = store:intents(tools.id)
  return out
end

describe("the definitions' output tables", function()
  local instances = output_instances()

  for class, list in pairs(instances) do
    it(("name exactly the fields %s instances have"):format(class), function()
      assert(defs.classes[class], "no class " .. class .. " in the definitions")
      assert(#list > 0, "no instance of " .. class)
      local actual = keys_of(list)
      if defs.classes[class].parent then
        -- a class extending another (a rule's run is a record plus its age):
        -- what it adds is there, and nothing beyond both is
        same_names(class .. " fields", defs.classes[class].fields, names.restrict(actual, defs.classes[class].fields))
        local beyond = names.missing(actual, names.fields(defs, class))
        assert(#beyond == 0, class .. " instances have fields the definitions do not name: " .. table.concat(beyond, ", "))
      else
        same_names(class .. " fields", names.fields(defs, class), actual)
      end
    end)
  end

  it("cover every class: each is checked against the module above", function()
    local checked = {
      ["agentrun"] = true, ["agentrun.records"] = true, ["agentrun.Store"] = true,
      ["agentrun.Run"] = true, ["agentrun.LoopContext"] = true,
    }
    for class in pairs(input_probes) do checked[class] = true end
    for class in pairs(instances) do checked[class] = true end
    same_names("checked classes", checked, defs.classes)
  end)
end)
