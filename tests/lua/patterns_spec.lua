-- patterns_spec.lua -- the policy sandbox's pattern functions: the string library's results, with their work charged to the budget (SPEC §3.8).
local core = require "agentrun.core"

local P = core.patterns

-- Every result of a call, or its error message, as one comparable table.
local function outcome(fn, ...)
  local r = table.pack(pcall(fn, ...))
  if not r[1] then return { error = r[2] } end
  return { n = r.n - 1, table.unpack(r, 2, r.n) }
end

-- All the captures gmatch yields, in order, each as a list.
local function gmatch_all(gmatch, s, p, init)
  local all = {}
  for a, b, c in gmatch(s, p, init) do
    all[#all + 1] = { a, b, c }
    if #all > 100 then break end
  end
  return all
end

-- A random pattern built from every kind of item Lua patterns have.
local ITEMS = {
  "a", "b", "x", "1", " ", ".", "%a", "%d", "%s", "%w", "%p", "%x", "%l", "%u", "%c", "%g",
  "%A", "%D", "%S", "%W", "%(", "%.", "%%", "[abc]", "[^ab]", "[a-c1]", "[%d_]", "[%a%s]",
  "[]]", "[^]]", "[a-]", "[-a]", "%b()", "%bxa", "%f[%w]", "%f[%W]", "%f[a]",
}
local QUANTIFIERS = { "", "", "", "*", "+", "-", "?" }

local function random_pattern(depth)
  local parts, captures, closed = {}, 0, 0
  if math.random(6) == 1 then parts[1] = "^" end
  for _ = 1, math.random(0, 5) do
    local r = math.random(10)
    if r == 1 and depth < 2 then
      local inner = random_pattern(depth + 1):gsub("^%^", ""):gsub("%$$", "")
      parts[#parts + 1] = "(" .. inner .. ")"
      captures = captures + 1
      closed = closed + 1
    elseif r == 2 then
      parts[#parts + 1] = "()"
    elseif r == 3 and closed > 0 then
      parts[#parts + 1] = "%" .. math.random(closed)
    else
      parts[#parts + 1] = ITEMS[math.random(#ITEMS)] .. QUANTIFIERS[math.random(#QUANTIFIERS)]
    end
  end
  if math.random(6) == 1 then parts[#parts + 1] = "$" end
  return table.concat(parts)
end

local ALPHABET = { "a", "b", "c", "x", "1", "2", " ", "(", ")", "_", ".", "%", "\0", "\xff", "A" }
local function random_subject()
  local t = {}
  for i = 1, math.random(0, 14) do t[i] = ALPHABET[math.random(#ALPHABET)] end
  return table.concat(t)
end

describe("the sandbox's pattern functions", function()
  it("give what the string library gives for thousands of random patterns and subjects", function()
    math.randomseed(20240609)
    local replacements = { "<%0>", "%1", "[%%]", "", 7, { a = "A", x = false, ["1"] = 2 },
                           function(a, b) return b or (a and a:upper()) end }
    for _ = 1, 4000 do
      local s, p = random_subject(), random_pattern(0)
      local init = ({ nil, 1, 2, -3, 0, 20, -20 })[math.random(7)]
      assert.same(outcome(string.find, s, p, init), outcome(P.find, s, p, init), ("find %q %q"):format(s, p))
      assert.same(outcome(string.find, s, p, init, true), outcome(P.find, s, p, init, true),
                  ("plain find %q %q"):format(s, p))
      assert.same(outcome(string.match, s, p, init), outcome(P.match, s, p, init), ("match %q %q"):format(s, p))
      assert.same(outcome(gmatch_all, string.gmatch, s, p, init), outcome(gmatch_all, P.gmatch, s, p, init),
                  ("gmatch %q %q"):format(s, p))
      local repl = replacements[math.random(#replacements)]
      local max = ({ nil, 0, 1, 2 })[math.random(4)]
      assert.same(outcome(string.gsub, s, p, repl, max), outcome(P.gsub, s, p, repl, max),
                  ("gsub %q %q %s"):format(s, p, tostring(repl)))
    end
  end)

  it("report a malformed pattern with the string library's message", function()
    local bad = { "%", "[a", "[^", "(a", "a)", "%b", "%ba", "%f", "%fa", "%1", "(a)%2", "(a%1)", "[%",
                  ("()"):rep(33), "%0" }
    for _, p in ipairs(bad) do
      for _, f in ipairs { "find", "match", "gsub" } do
        local want = outcome(string[f], "abc(a)", p, f == "gsub" and "x" or nil)
        local got = outcome(P[f], "abc(a)", p, f == "gsub" and "x" or nil)
        assert.same(want, got, ("%s %q"):format(f, p))
      end
    end
    assert.same(outcome(string.gsub, "abc", "b", "%2"), outcome(P.gsub, "abc", "b", "%2"))
    assert.same(outcome(string.gsub, "abc", "b", "%z"), outcome(P.gsub, "abc", "b", "%z"))
    assert.same(outcome(string.gsub, "abc", "(b)", {}), outcome(P.gsub, "abc", "(b)", {}))
    assert.same(outcome(string.gsub, "abc", "(b)", function() return {} end),
                outcome(P.gsub, "abc", "(b)", function() return {} end))
  end)

  it("match long subjects and long literal patterns as the string library does", function()
    local s = ("ab"):rep(5000) .. "needle" .. ("cd"):rep(5000)
    assert.same({ string.find(s, "needle") }, { P.find(s, "needle") })
    assert.same({ string.find(s, "(n%a+)(c+)") }, { P.find(s, "(n%a+)(c+)") })
    local lit = ("xy"):rep(300)
    assert.same({ string.find(lit .. "z", lit .. "z") }, { P.find(lit .. "z", lit .. "z") })
    assert.equal(select(2, string.gsub(s, "%w", "")), select(2, P.gsub(s, "%w", "")))
  end)

  it("stop a backtracking pattern at the budget instead of running for ever", function()
    local subject = ("a"):rep(40)
    local pattern = ("a*"):rep(40) .. "b"
    local ok, e = core.bounded_call("test", 1000000, 64 * 2 ^ 20, P.find, subject, pattern)
    assert.is_false(ok)
    assert.equal("test exceeded its budget of 1000000 instructions", e)
    -- a plain search is charged by the bytes it compares
    local hay, needle = ("a"):rep(2 ^ 20), ("a"):rep(2 ^ 19) .. "b"
    ok, e = core.bounded_call("test", 1000000, 64 * 2 ^ 20, P.find, hay, needle, 1, true)
    assert.is_false(ok)
    assert.equal("test exceeded its budget of 1000000 instructions", e)
    -- and a cheap match within the budget is unaffected
    assert.same({ true, 1, 4 }, { core.bounded_call("test", 1000000, 64 * 2 ^ 20, P.find, "abcd", "^%a+$") })
  end)
end)
