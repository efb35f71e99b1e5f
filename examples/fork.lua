-- fork.lua -- time travel: re-run a failed run from the step before it went wrong.
--
--   lua5.4 examples/fork.lua [store.db]
--
-- A research agent looks up three facts with a scripted model and a lookup
-- tool, then writes an answer. On the first try its prompt makes the model ask
-- the tool about something that is not there, and the run fails at that step.
-- The script finds the step before the failure, forks the run there with a
-- different prompt and a smaller budget, and prints the two transcripts side
-- by side: the shared steps are copies, the rest differs.

local agentrun = require "agentrun"

local store_path = arg and arg[1] or "fork.db"

-- The tool: facts it knows. Asking for anything else is an error.
local facts = {
  ["boiling point of water"] = "100 C at sea level",
  ["speed of light"] = "299,792 km/s",
  ["height of everest"] = "8,849 m",
}

local function lookup(topic)
  local fact = facts[topic]
  if not fact then error(("lookup: no fact about %q"):format(topic), 0) end
  return fact
end

-- The scripted model: given the prompt and the transcript, it asks for the
-- next topic, or answers once it has three facts. The "sloppy" prompt makes
-- it misspell its third topic.
local topics = { "boiling point of water", "speed of light", "height of everest" }

local function model(prompt, steps)
  local found = 0
  for _, s in ipairs(steps) do
    if s.kind == "tool" then found = found + 1 end
  end
  if found == #topics then
    return { text = ("%d facts found"):format(found), usage = { input_tokens = 40, output_tokens = 8 } }
  end
  local topic = topics[found + 1]
  if prompt == "sloppy" and found == 2 then topic = "hieght of everest" end
  return { tool = topic, usage = { input_tokens = 30 + 10 * found, output_tokens = 5 } }
end

-- One loop body for both tries: a model step, then the tool it asked for.
local function agent(prompt)
  return function(ctx)
    local reply = model(prompt, ctx.steps)
    ctx:record { kind = "llm", name = "scripted", content = reply.text or { tool = reply.tool },
                 usage = reply.usage, cost = 0.0001 }
    if reply.text then return reply.text end
    ctx:record { kind = "tool", name = "lookup", content = { topic = reply.tool, fact = lookup(reply.tool) } }
  end
end

local store = assert(agentrun.open(store_path))

-- 1. The first try fails at the misspelled lookup.
local first = agentrun.loop(store, { agent = "researcher", goal = "three facts",
  budget = { max_steps = 20 }, metadata = { prompt = "sloppy" } }, agent("sloppy"))
print(("first try:  %s  %s  (%d steps)"):format(first.id, first.status, first.iterations))
print("  error: " .. tostring(first.error))

-- 2. The step before it went wrong: the last step of the run that the
-- failure did not reach (here the model's request for the bad lookup is the
-- last step recorded, so the fork starts before it).
local at = first.iterations - 1

-- 3. Fork there with a different prompt (kept in the metadata) and budget.
local second = agentrun.loop(store, {
  fork = { run = first.id, at = at },
  budget = { max_steps = 10, max_cost = 0.01 },
  metadata = { prompt = "careful" },
}, agent("careful"))
print(("second try: %s  %s  (%d steps), forked from %s after step %d"):format(second.id, second.status,
  second.iterations, second.forked_from.run, second.forked_from.seq))
print("  output: " .. tostring(second.output))

-- 4. The two transcripts side by side.
local function describe(s)
  if not s then return "" end
  local c = s.content
  if type(c) == "table" then c = c.fact or c.tool end
  return ("%s %s"):format(s.kind, tostring(c))
end

print(("\n%-4s %-40s %-40s"):format("seq", "first try", "second try"))
for i = 1, math.max(#first.steps, #second.steps) do
  local a, b = first.steps[i], second.steps[i]
  local same = a and b and agentrun.json_encode(a) == agentrun.json_encode(b)
  print(("%-4d %-40s %-40s%s"):format(i, describe(a), describe(b), same and "  (copied)" or ""))
end

-- the original is untouched by the fork
assert(store:get(first.id).status == "failed")
assert(#store:runs { forked_from = first.id } == 1)
store:close()
