-- records.lua -- the record factory: one uniform record for completed, budget-exhausted and failed runs.
-- The C factory does the building, so a record made here is checked exactly
-- like a run recorded step by step.
return function(core)
  local allowed = {
    agent = true, goal = true, user = true, edition = true, parent = true, metadata = true,
    budget = true, steps = true, output = true, created_at = true, finished_at = true,
    usage = true, iterations = true,
  }

  -- A copy of the caller's fields, refusing names the factory does not know.
  local function copy_fields(fields, level)
    if type(fields) ~= "table" then
      error(("record fields must be a table (got %s)"):format(type(fields)), level + 1)
    end
    local t = {}
    for k, v in pairs(fields) do
      if not allowed[k] then
        error(("unknown field '%s' in record fields"):format(tostring(k)), level + 1)
      end
      t[k] = v
    end
    return t
  end

  -- The text kept for a failure: strings as they are, error objects by their message.
  local function error_text(err)
    if type(err) == "string" then return err end
    if err == nil then return "failed" end
    local mt = getmetatable(err)
    if type(err) == "table" and type(err.message) == "string" and not (mt and mt.__tostring) then
      return err.message
    end
    return tostring(err)
  end

  local records = {}

  --- A completed record; fields.output is the final answer.
  function records.completed(fields)
    local t = copy_fields(fields, 2)
    t.status = "completed"
    return core.make_record(t)
  end

  --- A budget-exhausted record from the BudgetExhausted error; the partial
  --- transcript and usage of fields are kept.
  function records.budget_exhausted(err, fields)
    if type(err) ~= "table" or type(err.limit) ~= "string" then
      error("budget_exhausted expects a BudgetExhausted error (with limit, limit_value, value)", 2)
    end
    local t = copy_fields(fields, 2)
    t.status = "budget_exhausted"
    t.output = nil
    t.limit = { name = err.limit, value = err.limit_value, reached = err.value }
    return core.make_record(t)
  end

  --- A failed record; err (any value) gives its message.
  function records.failed(err, fields)
    local t = copy_fields(fields, 2)
    t.status = "failed"
    t.output = nil
    t.error = error_text(err)
    return core.make_record(t)
  end

  records.error_text = error_text
  return records
end
