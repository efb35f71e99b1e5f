-- view.lua -- require "agentrun.view": a selection of runs as one self-contained HTML page.
--
-- The page is written as it is read: the runs listing is paged with cursors
-- and each run's steps are streamed, so memory stays bounded by one page of
-- runs and one step, whatever the selection. Everything the page needs (CSS,
-- script, charts as SVG, the data) is inside the file: it fetches nothing.
local agentrun = require "agentrun"
local page = require "agentrun.view_page"

local M = {}

--- The size limits of a page, each overridable through `opts`.
M.defaults = {
  max_runs = 5000,            -- a larger selection is refused (narrow it with filters)
  max_bytes = 16 * 1024 * 1024, -- past this much data, values are cut to a preview
  max_text = 64 * 1024,       -- the bytes kept of one value (step content, output...)
  max_steps = 2000,           -- the steps kept of one run
}

-- What is kept of a value once the page holds max_bytes: enough to recognise it.
local PREVIEW = 256
-- Runs read per listing page.
local PAGE = 200
-- Bytes gathered before they are handed to the writer.
local CHUNK = 64 * 1024

-- The filters of store:runs a page accepts; paging is the page's own business.
local FILTERS = {
  agent = true, user = true, status = true, edition = true, parent = true,
  forked_from = true, since = true, ["until"] = true, limit = true,
}
local PAGING = { after = true, before = true, order = true }

-- The values of each object that may be long, and are cut when they are.
local LONG = {
  run = { "goal", "output", "error", "metadata", "request", "response" },
  step = { "content" },
  checkpoint = { "state" },
  intent = { "args", "result" },
}

local function argerror(arg, detail)
  error(("bad argument #%d to 'write' (%s)"):format(arg, detail), 3)
end

local function check_args(store, query, out, opts)
  if type(store) ~= "userdata" then argerror(1, "agentrun store expected, got " .. type(store)) end
  -- a run handle is userdata too, without the store's methods
  local ok, runs = pcall(function() return store.runs end)
  if ok and type(runs) ~= "function" then argerror(1, "agentrun store expected, got another userdata") end
  if query ~= nil and type(query) ~= "table" then argerror(2, "table expected, got " .. type(query)) end
  for k in pairs(query or {}) do
    if PAGING[k] then
      argerror(2, ("query.%s is not a filter of a page (the page holds the whole selection)"):format(k))
    elseif not FILTERS[k] then
      argerror(2, ("unknown field '%s' in query"):format(tostring(k)))
    end
  end
  if type(out) ~= "string" and type(out) ~= "function" then
    argerror(3, "a file name or a write function expected, got " .. type(out))
  end
  if type(out) == "string" and out == "" then argerror(3, "the file name is empty") end
  if opts ~= nil and type(opts) ~= "table" then argerror(4, "table expected, got " .. type(opts)) end
  local limits = { title = "agentrun" }
  for k, v in pairs(M.defaults) do limits[k] = v end
  for k, v in pairs(opts or {}) do
    if k == "title" then
      if type(v) ~= "string" then argerror(4, "opts.title must be a string") end
    elseif M.defaults[k] then
      if math.type(v) ~= "integer" or v < 1 then argerror(4, ("opts.%s must be an integer >= 1"):format(k)) end
    else
      argerror(4, ("unknown field '%s' in opts"):format(tostring(k)))
    end
    limits[k] = v
  end
  return limits
end

-- JSON is embedded in a <script> element, which ends at the first "</script"
-- whatever the JSON means: "<", ">" and "&" become \u escapes (only JSON
-- strings can hold them), and so do U+2028/U+2029, which some parsers take
-- for line ends.
local ESCAPES = { ["<"] = "\\u003c", [">"] = "\\u003e", ["&"] = "\\u0026" }
local function script_safe(json)
  return (json:gsub("[<>&]", ESCAPES):gsub("\226\128\168", "\\u2028"):gsub("\226\128\169", "\\u2029"))
end
M.script_safe = script_safe

--- The longest prefix of s of at most n bytes that ends on a character boundary.
local function utf8_head(s, n)
  if #s <= n then return s end
  local i = n
  while i > 0 and (s:byte(i + 1) & 0xC0) == 0x80 do i = i - 1 end
  return s:sub(1, i)
end

-- A writer that gathers small pieces into chunks of about CHUNK bytes.
local function buffered(write)
  local parts, size, total, mark = {}, 0, 0, 0
  local b = {}
  function b.put(s)
    parts[#parts + 1] = s
    size = size + #s
    total = total + #s
    if size >= CHUNK then b.flush() end
  end
  function b.flush()
    if size > 0 then
      local chunk = table.concat(parts)
      parts, size = {}, 0
      write(chunk)
    end
  end
  function b.total() return total end
  -- the bytes written since b.mark() was called
  function b.mark() mark = total end
  function b.since_mark() return total - mark end
  return b
end

-- Cuts the long values of obj (a record, step, checkpoint or intent, as
-- `kind` says) to what the page may hold: a value whose text (a string's
-- bytes, another value's JSON) is longer becomes the head of that text, and
-- obj.trimmed[field] its full size in bytes.
local function fit(obj, kind, limit, stats)
  for _, field in ipairs(LONG[kind]) do
    local v = obj[field]
    if v ~= nil then
      local text = type(v) == "string" and v or agentrun.json_encode(v)
      if #text > limit then
        obj.trimmed = obj.trimmed or {}
        obj.trimmed[field] = #text
        obj[field] = utf8_head(text, limit)
        stats.trimmed = stats.trimmed + 1
      end
    end
  end
end

-- The most bytes a value may keep now: max_text until the page holds
-- max_bytes of data, a preview after.
local function value_limit(out, limits)
  return out.since_mark() < limits.max_bytes and limits.max_text or PREVIEW
end

-- The JSON of obj with its long values cut; the common case (nothing long)
-- costs one encoding.
local function encode(obj, kind, out, limits, stats)
  local limit = value_limit(out, limits)
  local json = agentrun.json_encode(obj)
  if #json > limit then
    fit(obj, kind, limit, stats)
    json = agentrun.json_encode(obj)
  end
  return script_safe(json)
end

-- Calls fn(...) on behalf of write; a misuse error of the store's own
-- (a bad filter) names write's argument instead.
local function ask(arg, fn, ...)
  local ok, res, extra = pcall(fn, ...)
  if ok then return res, extra end
  if type(res) == "string" then
    local detail = res:match("^bad argument #%d+ to '[^']*' %((.*)%)$")
    if detail then argerror(arg, detail) end
  end
  error(res, 0)
end

-- Writes one run: its record, checkpoint and intents, then its steps as
-- they stream from the store.
local function put_run(store, run, out, limits, stats)
  local id = run.id
  if run.iterations > limits.max_steps then
    run.steps_left_out = run.iterations - limits.max_steps
    stats.steps_left_out = stats.steps_left_out + run.steps_left_out
  end
  local state, seq = store:checkpoint(id)
  if seq ~= nil then
    run.checkpoint = { state = state, seq = seq }
    fit(run.checkpoint, "checkpoint", value_limit(out, limits), stats)
  end
  if store.intents then
    local intents = store:intents(id)
    for _, intent in ipairs(intents) do
      fit(intent, "intent", value_limit(out, limits), stats)
    end
    run.intents = agentrun.array(intents)
  end
  local json = encode(run, "run", out, limits, stats)
  -- the record's object stays open for its steps
  out.put(json:sub(1, -2))
  out.put(json == "{}" and '"steps":[' or ',"steps":[')
  local n = 0
  for step in store:steps(id, { limit = limits.max_steps }) do
    if n > 0 then out.put(",") end
    out.put(encode(step, "step", out, limits, stats))
    n = n + 1
  end
  out.put("]}")
  stats.steps = stats.steps + n
end

-- Writes the whole page through write(chunk); returns the summary.
local function generate(store, query, write, limits)
  local filters, cap = {}, math.huge
  for k, v in pairs(query) do
    if k == "limit" then cap = v else filters[k] = v end
  end
  if query.limit ~= nil and (math.type(query.limit) ~= "integer" or query.limit < 0) then
    argerror(2, "query.limit must be an integer >= 0")
  end
  local matching = ask(2, store.count, store, filters)
  local selected = math.min(matching, cap)
  if selected > limits.max_runs then
    error(("agentrun.view: %d runs match, more than a page holds (max_runs = %d): narrow the selection "
      .. "with filters (agent, status, user, edition, since, until, limit) or raise max_runs")
      :format(selected, limits.max_runs), 3)
  end
  cap = math.min(cap, limits.max_runs)

  local out = buffered(write)
  local stats = { runs = 0, steps = 0, trimmed = 0, steps_left_out = 0 }
  local backend = store:info().backend
  out.put(page.head)
  out.mark()
  local meta = {
    title = limits.title, generated_at = math.floor(os.time() * 1000), backend = backend,
    filters = next(query) and query or nil,
    limits = { max_runs = limits.max_runs, max_bytes = limits.max_bytes, max_text = limits.max_text,
      max_steps = limits.max_steps, preview = PREVIEW },
  }
  out.put('{"meta":' .. script_safe(agentrun.json_encode(meta)) .. ',"runs":[')
  local cursor
  while stats.runs < cap do
    local q = { limit = math.min(PAGE, cap - stats.runs), after = cursor }
    for k, v in pairs(filters) do q[k] = v end
    local list, nxt = ask(2, store.runs, store, q)
    for _, run in ipairs(list) do
      if stats.runs > 0 then out.put(",") end
      put_run(store, run, out, limits, stats)
      stats.runs = stats.runs + 1
    end
    if nxt == nil or #list == 0 then break end
    cursor = nxt
  end
  out.put('],"summary":' .. agentrun.json_encode({ runs = stats.runs, matching = matching, steps = stats.steps,
    trimmed = stats.trimmed, steps_left_out = stats.steps_left_out }) .. "}")
  out.put(page.tail)
  out.flush()
  stats.bytes = out.total()
  return stats
end

--- Writes the runs `query` selects (the filters of store:runs) as one HTML
--- page to `out`: a file name (written whole or not at all) or a function
--- called with each chunk. Returns {runs, steps, bytes, trimmed, steps_left_out}.
function M.write(store, query, out, opts)
  local limits = check_args(store, query, out, opts)
  query = query or {}
  if type(out) == "function" then return generate(store, query, out, limits) end

  -- A file is written beside its destination and renamed over it at the end,
  -- so a failure leaves an existing page as it was.
  local tmp = out .. ".part"
  local f, err = io.open(tmp, "wb")
  if not f then error("agentrun.view: cannot write " .. err, 2) end
  local ok, res = pcall(generate, store, query, function(chunk)
    local done, werr = f:write(chunk)
    if not done then error("agentrun.view: cannot write " .. tmp .. ": " .. tostring(werr), 0) end
  end, limits)
  if ok then
    local closed, cerr = f:close()
    if not closed then ok, res = false, "agentrun.view: cannot write " .. tmp .. ": " .. tostring(cerr) end
  else
    f:close()
  end
  if ok then
    local renamed, rerr = os.rename(tmp, out)
    if not renamed then ok, res = false, "agentrun.view: cannot write " .. tostring(rerr) end
  end
  if not ok then
    os.remove(tmp)
    error(res, 0)
  end
  return res
end

return M
