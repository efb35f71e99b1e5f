-- retention_policy.lua -- a sandboxed retention policy file applied to a store: a dry run, then the real thing with vacuum.
--
--   lua5.4 examples/retention_policy.lua [store.db]
--
-- Fills a store with four months of runs of three agents (one of them busy:
-- 1,100 runs in the last four days), some tagged "pinned" in their metadata,
-- then applies examples/policies/standard.lua, loaded with agentrun.policy:
-- failed and budget-exhausted runs are kept 90 days, completed ones 7 days,
-- at most 1,000 runs per agent, pinned runs always. A dry run reports what
-- would go; the real run deletes it and vacuums the file.
--
-- Without an argument the store is a temporary file, removed at the end. A
-- path given must not exist yet: the example only prunes a store it filled.

local agentrun = require "agentrun"

local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local policy_path = script_dir .. "/policies/standard.lua"

local path, temporary = arg and arg[1], false
if path then
  local f = io.open(path, "rb")
  if f then
    f:close()
    io.stderr:write(("retention_policy: %s exists; give a new path (the example fills it first)\n"):format(path))
    os.exit(2)
  end
else
  path, temporary = os.tmpname(), true -- an empty file, which SQLite takes as a new database
end

local store, err = agentrun.open(path, { durability = "normal" })
if not store then
  io.stderr:write(("retention_policy: cannot open %s: %s\n"):format(path, err))
  os.exit(1)
end

---------------------------------------------------------------------------
-- Four months of history

local MINUTE, DAY = 60 * 1000, 24 * 3600 * 1000 -- record times are in milliseconds
local AGENTS = { "support-bot", "research-agent", "nightly-report" }
local now = os.time() * 1000

-- Three steps of a plausible transcript, so that the runs take room in the file.
local function transcript(agent, n)
  return {
    { kind = "llm", name = "model-large", cost = 0.0042, usage = { input_tokens = 900, output_tokens = 120 },
      content = { text = ("%s, task %d: reading the ticket, planning a search. "):format(agent, n):rep(4) } },
    { kind = "tool", name = "search", duration_ms = 40,
      content = { query = ("order %d"):format(n), hits = agentrun.array { "doc-12", "doc-40", "doc-77" } } },
    { kind = "llm", name = "model-large", cost = 0.0061, usage = { input_tokens = 1300, output_tokens = 200 },
      content = { text = ("The answer to task %d, with sources doc-12 and doc-40."):format(n) } },
  }
end

local written = 0

-- Writes one finished run of `agent` that ended `age` ms ago.
local function write(status, agent, age, pinned)
  written = written + 1
  local created = now - age
  local fields = {
    agent = agent, goal = ("task %d"):format(written), steps = transcript(agent, written),
    created_at = created, finished_at = created + 45 * 1000,
    metadata = pinned and { tags = { "pinned", "escalation" } } or { tags = { "routine" } },
  }
  local record
  if status == "completed" then
    fields.output = ("answer %d"):format(written)
    record = agentrun.records.completed(fields)
  elseif status == "failed" then
    record = agentrun.records.failed("tool 'search' timed out", fields)
  else
    record = agentrun.records.budget_exhausted({ limit = "max_cost", limit_value = 0.01, value = 0.0103 }, fields)
  end
  store:write(record)
end

-- Each agent, every day for 120 days: a completed run (pinned on four days),
-- a failed one every third day, a budget-exhausted one every fifth day.
for _, agent in ipairs(AGENTS) do
  for d = 0, 119 do
    write("completed", agent, d * DAY + DAY // 2, d % 30 == 15)
    if d % 3 == 0 then write("failed", agent, d * DAY + DAY // 4) end
    if d % 5 == 0 then write("budget_exhausted", agent, d * DAY + 3 * DAY // 4) end
  end
end
-- The busy agent: a run every five minutes for the last 91 hours, every 100th pinned.
for i = 1, 1100 do write("completed", "support-bot", i * 5 * MINUTE, i % 100 == 0) end

---------------------------------------------------------------------------
-- Reports

local STATUSES = { "completed", "failed", "budget_exhausted", "interrupted", "running" }

local function mib(bytes) return ("%.2f MiB"):format(bytes / (1024 * 1024)) end

-- "completed 1460, failed 120, ..." and "support-bot 1284, ..." for the store as it is.
local function counts()
  local by_status, by_agent = {}, {}
  local stats = store:stats {}
  for i, s in ipairs(STATUSES) do by_status[i] = ("%s %d"):format(s, stats.by_status[s]) end
  for i, a in ipairs(AGENTS) do by_agent[i] = ("%s %d"):format(a, store:count { agent = a }) end
  return table.concat(by_status, ", "), table.concat(by_agent, ", ")
end

local function show(title, r)
  print(("%-10s considered %d, %s %d runs (%d by the rule) and %d steps; %d kept by the rule")
    :format(title, r.considered, r.dry_run and "would delete" or "deleted", r.deleted,
            r.deleted_by_rule, r.steps_deleted, r.kept_by_rule))
end

local info = store:info()
print(("Filled %s: %d runs of %d agents, %d steps"):format(temporary and "a temporary store" or path,
                                                          info.runs, #AGENTS, info.steps))
local by_status, by_agent = counts()
print("  by status: " .. by_status)
print("  by agent:  " .. by_agent)

-- The policy file runs sandboxed; what comes back is a plain policy table.
local policy = agentrun.policy(policy_path)
print(("\nPolicy %s: older_than %d days, keep_last %d, %s"):format(policy_path, policy.older_than // 86400,
                                                                 policy.keep_last, policy.rule and "a rule" or "no rule"))

policy.dry_run = true
local preview = store:retain(policy)
show("Dry run:", preview)

policy.dry_run, policy.vacuum = false, true
local report = store:retain(policy)
show("Retention:", report)
print(("File: %s before, %s after the vacuum"):format(mib(report.bytes_before), mib(report.bytes_after)))
if report.deleted ~= preview.deleted or report.steps_deleted ~= preview.steps_deleted then
  error("the dry run and the real run disagree", 0)
end

by_status, by_agent = counts()
print("\nAfter:")
print("  by status: " .. by_status)
print("  by agent:  " .. by_agent .. "  (at most 1,000 per agent, plus pinned runs)")

store:close()
if temporary then
  for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(path .. suffix) end
end
