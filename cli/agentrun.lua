#!/usr/bin/env lua5.4
-- agentrun -- the command line over the Lua module: lists, shows and follows
-- the runs of a store (a SQLite file or a PostgreSQL URL).
--
--   agentrun [--json] COMMAND STORE [ARGS]        (agentrun --help)
--
-- The build writes where the module lives on the next line (the build tree
-- for build/bin/agentrun, the install prefix for $PREFIX/bin/agentrun), so
-- the command finds its own module without LUA_PATH.
-- @AGENTRUN_PATHS@

local agentrun = require "agentrun"

local PROG = "agentrun"
local USAGE = "usage: agentrun [--json] [--schema NAME] COMMAND STORE [ARGS]   (agentrun --help)"

---------------------------------------------------------------------------
-- Errors: a usage error (exit 2, with the usage line) or a failure (exit 1,
-- with its code). Both are raised as tables and printed by main, never with
-- a stack trace.

local UsageError, Failure = {}, {}

local function usage_error(cmd, fmt, ...)
  error(setmetatable({ message = fmt:format(...), cmd = cmd }, UsageError), 0)
end

local function fail(code, fmt, ...)
  error(setmetatable({ message = fmt:format(...), code = code }, Failure), 0)
end

---------------------------------------------------------------------------
-- Output

local out = io.stdout
out:setvbuf("full")

local function say(s) out:write(s, "\n") end

local env = os.getenv

-- The terminal: asked once, only when human output needs it.
local core = require "agentrun.core"

local term
local function terminal()
  if term then return term end
  local tty, cols = core.terminal(1)
  local width = tonumber(env("COLUMNS") or "") or cols
  if not width or width < 20 then width = 80 end
  local nc = env("NO_COLOR")
  term = { tty = tty, width = math.floor(width), color = tty and (nc == nil or nc == "") }
  return term
end

local STATUS_COLOR = {
  running = "36", completed = "32", budget_exhausted = "33", failed = "31", interrupted = "35", waiting = "34",
}

local function paint(text, code)
  if code and terminal().color then return "\27[" .. code .. "m" .. text .. "\27[0m" end
  return text
end

-- Display width of text (characters; bytes for text that is not UTF-8).
local function width_of(s) return utf8.len(s) or #s end

-- Text cut to `w` characters, ending in "…" when cut.
local function cut(s, w)
  if w <= 0 then return "" end
  local n = width_of(s)
  if n <= w then return s end
  if not utf8.len(s) then return s:sub(1, w - 1) .. "…" end
  return s:sub(1, (utf8.offset(s, w) or #s + 1) - 1) .. "…"
end

local function json(v) return agentrun.json_encode(v) end

-- A control character made visible in caret notation (ESC is ^[, DEL ^?).
local function caret(c)
  local b = c:byte()
  return b == 127 and "^?" or "^" .. string.char(b + 64)
end

-- Text safe to print on a terminal: what is stored (an agent's name, a
-- model's tool name) cannot move the cursor, retitle the window or recolour
-- the output. Control characters show in caret notation and C1 controls
-- (U+0080..U+009F) as U+FFFD; with `lines`, tabs and line feeds stay.
local function safe(s, lines)
  if type(s) ~= "string" then s = tostring(s) end
  if not s:find("[%c\xC2]") then return s end
  s = s:gsub(lines and "[%z\1-\8\11-\31\127]" or "%c", caret)
  return (s:gsub("\xC2[\x80-\x9F]", "\u{FFFD}"))
end

-- The first `max` bytes of s, back to a character boundary (a sequence
-- the cut would split goes whole).
local function head(s, max)
  if #s <= max then return s end
  local keep = max
  for k = max, math.max(1, max - 3), -1 do
    local b = s:byte(k)
    if b < 0x80 then break end
    if b >= 0xC0 then
      if k + (b >= 0xF0 and 3 or b >= 0xE0 and 2 or 1) > max then keep = k - 1 end
      break
    end
  end
  return s:sub(1, keep)
end

-- One line of text for any value: a string as it is, anything else as JSON;
-- control characters and runs of white space become one space. With `max`,
-- at most its first `max` bytes after that: a table cell shows no more, and
-- only a bounded head of a long value is ever looked at, so a long
-- transcript stays quick to print.
local function oneline(v, max)
  if v == nil then return "" end
  local whole = type(v) == "string" and v or json(v)
  local s = max and head(whole, max) or whole
  -- (a lone space stays as it is: most text needs no rewriting at all)
  if s:find("%c") or s:find("%s%s") then
    -- white space collapses, so a larger head fills the line
    if max then s = head(whole, 4 * max) end
    s = s:gsub("[%c%s]+", " ")
    if max then s = head(s, max) end
  end
  return safe(s)
end

-- A step's content on one line, from its decoded `content` or from the
-- stored JSON text that store:steps(id, {raw = true}) gives (`content_json`,
-- not decoded: a long transcript prints several times quicker). A JSON
-- string shows as its text either way.
local function content_line(s, max)
  local text = s.content_json
  if text == nil then return oneline(s.content, max) end
  if text:find('^%s*"') then return oneline(agentrun.json_decode(text), max) end
  return oneline(text, max)
end

local function full_text(v)
  if type(v) == "string" then return safe(v, true) end
  return json(v)
end

local function commas(n)
  local i = math.tointeger(n)
  if i and i > -1000 and i < 1000 then return tostring(i) end
  local s = tostring(i or n)
  local sign, digits = s:match("^(-?)(%d+)$")
  if not digits then return s end
  return sign .. digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

-- "1 step", "2 steps": n with commas and its noun.
local function counted(n, noun)
  return commas(n) .. " " .. noun .. (n == 1 and "" or "s")
end

local function fmt_cost(c)
  if not c or c == 0 then return "$0" end
  if c >= 0.0001 then return ("$%.4f"):format(c) end
  return (("$%.9f"):format(c):gsub("0+$", ""))
end

local function fmt_duration(ms)
  if not ms then return "" end
  if ms < 1000 then return ("%d ms"):format(ms) end
  local s = ms / 1000
  if s < 60 then return ("%.1f s"):format(s) end
  if s < 3600 then return ("%d min %d s"):format(s // 60, math.floor(s % 60)) end
  if s < 86400 then return ("%d h %d min"):format(s // 3600, math.floor(s % 3600) // 60) end
  return ("%d d %d h"):format(s // 86400, math.floor(s % 86400) // 3600)
end

local now_ms = core.now

local function fmt_date(ms) return os.date("%Y-%m-%d %H:%M:%S", ms // 1000) end

local function fmt_age(ms, now)
  local s = ((now or now_ms()) - ms) // 1000
  if s < -1 then return "in the future" end
  if s < 5 then return "just now" end
  if s < 60 then return ("%d s ago"):format(s) end
  if s < 3600 then return ("%d min ago"):format(s // 60) end
  if s < 86400 then return ("%d h ago"):format(s // 3600) end
  if s < 86400 * 60 then return ("%d d ago"):format(s // 86400) end
  return os.date("%Y-%m-%d", ms // 1000)
end

local function fmt_when(ms)
  if not ms then return "" end
  return ("%s (%s)"):format(fmt_date(ms), fmt_age(ms))
end

-- Prints rows as aligned columns fitting the terminal. cols: {title, right
-- = aligned right, flex = takes what width is left and is cut to it}. A cell
-- is text or {text, colour}.
local function print_table(cols, rows)
  local width = terminal().width
  -- w: each column's width; cw[r][i]: each cell's, measured once (a long
  -- transcript has tens of thousands of cells)
  local w, cw = {}, {}
  for i, c in ipairs(cols) do w[i] = width_of(c.title) end
  for r, row in ipairs(rows) do
    local m = {}
    for i = 1, #cols do
      local cell = row[i]
      if type(cell) == "table" then
        cell[1] = safe(cell[1] or "")
      else
        cell = safe(cell or "")
        row[i] = cell
      end
      local n = width_of(type(cell) == "table" and cell[1] or cell)
      m[i] = n
      if n > w[i] and not cols[i].flex then w[i] = n end
    end
    cw[r] = m
  end
  -- the flexible column gets what the others leave: columns marked `drop`
  -- go first (the highest mark first) to give it 16 characters, and without
  -- 8 it goes itself
  local show = {}
  for i in ipairs(cols) do show[i] = true end
  local flex
  local function used()
    local n = 0
    for i, c in ipairs(cols) do
      if show[i] and not c.flex then n = n + w[i] + 2 end
    end
    return n
  end
  for i, c in ipairs(cols) do if c.flex then flex = i end end
  if flex then
    while width - used() < 16 do
      local worst
      for i, c in ipairs(cols) do
        if show[i] and c.drop and (not worst or c.drop > cols[worst].drop) then worst = i end
      end
      if not worst then break end
      show[worst] = false
    end
    local room = width - used()
    if room < 8 then
      show[flex] = false
    else
      local longest = width_of(cols[flex].title)
      for r = 1, #rows do
        if cw[r][flex] > longest then longest = cw[r][flex] end
      end
      w[flex] = math.min(room, longest)
    end
  end
  local last = 0
  for i in ipairs(cols) do if show[i] then last = i end end
  local function line(cells, m, header)
    local parts = {}
    for i, c in ipairs(cols) do
      if show[i] then
        local cell = cells[i]
        local t, colour = cell, nil
        if type(cell) == "table" then t, colour = cell[1], cell[2] end
        t = t or ""
        local n = m and m[i] or width_of(t)
        if n > w[i] then
          t = cut(t, w[i])
          n = width_of(t)
        end
        local pad = (" "):rep(w[i] - n)
        if header then t = paint(t, "1") else t = paint(t, colour) end
        if c.right then
          parts[#parts + 1] = pad .. t
        elseif i == last then
          parts[#parts + 1] = t
        else
          parts[#parts + 1] = t .. pad
        end
      end
    end
    say(table.concat(parts, "  "))
  end
  local titles = {}
  for i, c in ipairs(cols) do titles[i] = c.title end
  line(titles, nil, true)
  for r, row in ipairs(rows) do line(row, cw[r]) end
end

-- Prints "key  value" lines aligned on the keys.
local function print_fields(fields)
  local w = 0
  for _, f in ipairs(fields) do if #f[1] > w then w = #f[1] end end
  for _, f in ipairs(fields) do
    say(paint(f[1], "1") .. (" "):rep(w - #f[1] + 2) .. f[2])
  end
end

---------------------------------------------------------------------------
-- Parsing times, durations and numbers given on the command line

local UNIT_MS = {
  ms = 1, s = 1000, sec = 1000, m = 60000, min = 60000, h = 3600000, d = 86400000, w = 604800000,
}

-- "10m", "2h", "3d", "1.5h" in milliseconds, or nil.
local function age_ms(s)
  local n, unit = s:match("^(%d+%.?%d*)(%a+)$")
  n = tonumber(n)
  if not n or not UNIT_MS[unit] then return nil end
  return math.floor(n * UNIT_MS[unit] + 0.5)
end

-- Seconds east of UTC of the local time zone at `t` (seconds).
local function utc_offset(t)
  local u = os.date("!*t", t)
  u.isdst = os.date("*t", t).isdst
  return os.difftime(t, os.time(u))
end

-- A point in time: an age ("2h": two hours ago), "now", or a date
-- "YYYY-MM-DD[ |T]HH:MM[:SS]" in local time (UTC with a final "Z").
local function parse_time(cmd, opt, s)
  if s == "now" then return now_ms() end
  local age = age_ms(s)
  if age then return now_ms() - age end
  local y, mo, d, rest = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)(.*)$")
  local h, mi, sec, z = 0, 0, 0, ""
  if rest and rest ~= "" and rest ~= "Z" then
    h, mi, sec, z = rest:match("^[T ](%d%d):(%d%d):?(%d?%d?)(Z?)$")
    if sec == "" then sec = 0 end
  elseif rest == "Z" then
    z = "Z"
  end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if not (y and mo and d and h and mi and sec) or mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59
      or sec > 59 then
    usage_error(cmd, "%s: malformed time '%s' (an age like 10m, 2h, 3d, or a date YYYY-MM-DD[ HH:MM[:SS]])", opt, s)
  end
  local t = os.time { year = y, month = mo, day = d, hour = h, min = mi, sec = sec, isdst = nil }
  local back = os.date("*t", t)
  if back.day ~= d or back.month ~= mo then
    usage_error(cmd, "%s: no such date '%s'", opt, s)
  end
  if z == "Z" then t = t + utc_offset(t) end
  return t * 1000
end

-- A duration in seconds: "10m", "90s", "2h", or a plain number of seconds.
local function parse_duration(cmd, opt, s)
  local n = tonumber(s)
  if n and n >= 0 and n == n and n < math.huge then return n end
  local ms = age_ms(s)
  if not ms then
    usage_error(cmd, "%s: malformed duration '%s' (like 90s, 10m, 2h, 3d, or seconds)", opt, s)
  end
  return ms / 1000
end

local function parse_count(cmd, opt, s)
  local n = math.tointeger(tonumber(s))
  if not n or n < 0 or not s:match("^%d+$") then
    usage_error(cmd, "%s: expected a whole number >= 0, got '%s'", opt, s)
  end
  return n
end

---------------------------------------------------------------------------
-- Ids: a run id is 26 Crockford base32 digits, the first 10 of them its
-- creation millisecond, so a prefix names a span of time and only the runs
-- begun in that span can match it.

local CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
local DIGIT = {}
for i = 1, #CROCKFORD do DIGIT[CROCKFORD:sub(i, i)] = i - 1 end

-- The milliseconds [lo, hi] of the runs whose id starts with prefix p
-- (upper case, valid digits), or nil when no id can start so.
local function prefix_span(p)
  local k = math.min(#p, 10)
  local v = 0
  for i = 1, k do v = v * 32 + DIGIT[p:sub(i, i)] end
  local shift = 50 - 5 * k
  local lo, hi = v << shift, ((v + 1) << shift) - 1
  -- the id's top two bits are zero: its time is below 2^48
  if lo >= 1 << 48 then return nil end
  if hi >= 1 << 48 then hi = (1 << 48) - 1 end
  return lo, hi
end

-- The ids of the runs (at most `max`) whose id starts with p.
local function ids_with_prefix(store, p, max)
  local lo, hi = prefix_span(p)
  local found = {}
  if not lo then return found end
  local q = { since = lo, ["until"] = hi + 1, order = "asc", limit = 1000 }
  repeat
    local page, cursor = store:runs(q)
    for _, r in ipairs(page) do
      if r.id:sub(1, #p) == p then
        found[#found + 1] = r.id
        if #found >= max then return found end
      end
    end
    q.after = cursor
  until not cursor
  return found
end

-- The run id that `text` (an id or any unique prefix of one, in either
-- case) names; ENOTFOUND when none does, EAMBIGUOUS when several do.
local function resolve_id(store, text)
  local p = text:upper()
  if p == "" or #p > 26 or p:find("[^0-9A-HJKMNP-TV-Z]") then
    fail("ENOTFOUND", "no run with id '%s'", text)
  end
  if #p == 26 then
    if store:get(p) then return p end
    fail("ENOTFOUND", "no run with id '%s'", text)
  end
  local found = ids_with_prefix(store, p, 11)
  if #found == 1 then return found[1] end
  if #found == 0 then fail("ENOTFOUND", "no run with id '%s'", text) end
  local more = #found > 10 and ", ..." or ""
  if #found > 10 then found[11] = nil end
  fail("EAMBIGUOUS", "id prefix '%s' names several runs: %s%s", text, table.concat(found, ", "), more)
end

local function common_prefix(a, b)
  local n = 0
  for i = 1, math.min(#a, #b) do
    if a:byte(i) ~= b:byte(i) then break end
    n = i
  end
  return n
end

local SHORT_MIN = 8

-- For each id of `ids`, the shortest prefix (at least 8 digits) that no
-- other run of the store shares: its neighbours in id order are the runs of
-- its millisecond and the nearest run before and after it.
local function short_ids(store, ids)
  local short, by_ms = {}, {}
  for _, id in ipairs(ids) do
    local ms = prefix_span(id:sub(1, 10))
    if ms then
      by_ms[ms] = by_ms[ms] or {}
      table.insert(by_ms[ms], id)
    else
      short[id] = id
    end
  end
  for ms, group in pairs(by_ms) do
    local near = {}
    local same = store:runs { since = ms, ["until"] = ms + 1, order = "asc", limit = 1001 }
    local crowded = #same > 1000
    for _, r in ipairs(same) do near[#near + 1] = r.id end
    local before = store:runs { ["until"] = ms, limit = 1 }
    if before[1] then near[#near + 1] = before[1].id end
    local after = store:runs { since = ms + 1, order = "asc", limit = 1 }
    if after[1] then near[#near + 1] = after[1].id end
    for _, id in ipairs(group) do
      if crowded then
        short[id] = id
      else
        local len = SHORT_MIN
        for _, other in ipairs(near) do
          if other ~= id then
            local c = common_prefix(id, other) + 1
            if c > len then len = c end
          end
        end
        short[id] = id:sub(1, len)
      end
    end
  end
  return short
end

---------------------------------------------------------------------------
-- Opening the store

local function is_postgres(loc)
  return loc:match("^postgres://") or loc:match("^postgresql://") or loc:match("^host=") or loc:match("^dbname=")
      or loc:match("^service=") or loc:match("^user=")
end

-- Opens the store at ctx.store (or `loc`, in `schema`); only a command that
-- fills a store (import, copy's DEST) passes `create`.
local function open_store(ctx, readonly, create, loc, schema)
  loc = loc or ctx.store
  schema = schema or ctx.schema
  if not create and not is_postgres(loc) then
    -- a command names a store that exists: it never creates an empty one
    local f, msg = io.open(loc, "rb")
    if not f then fail("EIO", "cannot open store %s", msg) end
    f:close()
  end
  local opts = { readonly = readonly or nil }
  if schema then opts.schema = schema end
  local store, msg, code = agentrun.open(loc, opts)
  if not store then fail(code or "EIO", "cannot open store %s: %s", loc, msg) end
  return store
end

---------------------------------------------------------------------------
-- Commands

local cmds, order = {}, {}

local function command(name, spec)
  spec.name = name
  cmds[name] = spec
  order[#order + 1] = name
end

local RUN_FILTER_OPTS = {
  agent = "text", user = "text", status = "list", edition = "text", parent = "text",
  since = "time", ["until"] = "time",
}

local STATUSES = { "running", "waiting", "completed", "budget_exhausted", "failed", "interrupted" }

-- The query of store:runs the run filters of ls and stats make; a --parent
-- shorter than an id is resolved as any ID is.
local function run_query(o, store)
  local q = {}
  for _, k in ipairs { "agent", "user", "edition", "parent", "since", "until" } do q[k] = o[k] end
  if q.parent and #q.parent < 26 then q.parent = resolve_id(store, q.parent) end
  if o.status then
    for _, s in ipairs(o.status) do
      local known = false
      for _, n in ipairs(STATUSES) do known = known or n == s end
      if not known then
        usage_error(o._cmd, "--status: unknown status '%s' (one of %s)", s, table.concat(STATUSES, ", "))
      end
    end
    q.status = o.status
  end
  return q
end

local function status_cell(s) return { s, STATUS_COLOR[s] } end

local function tokens_of(u) return u and u.total_tokens or 0 end

command("ls", {
  summary = "list runs, newest first",
  usage = "agentrun [--json] ls STORE [--agent NAME] [--user USER] [--status S[,S]] [--edition E] "
      .. "[--parent ID] [--forks-of ID] [--since TIME] [--until TIME] [--limit N]",
  opts = {
    agent = "text", user = "text", status = "list", edition = "text", parent = "text",
    since = "time", ["until"] = "time", limit = "count", ["forks-of"] = "text",
  },
  help = [==[
Lists runs, newest first: id (shortest unique prefix), agent, status, steps,
tokens, cost, age, duration and goal.
  --agent NAME      runs of this agent
  --user USER       runs for this user
  --status S[,S]    runs in these statuses (running, waiting, completed,
                    budget_exhausted, failed, interrupted); may repeat
  --edition E       runs of this edition
  --parent ID       sub-runs of this run (an id or a unique prefix)
  --forks-of ID     the forks of this run (an id or a unique prefix)
  --since TIME      begun at or after TIME (an age like 2h, 10m, 3d, or a
                    date YYYY-MM-DD[ HH:MM[:SS]] in local time, Z for UTC)
  --until TIME      begun before TIME
  --limit N         at most N runs (default 50; 0 for all)
With --json, one record per line (every field).]==],
  run = function(ctx, o)
    local store <close> = open_store(ctx, true)
    local q = run_query(o, store)
    if o["forks-of"] then q.forked_from = resolve_id(store, o["forks-of"]) end
    local limit = o.limit or 50
    local runs = {}
    q.limit = limit == 0 and 1000 or limit
    repeat
      local page, cursor = store:runs(q)
      for _, r in ipairs(page) do
        if ctx.json then say(json(r)) else runs[#runs + 1] = r end
      end
      q.after = cursor
    until limit ~= 0 or not cursor
    if ctx.json then return 0 end
    local ids = {}
    for i, r in ipairs(runs) do ids[i] = r.id end
    local short = short_ids(store, ids)
    local now = now_ms()
    local rows = {}
    for _, r in ipairs(runs) do
      rows[#rows + 1] = {
        short[r.id], r.agent, status_cell(r.status), commas(r.iterations), commas(tokens_of(r.usage)),
        fmt_cost(r.usage.cost), fmt_age(r.created_at, now), fmt_duration(r.latency_ms), oneline(r.goal),
      }
    end
    print_table({
      { title = "ID" }, { title = "AGENT" }, { title = "STATUS" }, { title = "STEPS", right = true, drop = 2 },
      { title = "TOKENS", right = true, drop = 3 }, { title = "COST", right = true }, { title = "CREATED", drop = 1 },
      { title = "DURATION", right = true, drop = 4 }, { title = "GOAL", flex = true },
    }, rows)
    return 0
  end,
})

local function budget_text(b)
  if not b or next(b) == nil then return "none" end
  local parts = {}
  for _, k in ipairs { "max_steps", "max_input_tokens", "max_output_tokens", "max_tokens", "max_cost", "max_seconds" } do
    local v = b[k]
    if v then
      if k == "max_cost" then v = fmt_cost(v) elseif k == "max_seconds" then v = v .. " s" else v = commas(v) end
      parts[#parts + 1] = k .. " " .. v
    end
  end
  return table.concat(parts, ", ")
end

local function limit_figure(name, v)
  if name == "max_cost" then return fmt_cost(v) end
  if name == "max_seconds" then return ("%g s"):format(v) end
  return commas(math.tointeger(v) or v)
end

local function usage_text(u)
  local s = ("%s in, %s out, %s total"):format(commas(u.input_tokens or 0), commas(u.output_tokens or 0),
    commas(u.total_tokens or 0))
  local extra = {}
  for k, v in pairs(u) do
    if k ~= "input_tokens" and k ~= "output_tokens" and k ~= "total_tokens" and k ~= "cost" then
      extra[#extra + 1] = k .. " " .. commas(v)
    end
  end
  table.sort(extra)
  if #extra > 0 then s = s .. "; " .. table.concat(extra, ", ") end
  return s
end

local function step_tokens(s)
  local u = s.usage or {}
  if (u.input_tokens or 0) == 0 and (u.output_tokens or 0) == 0 then return "" end
  return ("%s/%s"):format(commas(u.input_tokens or 0), commas(u.output_tokens or 0))
end

local function show_record(r, full)
  local fields = {
    { "run", r.id }, { "agent", safe(r.agent) }, { "status", paint(r.status, STATUS_COLOR[r.status]) },
    { "goal", full and full_text(r.goal) or cut(oneline(r.goal), terminal().width - 12) },
  }
  local function add(k, v) if v ~= nil and v ~= "" then fields[#fields + 1] = { k, v } end end
  add("user", r.user and safe(r.user))
  add("edition", r.edition and safe(r.edition))
  add("parent", r.parent and safe(r.parent))
  if r.forked_from then add("forked from", ("%s after step %d"):format(r.forked_from.run, r.forked_from.seq)) end
  add("created", fmt_when(r.created_at))
  if r.finished_at then add("finished", fmt_when(r.finished_at) .. ", took " .. fmt_duration(r.latency_ms)) end
  add("updated", fmt_when(r.updated_at))
  add("steps", commas(r.iterations))
  add("tokens", usage_text(r.usage))
  add("cost", fmt_cost(r.usage.cost))
  add("budget", budget_text(r.budget))
  if r.limit then
    add("limit", ("%s %s reached (%s)"):format(r.limit.name, limit_figure(r.limit.name, r.limit.value),
      limit_figure(r.limit.name, r.limit.reached)))
  end
  if r.output ~= nil then add("output", full and full_text(r.output) or cut(oneline(r.output), terminal().width - 12)) end
  if r.error then add("error", full and full_text(r.error) or cut(oneline(r.error), terminal().width - 12)) end
  if r.metadata and next(r.metadata) ~= nil then add("metadata", cut(json(r.metadata), terminal().width - 12)) end
  if r.checkpoint then
    local state = r.checkpoint.state
    add("checkpoint", ("after step %d: %s"):format(r.checkpoint.seq,
      full and full_text(state) or cut(oneline(state), terminal().width - 30)))
  end
  if r.request ~= nil then add("request", full and full_text(r.request) or cut(oneline(r.request), terminal().width - 12)) end
  if r.response ~= nil then
    add("response", full and full_text(r.response) or cut(oneline(r.response), terminal().width - 12))
  elseif r.status == "waiting" then
    add("response", "none yet (agentrun respond)")
  end
  print_fields(fields)
end

local function step_row(s)
  return {
    tostring(s.seq), s.kind, s.name or "", step_tokens(s), s.cost and s.cost > 0 and fmt_cost(s.cost) or "",
    s.duration_ms and fmt_duration(s.duration_ms) or "", content_line(s, 2 * terminal().width),
  }
end

local STEP_COLS = {
  { title = "SEQ", right = true }, { title = "KIND" }, { title = "NAME", drop = 1 },
  { title = "TOKENS", right = true, drop = 2 }, { title = "COST", right = true, drop = 3 },
  { title = "DURATION", right = true, drop = 4 }, { title = "CONTENT", flex = true },
}

command("show", {
  summary = "a run: its record, budget, transcript, checkpoint and intents",
  usage = "agentrun [--json] show STORE ID [--full]",
  args = { "ID" },
  opts = { full = "flag" },
  help = [==[
Shows a run: its record (agent, goal, status, times, totals), its budget and
the limit it reached, its output or error, the run it was forked from, what
it asked while waiting and the response, its checkpoint, then its
transcript step by step (seq, kind, name, tokens in/out, cost, duration, the
content on one line) and its intents (key, name, status). ID is a run id or
any unique prefix of one.
  --full            whole contents instead of one line each
With --json: the record (every field, with its checkpoint as {state, seq})
on the first line, then one line per step (every field, and "run"), then
one line per intent ({"intent": key, "name", "args", "status", "result",
"intent_seq", "result_seq", "run"}).]==],
  run = function(ctx, o, id)
    local store <close> = open_store(ctx, true)
    id = resolve_id(store, id)
    local r = store:get(id)
    if not r then fail("ENOTFOUND", "no run with id '%s'", id) end
    local state, seq = store:checkpoint(id)
    if seq then r.checkpoint = { state = state, seq = seq } end
    local intents = store:intents(id)
    if ctx.json then
      say(json(r))
      for s in store:steps(id) do
        s.run = id
        say(json(s))
      end
      for _, it in ipairs(intents) do
        say(json { intent = it.key, name = it.name, args = it.args, status = it.status, result = it.result,
                   intent_seq = it.intent_seq, result_seq = it.result_seq, run = id })
      end
      return 0
    end
    show_record(r, o.full)
    if r.iterations > 0 then
      say("")
      if o.full then
        for s in store:steps(id) do
          local row = step_row(s)
          for i, cell in ipairs(row) do row[i] = safe(cell) end
          say(paint(("#%s  %s%s"):format(row[1], row[2], row[3] ~= "" and "  " .. row[3] or ""), "1")
            .. ("  %s  %s  %s"):format(row[4], row[5], row[6]):gsub("%s+$", ""))
          if s.content ~= nil then say(full_text(s.content)) end
          say("")
        end
      else
        local rows = {}
        for s in store:steps(id, { raw = true }) do rows[#rows + 1] = step_row(s) end
        print_table(STEP_COLS, rows)
      end
    end
    if #intents > 0 then
      say("")
      local rows = {}
      local colour = { pending = "33", settled = "32", failed = "31" }
      for _, it in ipairs(intents) do
        rows[#rows + 1] = { oneline(it.key), it.name or "", { it.status, colour[it.status] },
          tostring(it.intent_seq), it.result_seq and tostring(it.result_seq) or "" }
      end
      print_table({ { title = "INTENT" }, { title = "NAME" }, { title = "STATUS" }, { title = "STEP", right = true },
        { title = "SETTLED AT", right = true } }, rows)
    end
    return 0
  end,
})

-- Waits `seconds`. Ctrl-C during the wait ends the command when the wait
-- is over (the interpreter's handler raises "interrupted!" at the next
-- instruction; main exits 130).
local function sleep(seconds)
  core.sleep(math.floor(seconds * 1000 + 0.5))
  return true
end

local INTERRUPTED = 130

local function tail_line(cells, widths)
  local parts = {}
  for i, c in ipairs(cells) do
    local t, colour = c, nil
    if type(c) == "table" then t, colour = c[1], c[2] end
    t = safe(t)
    if widths[i] then
      t = cut(t, widths[i])
      t = t .. (" "):rep(widths[i] - width_of(t))
    end
    parts[#parts + 1] = paint(t, colour)
  end
  local line = table.concat(parts, "  ")
  return line
end

command("tail", {
  summary = "follow a run's steps (or an agent's events) as they are written",
  usage = "agentrun [--json] tail STORE ID | agentrun [--json] tail STORE --agent NAME",
  args = { "ID" },
  opts = { agent = "text" },
  help = [==[
Follows a run as it is written: prints its steps so far, then each new step
as it is recorded, and ends when the run is no longer running (its final
status on the last line). With --agent NAME, follows that agent's events
instead: the latest 10, then each new one, until interrupted. New steps and
events show within about 200 ms (the store is polled, 20 ms apart at first,
backing off to 200 ms while nothing changes). Ctrl-C ends it (exit 130).
With --json, one step (or event) per line; a followed run ends with its
record.]==],
  run = function(ctx, o, id)
    local store <close> = open_store(ctx, true)
    local width = ctx.json and 0 or terminal().width
    if o.agent then
      local after = "e1:0"
      local last = store:events { agent = o.agent, order = "desc", limit = 10 }
      local backlog = {}
      for i = #last, 1, -1 do backlog[#backlog + 1] = last[i] end
      local delay = 0.02
      local function emit(list)
        for _, e in ipairs(list) do
          if ctx.json then
            say(json(e))
          else
            local head = tail_line({ os.date("%H:%M:%S", e.at // 1000), tostring(e.session), e.type },
              { 8, nil, nil })
            say(head .. "  " .. cut(oneline(e.content or (next(e.metadata) and json(e.metadata)) or ""),
              math.max(10, width - width_of(head) - 2)))
          end
          after = "e1:" .. e.id
        end
        out:flush()
      end
      emit(backlog)
      while true do
        local page = store:events { agent = o.agent, after = after, limit = 1000 }
        if #page > 0 then
          emit(page)
          delay = 0.02
        else
          if not sleep(delay) then return INTERRUPTED end
          delay = math.min(delay * 2, 0.2)
        end
      end
    end
    if not id then usage_error("tail", "tail needs a run ID or --agent NAME") end
    id = resolve_id(store, id)
    local from, delay = 1, 0.02
    local function drain()
      local n = 0
      for s in store:steps(id, { from = from, raw = not ctx.json }) do
        if ctx.json then
          s.run = id
          say(json(s))
        else
          local head = tail_line({ os.date("%H:%M:%S", s.at // 1000), "#" .. s.seq, s.kind, s.name or "",
            step_tokens(s), s.cost and s.cost > 0 and fmt_cost(s.cost) or "" }, { 8, 6 })
          say(head .. "  " .. cut(content_line(s, 2 * width), math.max(10, width - width_of(head) - 2)))
        end
        from = s.seq + 1
        n = n + 1
      end
      out:flush()
      return n
    end
    while true do
      if drain() > 0 then
        delay = 0.02
      else
        local r = store:get(id)
        if not r then fail("ENOTFOUND", "run %s is gone", id) end
        if r.status ~= "running" then
          -- steps written between the last read and the finish
          drain()
          if ctx.json then
            say(json(r))
          else
            say(("run %s %s: %s, %s, %s"):format(id, paint(r.status, STATUS_COLOR[r.status]),
              counted(r.iterations, "step"), counted(tokens_of(r.usage), "token"), fmt_cost(r.usage.cost)))
          end
          return 0
        end
        if not sleep(delay) then return INTERRUPTED end
        delay = math.min(delay * 2, 0.2)
      end
    end
  end,
})

command("events", {
  summary = "an agent's events",
  usage = "agentrun [--json] events STORE AGENT [--session N] [--type T[,T]] [--since TIME] [--until TIME] "
      .. "[--limit N] [--desc]",
  args = { "AGENT" },
  opts = { session = "count", type = "list", since = "time", ["until"] = "time", limit = "count", desc = "flag" },
  help = [==[
Lists an agent's events, oldest first: id, time, session, type, run and the
content on one line.
  --session N       events of this session
  --type T[,T]      events of these types; may repeat
  --since TIME      at or after TIME (an age like 2h or a date, as for ls)
  --until TIME      before TIME
  --limit N         at most N events (default 100; 0 for all)
  --desc            newest first
With --json, one event per line (every field).]==],
  run = function(ctx, o, agent)
    local store <close> = open_store(ctx, true)
    local q = { agent = agent, session = o.session, type = o.type, since = o.since, ["until"] = o["until"],
                order = o.desc and "desc" or "asc" }
    local limit = o.limit or 100
    q.limit = limit == 0 and 1000 or limit
    local list = {}
    repeat
      local page, cursor = store:events(q)
      for _, e in ipairs(page) do
        if ctx.json then say(json(e)) else list[#list + 1] = e end
      end
      q.after = cursor
    until limit ~= 0 or not cursor
    if ctx.json then return 0 end
    local runs = {}
    for _, e in ipairs(list) do if e.run and #e.run == 26 then runs[#runs + 1] = e.run end end
    local short = short_ids(store, runs)
    local rows = {}
    for _, e in ipairs(list) do
      rows[#rows + 1] = { tostring(e.id), fmt_date(e.at), tostring(e.session), e.type,
        e.run and (short[e.run] or e.run) or "",
        oneline(e.content or (next(e.metadata) and json(e.metadata)) or "") }
    end
    print_table({ { title = "ID", right = true }, { title = "TIME" }, { title = "SESSION", right = true },
      { title = "TYPE" }, { title = "RUN" }, { title = "CONTENT", flex = true } }, rows)
    return 0
  end,
})

local function nanos(cost) return math.floor((cost or 0) * 1e9 + 0.5) end

command("stats", {
  summary = "totals by status, agent and day",
  usage = "agentrun [--json] stats STORE [run filters as for ls]",
  opts = RUN_FILTER_OPTS,
  help = [==[
Totals of the runs (all, or those the filters of ls select): runs, steps,
tokens and cost, by status, by agent and by day (local time).
With --json, one object per line: {"group": "total" | "status" | "agent" |
"day", the group's key, runs, steps, input_tokens, output_tokens,
total_tokens, cost}.]==],
  run = function(ctx, o)
    local store <close> = open_store(ctx, true)
    local q = run_query(o, store)
    local groups = {}
    local function row(group, key, st)
      return { group = group, key = key, runs = st.runs, steps = st.iterations, input_tokens = st.input_tokens,
               output_tokens = st.output_tokens, total_tokens = st.total_tokens, cost = st.cost }
    end
    local total = store:stats(q)
    groups[#groups + 1] = row("total", nil, total)
    total.avg = total.avg_latency_ms
    for _, s in ipairs(STATUSES) do
      if (total.by_status[s] or 0) > 0 then
        local sq = {}
        for k, v in pairs(q) do sq[k] = v end
        sq.status = s
        groups[#groups + 1] = row("status", s, store:stats(sq))
      end
    end
    -- by agent and by day: one pass over the runs
    local agents, days, akeys, dkeys = {}, {}, {}, {}
    local function add(map, keys, k, r)
      local g = map[k]
      if not g then
        g = { runs = 0, iterations = 0, input_tokens = 0, output_tokens = 0, total_tokens = 0, nanos = 0 }
        map[k] = g
        keys[#keys + 1] = k
      end
      g.runs = g.runs + 1
      g.iterations = g.iterations + r.iterations
      g.input_tokens = g.input_tokens + (r.usage.input_tokens or 0)
      g.output_tokens = g.output_tokens + (r.usage.output_tokens or 0)
      g.total_tokens = g.total_tokens + (r.usage.total_tokens or 0)
      g.nanos = g.nanos + nanos(r.usage.cost)
    end
    local sq = {}
    for k, v in pairs(q) do sq[k] = v end
    sq.limit = 1000
    repeat
      local page, cursor = store:runs(sq)
      for _, r in ipairs(page) do
        add(agents, akeys, r.agent, r)
        add(days, dkeys, os.date("%Y-%m-%d", r.created_at // 1000), r)
      end
      sq.after = cursor
    until not cursor
    table.sort(akeys)
    table.sort(dkeys)
    for _, k in ipairs(akeys) do agents[k].cost = agents[k].nanos / 1e9; groups[#groups + 1] = row("agent", k, agents[k]) end
    for _, k in ipairs(dkeys) do days[k].cost = days[k].nanos / 1e9; groups[#groups + 1] = row("day", k, days[k]) end
    if ctx.json then
      for _, g in ipairs(groups) do
        local obj = { group = g.group }
        if g.group ~= "total" then obj[g.group] = g.key end
        for _, k in ipairs { "runs", "steps", "input_tokens", "output_tokens", "total_tokens", "cost" } do obj[k] = g[k] end
        if g.group == "total" then obj.avg_latency_ms = total.avg_latency_ms end
        say(json(obj))
      end
      return 0
    end
    local first = true
    for _, kind in ipairs { "status", "agent", "day" } do
      local rows = {}
      for _, g in ipairs(groups) do
        if g.group == kind or (kind == "status" and g.group == "total") then
          local key = g.group == "total" and "all" or g.key
          rows[#rows + 1] = { kind == "status" and { key, STATUS_COLOR[key] } or key, commas(g.runs),
            commas(g.steps), commas(g.total_tokens), fmt_cost(g.cost) }
        end
      end
      if #rows > 0 then
        if not first then say("") end
        first = false
        print_table({ { title = kind:upper() }, { title = "RUNS", right = true }, { title = "STEPS", right = true },
          { title = "TOKENS", right = true }, { title = "COST", right = true } }, rows)
      end
    end
    if total.runs > 0 and total.avg_latency_ms > 0 then
      say("")
      say("average duration of finished runs: " .. fmt_duration(math.floor(total.avg_latency_ms + 0.5)))
    end
    return 0
  end,
})

command("recover", {
  summary = "mark stale running runs interrupted",
  usage = "agentrun [--json] recover STORE --stale-after DURATION",
  opts = { ["stale-after"] = "duration" },
  required = { "stale-after" },
  help = [==[
Marks as interrupted every running run with no activity (begin, resume,
step or checkpoint) for DURATION (like 90s, 10m, 2h, or seconds), so it can
be resumed; prints how many.
With --json: {"recovered": N}.]==],
  run = function(ctx, o)
    local store <close> = open_store(ctx, false)
    local n = store:recover { stale_after = o["stale-after"] }
    if ctx.json then say(json { recovered = n }) else say(("%d run%s marked interrupted"):format(n, n == 1 and "" or "s")) end
    return 0
  end,
})

local function bytes(n)
  if n < 1024 then return n .. " B" end
  if n < 1024 * 1024 then return ("%.1f KiB"):format(n / 1024) end
  if n < 1024 * 1024 * 1024 then return ("%.1f MiB"):format(n / 1048576) end
  return ("%.2f GiB"):format(n / 1073741824)
end

command("retain", {
  summary = "apply a retention policy file",
  usage = "agentrun [--json] retain STORE POLICY.lua [--dry-run] [--vacuum]",
  args = { "POLICY.lua" },
  opts = { ["dry-run"] = "flag", vacuum = "flag" },
  help = [==[
Loads the retention policy POLICY.lua (a Lua file returning a policy table,
run in agentrun.policy's sandbox) and applies it: deletes the finished runs
it selects with their steps, checkpoints and events. Prints the report.
  --dry-run         report what would be deleted; change nothing
  --vacuum          then give the freed space back to the file system
With --json, the report as one object.]==],
  run = function(ctx, o, path)
    local policy = agentrun.policy(path)
    policy.dry_run = o["dry-run"] or nil
    policy.vacuum = o.vacuum or nil
    local store <close> = open_store(ctx, o["dry-run"] and not o.vacuum)
    local rep = store:retain(policy)
    if ctx.json then say(json(rep)) return 0 end
    print_fields {
      { rep.dry_run and "would delete" or "deleted", ("%s of %s finished runs considered (%s steps)"):format(
        commas(rep.deleted), commas(rep.considered), commas(rep.steps_deleted)) },
      { "by the rule", ("%s deleted, %s kept"):format(commas(rep.deleted_by_rule), commas(rep.kept_by_rule)) },
      { "size", ("%s before, %s after"):format(bytes(rep.bytes_before), bytes(rep.bytes_after)) },
    }
    return 0
  end,
})

command("info", {
  summary = "the store: backend, schema, counts and sizes",
  usage = "agentrun [--json] info STORE",
  help = [==[
Prints the store's backend, location, schema version, run, step and event
counts and its sizes (file, write-ahead log, free space).
With --json, one object with every field and the library's version.]==],
  run = function(ctx)
    local store <close> = open_store(ctx, true)
    local i = store:info()
    i.version = agentrun.version
    if ctx.json then say(json(i)) return 0 end
    print_fields {
      { "store", i.path }, { "backend", i.backend }, { "schema", tostring(i.schema_version) },
      { "runs", commas(i.runs) }, { "steps", commas(i.steps) }, { "events", commas(i.events) },
      { "size", ("%s (write-ahead log %s, free %s)"):format(bytes(i.file_bytes), bytes(i.wal_bytes),
        bytes(i.free_bytes)) },
      { "agentrun", agentrun.version },
    }
    return 0
  end,
})

command("check", {
  summary = "check the store's integrity and that every row reads back",
  usage = "agentrun [--json] check STORE",
  help = [==[
Checks the store: the file's integrity (SQLite's integrity_check; a
PostgreSQL server keeps its own pages), then reads every run, step,
checkpoint and event back and lists each damaged one by its id and field
(the first damaged field of a row). Exits 1 when anything is wrong, 0
otherwise.
With --json, one object per problem ({"kind": "file", "run", "step",
"checkpoint" or "event", "id", "seq", "field", "message"}), then a summary
{"ok", "runs", "steps", "checkpoints", "events", "problems"}.]==],
  run = function(ctx)
    local store <close> = open_store(ctx, true)
    local rep = store:check()
    if ctx.json then
      for _, p in ipairs(rep.problems) do
        -- a key is past JSON's exact integers: it goes as text
        if p.key then p.key = tostring(p.key) end
        say(json(p))
      end
      say(json { ok = rep.ok, runs = rep.runs, steps = rep.steps, checkpoints = rep.checkpoints, events = rep.events,
                  problems = #rep.problems })
      return rep.ok and 0 or 1
    end
    for _, p in ipairs(rep.problems) do
      -- the message names the row (run, step, event) and the field
      say(paint("damaged", "31") .. "  " .. (p.kind == "file" and "file: " or "") .. oneline(p.message))
    end
    say(("%s: %s, %s, %s read; %s"):format(rep.ok and "ok" or "DAMAGED", counted(rep.runs, "run"),
      counted(rep.steps, "step"), counted(rep.events, "event"), counted(#rep.problems, "problem")))
    return rep.ok and 0 or 1
  end,
})

command("fork", {
  summary = "fork a run after one of its steps; prints the new run's id",
  usage = "agentrun [--json] fork STORE ID [--at SEQ]",
  args = { "ID" },
  opts = { at = "count" },
  help = [==[
Forks the run ID (any status; an id or a unique prefix): a new run, with its
own id, that continues it as it stood after step SEQ (default its last
step), with copies of steps 1..SEQ, the run's agent, goal, budget and
metadata. Prints the new run's id. The fork is left interrupted, as a crash
followed by recover would leave it: an agent resumes it
(store:resume(id), or a loop with resume = id) and goes on from step SEQ.
  --at SEQ          fork after this step (0..the run's steps)
With --json, the fork's record.]==],
  run = function(ctx, o, id)
    local store = open_store(ctx, false)
    local ok, res = pcall(function()
      id = resolve_id(store, id)
      local r = store:get(id)
      if o.at and r and o.at > r.iterations then
        usage_error("fork", "--at %d: the run has %d steps", o.at, r.iterations)
      end
      local fork = store:fork(id, { at = o.at })
      -- closing the store, not the handle, leaves the fork interrupted
      -- (resumable); closing a running handle would finish it as failed
      local new = fork.id
      store:close()
      return new
    end)
    store:close()
    if not ok then error(res, 0) end
    if ctx.json then
      local again <close> = open_store(ctx, true)
      say(json(again:get(res)))
    else
      say(res)
    end
    return 0
  end,
})

command("respond", {
  summary = "answer a run waiting for a person",
  usage = "agentrun [--json] respond STORE ID JSON",
  args = { "ID", "JSON" },
  help = [==[
Answers the waiting run ID (an id or a unique prefix) with JSON, a JSON text
("yes" is '"yes"'; null, numbers, arrays and objects as they are): stores it
as the run's response, after a response step, and prints the run's record.
The run then stays waiting until its agent resumes it. Text that is not
JSON is refused with EJSON and changes nothing; a run that is not waiting,
or already has its response, is refused with ESTATE.
With --json, the record.]==],
  run = function(ctx, _, id, text)
    local store <close> = open_store(ctx, false)
    id = resolve_id(store, id)
    local value = agentrun.json_decode(text)
    if value == nil then value = agentrun.null end
    local r = store:respond(id, value)
    if ctx.json then say(json(r)) return 0 end
    print_fields {
      { "run", r.id }, { "status", paint(r.status, STATUS_COLOR[r.status]) },
      { "request", cut(oneline(r.request), terminal().width - 12) },
      { "response", cut(oneline(r.response), terminal().width - 12) },
      { "steps", commas(r.iterations) },
    }
    return 0
  end,
})

-- Where a command writes its lines: stdout, or FILE written whole (FILE.part,
-- renamed over FILE at the end; a failure removes the part and leaves FILE
-- as it was). fill(write) writes the lines; returns what fill returns.
local function write_lines(path, fill)
  if not path or path == "-" then
    return fill(function(line) out:write(line, "\n") end)
  end
  local part = path .. ".part"
  local f, msg = io.open(part, "wb")
  if not f then fail("EIO", "cannot write %s", msg) end
  local ok, res = pcall(fill, function(line)
    local done, why = f:write(line, "\n")
    if not done then fail("EIO", "cannot write %s: %s", part, why) end
  end)
  local closed, why = f:close()
  if ok and not closed then ok, res = false, setmetatable({ message = ("cannot write %s: %s"):format(part, why),
    code = "EIO" }, Failure) end
  if ok then
    local renamed, rwhy = os.rename(part, path)
    if not renamed then ok, res = false, setmetatable({ message = ("cannot rename %s: %s"):format(part, rwhy),
      code = "EIO" }, Failure) end
  end
  if not ok then
    os.remove(part)
    error(res, 0)
  end
  return res
end

local function filter_opts(extra)
  local t = {}
  for k, v in pairs(RUN_FILTER_OPTS) do t[k] = v end
  for k, v in pairs(extra) do t[k] = v end
  return t
end

local FILTER_HELP = [==[
  --agent NAME, --user USER, --status S[,S], --edition E, --parent ID,
  --since TIME, --until TIME   the runs, as ls selects them (default all)]==]

command("export", {
  summary = "runs and their agents' events as JSON Lines",
  usage = "agentrun [--json] export STORE [run filters as for ls] [-o FILE]",
  opts = filter_opts { output = "text" },
  short = { o = "output" },
  help = [==[
Writes the runs the filters select (all by default), in id order, with their
steps and checkpoints, then the events of their agents (every event when no
filter is given), as JSON Lines: a header {"type":"agentrun","format":1,
"exported_at":MS}, one {"type":"run",...} line a run, one
{"type":"event",...} line an event. import reads it back.
]==] .. FILTER_HELP .. [==[

  -o, --output FILE  write FILE (whole: FILE.part, renamed at the end)
                    instead of standard output; then print what was written
With --json and -o, the report {"runs", "events", "bytes"}.]==],
  run = function(ctx, o)
    local store <close> = open_store(ctx, true)
    local q = run_query(o, store)
    if next(q) == nil then q = nil end
    local rep = write_lines(o.output, function(write) return store:export(q, write) end)
    if o.output and o.output ~= "-" then
      if ctx.json then say(json(rep)) else
        say(("%s: %s runs, %s events, %s"):format(o.output, commas(rep.runs), commas(rep.events), bytes(rep.bytes)))
      end
    end
    return 0
  end,
})

local function import_report(ctx, rep)
  if ctx.json then say(json(rep)) return end
  print_fields {
    { "imported", ("%s runs, %s events"):format(commas(rep.runs), commas(rep.events)) },
    { "skipped", ("%s (already there)"):format(commas(rep.skipped)) },
    { "lines", commas(rep.lines) },
  }
end

command("import", {
  summary = "import an export (JSON Lines) into the store",
  usage = "agentrun [--json] import STORE FILE",
  args = { "FILE" },
  help = [==[
Imports FILE, an export (agentrun export; "-" reads standard input), into
STORE, creating the store when it does not exist. Runs keep their ids,
times, steps and checkpoints; a run already in the store is skipped, so
importing a file twice imports nothing the second time. Each line is stored
in its own transaction: a bad line stops the import with EJSON naming its
number (line N: ...), and the lines before it stay imported. Prints the
report.
With --json, the report {"runs", "events", "skipped", "lines"}.]==],
  run = function(ctx, _, path)
    local read
    local f
    if path == "-" then
      read = io.stdin:lines()
    else
      local msg
      f, msg = io.open(path, "rb")
      if not f then fail("EIO", "cannot read %s", msg) end
      read = f:lines()
    end
    local store <close> = open_store(ctx, false, true)
    local ok, rep = pcall(store.import, store, read)
    if f then f:close() end
    if not ok then error(rep, 0) end
    import_report(ctx, rep)
    return 0
  end,
})

command("copy", {
  summary = "copy every run and event into another store",
  usage = "agentrun [--json] copy STORE DEST [--dest-schema NAME]",
  args = { "DEST" },
  opts = { ["dest-schema"] = "text" },
  help = [==[
Copies every run (with its steps and checkpoint) and every event of STORE
into DEST, a SQLite file or a PostgreSQL URL, created when missing: e.g. a
file into a PostgreSQL database. Runs already in DEST are skipped. Prints
the report; the two stores then export the same lines.
  --dest-schema NAME  PostgreSQL: DEST's schema (default that of --schema)
With --json, the report {"runs", "events", "skipped", "lines"}.]==],
  run = function(ctx, o, dest)
    local store <close> = open_store(ctx, true)
    local target <close> = open_store(ctx, false, true, dest, o["dest-schema"])
    import_report(ctx, store:copy(target))
    return 0
  end,
})

command("otlp", {
  summary = "runs as OpenTelemetry traces (OTLP/JSON)",
  usage = "agentrun [--json] otlp STORE [run filters as for ls] [--content] [-o FILE]",
  opts = filter_opts { output = "text", content = "flag" },
  short = { o = "output" },
  help = [==[
Writes the runs the filters select (all by default) as OpenTelemetry traces:
one OTLP/JSON export request a line (a run: its root span and a span a
step), each the body of a POST /v1/traces.
]==] .. FILTER_HELP .. [==[

  --content         with span events carrying the goal, output or error and
                    each step's content
  -o, --output FILE  write FILE (whole: FILE.part, renamed at the end)
                    instead of standard output; then print what was written
With --json and -o, the report {"runs", "bytes"}.]==],
  run = function(ctx, o)
    local store <close> = open_store(ctx, true)
    local q = run_query(o, store)
    if next(q) == nil then q = nil end
    local rep = write_lines(o.output, function(write)
      return store:otlp(q, write, o.content and { content = true } or nil)
    end)
    if o.output and o.output ~= "-" then
      if ctx.json then say(json(rep)) else
        say(("%s: %s runs, %s"):format(o.output, commas(rep.runs), bytes(rep.bytes)))
      end
    end
    return 0
  end,
})

command("view", {
  summary = "one HTML page of runs to open in a browser",
  usage = "agentrun [--json] view STORE [run filters as for ls] [--limit N] [--title TEXT] -o FILE.html",
  opts = filter_opts { output = "text", limit = "count", title = "text" },
  short = { o = "output" },
  required = { "output" },
  help = [==[
Writes the runs the filters select (all by default, newest first), with
their steps, checkpoints, intents, forks and waits, as one self-contained
HTML page (no network, no other file) that any browser opens: a table of
runs, charts of cost and runs over time and by status, each run's timeline.
The page is written whole (FILE.part, renamed at the end). Prints where it
wrote and how many runs.
]==] .. FILTER_HELP .. [==[

  --limit N         the newest N runs (default all; 0 for all)
  --title TEXT      the page's heading (default "agentrun")
  -o, --output FILE.html  the page to write (required)
With --json, {"file", "runs", "steps", "bytes", "trimmed", "steps_left_out"}.]==],
  run = function(ctx, o)
    local view = require "agentrun.view"
    local store <close> = open_store(ctx, true)
    local q = run_query(o, store)
    if o.limit and o.limit > 0 then q.limit = o.limit end
    local sum = view.write(store, q, o.output, o.title and { title = o.title } or nil)
    if ctx.json then
      sum.file = o.output
      say(json(sum))
      return 0
    end
    say(("%s: %s, %s, %s"):format(o.output, counted(sum.runs, "run"), counted(sum.steps, "step"), bytes(sum.bytes)))
    return 0
  end,
})

---------------------------------------------------------------------------
-- Help

local function main_help()
  local lines = {
    USAGE, "",
    "Shows, follows, forks, answers, exports and moves what agents recorded in an",
    "agentrun store. STORE is a SQLite file or a PostgreSQL URL (postgresql://...);",
    "it may be left out when $AGENTRUN_STORE names it. Only import and copy (its",
    "DEST) create a store that is missing.",
    "", "Commands:",
  }
  for _, name in ipairs(order) do
    lines[#lines + 1] = ("  %-9s %s"):format(name, cmds[name].summary)
  end
  for _, l in ipairs {
    "",
    "Options:",
    "  --json          one JSON object per line, every field (for scripts)",
    "  --schema NAME   PostgreSQL: the schema holding the store (default agentrun;",
    "                  also $AGENTRUN_SCHEMA)",
    "  --help          this text; agentrun COMMAND --help for a command's",
    "  --version       the version",
    "",
    "Ids are shown by their shortest unique prefix; any unique prefix of an id",
    "is accepted wherever an ID is asked for. Times may be given as ages (10m,",
    "2h, 3d) or dates (YYYY-MM-DD[ HH:MM[:SS]], local time; Z for UTC).",
    "Colour on a terminal only; NO_COLOR turns it off. COLUMNS sets the width.",
    "",
    "export, otlp and view write -o FILE whole (FILE.part, renamed at the end).",
    "",
    "Exit status: 0 success, 1 store error (stderr: agentrun: MESSAGE (CODE); an",
    "unknown id is ENOTFOUND, a prefix naming several runs EAMBIGUOUS, a bad",
    "import line or respond text EJSON),",
    "2 usage error, 130 tail interrupted (Ctrl-C). See agentrun(1).",
  } do lines[#lines + 1] = l end
  say(table.concat(lines, "\n"))
end

local function command_help(spec)
  say("usage: " .. spec.usage)
  say("")
  say(spec.help)
  say("")
  say("STORE may be left out when $AGENTRUN_STORE names it. Global options: --json, --schema NAME.")
end

---------------------------------------------------------------------------
-- The command line

local function parse(argv)
  local ctx = { json = false, schema = env("AGENTRUN_SCHEMA") }
  if ctx.schema == "" then ctx.schema = nil end
  local pos, opts, cmd = {}, {}, nil
  local i = 1
  local function value_of(name, inline)
    if inline then return inline end
    i = i + 1
    local v = argv[i]
    if v == nil then usage_error(cmd and cmd.name, "--%s needs a value", name) end
    return v
  end
  local help = false
  local rest_positional = false
  while i <= #argv do
    local a = argv[i]
    if rest_positional or a == "-" or not a:match("^%-") then
      if not cmd and not rest_positional then
        cmd = cmds[a]
        if not cmd then usage_error(nil, "unknown command '%s'", a) end
        opts._cmd = a
      else
        pos[#pos + 1] = a
      end
    elseif a == "--" then
      rest_positional = true
    else
      local name, inline = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:match("^%-%-(.+)$")
      -- a command's one-letter options (-o FILE)
      local letter = not name and a:match("^%-(%a)$")
      if letter and cmd and cmd.short and cmd.short[letter] then name = cmd.short[letter] end
      if not name then usage_error(cmd and cmd.name, "unknown option '%s'", a) end
      if name == "json" and not inline then
        ctx.json = true
      elseif name == "help" and not inline then
        help = true
      elseif name == "version" and not inline and not cmd then
        ctx.version = true
      elseif name == "schema" then
        ctx.schema = value_of(name, inline)
      else
        local kind = cmd and cmd.opts and cmd.opts[name]
        if not kind then
          if not cmd then usage_error(nil, "unknown option '%s' (options of a command go after it)", a) end
          usage_error(cmd.name, "unknown option '%s' for %s", a, cmd.name)
        end
        if kind == "flag" then
          if inline then usage_error(cmd.name, "--%s takes no value", name) end
          opts[name] = true
        else
          local v = value_of(name, inline)
          if kind == "text" then
            opts[name] = v
          elseif kind == "list" then
            opts[name] = opts[name] or {}
            for item in v:gmatch("[^,]+") do table.insert(opts[name], item) end
            if #opts[name] == 0 then usage_error(cmd.name, "--%s needs at least one value", name) end
          elseif kind == "time" then
            opts[name] = parse_time(cmd.name, "--" .. name, v)
          elseif kind == "duration" then
            opts[name] = parse_duration(cmd.name, "--" .. name, v)
          elseif kind == "count" then
            opts[name] = parse_count(cmd.name, "--" .. name, v)
          end
        end
      end
    end
    i = i + 1
  end
  return ctx, cmd, pos, opts, help
end

local function run(argv)
  local ctx, cmd, pos, opts, help = parse(argv)
  if ctx.version then say("agentrun " .. agentrun.version) return 0 end
  if not cmd then
    if help then main_help() return 0 end
    usage_error(nil, "no command given")
  end
  if help then command_help(cmd) return 0 end
  -- STORE, then the command's arguments; STORE may come from the environment
  local nargs = #(cmd.args or {})
  if cmd.name == "tail" and opts.agent then nargs = 0 end
  local from_env = env("AGENTRUN_STORE")
  if from_env == "" then from_env = nil end
  if #pos == nargs + 1 then
    ctx.store = table.remove(pos, 1)
  elseif #pos == nargs and from_env then
    ctx.store = from_env
  elseif #pos < nargs + 1 then
    if #pos == 0 and not from_env then usage_error(cmd.name, "no STORE given (nor $AGENTRUN_STORE)") end
    usage_error(cmd.name, "%s needs %s", cmd.name, table.concat(cmd.args, " "))
  else
    usage_error(cmd.name, "too many arguments: '%s'", pos[nargs + 2] or pos[#pos])
  end
  for _, r in ipairs(cmd.required or {}) do
    if opts[r] == nil then usage_error(cmd.name, "%s needs --%s", cmd.name, r) end
  end
  if ctx.store == "" then usage_error(cmd.name, "STORE is empty") end
  for k = 1, nargs do
    if pos[k] == "" then usage_error(cmd.name, "%s is empty", cmd.args[k]) end
  end
  for name, v in pairs(opts) do
    if v == "" then usage_error(cmd.name, "--%s is empty", name) end
  end
  return cmd.run(ctx, opts, table.unpack(pos, 1, nargs))
end

local function main(argv)
  local ok, res = xpcall(run, function(e)
    if type(e) == "table" then return e end
    -- an error of the command itself, never shown as a trace
    return { message = tostring(e), traceback = debug.traceback() }
  end, argv)
  out:flush()
  if ok then return res or 0 end
  local e = res
  local mt = getmetatable(e)
  if mt == UsageError then
    io.stderr:write(PROG, ": ", e.message, "\n")
    local spec = e.cmd and cmds[e.cmd]
    io.stderr:write(spec and ("usage: " .. spec.usage .. "   (agentrun " .. e.cmd .. " --help)") or USAGE, "\n")
    return 2
  end
  if mt == Failure then
    io.stderr:write(PROG, ": ", e.message, " (", e.code, ")\n")
    return 1
  end
  if agentrun.is_error(e) or agentrun.is_budget_exhausted(e) then
    io.stderr:write(PROG, ": ", (tostring(e.message):gsub("\n", " ")), " (", tostring(e.code), ")\n")
    return 1
  end
  local msg = tostring(e.message)
  if msg:match("interrupted!$") then return INTERRUPTED end
  if os.getenv("AGENTRUN_DEBUG") and e.traceback then io.stderr:write(e.traceback, "\n") end
  -- a plain error of the library: misuse, or a policy file it refused
  local here = debug.getinfo(1, "S").short_src
  if msg:sub(1, #here + 1) == here .. ":" then msg = msg:gsub("^[^\n]-:%d+: ", "", 1) end
  msg = msg:gsub("\n", " ")
  io.stderr:write(PROG, ": ", msg, " (EMISUSE)\n")
  return 1
end

os.exit(main(arg), true)
