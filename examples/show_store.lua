-- show_store.lua -- what an agentrun store holds: its size, its runs, their totals, the latest transcript.
--
--   lua5.4 examples/show_store.lua store.db       (make demo runs it after agent_loop.lua)

local agentrun = require "agentrun"

local path = arg and arg[1]
if not path then
  io.stderr:write("usage: lua5.4 show_store.lua STORE\n")
  os.exit(2)
end

local store <close>, err = agentrun.open(path, { readonly = true })
if not store then
  io.stderr:write(("show_store: cannot open %s: %s\n"):format(path, err))
  os.exit(1)
end

-- One line of text at most `width` characters long.
local function brief(v, width)
  local s = type(v) == "string" and v or agentrun.json_encode(v)
  s = s:gsub("%s+", " ")
  if #s > width then s = s:sub(1, width - 3) .. "..." end
  return s
end

local function kib(bytes) return ("%.1f KiB"):format(bytes / 1024) end

local info = store:info()
print(("Store %s (schema %d): %d runs, %d steps, %d events; file %s, WAL %s, free %s")
  :format(info.path, info.schema_version, info.runs, info.steps, info.events,
          kib(info.file_bytes), kib(info.wal_bytes), kib(info.free_bytes)))

local runs = store:runs { limit = 20 }
print(("\nRuns, newest first (%d shown):"):format(#runs))
local fmt = "  %-26s  %-18s  %-16s  %5s  %13s  %9s  %8s"
print(fmt:format("id", "agent", "status", "steps", "tokens in/out", "cost", "latency"))
for _, r in ipairs(runs) do
  print(fmt:format(r.id, r.agent, r.status, r.iterations,
                   ("%d/%d"):format(r.usage.input_tokens, r.usage.output_tokens),
                   ("%.6f"):format(r.usage.cost),
                   r.latency_ms and ("%d ms"):format(r.latency_ms) or "-"))
end

local stats = store:stats()
local by_status = {}
for status, n in pairs(stats.by_status) do
  if n > 0 then by_status[#by_status + 1] = ("%s %d"):format(status, n) end
end
table.sort(by_status)
print(("\nTotals: %d runs (%s), %d steps, %d tokens (%d in, %d out), cost %.6f USD, mean latency %.1f ms")
  :format(stats.runs, table.concat(by_status, ", "), stats.iterations, stats.total_tokens,
          stats.input_tokens, stats.output_tokens, stats.cost, stats.avg_latency_ms))

local latest = runs[1]
if latest then
  print(("\nTranscript of the latest run %s (%s): %s"):format(latest.id, latest.status, latest.goal))
  for step in store:steps(latest.id) do
    local what = step.content
    if type(what) == "table" then
      if what.tool_calls then
        local call = what.tool_calls[1]
        what = ("%s(%s)"):format(call.name, brief(call.arguments, 40))
      elseif what.error then
        what = "error: " .. what.error
      elseif what.result ~= nil then
        what = what.result
      elseif what.content then
        what = what.content
      end
    end
    local tokens = ""
    if step.usage.total_tokens > 0 then
      tokens = ("%d tok, %.6f USD"):format(step.usage.total_tokens, step.cost)
    end
    local line = ("  %2d  %-5s %-16s %-60s %s"):format(step.seq, step.kind, step.name or "",
                                                       brief(what, 60), tokens)
    print((line:gsub("%s+$", "")))
  end
  if latest.error then print("  ended: " .. latest.error) end
end
