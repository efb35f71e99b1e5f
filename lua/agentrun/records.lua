-- records.lua -- the record factory: one uniform record for completed, budget-exhausted and failed runs.
-- The C factory does the building, so a record made here is checked exactly
-- like a run recorded step by step.
return function(core, misuse)
  local allowed = {
    id = true, agent = true, goal = true, user = true, edition = true, parent = true, metadata = true,
    budget = true, steps = true, output = true, created_at = true, finished_at = true,
    usage = true, iterations = true, checkpoint = true,
  }

  -- A copy of the caller's fields (argument `arg` of `name`), refusing names
  -- the factory does not know. Errors point at the caller of `name`.
  local function copy_fields(fields, name, arg)
    if type(fields) ~= "table" then
      misuse.argerror(name, arg, ("record fields must be a table (got %s)"):format(type(fields)), 3)
    end
    local t = {}
    for k, v in pairs(fields) do
      if not allowed[k] then
        misuse.argerror(name, arg, ("unknown field '%s' in record fields"):format(tostring(k)), 3)
      end
      t[k] = v
    end
    return t
  end

  -- Builds the record of t; a misuse error of the C factory is one about the
  -- fields, argument `arg` of `name`.
  local function make(t, name, arg)
    local ok, record = pcall(core.make_record, t)
    if not ok then misuse.reraise(record, name, arg, 3) end
    return record
  end

  local records = {}

  --- A completed record; fields.output is the final answer.
  function records.completed(fields)
    local t = copy_fields(fields, "completed", 1)
    t.status = "completed"
    return make(t, "completed", 1)
  end

  --- A budget-exhausted record from the BudgetExhausted error; the partial
  --- transcript and usage of fields are kept.
  function records.budget_exhausted(err, fields)
    if type(err) ~= "table" or type(err.limit) ~= "string" then
      misuse.argerror("budget_exhausted", 1,
        "a BudgetExhausted error (with limit, limit_value, value) is expected", 2)
    end
    local t = copy_fields(fields, "budget_exhausted", 2)
    t.status = "budget_exhausted"
    t.output = nil
    t.limit = { name = err.limit, value = err.limit_value, reached = err.value }
    return make(t, "budget_exhausted", 2)
  end

  --- A failed record; err (any value) gives its text (records.error_text).
  function records.failed(err, fields)
    local t = copy_fields(fields, "failed", 2)
    t.status = "failed"
    t.output = nil
    t.error = core.error_text(err)
    return make(t, "failed", 2)
  end

  --- The text a failed run keeps for the error value err: a string as it is,
  --- nil as "failed", a value with __tostring by it (agentrun.Error and
  --- BudgetExhausted included), a table with a string `message` by that,
  --- anything else named by its type.
  records.error_text = core.error_text
  return records
end
