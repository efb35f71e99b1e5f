-- tools.lua -- tool calls that must not run twice: ctx:tool across a crash and a resume.
--
--   lua5.4 examples/tools.lua [store.db]
--
-- An agent books a trip in three tool calls: reserve a seat, charge the card,
-- send a receipt. Its first process dies in the middle of the charge (after
-- the payment went through, before its result was recorded), as a kill -9
-- would leave it. A second process recovers the run and resumes it: the seat
-- is not reserved again (its result is on record), the charge is reported
-- pending and handed to on_pending, which asks the payment ledger what
-- happened instead of charging again, and the receipt is sent. The card is
-- charged once.

local agentrun = require "agentrun"

local store_path = arg and arg[1] or "tools.db"
local crash_here = arg and arg[2] == "--die-during-the-charge"
local ledger_path = store_path .. ".ledger"

---------------------------------------------------------------------------
-- The outside world: a payment ledger in a file (one line per charge).

local function ledger_lines()
  local lines = {}
  local f = io.open(ledger_path, "r")
  if f then
    for line in f:lines() do lines[#lines + 1] = line end
    f:close()
  end
  return lines
end

local tools = {}

function tools.reserve(args)
  return { seat = "14C", flight = args.flight }
end

function tools.charge(args)
  local f = assert(io.open(ledger_path, "a"))
  f:write(("%s charged %.2f for %s\n"):format(args.card, args.amount, args.key))
  f:close()
  if crash_here then
    -- the process dies before ctx:tool can record the result
    os.exit(137, false)
  end
  return { charged = args.amount }
end

function tools.receipt(args)
  return { sent_to = args.email }
end

---------------------------------------------------------------------------
-- The agent: the same step function in both processes.

local function book(ctx)
  local seat = ctx:tool("reserve", "reserve_seat", { flight = "LX 318" }, tools.reserve)
  local paid = ctx:tool("charge", "charge_card", { card = "visa-4242", amount = 420, key = "charge" }, tools.charge)
  ctx:tool("receipt", "send_receipt", { email = "ana@example.com" }, tools.receipt)
  return ("seat %s on %s, paid %.2f"):format(seat.seat, seat.flight, paid.charged)
end

-- Asked for a call that was cut off: did the charge go through?
local function on_pending(_, intent)
  for _, line in ipairs(ledger_lines()) do
    if line:find(" for " .. intent.key, 1, true) then
      print(("  on_pending: %s was cut off; the ledger shows it went through"):format(intent.key))
      return { charged = intent.args.amount }
    end
  end
  print(("  on_pending: %s was cut off before it took effect; charging now"):format(intent.key))
  return tools.charge(intent.args)
end

if crash_here then
  local store = assert(agentrun.open(store_path))
  agentrun.loop(store, { agent = "travel", goal = "book LX 318 for Ana" }, book)
  error("not reached: the process dies in the charge")
end

---------------------------------------------------------------------------
-- The demonstration.

for _, path in ipairs { store_path, store_path .. "-wal", store_path .. "-shm", ledger_path } do os.remove(path) end
local lua = arg[-1] or "lua5.4"
local script = arg[0]
print("process 1: books the trip and dies during the charge")
os.execute(("%q %q %q --die-during-the-charge"):format(lua, script, store_path))

local store = assert(agentrun.open(store_path))
print(("process 2: recover marks %d run(s) interrupted"):format(store:recover { stale_after = 0 }))
local run = (store:runs { agent = "travel", status = "interrupted" })[1]
for _, intent in ipairs(store:intents(run.id)) do
  print(("  %-8s %-13s %s"):format(intent.key, intent.name, intent.status))
end

local record = agentrun.loop(store, { resume = run.id, on_pending = on_pending }, function(ctx)
  print(("  resumed with %d pending call(s): %s"):format(#ctx.pending, ctx.pending[1] and ctx.pending[1].key or "-"))
  return book(ctx)
end)
print(("run %s: %s"):format(record.status, record.output))
for _, intent in ipairs(store:intents(run.id)) do
  print(("  %-8s %-13s %s"):format(intent.key, intent.name, intent.status))
end
print(("the card was charged %d time(s)"):format(#ledger_lines()))
store:close()
