-- json_spec.lua -- Lua values <-> JSON through steps, outputs and reading back (SPEC §5, §6 JSON limits).
local agentrun = require "agentrun"
local h = require "helpers"

local LIMIT = 1 << 53

-- A chain of `depth` nested tables ({ {...} }), innermost holding `leaf`.
local function nest(depth, leaf)
  local t = agentrun.array { leaf }
  for _ = 2, depth do t = agentrun.array { t } end
  return t
end

describe("JSON through steps", function()
  local s, r

  -- Records `v` as a step's content and returns what reads back, and the seq.
  local function roundtrip(v)
    local seq = r:step { kind = "t", content = v }
    local got = h.steps(s, r.id, { from = seq, limit = 1 })
    assert.equal(1, #got)
    assert.equal(seq, got[1].seq)
    return got[1].content, seq
  end

  -- Expects recording `v` to raise EJSON with exactly `message`, changing nothing.
  local function refused(v, message)
    local before_iter, before_steps = r.iterations, s:info().steps
    local before_usage = r.usage
    local e = h.ar_error("EJSON", r.step, r, { kind = "t", content = v, usage = { input_tokens = 5 }, cost = 1 })
    assert.equal(agentrun.Error, getmetatable(e))
    if message then assert.equal(message, e.message) end
    assert.equal("agentrun: EJSON: " .. e.message, tostring(e))
    assert.equal(before_iter, r.iterations)
    assert.equal(before_steps, s:info().steps)
    assert.same(before_usage, r.usage)
    return e
  end

  before_each(function()
    s = h.store()
    r = s:begin { agent = "a", goal = "g" }
  end)
  after_each(function() s:close() end)

  it("stores scalars as given", function()
    assert.equal("text", roundtrip("text"))
    assert.equal("", roundtrip(""))
    assert.equal(true, roundtrip(true))
    assert.equal(false, roundtrip(false))
    assert.equal(1.5, roundtrip(1.5))
    assert.equal(-0.001, roundtrip(-0.001))
    assert.equal(0.1, roundtrip(0.1))
    assert.equal(1 / 3, roundtrip(1 / 3))
    assert.equal(1e300, roundtrip(1e300))
    assert.equal(5e-324, roundtrip(5e-324))
  end)

  it("reads nil content and agentrun.null content back as nil", function()
    assert.is_nil(roundtrip(nil))
    assert.is_nil(roundtrip(agentrun.null))
  end)

  it("keeps integers integers, up to +-2^53", function()
    for _, n in ipairs { 0, 1, -1, 42, LIMIT, -LIMIT, LIMIT - 1, 1000000007 } do
      local got = roundtrip(n)
      assert.equal(n, got)
      assert.equal("integer", math.type(got), tostring(n))
    end
    local got = roundtrip({ n = LIMIT, list = agentrun.array { -LIMIT, 7 } })
    assert.equal("integer", math.type(got.n))
    assert.equal(LIMIT, got.n)
    assert.equal(-LIMIT, got.list[1])
    assert.equal("integer", math.type(got.list[2]))
  end)

  it("keeps floats floats", function()
    local got = roundtrip({ 2.5, 1e20 })
    assert.equal("float", math.type(got[1]))
    assert.equal(2.5, got[1])
    assert.equal(1e20, got[2])
  end)

  it("refuses integers beyond +-2^53 with EJSON", function()
    refused(LIMIT + 1, "step.content: integer out of range (beyond +-2^53)")
    refused(-LIMIT - 1, "step.content: integer out of range (beyond +-2^53)")
    refused({ big = math.maxinteger }, "step.content.big: integer out of range (beyond +-2^53)")
    refused(agentrun.array { 1, math.mininteger }, "step.content[2]: integer out of range (beyond +-2^53)")
  end)

  it("refuses NaN and infinities with EJSON naming the path", function()
    refused(0 / 0, "step.content: NaN is not valid JSON")
    refused(math.huge, "step.content: Infinity is not valid JSON")
    refused(-math.huge, "step.content: -Infinity is not valid JSON")
    refused({ tool_calls = { { name = "a" }, { name = "b" }, { name = "c", args = { x = 1, y = 0 / 0 } } } },
      "step.content.tool_calls[3].args.y: NaN is not valid JSON")
    refused({ ["odd key"] = { math.huge } }, 'step.content["odd key"][1]: Infinity is not valid JSON')
  end)

  it("names the path in the message, e.g. content.tool_calls[3].args", function()
    local e = refused({ tool_calls = { {}, {}, { args = { 1, nil, 3 } } } })
    assert.equal("step.content.tool_calls[3].args: sparse array", e.message)
    assert.truthy(e.message:find("content.tool_calls[3].args", 1, true))
  end)

  it("encodes tables with keys 1..n as arrays and string-keyed tables as objects", function()
    local got = roundtrip({ 1, "two", { 3 } })
    assert.equal(getmetatable(agentrun.array {}), getmetatable(got))
    assert.same({ 1, "two", { 3 } }, got)
    assert.equal('[1,"two",[3]]', agentrun.json_encode(got))
    local obj = roundtrip({ a = 1, b = { c = "d" } })
    assert.is_nil(getmetatable(obj))
    assert.same({ a = 1, b = { c = "d" } }, obj)
  end)

  it("encodes an empty table as an object and agentrun.array{} as an array", function()
    local got = roundtrip({})
    assert.equal("table", type(got))
    assert.is_nil(getmetatable(got))
    assert.equal("{}", agentrun.json_encode(got))
    local arr = roundtrip(agentrun.array {})
    assert.equal(getmetatable(agentrun.array {}), getmetatable(arr))
    assert.equal("[]", agentrun.json_encode(arr))
    local both = roundtrip({ o = {}, a = agentrun.array {} })
    assert.equal("{}", agentrun.json_encode(both.o))
    assert.equal("[]", agentrun.json_encode(both.a))
  end)

  it("keeps decoded arrays arrays: reading back and re-encoding gives the same JSON", function()
    local v = {
      empty_list = agentrun.array {}, empty_obj = {},
      nested = agentrun.array { agentrun.array {}, {}, agentrun.array { agentrun.array {} } },
      list = { { id = 1, tags = agentrun.array {} }, { id = 2, tags = { "x" } } },
    }
    local once = roundtrip(v)
    local twice = roundtrip(once)
    local thrice = roundtrip(twice)
    assert.equal(h.canon(v), h.canon(once))
    assert.equal(h.canon(once), h.canon(twice))
    assert.equal(h.canon(twice), h.canon(thrice))
    assert.equal('{"empty_list":[],"empty_obj":{},"list":[{"id":1,"tags":[]},{"id":2,"tags":["x"]}],'
      .. '"nested":[[],{},[[]]]}', h.canon(thrice))
    assert.equal("[]", agentrun.json_encode(thrice.empty_list))
    assert.equal("{}", agentrun.json_encode(thrice.empty_obj))
    assert.equal("[[],{},[[]]]", agentrun.json_encode(thrice.nested))
    assert.equal("[]", agentrun.json_encode(thrice.list[1].tags))
  end)

  it("keeps agentrun.null inside arrays and objects", function()
    local got = roundtrip(agentrun.array { 1, agentrun.null, 3 })
    assert.equal(3, #got)
    assert.equal(agentrun.null, got[2])
    assert.equal("[1,null,3]", agentrun.json_encode(got))
    local obj = roundtrip({ a = agentrun.null })
    assert.equal(agentrun.null, obj.a)
  end)

  it("allows a table referenced twice without a cycle", function()
    local shared = { x = 1 }
    local got = roundtrip({ a = shared, b = shared, list = agentrun.array { shared, shared } })
    assert.same({ x = 1 }, got.a)
    assert.same({ x = 1 }, got.b)
    assert.same({ { x = 1 }, { x = 1 } }, got.list)
  end)

  it("refuses cycles with EJSON", function()
    local t = {}
    t.self = t
    refused(t, "step.content.self: cycle: table refers to itself")
    local a, b = {}, {}
    a[1] = b
    b.back = a
    refused(a, "step.content[1].back: cycle: table refers to itself")
  end)

  it("accepts nesting 512 levels deep and refuses 513 with EJSON", function()
    local got = roundtrip(nest(512, "deep"))
    local depth = 0
    local t = got
    while type(t) == "table" do
      depth = depth + 1
      t = t[1]
    end
    assert.equal(512, depth)
    assert.equal("deep", t)
    local e = refused(nest(513, "deep"))
    assert.truthy(e.message:find("nested deeper than 512 levels", 1, true), e.message)
    refused({ wrap = nest(512, 1) })
  end)

  it("refuses sparse arrays and mixed keys with EJSON", function()
    refused({ 1, nil, 3 }, "step.content: sparse array")
    refused({ [2] = "x" }, "step.content: sparse array")
    refused({ [0] = "x" }, "step.content: sparse array")
    refused({ [-1] = "x", [1] = "y" })
    refused({ 1, 2, a = 3 }, "step.content: mixed keys (array and object)")
    refused(agentrun.array { a = 1 }, "step.content: mixed keys (array and object)")
    refused({ list = { [1] = 1, [3] = 3 } }, "step.content.list: sparse array")
    refused({ [true] = 1 }, "step.content: boolean key (keys must be strings or array indices 1..n)")
    refused({ [1.5] = 1 }, "step.content: number key (keys must be strings or array indices 1..n)")
  end)

  it("refuses functions, threads and userdata with EJSON", function()
    refused(print, "step.content: cannot encode a function")
    refused({ f = print }, "step.content.f: cannot encode a function")
    refused(coroutine.create(print), "step.content: cannot encode a thread")
    refused(io.stdout, "step.content: cannot encode a userdata")
    refused(s, "step.content: cannot encode a userdata")
  end)

  it("stores strings with NUL bytes exactly", function()
    local v = "a\0b\0\0c"
    local got = roundtrip(v)
    assert.equal(6, #got)
    assert.equal(v, got)
    local obj = roundtrip({ ["k\0ey"] = "v\0", list = { "\0" } })
    assert.equal("v\0", obj["k\0ey"])
    assert.equal("\0", obj.list[1])
  end)

  it("stores control characters, quotes, backslashes and non-ASCII text exactly", function()
    local v = "tab\t nl\n cr\r q\" bs\\ bell\7 del\127 é ✓ 😀 \u{10FFFF}"
    assert.equal(v, roundtrip(v))
  end)

  it("refuses invalid UTF-8 in strings and keys with EJSON", function()
    refused("\255", "step.content: invalid UTF-8")
    refused("ok \192\175", "step.content: invalid UTF-8") -- overlong '/'
    refused("\237\160\128", "step.content: invalid UTF-8") -- a surrogate
    refused("\244\144\128\128", "step.content: invalid UTF-8") -- beyond U+10FFFF
    refused("\226\130", "step.content: invalid UTF-8") -- truncated
    refused({ list = { "fine", "bad \128" } }, "step.content.list[2]: invalid UTF-8")
    refused({ ["\255"] = 1 }, 'step.content["\\xFF"]: invalid UTF-8 in key')
  end)

  it("round-trips a 16 MB string exactly", function()
    local big = ("0123456789abcdef"):rep(1024 * 1024)
    assert.equal(16 * 1024 * 1024, #big)
    local got = roundtrip(big)
    assert.equal(#big, #got)
    assert.is_true(big == got)
    local rec = r:complete({ blob = big })
    assert.is_true(rec.output.blob == big)
  end)

  it("round-trips a 100,000-element array", function()
    local list = {}
    for i = 1, 100000 do list[i] = i end
    local got = roundtrip(list)
    assert.equal(100000, #got)
    for i = 1, 100000, 997 do assert.equal(i, got[i]) end
    assert.equal(100000, got[100000])
  end)

  it("does not call metamethods: tables are read raw", function()
    local t = setmetatable({ a = 1 }, {
      __index = function() error("__index called") end,
      __pairs = function() error("__pairs called") end,
      __len = function() error("__len called") end,
    })
    assert.same({ a = 1 }, roundtrip(t))
  end)

  it("a refused value changes nothing: iterations, usage and the next seq continue", function()
    roundtrip("one")
    roundtrip("two")
    refused({ bad = 0 / 0 })
    refused("\255")
    local t = {}
    t[1] = t
    refused(t)
    assert.equal(2, r.iterations)
    local _, seq = roundtrip("three")
    assert.equal(3, seq)
    assert.same({ 1, 2, 3 }, h.seqs(h.steps(s, r.id)))
    assert.equal(3, s:get(r.id).iterations)
  end)

  it("refuses a bad output in complete() and leaves the run running", function()
    r:step { kind = "llm" }
    local e = h.ar_error("EJSON", r.complete, r, { answer = 0 / 0 })
    assert.equal("output.answer: NaN is not valid JSON", e.message)
    assert.equal("running", r.status)
    assert.equal("running", s:get(r.id).status)
    assert.equal("completed", r:complete({ answer = 1 }).status)
  end)
end)

describe("agentrun.json_encode / json_decode / array", function()
  it("encode with the path rooted at 'value'", function()
    assert.equal("[1,2]", agentrun.json_encode({ 1, 2 }))
    assert.equal('{"a":[]}', agentrun.json_encode({ a = agentrun.array {} }))
    assert.equal("null", agentrun.json_encode(nil))
    assert.equal("1.5", agentrun.json_encode(1.5))
    assert.equal('"a\\u0000b"', agentrun.json_encode("a\0b"))
    local e = h.ar_error("EJSON", agentrun.json_encode, { x = { 0 / 0 } })
    assert.equal("value.x[1]: NaN is not valid JSON", e.message)
  end)

  it("decode arrays with the array metatable, objects without, null as agentrun.null", function()
    local v = agentrun.json_decode('{"a":[1,{"b":null}],"e":{},"l":[]}')
    assert.equal(getmetatable(agentrun.array {}), getmetatable(v.a))
    assert.is_nil(getmetatable(v))
    assert.is_nil(getmetatable(v.e))
    assert.equal(agentrun.null, v.a[2].b)
    assert.equal("[]", agentrun.json_encode(v.l))
    assert.is_nil(agentrun.json_decode("null"))
  end)

  it("decode \\u escapes and surrogate pairs into UTF-8", function()
    assert.equal("é😀\0", agentrun.json_decode('"\\u00e9\\ud83d\\ude00\\u0000"'))
  end)

  it("decode raises agentrun.Error for text that is not JSON", function()
    for _, text in ipairs { "", "[1,", "{a:1}", '"\\ud800"', "[1] x", "nul", '"\255"' } do
      local ok, e = pcall(agentrun.json_decode, text)
      assert.is_false(ok)
      assert.equal(agentrun.Error, getmetatable(e), text)
    end
  end)

  it("decode takes what the core takes and nothing more, at each of its limits", function()
    local function decodes(text)
      local ok, e = pcall(agentrun.json_decode, text)
      if not ok then assert.equal("EJSON", e.code, text) end
      return ok
    end
    -- nesting: 512 levels are a value the store keeps, 513 are refused
    assert.is_true(decodes(("["):rep(512) .. ("]"):rep(512)))
    assert.is_false(decodes(("["):rep(513) .. ("]"):rep(513)))
    -- integers: +-2^53 exactly, not one past (as a float they are a number like any)
    assert.equal(LIMIT, agentrun.json_decode(tostring(LIMIT)))
    assert.equal(-LIMIT, agentrun.json_decode(tostring(-LIMIT)))
    assert.is_false(decodes(tostring(LIMIT + 1)))
    assert.is_false(decodes(tostring(-LIMIT - 1)))
    assert.is_false(decodes("9223372036854775807"))
    assert.equal(2.0 ^ 53 + 2, agentrun.json_decode("9007199254740994.0"))
    -- UTF-8 and \u escapes: surrogates only in pairs, no overlongs, nothing past U+10FFFF
    assert.equal("\u{1F600}", agentrun.json_decode('"\\ud83d\\ude00"'))
    assert.is_false(decodes('"\\ud800"'))
    assert.is_false(decodes('"\\udc00"'))
    assert.is_false(decodes('"\xED\xA0\x80"'))
    assert.is_false(decodes('"\xC0\xAF"'))
    assert.is_false(decodes('"\xE0\x80\x80"'))
    assert.is_false(decodes('"\xF4\x90\x80\x80"'))
    assert.equal("\u{10FFFF}", agentrun.json_decode('"\xF4\x8F\xBF\xBF"'))
    -- NUL: escaped it is a character, raw it is not JSON
    assert.equal("a\0b", agentrun.json_decode('"a\\u0000b"'))
    assert.is_false(decodes('"a\0b"'))
    assert.is_false(decodes("1\0"))
    -- and what decodes, the store keeps as it is
    local s <close> = assert(agentrun.open(":memory:"))
    local r <close> = s:begin { agent = "a", goal = "g" }
    for _, text in ipairs { ("["):rep(512) .. ("]"):rep(512), tostring(LIMIT), '"a\\u0000b"' } do
      r:step { kind = "t", content = agentrun.json_decode(text) }
    end
    assert.equal(3, r.iterations)
  end)

  it("array() marks a table, returns it, and refuses a table with another metatable", function()
    local t = { 1, 2 }
    assert.equal(t, agentrun.array(t))
    assert.equal("[1,2]", agentrun.json_encode(t))
    assert.equal(t, agentrun.array(t))
    assert.equal("[]", agentrun.json_encode(agentrun.array()))
    h.plain_error(agentrun.array, setmetatable({}, {}))
    h.plain_error(agentrun.array, "x")
  end)
end)
