-- loop.lua -- agentrun.loop: check the budget, call the step function, record, repeat.
return function(M, core, misuse)
  local spec_fields = {
    agent = true, goal = true, user = true, edition = true, parent = true, metadata = true,
    budget = true, resume = true, retries = true, on_pending = true, fork = true,
  }
  local fork_fields = { run = true, at = true }
  local begin_fields = { "agent", "goal", "user", "edition", "parent", "metadata", "budget" }
  -- failures of the store that may pass: retried with backoff
  local transient = { EBUSY = true, EIO = true, EFULL = true }

  local function is_transient(e)
    return M.is_error(e) and transient[e.code] == true
  end

  -- Calls fn(...) until it succeeds, a non-transient error is raised, or
  -- `retries` retries (10, 20, 40... ms apart) have failed.
  local function with_retries(retries, fn, ...)
    local delay = 10
    for attempt = 0, retries do
      local ok, result = pcall(fn, ...)
      if ok then return result end
      if not is_transient(result) or attempt == retries then error(result, 0) end
      core.sleep(delay)
      delay = delay * 2
    end
  end

  -- Raises a store failure with the whole in-memory transcript attached.
  local function raise_with_steps(e, steps)
    if type(e) == "table" then e.steps = steps end
    error(e, 0)
  end

  local ctx_methods = {}
  local ctx_mt = { __index = ctx_methods }

  --- ctx:record(step) -> seq: records a step durably (retrying transient
  --- failures). The step is in ctx.steps even when the store keeps failing.
  function ctx_methods.record(ctx, step)
    if getmetatable(ctx) ~= ctx_mt then misuse.badself("record", "loop context", ctx, 2) end
    local entry = {}
    if type(step) == "table" then
      for k, v in pairs(step) do entry[k] = v end
    end
    local steps = ctx.steps
    steps[#steps + 1] = entry
    local ok, seq = pcall(with_retries, ctx._retries, ctx.run.step, ctx.run, step)
    if not ok then
      if is_transient(seq) then
        ctx._failed = true
        raise_with_steps(seq, steps)
      end
      steps[#steps] = nil -- refused (bad input): not part of the transcript
      misuse.reraise(seq, "record", 1, 2)
    end
    entry.seq = seq
    ctx.iteration = seq + 1
    ctx.usage = ctx.run.usage
    return seq
  end

  -- Raised by ctx:wait to leave the step function: the loop ends there.
  local waited = setmetatable({}, { __tostring = function() return "agentrun: the run is waiting" end })

  --- ctx:wait(request): sets the run waiting for a response with `request`
  --- (a step {kind = "wait"}) and ends the loop, which returns the record of
  --- the waiting run. Does not return.
  function ctx_methods.wait(ctx, request)
    if getmetatable(ctx) ~= ctx_mt then misuse.badself("wait", "loop context", ctx, 2) end
    local ok, record = pcall(with_retries, ctx._retries, ctx.run.wait, ctx.run, request)
    if not ok then misuse.reraise(record, "wait", 1, 2) end
    local steps = ctx.steps
    steps[#steps + 1] = { seq = record.iterations, kind = "wait", content = request }
    ctx._waited = true
    error(waited, 0)
  end

  --- ctx:save(state): saves a resumable state after the latest step.
  function ctx_methods.save(ctx, state)
    if getmetatable(ctx) ~= ctx_mt then misuse.badself("save", "loop context", ctx, 2) end
    local ok, e = pcall(with_retries, ctx._retries, ctx.run.checkpoint, ctx.run, state)
    if not ok then misuse.reraise(e, "save", 1, 2) end
    ctx.checkpoint = state
  end

  -- Appends a step the run acknowledged to the transcript and moves the
  -- context on past it.
  local function took(ctx, step, seq)
    step.seq = seq
    ctx.steps[#ctx.steps + 1] = step
    ctx.iteration = seq + 1
    ctx.usage = ctx.run.usage
  end

  -- A write of ctx:tool (intend or settle), retried like ctx:record: a
  -- failure that persists raises with the transcript, bad input as misuse.
  local function tool_write(ctx, fn, ...)
    local ok, seq = pcall(with_retries, ctx._retries, fn, ctx.run, ...)
    if not ok then
      if is_transient(seq) then
        ctx._failed = true
        raise_with_steps(seq, ctx.steps)
      end
      misuse.reraise(seq, "tool", 1, 3)
    end
    return seq
  end

  -- Records the outcome of `intent` (a ctx._intents entry) and returns `result`.
  local function settle(ctx, intent, result, failed)
    local seq = tool_write(ctx, ctx.run.settle, intent.key, result, failed and { failed = true } or nil)
    local content = { intent = intent.intent_seq, key = intent.key, result = result }
    if failed then content.failed = true end
    took(ctx, { kind = "tool", name = intent.name, content = content }, seq)
    intent.status = failed and "failed" or "settled"
    intent.result, intent.result_seq = result, seq
    local pending = ctx.pending
    for i = #pending, 1, -1 do
      if pending[i].key == intent.key then table.remove(pending, i) end
    end
  end

  -- Calls f(...) and settles `intent` with its first result, or as failed
  -- with its error, which is raised again.
  local function call_and_settle(ctx, intent, f, ...)
    local ok, result = pcall(f, ...)
    if not ok then
      settle(ctx, intent, core.error_text(result), true)
      error(result, 0)
    end
    settle(ctx, intent, result, false)
    return result
  end

  --- ctx:tool(key, name, args, fn) -> result: calls fn(args) at most once
  --- per key in the run (SPEC §3.6, Intents).
  function ctx_methods.tool(ctx, key, name, args, fn)
    if getmetatable(ctx) ~= ctx_mt then misuse.badself("tool", "loop context", ctx, 2) end
    if type(key) ~= "string" then
      misuse.argerror("tool", 1, ("string expected, got %s"):format(type(key)), 2)
    end
    if type(name) ~= "string" then
      misuse.argerror("tool", 2, ("string expected, got %s"):format(type(name)), 2)
    end
    if type(fn) ~= "function" then
      misuse.argerror("tool", 4, ("function expected, got %s"):format(type(fn)), 2)
    end
    local intent = ctx._intents[key]
    if intent and intent.status == "settled" then return intent.result end
    if intent and intent.status == "failed" then error(intent.result, 0) end
    if intent then
      -- intended before, never settled: the call was cut off
      if ctx._on_pending then return call_and_settle(ctx, intent, ctx._on_pending, ctx, intent) end
      return call_and_settle(ctx, intent, fn, intent.args)
    end
    local seq = tool_write(ctx, ctx.run.intend, { key = key, name = name, args = args })
    took(ctx, { kind = "intent", name = name, content = { key = key, args = args } }, seq)
    intent = { key = key, name = name, args = args, status = "pending", intent_seq = seq }
    ctx._intents[key] = intent
    return call_and_settle(ctx, intent, fn, args)
  end

  -- Checks loop's arguments; errors point at the caller of loop.
  local function check_args(store, spec, step_fn)
    if type(store) ~= "userdata" then
      misuse.argerror("loop", 1, ("store expected, got %s"):format(type(store)), 3)
    end
    if type(spec) ~= "table" then
      misuse.argerror("loop", 2, ("table expected, got %s"):format(type(spec)), 3)
    end
    if type(step_fn) ~= "function" then
      misuse.argerror("loop", 3, ("function expected, got %s"):format(type(step_fn)), 3)
    end
    for k in pairs(spec) do
      if not spec_fields[k] then
        misuse.argerror("loop", 2, ("unknown field '%s' in loop spec"):format(tostring(k)), 3)
      end
    end
    if spec.resume ~= nil and type(spec.resume) ~= "string" then
      misuse.argerror("loop", 2, "loop spec.resume must be a run id", 3)
    end
    if spec.on_pending ~= nil and type(spec.on_pending) ~= "function" then
      misuse.argerror("loop", 2, "loop spec.on_pending must be a function", 3)
    end
    local fork = spec.fork
    if fork ~= nil then
      if type(fork) ~= "table" or type(fork.run) ~= "string" then
        misuse.argerror("loop", 2, "loop spec.fork must be a table {run = id, at = seq}", 3)
      end
      for k in pairs(fork) do
        if not fork_fields[k] then
          misuse.argerror("loop", 2, ("unknown field '%s' in loop spec.fork"):format(tostring(k)), 3)
        end
      end
      if spec.resume ~= nil then
        misuse.argerror("loop", 2, "loop spec.fork and spec.resume cannot be given together", 3)
      end
      -- a fork is its run's agent, goal, user, edition and parent
      for _, k in ipairs(begin_fields) do
        if k ~= "budget" and k ~= "metadata" and spec[k] ~= nil then
          misuse.argerror("loop", 2, ("loop spec.%s cannot be given with spec.fork (the fork keeps its run's)"):format(k), 3)
        end
      end
    end
    local retries = spec.retries
    if retries == nil then return 3 end
    if math.type(retries) ~= "integer" or retries < 0 then
      misuse.argerror("loop", 2, "loop spec.retries must be a non-negative integer", 3)
    end
    return retries
  end

  -- Begins or resumes the run of spec: a misuse error of store:begin or
  -- store:resume is one about loop's spec. Errors point at the caller of loop.
  local function open_run(store, spec, retries)
    local ok, run
    if spec.resume ~= nil then
      local opts = spec.budget ~= nil and { budget = spec.budget } or nil
      ok, run = pcall(with_retries, retries, store.resume, store, spec.resume, opts)
    elseif spec.fork ~= nil then
      local opts = { at = spec.fork.at, budget = spec.budget, metadata = spec.metadata }
      ok, run = pcall(with_retries, retries, store.fork, store, spec.fork.run, opts)
    else
      local b = {}
      for _, k in ipairs(begin_fields) do b[k] = spec[k] end
      ok, run = pcall(with_retries, retries, store.begin, store, b)
    end
    if not ok then misuse.reraise(run, "loop", 2, 3) end
    return run
  end

  --- agentrun.loop(store, spec, step_fn) -> record (with steps).
  function M.loop(store, spec, step_fn)
    local retries = check_args(store, spec, step_fn)
    local run = open_run(store, spec, retries)
    local steps, checkpoint = M.array {}, nil
    -- the run's intents by key, and those never settled (cut off by a crash)
    local intents, pending = {}, M.array {}
    if spec.resume ~= nil or spec.fork ~= nil then
      for step in store:steps(run.id) do steps[#steps + 1] = step end
      checkpoint = store:checkpoint(run.id)
      for _, intent in ipairs(store:intents(run.id)) do
        intents[intent.key] = intent
        if intent.status == "pending" then pending[#pending + 1] = intent end
      end
    end
    local ctx = setmetatable({
      run = run, steps = steps, checkpoint = checkpoint, pending = pending, response = run.response,
      iteration = run.iterations + 1, usage = run.usage, _retries = retries,
      _intents = intents, _on_pending = spec.on_pending,
    }, ctx_mt)

    -- Ends the run with `finish` and returns the final record with its transcript.
    -- An output that cannot be stored (EJSON) fails the run with that message
    -- rather than leaving it running.
    local function finish(fn, arg)
      local ok, e = pcall(with_retries, retries, fn, run, arg)
      if not ok and M.is_error(e) and e.code == "EJSON" then
        ok, e = pcall(with_retries, retries, run.fail, run, core.error_text(e))
      end
      if not ok then raise_with_steps(e, steps) end
      local record = with_retries(retries, store.get, store, run.id, { steps = true })
      run:close()
      return record
    end

    -- Every call of step_fn counts toward max_steps, whether or not it
    -- recorded a step: a step function that records nothing still stops.
    -- The calls are counted from the steps the run already has (a resumed
    -- run continues its count); reaching max_steps that way ends the run as
    -- budget_exhausted with value = the calls so counted.
    local calls = run.iterations
    while true do
      local ok, e = pcall(core.loop_check, run, calls)
      if not ok then
        if M.is_budget_exhausted(e) then return finish(run.exhaust, e) end
        raise_with_steps(e, steps)
      end
      ctx.iteration = run.iterations + 1
      ctx.usage = run.usage
      calls = calls + 1
      local done, result = pcall(step_fn, ctx)
      -- the run is waiting (even when step_fn caught ctx:wait's unwinding):
      -- the handle is released, and the loop returns the waiting record
      if ctx._waited then
        local record = with_retries(retries, store.get, store, run.id, { steps = true })
        run:close()
        return record
      end
      if not done then
        if ctx._failed or is_transient(result) then raise_with_steps(result, steps) end
        if M.is_budget_exhausted(result) then return finish(run.exhaust, result) end
        return finish(run.fail, core.error_text(result))
      elseif result ~= nil then
        return finish(run.complete, result)
      end
    end
  end

  return M.loop
end
