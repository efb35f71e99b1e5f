-- embed_agent.lua -- the agent script examples/embed_host.c runs: records one run and returns its id.
--
-- Called with the store path as its argument. The "model" replies from a
-- script so the run is always the same: it asks for a unit conversion, gets
-- the tool's result and answers.

local agentrun = require "agentrun"

local path = ...
assert(type(path) == "string", "embed_agent.lua expects the store path as its argument")

local function convert(args)
  return args.celsius * 9 / 5 + 32
end

-- The model's replies, by turn, with the usage a real API would report.
local replies = {
  { message = { role = "assistant", tool_calls = { { id = "call_1", name = "convert", arguments = { celsius = 21 } } } },
    usage = { input_tokens = 120, output_tokens = 18 }, cost = 0.00063, duration_ms = 310 },
  { message = { role = "assistant", content = "21 C is 69.8 F." },
    usage = { input_tokens = 160, output_tokens = 25 }, cost = 0.000855, duration_ms = 290 },
}

local store <close> = assert(agentrun.open(path))
local record = agentrun.loop(store, {
  agent = "embedded-agent",
  goal = "Convert 21 degrees Celsius to Fahrenheit.",
  metadata = { host = "embed_host" },
  budget = { max_steps = 10, max_cost = 0.01 },
}, function(ctx)
  local turn = 1
  for _, s in ipairs(ctx.steps) do
    if s.kind == "llm" then turn = turn + 1 end
  end
  local reply = assert(replies[turn], "the model has no reply for this turn")
  ctx:record { kind = "llm", name = "scripted-model-1", content = reply.message,
               usage = reply.usage, cost = reply.cost, duration_ms = reply.duration_ms }
  local calls = reply.message.tool_calls
  if not calls then return reply.message.content end
  for _, call in ipairs(calls) do
    ctx:record { kind = "tool", name = call.name,
                 content = { tool_call_id = call.id, result = convert(call.arguments) } }
  end
end)

if record.status ~= "completed" then
  error(("the run ended %s: %s"):format(record.status, tostring(record.error)))
end
return record.id
