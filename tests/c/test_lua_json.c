/* test_lua_json.c -- the binding's JSON encoder/decoder and agentrun.Error objects. */
#include "suite.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "../../bindings/arl.h"
#include "json.h"

/* Helpers every snippet may use: J/D, eq, fails (pcall + Error checks), same. */
static const char prelude[] =
    "J, D = agentrun.json_encode, agentrun.json_decode\n"
    "function eq(got, want, what)\n"
    "  if got ~= want then\n"
    "    error(string.format('%s: expected %q, got %q', what or 'value', tostring(want),\n"
    "                        tostring(got)), 2)\n"
    "  end\n"
    "end\n"
    "function fails(code, msg, f, ...)\n"
    "  local ok, e = pcall(f, ...)\n"
    "  if ok then error('no error; expected ' .. tostring(msg), 2) end\n"
    "  if getmetatable(e) ~= agentrun.Error then\n"
    "    error('not an agentrun.Error: ' .. tostring(e), 2)\n"
    "  end\n"
    "  if e.code ~= code then error('code ' .. tostring(e.code) .. ': ' .. e.message, 2) end\n"
    "  if msg and e.message ~= msg then\n"
    "    error(string.format('message: expected %q, got %q', msg, e.message), 2)\n"
    "  end\n"
    "  return e\n"
    "end\n"
    "function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return math.type(a) == math.type(b) and a == b end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if rawget(a, k) == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "ARRAY = getmetatable(agentrun.array())\n";

/* Opens the libraries and sets the global `agentrun` = {array, null,
 * json_encode, json_decode, Error}, then runs the prelude. */
static void open_module(lua_State *L)
{
    luaL_openlibs(L);
    lua_newtable(L);
    arl_open_error(L);
    arl_open_buffers(L);
    arl_open_json(L, -1);
    arl_setfuncs(L, arl_json_functions, 0);
    luaL_getmetatable(L, ARL_ERROR_MT);
    lua_setfield(L, -2, "Error");
    lua_setglobal(L, "agentrun");
    if (luaL_dostring(L, prelude) != LUA_OK)
        fail_msg("prelude: %s", lua_tostring(L, -1));
    assert_int_equal(lua_gettop(L), 0);
}

/* A fresh state with the module (see open_module). */
static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    open_module(L);
    *state = L;
    return 0;
}

/* Closes the state (and so runs the scratch buffers' __gc). */
static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

/* Runs a Lua snippet; fails the test with the Lua error and the C line. */
static void run_lua(lua_State *L, const char *code, int line)
{
    if (luaL_loadbuffer(L, code, strlen(code), "=snippet") != LUA_OK ||
        lua_pcall(L, 0, 0, 0) != LUA_OK)
        fail_msg("line %d: %s", line, luaL_tolstring(L, -1, NULL));
}
#define LUA(code) run_lua(*state, (code), __LINE__)

/* ---- encoding ------------------------------------------------------------ */

static void test_encodes_scalars(void **state)
{
    LUA("eq(J(nil), 'null'); eq(J(true), 'true'); eq(J(false), 'false')\n"
        "eq(J(0), '0'); eq(J(-5), '-5'); eq(J(42), '42')\n"
        "eq(J('abc'), '\"abc\"'); eq(J(''), '\"\"'); eq(J(1.5), '1.5')\n"
        "eq(J(agentrun.null), 'null')");
}

static void test_encodes_nested_objects_and_arrays_exactly(void **state)
{
    LUA("eq(J({a = {1, 2, {b = 'c'}}}), '{\"a\":[1,2,{\"b\":\"c\"}]}')\n"
        "eq(J({{}, {{}}, {x = {y = {z = false}}}}), '[{},[{}],{\"x\":{\"y\":{\"z\":false}}}]')\n"
        "eq(J({1, 'two', true, agentrun.null, 2.5}), '[1,\"two\",true,null,2.5]')");
}

static void test_empty_table_is_object_and_marked_table_is_array(void **state)
{
    LUA("eq(J({}), '{}'); eq(J(agentrun.array{}), '[]'); eq(J(agentrun.array()), '[]')\n"
        "eq(J(agentrun.array{1, 2}), '[1,2]'); eq(J({list = agentrun.array()}), '{\"list\":[]}')\n"
        "local t = {}; eq(agentrun.array(t), t); eq(agentrun.array(t), t)\n"
        "eq(getmetatable(t), ARRAY); eq(J(t), '[]')");
}

static void test_array_keys_met_out_of_order_encode_in_order(void **state)
{
    LUA("local t = {}; t[3] = 3; t[2] = 2; t[1] = 1; eq(J(t), '[1,2,3]')\n"
        "local u = {1, 2}; u[5] = 5; u[4] = 4; u[3] = 3; eq(J(u), '[1,2,3,4,5]')\n"
        "local v = {}; for i = 100, 1, -1 do v[i] = i end\n"
        "local want = {}; for i = 1, 100 do want[i] = i end\n"
        "eq(J(v), '[' .. table.concat(want, ',') .. ']')");
}

static void test_shared_tables_that_are_not_cycles_encode_twice(void **state)
{
    LUA("local s = {1}; eq(J({s, s}), '[[1],[1]]'); eq(J({a = s}), '{\"a\":[1]}')");
}

static void test_encoder_ignores_metamethods(void **state)
{
    LUA("local mt = {__index = function() error('__index called') end,\n"
        "  __pairs = function() error('__pairs called') end,\n"
        "  __len = function() return 99 end,\n"
        "  __newindex = function() error('__newindex called') end,\n"
        "  __tostring = function() error('__tostring called') end}\n"
        "eq(J(setmetatable({a = 1}, mt)), '{\"a\":1}')\n"
        "eq(J(setmetatable({1, 2}, mt)), '[1,2]')\n"
        "eq(J(setmetatable({}, mt)), '{}')\n"
        "eq(J({x = setmetatable({}, {__index = {1, 2, 3}})}), '{\"x\":{}}')");
}

static void test_integers_within_2_53_encode_and_beyond_fail(void **state)
{
    LUA("eq(J(9007199254740992), '9007199254740992')\n"
        "eq(J(-9007199254740992), '-9007199254740992')\n"
        "fails('EJSON', 'value: integer out of range (beyond +-2^53)', J, 9007199254740993)\n"
        "fails('EJSON', 'value: integer out of range (beyond +-2^53)', J, -9007199254740993)\n"
        "fails('EJSON', 'value[2]: integer out of range (beyond +-2^53)', J, {1, math.maxinteger})\n"
        "fails('EJSON', 'value.n: integer out of range (beyond +-2^53)', J, {n = math.mininteger})");
}

static void test_floats_encode_shortest_text_that_reads_back(void **state)
{
    LUA("eq(J(0.1), '0.1'); eq(J(1e300), '1e+300'); eq(J(-2.5e-7), '-2.5e-07')\n"
        "eq(J(0.1 + 0.2), '0.30000000000000004'); eq(J(1/3), '0.3333333333333333')\n"
        "eq(J(1.7976931348623157e308), '1.7976931348623157e+308')\n"
        "eq(J(123456.789), '123456.789'); eq(J(1e15), '1e+15')\n"
        "for _, x in ipairs({5e-324, 2.2250738585072014e-308, math.pi, -math.pi, 1e-7, 2^63}) do\n"
        "  local back = D(J(x)); eq(back, x, J(x)); eq(math.type(back), 'float', J(x))\n"
        "end\n"
        "math.randomseed(7)\n"
        "for i = 1, 3000 do\n"
        "  local x = (math.random() - 0.5) * 10.0 ^ math.random(-300, 300)\n"
        "  eq(D(J(x)), x, J(x))\n"
        "end");
}

static void test_integral_floats_keep_their_float_type(void **state)
{
    LUA("eq(J(2.0), '2.0'); eq(J(-0.0), '-0.0'); eq(J(0.0), '0.0')\n"
        "eq(J(2^53), '9007199254740992.0'); eq(J(2^53 + 2), '9007199254740994.0')\n"
        "eq(math.type(D(J(3.0))), 'float'); eq(D(J(3.0)), 3.0)\n"
        "eq(1 / D(J(-0.0)), -math.huge)");
}

static void test_nan_and_infinity_fail_with_their_path(void **state)
{
    LUA("fails('EJSON', 'value: NaN is not valid JSON', J, 0/0)\n"
        "fails('EJSON', 'value: Infinity is not valid JSON', J, math.huge)\n"
        "fails('EJSON', 'value: -Infinity is not valid JSON', J, -math.huge)\n"
        "fails('EJSON', 'value.content.tool_calls[3].args: NaN is not valid JSON', J,\n"
        "      {content = {tool_calls = {{}, {}, {args = 0/0}}}})");
}

/* Encodes argument 1 with the root name "content". */
static int encode_as_content(lua_State *L)
{
    arl_json_encode(L, 1, "content", arl_scratch(L));
    return 0;
}

static void test_c_caller_names_the_root_of_the_path(void **state)
{
    lua_State *L = *state;
    LUA("BAD = {tool_calls = {{}, {}, {args = 0/0}}}");
    lua_pushcfunction(L, encode_as_content);
    lua_getglobal(L, "BAD");
    assert_int_equal(lua_pcall(L, 1, 0, 0), LUA_ERRRUN);
    lua_getfield(L, -1, "message");
    assert_string_equal(lua_tostring(L, -1), "content.tool_calls[3].args: NaN is not valid JSON");
    lua_settop(L, 0);
}

static void test_path_quotes_keys_that_are_not_identifiers(void **state)
{
    LUA("fails('EJSON', 'value[\"my key\"][1]: NaN is not valid JSON', J, {['my key'] = {0/0}})\n"
        "fails('EJSON', 'value[\"1a\"]: NaN is not valid JSON', J, {['1a'] = 0/0})\n"
        "fails('EJSON', 'value[\"1\"]: NaN is not valid JSON', J, {['1'] = 0/0})\n"
        "fails('EJSON', 'value._x1: NaN is not valid JSON', J, {_x1 = 0/0})\n"
        "fails('EJSON', 'value[\"q\\\\\"\\\\\\\\\"]: NaN is not valid JSON', J, {['q\"\\\\'] = 0/0})\n"
        "fails('EJSON', 'value[\"\\\\x0A\"]: NaN is not valid JSON', J, {['\\n'] = 0/0})\n"
        "fails('EJSON', 'value[\"caf\\u{E9}\"]: NaN is not valid JSON', J, {['caf\\u{E9}'] = 0/0})");
}

static void test_strings_escape_controls_quotes_and_nul(void **state)
{
    LUA("eq(J('a\\0b'), '\"a\\\\u0000b\"')\n"
        "eq(J('\\n\\t\\r\\b\\f\\1\\31\"\\\\/\\127'),\n"
        "   '\"\\\\n\\\\t\\\\r\\\\b\\\\f\\\\u0001\\\\u001f\\\\\"\\\\\\\\/\\127\"')\n"
        "eq(J({['k\\0'] = 1}), '{\"k\\\\u0000\":1}')");
}

static void test_nul_bytes_round_trip_exactly(void **state)
{
    LUA("local s = 'a\\0b\\0\\0c\\0'\n"
        "local back = D(J(s)); eq(back, s); eq(#back, 7)\n"
        "eq(D('\"\\\\u0000\"'), '\\0')\n"
        "local t = D(J({['k\\0'] = {'\\0'}})); eq(t['k\\0'][1], '\\0')");
}

static void test_unicode_round_trips_including_surrogate_pairs(void **state)
{
    LUA("local s = '\\u{E9}\\u{20AC}\\u{1F600}\\u{10FFFF}'\n"
        "eq(J(s), '\"' .. s .. '\"'); eq(D(J(s)), s)\n"
        "eq(D('\"\\\\u00e9\\\\u20AC\\\\ud83d\\\\ude00\\\\uDBFF\\\\uDFFF\"'), s)\n"
        "eq(D('\"x\\\\u0041\\\\u00e9\\\\u20ac\"'), 'xA\\u{E9}\\u{20AC}')");
}

static void test_invalid_utf8_fails_with_its_path(void **state)
{
    LUA("for _, s in ipairs({'\\xff', '\\xc0\\xaf', '\\xed\\xa0\\x80', '\\xe2\\x82', '\\x80',\n"
        "                    '\\xf4\\x90\\x80\\x80', 'ok\\xe0\\x80\\xaf', '\\xf0\\x80\\x80\\x80'}) do\n"
        "  fails('EJSON', 'value.content.text: invalid UTF-8', J, {content = {text = s}})\n"
        "end\n"
        "fails('EJSON', 'value[\"\\\\xFF\"]: invalid UTF-8 in key', J, {['\\xff'] = 1})");
}

static void test_cycles_fail_with_their_path(void **state)
{
    LUA("local t = {}; t.self = t\n"
        "fails('EJSON', 'value.self: cycle: table refers to itself', J, t)\n"
        "local a = {b = {}}; a.b.c = a\n"
        "fails('EJSON', 'value.b.c: cycle: table refers to itself', J, a)\n"
        "local l = {}; l[1] = l\n"
        "fails('EJSON', 'value[1]: cycle: table refers to itself', J, l)");
}

static void test_nesting_up_to_512_encodes_and_513_fails(void **state)
{
    LUA("local t = {}; for i = 2, 512 do t = {t} end\n"
        "local text = J(t)\n"
        "eq(text, ('['):rep(511) .. '{}' .. (']'):rep(511))\n"
        "eq(J(D(text)), text)\n"
        "fails('EJSON', 'value' .. ('[1]'):rep(512) .. ': nested deeper than 512 levels', J, {t})");
}

static void test_sparse_arrays_fail(void **state)
{
    LUA("fails('EJSON', 'value: sparse array', J, {1, nil, 3})\n"
        "fails('EJSON', 'value.a: sparse array', J, {a = {[2] = 1}})\n"
        "fails('EJSON', 'value: sparse array', J, {[0] = 1})\n"
        "fails('EJSON', 'value: sparse array', J, {[-1] = 1, [1] = 2})\n"
        "fails('EJSON', 'value: sparse array', J, {[1] = 1, [2^40 | 0] = 2})\n"
        "fails('EJSON', 'value: sparse array', J, agentrun.array{[1] = 1, [3] = 3})");
}

static void test_mixed_and_non_string_keys_fail(void **state)
{
    LUA("fails('EJSON', 'value: mixed keys (array and object)', J, {1, a = 2})\n"
        "fails('EJSON', 'value.x: mixed keys (array and object)', J, {x = {a = 1, [1] = 2}})\n"
        "fails('EJSON', 'value: mixed keys (array and object)', J, agentrun.array{a = 1})\n"
        "local k = ' (keys must be strings or array indices 1..n)'\n"
        "fails('EJSON', 'value: boolean key' .. k, J, {[true] = 1})\n"
        "fails('EJSON', 'value: number key' .. k, J, {[1.5] = 1})\n"
        "fails('EJSON', 'value[1]: table key' .. k, J, {{[{}] = 1}})");
}

static void test_functions_threads_and_userdata_fail(void **state)
{
    LUA("fails('EJSON', 'value.f: cannot encode a function', J, {f = print})\n"
        "fails('EJSON', 'value: cannot encode a thread', J, coroutine.create(print))\n"
        "fails('EJSON', 'value[1]: cannot encode a userdata', J, {io.stdout})");
}

/* Encodes a light userdata that is not agentrun.null. */
static int encode_light_userdata(lua_State *L)
{
    static int x;
    lua_pushlightuserdata(L, &x);
    arl_json_encode(L, -1, "value", arl_scratch(L));
    return 0;
}

static void test_light_userdata_other_than_null_fails(void **state)
{
    lua_State *L = *state;
    lua_pushcfunction(L, encode_light_userdata);
    assert_int_equal(lua_pcall(L, 0, 0, 0), LUA_ERRRUN);
    lua_getfield(L, -1, "message");
    assert_string_equal(lua_tostring(L, -1), "value: cannot encode a userdata");
    lua_settop(L, 0);
}

static void test_encoding_leaves_the_stack_and_other_buffer_alone(void **state)
{
    lua_State *L = *state;
    arl_buf *b2 = arl_scratch2(L);
    arl_buf_add(L, b2, "keep", 4);
    lua_pushinteger(L, 7);
    LUA("V = {a = {1, 2}}");
    lua_getglobal(L, "V");
    arl_buf *b = arl_scratch(L);
    arl_json_encode(L, -1, "value", b);
    assert_int_equal(lua_gettop(L), 2);
    assert_int_equal(b->len, strlen("{\"a\":[1,2]}"));
    assert_memory_equal(b->data, "{\"a\":[1,2]}", b->len);
    assert_int_equal(b2->len, 4);
    assert_memory_equal(b2->data, "keep", 4);
    lua_settop(L, 0);
}

static void test_large_values_round_trip(void **state)
{
    LUA("local s = ('x\\0\"\\u{E9}\\n'):rep(300000)\n"
        "local back = D(J(s)); eq(#back, #s); eq(back == s, true)\n"
        "local t = {}; for i = 1, 100000 do t[i] = i * 3 end\n"
        "local u = D(J(t)); eq(#u, 100000); eq(u[100000], 300000); eq(math.type(u[5]), 'integer')\n"
        "eq(J(u), J(t)); eq(J({1}), '[1]')");
}

static void test_assistant_message_round_trips(void **state)
{
    LUA("local msg = {role = 'assistant', content = 'Let me check.', temperature = 0.7,\n"
        "  tool_calls = agentrun.array{{id = 'call_1', type = 'function',\n"
        "    ['function'] = {name = 'get_weather', arguments = '{\"city\":\"Paris\"}'}}},\n"
        "  usage = {input_tokens = 120, output_tokens = 35}, refusal = agentrun.null,\n"
        "  tags = agentrun.array(), meta = {}}\n"
        "local back = D(J(msg))\n"
        "eq(same(back, msg), true, J(msg))\n"
        "eq(same(D(J(back)), msg), true, J(back))");
}

/* ---- decoding ------------------------------------------------------------ */

static void test_decoded_arrays_stay_arrays(void **state)
{
    LUA("eq(J(D('[]')), '[]'); eq(J(D('[[],{}]')), '[[],{}]')\n"
        "eq(getmetatable(D('[1]')), ARRAY); eq(getmetatable(D('{}')), nil)\n"
        "local t = D('{\"a\":[],\"b\":{}}')\n"
        "eq(getmetatable(t.a), ARRAY); eq(getmetatable(t.b), nil); eq(next(t.b), nil)\n"
        "eq(J(t.a), '[]'); eq(J(t.b), '{}')");
}

static void test_decoded_integers_stay_integers(void **state)
{
    LUA("eq(math.type(D('42')), 'integer'); eq(D('42'), 42)\n"
        "eq(math.type(D('-0')), 'integer')\n"
        "eq(math.type(D('1.0')), 'float'); eq(math.type(D('1e2')), 'float'); eq(D('1E2'), 100.0)\n"
        "eq(D('-1.5e-3'), -0.0015); eq(D('2.5E+3'), 2500.0)\n"
        "eq(D('9007199254740992'), 9007199254740992); eq(math.type(D('9007199254740992')), 'integer')\n"
        "eq(D('-9007199254740992'), -9007199254740992)\n"
        "eq(math.type(D('9223372036854775808.0')), 'float'); eq(D('9223372036854775808.0'), 2^63)\n"
        "eq(D('1e20'), 1e20)\n"
        "local long = '0.' .. ('0'):rep(100) .. '1'; eq(D(long), 1e-101)\n"
        "eq(J(D('[1,-2,3]')), '[1,-2,3]')");
}

static void test_decodes_escapes_and_whitespace(void **state)
{
    LUA("eq(D('\"a\\\\\"b\\\\\\\\c\\\\/d\\\\b\\\\f\\\\n\\\\r\\\\t\"'), 'a\"b\\\\c/d\\b\\f\\n\\r\\t')\n"
        "local t = D(' \\t\\n\\r[ 1 , { \"a\" : true } , false ] \\n')\n"
        "eq(t[1], 1); eq(t[2].a, true); eq(t[3], false); eq(#t, 3)\n"
        "eq(D('{\"a\":1,\"a\":2}').a, 2)");
}

static void test_null_is_agentrun_null_inside_and_nil_at_top(void **state)
{
    LUA("eq(select('#', D('null')), 1); eq(D('null'), nil); eq(D(' null '), nil)\n"
        "local t = D('[null,1,null]'); eq(t[1], agentrun.null); eq(#t, 3)\n"
        "eq(J(t), '[null,1,null]')\n"
        "eq(D('{\"a\":null}').a, agentrun.null); eq(J(D('{\"a\":null}')), '{\"a\":null}')");
}

/* json_decode is given the caller's own text: not JSON is EJSON (ECORRUPT is
 * for data read from the store, below). */
static void test_invalid_text_given_to_json_decode_fails_with_ejson_and_offset(void **state)
{
    LUA("local cases = {\n"
        "  {'', 'empty input'},\n"
        "  {'   ', 'empty input'},\n"
        "  {'{', 'unexpected end of input at byte 1'},\n"
        "  {'[1,]', \"unexpected character ']' at byte 3\"},\n"
        "  {'{\"a\" 1}', \"unexpected character '1' at byte 5\"},\n"
        "  {'{\"a\":1,}', \"unexpected character '}' at byte 7\"},\n"
        "  {'{1:2}', \"unexpected character '1' at byte 1\"},\n"
        "  {'01', 'leading zero in number at byte 0'},\n"
        "  {'1.', 'invalid number at byte 0'},\n"
        "  {'1.e5', 'invalid number at byte 0'},\n"
        "  {'1e', 'invalid number at byte 0'},\n"
        "  {'.5', \"unexpected character '.' at byte 0\"},\n"
        "  {'-', 'invalid number at byte 0'},\n"
        "  {'+1', \"unexpected character '+' at byte 0\"},\n"
        "  {'tru', 'invalid literal at byte 0'},\n"
        "  {'nul', 'invalid literal at byte 0'},\n"
        "  {'NaN', 'NaN/Infinity are not valid JSON at byte 0'},\n"
        "  {'1 2', 'trailing characters at byte 2'},\n"
        "  {'[1]x', 'trailing characters at byte 3'},\n"
        "  {'\\0', 'unexpected byte 0x00 at byte 0'},\n"
        "  {'\"abc', 'unterminated string at byte 0'},\n"
        "  {'\"a\\\\n', 'unterminated string at byte 0'},\n"
        "  {'\"a\\nb\"', 'control character in string at byte 2'},\n"
        "  {'\"\\\\na\\tb\"', 'control character in string at byte 4'},\n"
        "  {'\"\\xff\"', 'invalid UTF-8 at byte 1'},\n"
        "  {'\"\\\\n\\xff\"', 'invalid UTF-8 at byte 3'},\n"
        "  {'\"\\\\x\"', 'invalid escape at byte 1'},\n"
        "  {'\"\\\\u12\"', 'invalid \\\\u escape at byte 1'},\n"
        "  {'\"\\\\ud800\"', 'lone surrogate in \\\\u escape at byte 1'},\n"
        "  {'\"\\\\udc00\"', 'lone surrogate in \\\\u escape at byte 1'},\n"
        "  {'\"ab\\\\ud800\\\\u0041\"', 'lone surrogate in \\\\u escape at byte 3'},\n"
        "}\n"
        "for _, c in ipairs(cases) do\n"
        "  fails('EJSON', 'text is not valid JSON: ' .. c[2], D, c[1])\n"
        "end");
}

static void test_decoding_deep_nesting_has_a_limit(void **state)
{
    LUA("local ok = ('['):rep(512) .. (']'):rep(512)\n"
        "local t = D(ok); for i = 1, 511 do t = t[1] end; eq(next(t), nil)\n"
        "fails('EJSON', 'text is not valid JSON: nesting deeper than 512 at byte 512',\n"
        "      D, ('['):rep(513) .. (']'):rep(513))\n"
        "fails('EJSON', 'text is not valid JSON: nesting deeper than 512 at byte 512',\n"
        "      D, ('['):rep(100000))\n"
        "fails('EJSON', nil, D, ('{\"a\":'):rep(5000))");
}

/* Decodes text read from the store: "[1,2". */
static int decode_stored(lua_State *L)
{
    arl_json_decode(L, "[1,2", 4);
    return 1;
}

static void test_invalid_stored_text_fails_with_ecorrupt_and_offset(void **state)
{
    lua_State *L = *state;
    lua_pushcfunction(L, decode_stored);
    assert_int_equal(lua_pcall(L, 0, 1, 0), LUA_ERRRUN);
    assert_true(lua_istable(L, -1));
    lua_getfield(L, -1, "code");
    assert_string_equal(lua_tostring(L, -1), "ECORRUPT");
    lua_getfield(L, -2, "message");
    assert_string_equal(lua_tostring(L, -1), "stored JSON is invalid: unexpected end of input at byte 4");
    lua_settop(L, 0);
}

/* Decodes the first 5 bytes of a longer text; returns what it pushed. */
static int decode_prefix(lua_State *L)
{
    arl_json_decode(L, "[1,2]xyz", 5);
    return lua_gettop(L);
}

static void test_decode_reads_only_the_given_length_and_pushes_one_value(void **state)
{
    lua_State *L = *state;
    lua_pushcfunction(L, decode_prefix);
    assert_int_equal(lua_pcall(L, 0, LUA_MULTRET, 0), LUA_OK);
    assert_int_equal(lua_gettop(L), 1);
    assert_true(lua_istable(L, 1));
    assert_int_equal(lua_rawlen(L, 1), 2);
    lua_settop(L, 0);
}

/* ---- one rule with the core ------------------------------------------------ */

/* Texts on each side of the core's JSON limits, and whether the core takes them. */
typedef struct edge {
    const char *what;
    char *text;
    size_t len;
} edge;

static edge make_edge(const char *what, const char *text, size_t len)
{
    edge e = { what, malloc(len ? len : 1), len };
    assert_non_null(e.text);
    memcpy(e.text, text, len);
    return e;
}

/* n nested arrays around nothing: [[...]] */
static edge nested(const char *what, size_t n)
{
    edge e = { what, malloc(2 * n), 2 * n };
    assert_non_null(e.text);
    memset(e.text, '[', n);
    memset(e.text + n, ']', n);
    return e;
}

#define EDGE(what, lit) make_edge(what, lit, sizeof lit - 1)

/* Calls agentrun.json_decode(text) protected; 1 when it returned a value. */
static int lua_decodes(lua_State *L, const edge *e)
{
    lua_getglobal(L, "agentrun");
    lua_getfield(L, -1, "json_decode");
    lua_pushlstring(L, e->text, e->len);
    int ok = lua_pcall(L, 1, 1, 0) == LUA_OK;
    if (!ok) {
        lua_getfield(L, -1, "code");
        assert_string_equal(lua_tostring(L, -1), "EJSON");
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return ok;
}

static void test_json_decode_takes_exactly_the_texts_the_core_takes(void **state)
{
    lua_State *L = *state;
    edge edges[] = {
        nested("512 levels", AR_JSON_MAX_DEPTH), nested("513 levels", AR_JSON_MAX_DEPTH + 1),
        EDGE("2^53", "9007199254740992"), EDGE("-2^53", "-9007199254740992"),
        EDGE("2^53 + 1", "9007199254740993"), EDGE("-(2^53 + 1)", "[-9007199254740993]"),
        EDGE("2^63 as an integer", "9223372036854775808"), EDGE("2^53 + 1 as a float", "9007199254740993.0"),
        EDGE("a surrogate pair", "\"\\ud83d\\ude00\""), EDGE("a lone high surrogate", "\"\\ud800\""),
        EDGE("a lone low surrogate", "\"\\udc00x\""), EDGE("a surrogate in raw UTF-8", "\"\xED\xA0\x80\""),
        EDGE("overlong '/'", "\"\xC0\xAF\""), EDGE("overlong U+0000", "\"\xE0\x80\x80\""),
        EDGE("U+10FFFF", "\"\xF4\x8F\xBF\xBF\""), EDGE("past U+10FFFF", "\"\xF4\x90\x80\x80\""),
        EDGE("an escaped NUL", "\"a\\u0000b\""), EDGE("a raw NUL in a string", "\"a\0b\""),
        EDGE("a NUL after the value", "1\0"), EDGE("1e308", "1e308"), EDGE("1e309", "1e309"),
    };
    const int core_takes[] = { 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0 };
    assert_int_equal(sizeof edges / sizeof edges[0], sizeof core_takes / sizeof core_takes[0]);
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        int core = ar_json_validate(edges[i].text, edges[i].len, NULL, 0) == 0;
        if (core != core_takes[i] || lua_decodes(L, &edges[i]) != core)
            fail_msg("%s: the core %s it, json_decode %s it", edges[i].what, core ? "takes" : "refuses",
                     lua_decodes(L, &edges[i]) ? "takes" : "refuses");
        free(edges[i].text);
    }
    assert_int_equal(lua_gettop(L), 0);
}

/* Whatever json_encode writes the core takes, and at the core's limits
 * json_encode refuses what the core would refuse. */
static void test_json_encode_writes_only_what_the_core_takes_up_to_its_limits(void **state)
{
    LUA("local function deep(n) local t = {}; for i = 2, n do t = {t} end; return t end\n"
        "TAKEN = { J(deep(512)), J(2^53 | 0), J(-(2^53 | 0)), J(2.0^60), J('a\\0b'), J('\\u{10FFFF}'),\n"
        "          J({['k\\0'] = 'v'}), J(1e308) }\n"
        "eq(TAKEN[5], '\"a\\\\u0000b\"')\n"
        "fails('EJSON', nil, J, deep(513))\n"
        "fails('EJSON', 'value: integer out of range (beyond +-2^53)', J, (2^53 | 0) + 1)\n"
        "fails('EJSON', 'value: integer out of range (beyond +-2^53)', J, -(2^53 | 0) - 1)\n"
        "fails('EJSON', 'value: invalid UTF-8', J, '\\xED\\xA0\\x80')\n"
        "fails('EJSON', 'value: invalid UTF-8', J, '\\xC0\\xAF')\n"
        "fails('EJSON', 'value: invalid UTF-8', J, '\\xF4\\x90\\x80\\x80')");
    lua_State *L = *state;
    lua_getglobal(L, "TAKEN");
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
        size_t n;
        const char *text = lua_tolstring(L, -1, &n);
        char why[128];
        if (ar_json_validate(text, n, why, sizeof why) != 0)
            fail_msg("json_encode wrote text the core refuses (%s): %.80s", why, text);
        lua_pop(L, 1);
    }
    lua_settop(L, 0);
}

/* ---- module functions, errors, buffers ----------------------------------- */

static void test_array_refuses_other_metatables_with_a_plain_error(void **state)
{
    LUA("local ok, e = pcall(agentrun.array, setmetatable({}, {}))\n"
        "eq(ok, false); eq(type(e), 'string')\n"
        "assert(e:find('already has a metatable', 1, true), e)\n"
        "ok, e = pcall(agentrun.array, 5); eq(ok, false); eq(type(e), 'string')\n"
        "assert(e:find('table expected', 1, true), e)\n"
        "ok, e = pcall(J); eq(ok, false); eq(type(e), 'string')\n"
        "ok, e = pcall(D, {}); eq(ok, false); eq(type(e), 'string')");
}

static void test_error_objects_print_code_and_message(void **state)
{
    LUA("local e = fails('EJSON', nil, J, 0/0)\n"
        "eq(tostring(e), 'agentrun: EJSON: value: NaN is not valid JSON')\n"
        "e = fails('EJSON', nil, D, '[')\n"
        "eq(tostring(e), 'agentrun: EJSON: text is not valid JSON: unexpected end of input at byte 1')");
}

static void test_push_error_builds_an_error_object(void **state)
{
    lua_State *L = *state;
    arl_push_error(L, AR_EBUSY, "locked");
    lua_setglobal(L, "E");
    LUA("eq(getmetatable(E), agentrun.Error); eq(E.code, 'EBUSY'); eq(E.message, 'locked')\n"
        "eq(tostring(E), 'agentrun: EBUSY: locked')");
}

/* Raises an EIO error whose message is longer than any local buffer. */
static int raise_long(lua_State *L)
{
    char big[3001];
    memset(big, 'm', 3000);
    big[3000] = '\0';
    return arl_raise(L, AR_EIO, "%s #%d %s", "write failed", 42, big);
}

static void test_raise_formats_messages_of_any_length(void **state)
{
    lua_State *L = *state;
    lua_pushcfunction(L, raise_long);
    assert_int_equal(lua_pcall(L, 0, 0, 0), LUA_ERRRUN);
    lua_setglobal(L, "E");
    LUA("eq(getmetatable(E), agentrun.Error); eq(E.code, 'EIO')\n"
        "eq(E.message, 'write failed #42 ' .. ('m'):rep(3000))");
}

static void test_scratch_buffers_are_reused_and_grow(void **state)
{
    lua_State *L = *state;
    arl_buf *a = arl_scratch(L);
    arl_buf *b = arl_scratch2(L);
    assert_ptr_not_equal(a, b);
    assert_int_equal(a->len, 0);
    for (int i = 0; i < 100000; i++)
        arl_buf_add(L, a, i % 2 ? "b" : "a", 1);
    arl_buf_add(L, a, "", 0);
    assert_int_equal(a->len, 100000);
    assert_true(a->cap >= 100000);
    assert_memory_equal(a->data + 99998, "ab", 2);
    char *data = a->data;
    arl_buf *again = arl_scratch(L);
    assert_ptr_equal(again, a);
    assert_int_equal(again->len, 0);
    assert_ptr_equal(again->data, data);
    assert_int_equal(lua_gettop(L), 0);
}

/* Appends more bytes than a size_t can count. */
static int add_huge(lua_State *L)
{
    arl_buf *b = arl_scratch(L);
    arl_buf_add(L, b, "x", 1);
    arl_buf_add(L, b, "y", (size_t)-1);
    return 0;
}

static void test_buffer_that_cannot_grow_raises_a_memory_error(void **state)
{
    lua_State *L = *state;
    lua_pushcfunction(L, add_huge);
    assert_int_not_equal(lua_pcall(L, 0, 0, 0), LUA_OK);
    assert_string_equal(lua_tostring(L, -1), "not enough memory");
    lua_settop(L, 0);
    LUA("eq(J({1}), '[1]')");
}

/* A lua_Alloc that fails every new or growing allocation once *ud (the
 * number still allowed) reaches 0; -1 means no limit. */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    long *left = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (!ptr || nsize > osize) {
        if (*left == 0)
            return NULL;
        if (*left > 0)
            (*left)--;
    }
    return realloc(ptr, nsize);
}

static void test_lua_allocation_failures_raise_memory_errors_and_leak_nothing(void **state)
{
    (void)state;
    long left = -1;
    lua_State *L = lua_newstate(limited_alloc, &left);
    assert_non_null(L);
    open_module(L);
    if (luaL_dostring(L,
            "MSG = {role = 'assistant', content = ('hi \\n '):rep(100),\n"
            "  tool_calls = agentrun.array{{id = 'c1', args = {city = 'Paris', days = agentrun.array{1, 2, 3}}}},\n"
            "  usage = {input_tokens = 10, output_tokens = 2}, t = 0.5, none = agentrun.null}\n"
            "function ROUNDTRIP() assert(same(D(J(MSG)), MSG)) end\n"
            "function BAD() return J({a = {b = {('x'):rep(600), 0/0}}}) end") != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
    const char *fns[] = { "ROUNDTRIP", "BAD" };
    for (int which = 0; which < 2; which++) {
        for (long n = 0;; n++) {
            assert_true(n < 100000);
            lua_getglobal(L, fns[which]);
            left = n;
            int status = lua_pcall(L, 0, 0, 0);
            left = -1;
            if (status == LUA_ERRMEM || (status == LUA_ERRRUN && lua_type(L, -1) == LUA_TSTRING &&
                                         strstr(lua_tostring(L, -1), "stack overflow"))) {
                lua_settop(L, 0);
                continue;
            }
            if (which == 0) {
                if (status != LUA_OK)
                    fail_msg("after %ld allocations: %s", n, luaL_tolstring(L, -1, NULL));
            } else {
                assert_int_equal(status, LUA_ERRRUN);
                assert_true(lua_istable(L, -1));
                lua_getfield(L, -1, "message");
                assert_string_equal(lua_tostring(L, -1), "value.a.b[2]: NaN is not valid JSON");
            }
            lua_settop(L, 0);
            break;
        }
    }
    lua_close(L);
}

static void test_float_text_uses_a_point_whatever_the_locale(void **state)
{
    lua_State *L = *state;
    if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") && !setlocale(LC_NUMERIC, "de_DE.utf8") &&
        !setlocale(LC_NUMERIC, "fr_FR.UTF-8")) {
        skip();
        return;
    }
    const char *code =
        "eq(J(0.5), '0.5'); eq(J({1.25e-7}), '[1.25e-07]'); eq(J(3.0), '3.0')\n"
        "eq(D('0.25'), 0.25); eq(D('-1.5e3'), -1500.0); eq(D(J(0.1 + 0.2)), 0.1 + 0.2)\n"
        "eq(D('0.' .. ('0'):rep(80) .. '5'), 5e-81)";
    int status = luaL_dostring(L, code);
    setlocale(LC_NUMERIC, "C");
    if (status != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
}

static const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    T(test_encodes_scalars),
    T(test_encodes_nested_objects_and_arrays_exactly),
    T(test_empty_table_is_object_and_marked_table_is_array),
    T(test_array_keys_met_out_of_order_encode_in_order),
    T(test_shared_tables_that_are_not_cycles_encode_twice),
    T(test_encoder_ignores_metamethods),
    T(test_integers_within_2_53_encode_and_beyond_fail),
    T(test_floats_encode_shortest_text_that_reads_back),
    T(test_integral_floats_keep_their_float_type),
    T(test_nan_and_infinity_fail_with_their_path),
    T(test_c_caller_names_the_root_of_the_path),
    T(test_path_quotes_keys_that_are_not_identifiers),
    T(test_strings_escape_controls_quotes_and_nul),
    T(test_nul_bytes_round_trip_exactly),
    T(test_unicode_round_trips_including_surrogate_pairs),
    T(test_invalid_utf8_fails_with_its_path),
    T(test_cycles_fail_with_their_path),
    T(test_nesting_up_to_512_encodes_and_513_fails),
    T(test_sparse_arrays_fail),
    T(test_mixed_and_non_string_keys_fail),
    T(test_functions_threads_and_userdata_fail),
    T(test_light_userdata_other_than_null_fails),
    T(test_encoding_leaves_the_stack_and_other_buffer_alone),
    T(test_large_values_round_trip),
    T(test_assistant_message_round_trips),
    T(test_decoded_arrays_stay_arrays),
    T(test_decoded_integers_stay_integers),
    T(test_decodes_escapes_and_whitespace),
    T(test_null_is_agentrun_null_inside_and_nil_at_top),
    T(test_invalid_text_given_to_json_decode_fails_with_ejson_and_offset),
    T(test_invalid_stored_text_fails_with_ecorrupt_and_offset),
    T(test_decoding_deep_nesting_has_a_limit),
    T(test_decode_reads_only_the_given_length_and_pushes_one_value),
    T(test_json_decode_takes_exactly_the_texts_the_core_takes),
    T(test_json_encode_writes_only_what_the_core_takes_up_to_its_limits),
    T(test_array_refuses_other_metatables_with_a_plain_error),
    T(test_error_objects_print_code_and_message),
    T(test_push_error_builds_an_error_object),
    T(test_raise_formats_messages_of_any_length),
    T(test_scratch_buffers_are_reused_and_grow),
    T(test_buffer_that_cannot_grow_raises_a_memory_error),
    cmocka_unit_test(test_lua_allocation_failures_raise_memory_errors_and_leak_nothing),
    T(test_float_text_uses_a_point_whatever_the_locale),
#undef T
};

TEST_GROUP(lua_json_group, "lua_json", tests);
