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

  handler.suiteEnd = function()
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
