-- summary.lua -- busted output handler: a line per failure, then "N passed, N failed"
-- (after the backend's name under tests/lua/run.sh).
return function(options)
  local busted = require 'busted'
  local handler = require 'busted.outputHandlers.base'()

  local function report(kind, t)
    local trace = t.element and t.element.trace or {}
    local message = t.message
    if type(message) ~= 'string' then message = require('pl.pretty').write(message) end
    io.write(('%s: %s\n  %s:%s\n  %s\n'):format(kind, t.name or '?', trace.short_src or '?',
      trace.currentline or '?', (message or 'nil'):gsub('\n', '\n  ')))
    if options.verbose and t.trace and t.trace.traceback then io.write(t.trace.traceback, '\n') end
  end

  -- The test running now, in a file run.sh reads when busted has to be
  -- stopped (a hang then names its test), and each file's time: the
  -- slowest are listed at the end, so that a suite growing slow says where.
  local current = os.getenv('AGENTRUN_TEST_CURRENT')
  local files, started = {}, nil
  busted.subscribe({ 'test', 'start' }, function(element)
    if current then
      local f = io.open(current, 'w')
      if f then f:write(handler.getFullName(element), '\n'); f:close() end
    end
    return nil, true
  end)
  busted.subscribe({ 'file', 'start' }, function() started = os.time(); return nil, true end)
  busted.subscribe({ 'file', 'end' }, function(file)
    files[#files + 1] = { name = file.name, seconds = os.time() - (started or os.time()) }
    return nil, true
  end)

  handler.suiteEnd = function()
    table.sort(files, function(a, b) return a.seconds > b.seconds end)
    local slow = {}
    for i = 1, math.min(3, #files) do slow[i] = ('%s %ds'):format(files[i].name:match('[^/]*$'), files[i].seconds) end
    if #slow > 0 then io.write('slowest files: ', table.concat(slow, ', '), '\n') end
    for _, t in ipairs(handler.failures) do report('FAIL', t) end
    for _, t in ipairs(handler.errors) do report('ERROR', t) end
    local failed = #handler.failures + #handler.errors
    -- Under tests/lua/run.sh: the count of this backend's run, and the
    -- figures for the total it prints.
    local backend = os.getenv('AGENTRUN_TEST_BACKEND')
    io.write(('%s%d passed, %d failed\n'):format(backend and backend .. ': ' or '', #handler.successes, failed))
    io.flush()
    local counts = os.getenv('AGENTRUN_TEST_COUNTS')
    if counts then
      local f = assert(io.open(counts, 'a'))
      f:write(('%d %d\n'):format(#handler.successes, failed))
      f:close()
    end
    return nil, true
  end

  busted.subscribe({ 'suite', 'end' }, handler.suiteEnd)
  return handler
end
