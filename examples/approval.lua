-- approval.lua -- a person in the loop: an agent plans a refund, waits for
-- approval, and is resumed in another process once a person has answered.
--
--   lua5.4 examples/approval.lua [store.db]              all three steps below
--   lua5.4 examples/approval.lua store.db plan           1. plan, then wait
--   lua5.4 examples/approval.lua store.db approve ID     2. a person answers
--   lua5.4 examples/approval.lua store.db resume ID      3. resume and refund
--
-- Step 1 records the agent's plan and sets the run waiting with its request;
-- the process then exits: nothing is held in memory while the person thinks
-- it over (hours, days). Step 2 is what a person's tool does: here a second
-- script, or from a shell `agentrun respond store.db ID '{"approved":true}'`.
-- Step 3 resumes the run in a new process: the loop gets the answer in
-- ctx.response and calls the refund tool through ctx:tool, so the customer is
-- refunded exactly once, even if this step is run again.

local agentrun = require "agentrun"

local store_path = arg and arg[1] or "approval.db"
local phase, run_id = arg and arg[2], arg and arg[3]
local refunds_path = store_path .. ".refunds"

-- The outside world: the payment system's refunds, one line each.
local function refund(args)
  local f = assert(io.open(refunds_path, "a"))
  f:write(("refunded %.2f to %s for %s\n"):format(args.amount, args.customer, args.order))
  f:close()
  return { refunded = args.amount }
end

local order = { order = "A-1042", customer = "ana@example.com", amount = 59.90 }

-- The agent's one step function, for the first process and the resumed one.
local function agent(ctx)
  if ctx.response == nil then
    ctx:record { kind = "llm", name = "scripted", usage = { input_tokens = 120, output_tokens = 30 },
                 content = ("The parcel never arrived: refund %.2f for order %s."):format(order.amount, order.order) }
    ctx:wait { action = "refund", order = order.order, amount = order.amount,
               question = "Refund this order?" }
  end
  if not ctx.response.approved then
    return "refund declined by " .. tostring(ctx.response.by)
  end
  local done = ctx:tool("refund-" .. order.order, "refund", order, refund)
  return ("refunded %.2f, approved by %s"):format(done.refunded, ctx.response.by)
end

local function open()
  return assert(agentrun.open(store_path))
end

local phases = {}

function phases.plan()
  local store = open()
  local rec = agentrun.loop(store, { agent = "support", goal = "handle complaint about " .. order.order }, agent)
  print(("planned: run %s is %s, asking %q"):format(rec.id, rec.status, rec.request.question))
  store:close()
  return rec.id
end

function phases.approve(id)
  local store = open()
  local rec = store:respond(id, { approved = true, by = "ops@example.com" })
  print(("approved: run %s has its answer"):format(rec.id))
  store:close()
end

function phases.resume(id)
  local store = open()
  local rec = agentrun.loop(store, { resume = id }, agent)
  print(("resumed: run %s is %s: %s"):format(rec.id, rec.status, tostring(rec.output)))
  store:close()
end

if phase then
  local fn = phases[phase]
  if not fn or (phase ~= "plan" and not run_id) then
    io.stderr:write("usage: lua5.4 examples/approval.lua STORE [plan | approve ID | resume ID]\n")
    os.exit(2)
  end
  fn(run_id)
  return
end

-- All three, each in a process of its own, as they would run in real life.
local function run_phase(...)
  local args = { ... }
  for i, a in ipairs(args) do args[i] = ("'%s'"):format(a:gsub("'", "'\\''")) end
  local cmd = ("%s %s %s %s"):format(arg[-1] or "lua5.4", arg[0], ("'%s'"):format(store_path:gsub("'", "'\\''")),
                                     table.concat(args, " "))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  assert(p:close(), "a step failed: " .. cmd)
  io.write(out)
  return out
end

local planned = run_phase("plan")
local id = planned:match("run (%S+) is waiting")
run_phase("approve", id)
run_phase("resume", id)
-- resuming again changes nothing: the run is completed, the refund made once
local lines = 0
for _ in io.lines(refunds_path) do lines = lines + 1 end
print(("refunds made: %d"):format(lines))
