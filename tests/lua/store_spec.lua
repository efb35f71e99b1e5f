-- store_spec.lua -- agentrun.open, its options, store:info and open failures (SPEC §3.1, §6 Errors).
local agentrun = require "agentrun"
local h = require "helpers"

describe("agentrun.open", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("creates a missing file and returns an open store #sqlite_only", function()
    local path = dir .. "/new.db"
    assert.is_false(h.exists(path))
    local s = agentrun.open(path)
    assert.equal("userdata", type(s))
    assert.is_true(h.exists(path))
    assert.equal(0, s:count())
    s:close()
  end)

  it("reopens an existing store with its runs", function()
    local path, o = h.location()
    local s = agentrun.open(path, o)
    local r = s:begin { agent = "a", goal = "g" }
    r:step { kind = "llm" }
    local id = r:complete("done").id
    s:close()
    local again = agentrun.open(path, o)
    local rec = again:get(id)
    assert.equal("completed", rec.status)
    assert.equal("done", rec.output)
    assert.equal(1, rec.iterations)
    again:close()
  end)

  it("opens an in-memory store for ':memory:' #sqlite_only", function()
    local s = agentrun.open(":memory:")
    assert.equal(":memory:", s:info().path)
    s:begin { agent = "a", goal = "g" }:complete()
    assert.equal(1, s:count())
    s:close()
    -- a second in-memory store is a different, empty one
    local other = agentrun.open(":memory:")
    assert.equal(0, other:count())
    other:close()
  end)

  it("accepts durability 'full' and 'normal', busy_timeout and readonly=false", function()
    local path, o = h.location()
    for _, opts in ipairs {
      { durability = "full" }, { durability = "normal" }, { busy_timeout = 0 },
      { busy_timeout = 250 }, { readonly = false }, {},
      { durability = "normal", busy_timeout = 10, readonly = false },
    } do
      local s = agentrun.open(path, h.same_store(o, opts))
      assert.equal("userdata", type(s))
      local r = s:begin { agent = "a", goal = "g" }
      assert.equal(1, r:step { kind = "x" })
      r:complete()
      s:close()
    end
    local s = agentrun.open(path, o)
    assert.equal(7, s:count())
    s:close()
  end)

  it("raises a plain error for an unknown option #sqlite_only", function()
    local msg = h.plain_error(agentrun.open, dir .. "/u.db", { durabilty = "full" })
    assert.truthy(msg:find("unknown field 'durabilty' in open options", 1, true))
    msg = h.plain_error(agentrun.open, dir .. "/u.db", { timeout = 10 })
    assert.truthy(msg:find("unknown field 'timeout'", 1, true))
    assert.is_false(h.exists(dir .. "/u.db"))
  end)

  it("raises a plain error for bad option values #sqlite_only", function()
    local path = dir .. "/bad.db"
    local cases = {
      { { durability = "fast" }, "durability" },
      { { durability = "FULL" }, "durability" },
      { { durability = 1 }, "durability" },
      { { busy_timeout = -1 }, "busy_timeout" },
      { { busy_timeout = 1.5 }, "busy_timeout" },
      { { busy_timeout = "100" }, "busy_timeout" },
      { { readonly = 1 }, "readonly" },
      { { readonly = "yes" }, "readonly" },
      { { [1] = "full" }, "field names must be strings" },
    }
    for _, c in ipairs(cases) do
      local msg = h.plain_error(agentrun.open, path, c[1])
      assert.truthy(msg:find(c[2], 1, true), msg)
    end
    assert.is_false(h.exists(path))
  end)

  it("raises a plain error for a wrong path or options type #sqlite_only", function()
    h.plain_error(agentrun.open)
    h.plain_error(agentrun.open, 42)
    h.plain_error(agentrun.open, {})
    h.plain_error(agentrun.open, dir .. "/x\0y.db")
    h.plain_error(agentrun.open, dir .. "/x.db", "normal")
    assert.is_false(h.exists(dir .. "/x.db"))
    assert.is_false(h.exists(dir .. "/x"))
  end)

  it("returns nil, message, code for a directory #sqlite_only", function()
    local n = select("#", agentrun.open(dir))
    assert.equal(3, n)
    local s, msg, code = agentrun.open(dir)
    assert.is_nil(s)
    assert.equal("string", type(msg))
    assert.truthy(msg:find(dir, 1, true), msg)
    assert.truthy(code == "EIO" or code == "EPERM", code)
  end)

  it("returns nil, message, code for a missing file opened read-only, and creates nothing #sqlite_only", function()
    local path = dir .. "/missing.db"
    local s, msg, code = agentrun.open(path, { readonly = true })
    assert.is_nil(s)
    assert.equal("string", type(msg))
    assert.truthy(msg ~= "")
    assert.truthy(code == "EIO" or code == "EPERM", code)
    assert.is_false(h.exists(path))
  end)

  it("takes names that look like SQLite URIs as plain file names, leaving no other file #sqlite_only", function()
    -- such a name only looks like a URI at the start of a relative path, so
    -- a child Lua opens them from inside dir
    local script = dir .. "/open_names.lua"
    h.write_file(script, [[
      local agentrun = require "agentrun"
      local names = { "file:uri.db?mode=ro", "file::memory:?cache=shared", "sub/file:y.db?mode=ro" }
      for _, name in ipairs(names) do
        local s = assert(agentrun.open(name))
        assert(s:info().path == name)
        s:begin { agent = "a", goal = "g" }:complete("done")
        s:close()
        local ro = assert(agentrun.open(name, { readonly = true }))
        assert(ro:count() == 1, name)
        ro:close()
      end
      local s, _, code = agentrun.open("file:missing.db?mode=rwc", { readonly = true })
      assert(s == nil and code == "EIO", code)
      print("ok")
    ]])
    os.execute("mkdir '" .. dir .. "/sub'")
    local p = assert(io.popen("cd '" .. dir .. "' && lua5.4 open_names.lua 2>&1"))
    local out = p:read("a")
    p:close()
    assert.equal("ok\n", out)
    os.remove(script)
    -- each store, with its -wal and -shm beside it under the same name, and nothing else
    local function files(d)
      local ls = assert(io.popen("ls -A '" .. d .. "'"))
      local set = {}
      for name in ls:lines() do set[(name:gsub("%-wal$", ""):gsub("%-shm$", ""))] = true end
      ls:close()
      return set
    end
    assert.same({ ["file::memory:?cache=shared"] = true, ["file:uri.db?mode=ro"] = true, sub = true }, files(dir))
    assert.same({ ["file:y.db?mode=ro"] = true }, files(dir .. "/sub"))
  end)

  it("never takes a PostgreSQL location for a file name, nor shows its password", function()
    for _, location in ipairs {
      "postgresql://me:s3cr3t@/agentrun?host=" .. dir .. "/no-server",
      "host=" .. dir .. "/no-server dbname=agentrun password=s3cr3t",
    } do
      local s, msg, code = agentrun.open(location, { busy_timeout = 100 })
      assert.is_nil(s)
      assert.is_string(msg)
      assert.is_string(code)
      assert.is_nil(msg:find("s3cr3t", 1, true))
    end
    assert.is_false(h.exists("postgresql:"))
  end)

  it("returns nil, message, code for a file in a missing directory #sqlite_only", function()
    local s, msg, code = agentrun.open(dir .. "/no/such/dir/s.db")
    assert.is_nil(s)
    assert.equal("string", type(msg))
    assert.truthy(code == "EIO" or code == "EPERM", code)
  end)

  it("returns nil, message, 'ECORRUPT' for a file that is not an agentrun store, and leaves it as it was #sqlite_only", function()
    local path = dir .. "/notes.txt"
    local bytes = ("this is not a database\n"):rep(500)
    h.write_file(path, bytes)
    local s, msg, code = agentrun.open(path)
    assert.is_nil(s)
    assert.equal("ECORRUPT", code)
    assert.equal("string", type(msg))
    assert.truthy(msg ~= "")
    assert.equal(bytes, h.read_file(path))
    -- read-only gives the same answer
    s, msg, code = agentrun.open(path, { readonly = true })
    assert.is_nil(s)
    assert.equal("ECORRUPT", code)
  end)

  it("returns nil, message, 'ECORRUPT' for a SQLite-looking header with garbage after it #sqlite_only", function()
    local path = dir .. "/fake.db"
    h.write_file(path, "SQLite format 3\0" .. ("\255"):rep(8192))
    local s, _, code = agentrun.open(path)
    assert.is_nil(s)
    assert.equal("ECORRUPT", code)
  end)

  it("lets two handles on one store record at once, each seeing the other's runs", function()
    local path, o = h.location()
    local a = agentrun.open(path, o)
    local b = agentrun.open(path, h.same_store(o, { durability = "normal" }))
    local ra = a:begin { agent = "a", goal = "g" }
    local rb = b:begin { agent = "b", goal = "g" }
    for i = 1, 50 do
      assert.equal(i, ra:step { kind = "k", content = i })
      assert.equal(i, rb:step { kind = "k", content = -i })
    end
    ra:complete("a done")
    rb:complete("b done")
    assert.equal(2, a:count())
    assert.equal(2, b:count())
    assert.equal("b done", a:get(rb.id).output)
    assert.equal(50, #h.steps(b, ra.id))
    assert.equal(-50, h.steps(a, rb.id)[50].content)
    assert.equal(100, a:info().steps)
    a:close()
    b:close()
  end)

  it("opens an existing store read-only: reading works, writing raises EPERM and writes nothing", function()
    local path, o = h.location()
    local s = agentrun.open(path, o)
    local r = s:begin { agent = "a", goal = "g", user = "u" }
    r:step { kind = "llm" }
    local id = r:complete("ok").id
    s:close()

    local ro = agentrun.open(path, h.same_store(o, { readonly = true }))
    assert.equal(1, ro:count())
    assert.equal("ok", ro:get(id).output)
    assert.equal(1, #h.steps(ro, id))
    h.ar_error("EPERM", ro.begin, ro, { agent = "a", goal = "g" })
    h.ar_error("EPERM", ro.forget_user, ro, "u")
    local rec = agentrun.records.completed { agent = "a", goal = "g", output = 1 }
    h.ar_error("EPERM", ro.write, ro, rec)
    assert.equal(1, ro:count())
    assert.equal("u", ro:get(id).user)
    ro:close()
  end)
end)

describe("store:info", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("reports exactly backend, path, schema_version, runs, steps, events, file_bytes, wal_bytes, free_bytes", function()
    local path, o = h.location()
    local s = agentrun.open(path, o)
    local info = s:info()
    local keys = {}
    for k in pairs(info) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "backend", "events", "file_bytes", "free_bytes", "path", "runs", "schema_version", "steps",
                  "wal_bytes" }, keys)
    assert.equal(h.backend(), info.backend)
    assert.equal(path, info.path)
    assert.equal(3, info.schema_version)
    assert.equal(0, info.runs)
    assert.equal(0, info.steps)
    assert.equal(0, info.events)
    for _, k in ipairs { "file_bytes", "wal_bytes", "free_bytes", "runs", "steps", "events", "schema_version" } do
      assert.equal("integer", math.type(info[k]), k)
      assert.truthy(info[k] >= 0, k)
    end
    assert.truthy(info.file_bytes > 0)
    s:close()
  end)

  it("counts runs and steps", function()
    local s = h.store()
    local r1 = s:begin { agent = "a", goal = "g" }
    r1:step { kind = "llm" }
    r1:step { kind = "tool" }
    local r2 = s:begin { agent = "b", goal = "g" }
    r2:step { kind = "llm" }
    r2:fail("x")
    local info = s:info()
    assert.equal(2, info.runs)
    assert.equal(3, info.steps)
    assert.equal(0, info.events)
    r1:complete()
    s:close()
  end)

  it("returns a fresh table each call", function()
    local s = h.store()
    local a = s:info()
    a.runs = 99
    assert.equal(0, s:info().runs)
    s:close()
  end)
end)

describe("agentrun module", function()
  it("exposes the documented names", function()
    for _, name in ipairs { "open", "array", "loop", "is_budget_exhausted" } do
      assert.equal("function", type(agentrun[name]), name)
    end
    assert.equal("table", type(agentrun.records))
    for _, name in ipairs { "completed", "budget_exhausted", "failed" } do
      assert.equal("function", type(agentrun.records[name]), name)
    end
    assert.equal("table", type(agentrun.Error))
    assert.equal("table", type(agentrun.BudgetExhausted))
    assert.are_not.equal(agentrun.Error, agentrun.BudgetExhausted)
    assert.equal("string", type(agentrun.version))
  end)

  it("returns the same module table from every require", function()
    assert.equal(agentrun, require "agentrun")
  end)

  it("formats agentrun.Error as 'agentrun: CODE: message'", function()
    local s = h.store()
    local r = s:begin { agent = "a", goal = "g" }
    r:complete()
    local e = h.ar_error("ESTATE", r.step, r, { kind = "x" })
    assert.equal("string", type(e.message))
    assert.equal("agentrun: ESTATE: " .. e.message, tostring(e))
    assert.is_true(agentrun.is_error(e))
    assert.is_false(agentrun.is_budget_exhausted(e))
    s:close()
  end)
end)
