-- agent_loop.lua -- an agent recorded with agentrun.loop: a scripted model, a calculator and a notes lookup.
--
--   lua5.4 examples/agent_loop.lua [store.db]      (make demo runs it)
--
-- Three tasks run against one store: the first is answered, the second runs
-- into its cost budget, the third ends when a tool fails. The model is a
-- deterministic stand-in for a real one: it reads the conversation so far and
-- replies with a tool call or an answer, reporting token usage as a real API
-- would. The tools are real: they compute and search the notes in corpus/.

local agentrun = require "agentrun"

local store_path = arg and arg[1] or "agent_loop.db"
local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local corpus_dir = script_dir .. "/corpus"

---------------------------------------------------------------------------
-- Tools

-- The calculator parses arithmetic itself: text written by a model is never
-- given to load(). Grammar (usual precedence, ^ binds right):
--   expr := term {(+|-) term}     term := unary {(*|/|%) unary}
--   unary := (+|-) unary | power  power := atom [^ unary]
--   atom := number | ( expr )
local function calculate(text)
  if type(text) ~= "string" then error("expression must be text", 0) end
  if #text > 200 then error("expression longer than 200 characters", 0) end
  local pos, depth = 1, 0

  local function fail(what)
    error(("%s at position %d of %q"):format(what, pos, text), 0)
  end
  local function skip_space() pos = text:match("^%s*()", pos) end
  local function peek() skip_space(); return text:sub(pos, pos) end
  local function take(c)
    if peek() == c then pos = pos + 1; return true end
    return false
  end

  local expr
  local function atom()
    if take("(") then
      depth = depth + 1
      if depth > 50 then fail("parentheses nested too deep") end
      local v = expr()
      if not take(")") then fail("missing ')'") end
      depth = depth - 1
      return v
    end
    skip_space()
    local num, after = text:match("^(%d+%.?%d*[eE][%+%-]?%d+)()", pos)
    if not num then num, after = text:match("^(%d+%.?%d*)()", pos) end
    if not num then num, after = text:match("^(%.%d+)()", pos) end
    if not num then
      fail(pos > #text and "unexpected end" or ("unexpected '" .. text:sub(pos, pos) .. "'"))
    end
    pos = after
    return tonumber(num)
  end
  local unary
  local function power()
    local base = atom()
    if take("^") then return base ^ unary() end
    return base
  end
  function unary()
    if take("-") then return -unary() end
    if take("+") then return unary() end
    return power()
  end
  local function term()
    local v = unary()
    while true do
      if take("*") then v = v * unary()
      elseif take("/") or take("%") then
        local op = text:sub(pos - 1, pos - 1)
        local rhs = unary()
        if rhs == 0 then error(("division by zero in %q"):format(text), 0) end
        v = op == "/" and v / rhs or math.fmod(v, rhs)
      else return v end
    end
  end
  function expr()
    local v = term()
    while true do
      if take("+") then v = v + term()
      elseif take("-") then v = v - term()
      else return v end
    end
  end

  local value = expr()
  if peek() ~= "" then fail("unexpected '" .. peek() .. "'") end
  if value ~= value or value == math.huge or value == -math.huge then
    error(("%q has no finite value"):format(text), 0)
  end
  return value
end

-- The notes, read once: { {file=, lines={...}}, ... } in MANIFEST order.
local notes
local function load_notes()
  if notes then return notes end
  local manifest = assert(io.open(corpus_dir .. "/MANIFEST"))
  notes = {}
  for name in manifest:lines() do
    if name ~= "" and not name:match("^#") then
      local f = assert(io.open(corpus_dir .. "/" .. name))
      local lines = {}
      for line in f:lines() do
        if line ~= "" then lines[#lines + 1] = line end
      end
      f:close()
      notes[#notes + 1] = { file = name, lines = lines }
    end
  end
  manifest:close()
  return notes
end

local function words(s)
  local set = {}
  for w in s:lower():gmatch("[%w%.]+") do
    w = w:gsub("%.+$", "")
    if #w > 1 then set[w] = true end
  end
  return set
end

-- Returns the (at most 4) note lines sharing the most words with the query,
-- as "file: line" text, best first; ties keep corpus order.
local function lookup(query)
  if type(query) ~= "string" or query == "" then error("query must be non-empty text", 0) end
  local wanted = words(query)
  local hits = {}
  for _, note in ipairs(load_notes()) do
    for _, line in ipairs(note.lines) do
      local score = 0
      for w in pairs(words(line)) do
        if wanted[w] then score = score + 1 end
      end
      if score > 0 then
        hits[#hits + 1] = { score = score, order = #hits, text = note.file .. ": " .. line }
      end
    end
  end
  table.sort(hits, function(a, b)
    if a.score ~= b.score then return a.score > b.score end
    return a.order < b.order
  end)
  if #hits == 0 then return "no note mentions: " .. query end
  local out = {}
  for i = 1, math.min(4, #hits) do out[i] = hits[i].text end
  return table.concat(out, "\n")
end

local tools = {
  calculator = function(args) return calculate(args.expression) end,
  lookup = function(args) return lookup(args.query) end,
}

---------------------------------------------------------------------------
-- The model

-- USD per million tokens. Input tokens include the cached ones, which are
-- billed at the cache_read price instead.
local prices = {
  ["scripted-model-1"] = { input = 3.00, cache_read = 0.30, output = 15.00 },
}

local function cost_of(model, usage)
  local p = assert(prices[model], "no price for model")
  local fresh = usage.input_tokens - usage.cache_read_tokens
  local usd = (fresh * p.input + usage.cache_read_tokens * p.cache_read + usage.output_tokens * p.output) / 1e6
  return math.floor(usd * 1e6 + 0.5) / 1e6
end

local SYSTEM = "You are Tidewell's support analyst. Answer from the notes; use the calculator for arithmetic."
local SYSTEM_TOKENS = 350 -- the tool schemas sent with every call

local function tokens(v)
  return SYSTEM_TOKENS + (#agentrun.json_encode(v) + 3) // 4
end

-- The content of the latest tool result in the conversation, or nil.
local function last_result(messages)
  for i = #messages, 1, -1 do
    if messages[i].role == "tool" then return messages[i].content end
  end
end

-- A scripted model: a task's plan(turn, messages) chooses each reply, so the
-- same conversation always gets the same reply. Usage is measured on the
-- conversation: the prompt of the previous call is a cached prefix.
local function scripted_model(name)
  local model = { name = name }
  function model.complete(messages, plan)
    local turn, prev = 1, nil
    for i, m in ipairs(messages) do
      if m.role == "assistant" then turn, prev = turn + 1, i end
    end
    local reply = plan(turn, messages)
    local msg = { role = "assistant", content = reply.say or reply.answer }
    if reply.call then
      msg.tool_calls = { { id = ("call_%d"):format(turn), name = reply.call, arguments = reply.args } }
    end
    local cached = 0
    if prev then cached = tokens({ table.unpack(messages, 1, prev - 1) }) end
    local usage = {
      input_tokens = tokens(messages),
      output_tokens = (#agentrun.json_encode(msg) + 3) // 4,
      cache_read_tokens = cached,
    }
    local duration = 180 + 9 * usage.output_tokens + usage.input_tokens // 40
    return msg, usage, duration
  end
  return model
end

---------------------------------------------------------------------------
-- The tasks

local tasks = {
  {
    label = "battery life",
    goal = "How many days does a Beacon's battery last at the default report interval?",
    budget = { max_steps = 12, max_cost = 0.05 },
    plan = function(turn, messages)
      if turn == 1 then
        return { say = "I'll look up the battery figures.", call = "lookup",
                 args = { query = "battery mAh report interval reports per day" } }
      elseif turn == 2 then
        local notes_text = last_result(messages)
        local cell = notes_text:match("(%d+) mAh lithium")
        local per_report = notes_text:match("report the Beacon sends costs about ([%d%.]+) mAh")
        local idle = notes_text:match("about ([%d%.]+) mAh per hour")
        local reports = notes_text:match("(%d+) reports per day")
        if not (cell and per_report and idle and reports) then
          return { answer = "The notes do not give enough battery figures to say." }
        end
        return { call = "calculator",
                 args = { expression = ("%s / (%s * %s + 24 * %s)"):format(cell, reports, per_report, idle) } }
      end
      local sum
      for i = #messages, 1, -1 do
        if messages[i].tool_calls then sum = messages[i].tool_calls[1].arguments.expression; break end
      end
      return { answer = ("About %d days (%s = %.1f)."):format(math.floor(last_result(messages)), sum,
                                                             last_result(messages)) }
    end,
  },
  {
    label = "firmware changelog",
    goal = "Write a complete changelog of every Tidewell firmware release.",
    -- This model never decides it has read enough: the budget stops it.
    budget = { max_steps = 40, max_cost = 0.012 },
    plan = function(turn)
      return { say = "Checking the next release.", call = "lookup",
               args = { query = ("firmware %d.%d"):format(1 + (turn - 1) // 4, (turn - 1) % 4) } }
    end,
  },
  {
    label = "Lisbon refunds",
    goal = "What was the average refund per returned unit in the Lisbon pilot?",
    budget = { max_steps = 12, max_cost = 0.05 },
    plan = function(turn, messages)
      if turn == 1 then
        return { call = "lookup", args = { query = "Lisbon pilot refunds returned units" } }
      end
      local refunds, units = last_result(messages):match("refunds were (%d+) EUR across (%d+) returned units")
      if not refunds then return { answer = "The notes do not say." } end
      -- the model divides without checking for zero: the calculator refuses
      return { call = "calculator", args = { expression = refunds .. " / " .. units } }
    end,
  },
}

---------------------------------------------------------------------------
-- The agent

local model = scripted_model("scripted-model-1")

-- The conversation so far, rebuilt from the transcript the loop keeps.
local function conversation(goal, steps)
  local messages = { { role = "system", content = SYSTEM }, { role = "user", content = goal } }
  for _, step in ipairs(steps) do
    if step.kind == "llm" then
      messages[#messages + 1] = step.content
    elseif step.kind == "tool" then
      messages[#messages + 1] = { role = "tool", tool_call_id = step.content.tool_call_id,
                                  name = step.name, content = step.content.result }
    end
  end
  return messages
end

-- One iteration: a model call, then the tools it asked for. Returns the
-- answer when the model gives one; a tool's error is recorded, then raised.
local function agent_step(task, ctx)
  local msg, usage, duration = model.complete(conversation(task.goal, ctx.steps), task.plan)
  ctx:record { kind = "llm", name = model.name, content = msg, usage = usage,
               cost = cost_of(model.name, usage), duration_ms = duration }
  if not msg.tool_calls then return msg.content end
  for _, call in ipairs(msg.tool_calls) do
    local tool = tools[call.name]
    local started = os.clock()
    local ok, result
    if tool then
      ok, result = pcall(tool, call.arguments)
    else
      ok, result = false, "no tool named " .. tostring(call.name)
    end
    local ms = math.floor((os.clock() - started) * 1000 + 0.5)
    if not ok then
      ctx:record { kind = "error", name = call.name, duration_ms = ms,
                   content = { tool_call_id = call.id, arguments = call.arguments, error = tostring(result) } }
      error(("tool %s failed: %s"):format(call.name, tostring(result)), 0)
    end
    ctx:record { kind = "tool", name = call.name, duration_ms = ms,
                 content = { tool_call_id = call.id, arguments = call.arguments, result = result } }
  end
end

---------------------------------------------------------------------------
-- The report

local function why_it_ended(r)
  if r.status == "completed" then
    return "answered: " .. tostring(r.output)
  elseif r.status == "budget_exhausted" then
    return ("budget: %s %g reached (at %g)"):format(r.limit.name, r.limit.value, r.limit.reached)
  end
  return r.error or r.status
end

local function model_ms(r)
  local ms = 0
  for _, s in ipairs(r.steps) do
    if s.kind == "llm" then ms = ms + s.duration_ms end
  end
  return ms
end

-- Splits text into lines of at most `width` characters, at spaces where it can.
local function wrap(text, width)
  local lines, line = {}, ""
  for word in tostring(text):gmatch("%S+") do
    while #word > width do
      if line ~= "" then lines[#lines + 1] = line; line = "" end
      lines[#lines + 1] = word:sub(1, width)
      word = word:sub(width + 1)
    end
    if line == "" then line = word
    elseif #line + 1 + #word <= width then line = line .. " " .. word
    else lines[#lines + 1] = line; line = word end
  end
  if line ~= "" or #lines == 0 then lines[#lines + 1] = line end
  return lines
end

local function print_side_by_side(records)
  local rows = {
    { "task", function(r, i) return ("%d. %s"):format(i, tasks[i].label) end },
    { "status", function(r) return r.status end },
    { "steps", function(r) return tostring(r.iterations) end },
    { "tokens in/out", function(r)
        return ("%d / %d"):format(r.usage.input_tokens, r.usage.output_tokens) end },
    { "cache read", function(r) return tostring(r.usage.cache_read_tokens or 0) end },
    { "cost (USD)", function(r) return ("%.6f"):format(r.usage.cost) end },
    { "model time", function(r) return ("%.1f s (simulated)"):format(model_ms(r) / 1000) end },
    { "latency", function(r) return ("%d ms"):format(r.latency_ms) end },
    { "why it ended", why_it_ended },
  }
  local label_w, col_w = 14, 30
  local rule = ("-"):rep(label_w) .. ("+" .. ("-"):rep(col_w + 2)):rep(#records)
  print(rule)
  for ri, row in ipairs(rows) do
    local cells, height = {}, 1
    for i, r in ipairs(records) do
      cells[i] = wrap(row[2](r, i), col_w)
      height = math.max(height, #cells[i])
    end
    for l = 1, height do
      local parts = { ("%-" .. label_w .. "s"):format(l == 1 and row[1] or "") }
      for i = 1, #records do
        parts[#parts + 1] = (" %-" .. col_w .. "s "):format(cells[i][l] or "")
      end
      print((table.concat(parts, "|"):gsub("%s+$", "")))
    end
    if ri == 1 then print(rule) end
  end
  print(rule)
end

---------------------------------------------------------------------------

local store <close>, err = agentrun.open(store_path)
if not store then
  io.stderr:write(("agent_loop: cannot open %s: %s\n"):format(store_path, err))
  os.exit(1)
end

local records = {}
for i, task in ipairs(tasks) do
  records[i] = agentrun.loop(store, {
    agent = "tidewell-analyst",
    goal = task.goal,
    edition = model.name .. "/prompt-3",
    user = "ops-demo",
    metadata = { task = task.label },
    budget = task.budget,
  }, function(ctx) return agent_step(task, ctx) end)
end

print(("Three runs recorded in %s:\n"):format(store_path))
print_side_by_side(records)
