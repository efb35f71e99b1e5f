-- postgres_spec.lua -- agentrun.open on a PostgreSQL server: the schema
-- option, what open returns for a server's refusals, and the password kept
-- out of every message and of info().path (SPEC §3.1, §7). Needs a server
-- (AGENTRUN_TEST_PG, a libpq URL); skipped with a notice without one.
local agentrun = require "agentrun"

local url = os.getenv("AGENTRUN_TEST_PG")
if not url or url == "" then
  io.stderr:write("AGENTRUN_TEST_PG is not set: the PostgreSQL Lua specs are skipped\n")
  return
end

-- A schema name of this process, dropped (with what it holds) after each test.
local counter = 0
local function schema_name()
  counter = counter + 1
  return ("ar_lua_%d_%d"):format(math.floor(os.time() % 100000), counter)
end

-- psql runs without the suite's LD_PRELOAD: under make check that preloads
-- the ASan runtime, and Debian's psql (a Perl wrapper) hangs with it.
local function drop(schema)
  os.execute(("env -u LD_PRELOAD psql -X -q %q -c \"SET lock_timeout = '20s'; SET client_min_messages = warning; \z
               DROP SCHEMA IF EXISTS %s CASCADE\" >/dev/null 2>&1"):format(url, schema))
end

describe("agentrun.open on PostgreSQL", function()
  local schema
  before_each(function() schema = schema_name() end)
  after_each(function() drop(schema) end)

  it("opens the store in the schema given, and reopens it with its runs", function()
    local s = assert(agentrun.open(url, { schema = schema }))
    local info = s:info()
    assert.equal("postgresql", info.backend)
    assert.equal(3, info.schema_version)
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm", content = { text = "caf\u{e9}" } }
    local id = r:complete("done").id
    s:close()
    local again = assert(agentrun.open(url, { schema = schema }))
    local rec = again:get(id, { steps = true })
    assert.equal("completed", rec.status)
    assert.equal("caf\u{e9}", rec.steps[1].content.text)
    again:close()
  end)

  it("keeps stores in two schemas apart", function()
    local other = schema .. "_b"
    local a = assert(agentrun.open(url, { schema = schema }))
    local b = assert(agentrun.open(url, { schema = other }))
    local id = a:begin { agent = "a", goal = "g" }:complete().id
    assert.is_nil(b:get(id))
    assert.equal(0, b:count())
    a:close()
    b:close()
    drop(other)
  end)

  it("raises a plain error for a schema that is no identifier", function()
    for _, bad in ipairs { "", "1x", "a-b", "a;b", ("x"):rep(64) } do
      local ok, err = pcall(agentrun.open, url, { schema = bad })
      assert.is_false(ok)
      assert.is_string(err)
      assert.truthy(err:find("schema", 1, true))
    end
    assert.has_error(function() agentrun.open(url, { schema = 5 }) end)
  end)

  it("returns nil, message, EIO for an unreachable server, without the password", function()
    local s, msg, code = agentrun.open("postgresql://me:s3cr3t-pw@/agentrun?host=/nonexistent-agentrun-dir",
                                       { schema = schema })
    assert.is_nil(s)
    assert.equal("EIO", code)
    assert.is_nil(msg:find("s3cr3t", 1, true))
  end)

  it("never shows the password in info().path", function()
    local with = url:gsub("^(postgres[ql]*://)([^:@/]*)@", "%1%2:s3cr3t-pw@")
    if with == url then with = url .. (url:find("?", 1, true) and "&" or "?") .. "password=s3cr3t-pw" end
    local s = assert(agentrun.open(with, { schema = schema }))
    assert.is_nil(s:info().path:find("s3cr3t", 1, true))
    s:close()
  end)
end)
