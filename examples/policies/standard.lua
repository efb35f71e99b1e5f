-- standard.lua -- a retention policy: failures kept 90 days, completed runs 7 days, 1,000 runs per agent, pinned runs always.
--
-- Loaded with agentrun.policy(path): it runs in a sandbox (no io, no os beyond
-- time/date/clock, no require/load/debug) and returns the policy table that
-- store:retain takes. The rule runs once per finished run, under an
-- instruction budget, before anything is deleted.

local DAY = 24 * 3600 -- run.age and older_than are in seconds

-- True when the run's metadata lists the tag "pinned" (metadata.tags = { "pinned", ... }).
local function pinned(run)
  local tags = run.metadata.tags
  if type(tags) ~= "table" then return false end
  for _, tag in ipairs(tags) do
    if tag == "pinned" then return true end
  end
  return false
end

return {
  -- the longest any run is kept: failed, budget-exhausted and interrupted
  -- runs stay this long, for debugging
  older_than = 90 * DAY,
  -- and at most this many per agent (its newest by created_at)
  keep_last = 1000,
  rule = function(run)
    if pinned(run) then return "keep" end                 -- overrides both limits above
    if run.status == "completed" and run.age > 7 * DAY then return "delete" end
    return nil                                            -- the limits above decide
  end,
}
