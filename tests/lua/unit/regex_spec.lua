-- Specs for weir.regex: JSON Schema patterns (ECMA-262 flavoured) through PCRE2.
local regex = require "weir.regex"

local function test(pattern, subject)
  local m = assert(regex.compile(pattern))
  return m:test(subject)
end

-- { pattern, subject, expected }
local cases = {
  -- literals and search semantics
  { "abc", "xxabcxx", true },
  { "abc", "ab", false },
  { "", "anything", true },
  { "a.c", "abc", true },
  { "a.c", "a\nc", false },
  -- anchors
  { "^abc", "abcd", true },
  { "^abc", "xabc", false },
  { "abc$", "xabc", true },
  { "abc$", "abcx", false },
  { "^$", "", true },
  { "^a*$", "aaa", true },
  { "^a*$", "abc", false },
  -- classes
  { "^[a-z]+$", "hello", true },
  { "^[a-z]+$", "Hello", false },
  { "^[^0-9]+$", "abc", true },
  { "^[^0-9]+$", "ab1", false },
  { "^[a-cx-z_]+$", "abzx_", true },
  { "^[\\]\\-]+$", "]-", true },
  { "^[-a]+$", "-a-", true },
  { "^[a-]+$", "a-", true },
  { "^[.]$", "x", false },
  { "[]", "a", false },
  { "^[^]$", "\n", true },
  { "^\\d+$", "0123456789", true },
  { "^\\d+$", "12a", false },
  { "^\\D+$", "abc", true },
  { "^\\w+$", "a_Z9", true },
  { "^\\w+$", "a-b", false },
  { "^\\W$", "-", true },
  { "^\\s+$", " \t\n\r\f\v", true },
  { "^\\s$", "\194\160", true }, -- U+00A0 is whitespace in ECMA-262
  { "^\\S+$", "ab", true },
  { "^[\\d\\s]+$", "1 2", true },
  { "^[^\\d]+$", "ab", true },
  -- escapes
  { "^a\\.b$", "a.b", true },
  { "^a\\.b$", "axb", false },
  { "^\\t\\n$", "\t\n", true },
  { "^\\x41\\u0042$", "AB", true },
  { "^\\u00e9$", "é", true },
  { "^\\u{1F600}$", "😀", true },
  { "^\\ud83d\\ude00$", "😀", true },
  { "^\\/\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\$", "/*+?()[]{}|^$\\", true },
  -- groups and alternation
  { "^(ab|cd)+$", "abcdab", true },
  { "^(ab|cd)+$", "abcx", false },
  { "^(?:a|b)c$", "bc", true },
  { "^(?<word>\\w+)$", "abc", true },
  { "^(a(b)?)+$", "aba", true },
  { "cat|dog", "hotdog", true },
  { "^cat|dog$", "cats", true },
  { "^(cat|dog)$", "cats", false },
  -- quantifiers
  { "^ab?c$", "ac", true },
  { "^ab+c$", "ac", false },
  { "^a{3}$", "aaa", true },
  { "^a{3}$", "aaaa", false },
  { "^a{2,}$", "aaaa", true },
  { "^a{2,}$", "a", false },
  { "^a{1,2}$", "aaa", false },
  { "^(ab){2}$", "abab", true },
  { "^a{,2}$", "a{,2}", true }, -- not a quantifier: literal braces
  { "^a*?b$", "aab", true },
  { "^(a+?)b$", "aab", true },
  { "^a??b$", "b", true },
  { "^(a|ab)(c|bcd)(d*)$", "abcd", true },
  { "^(a*)*$", "aaa", true },
  { "^(a?){3}$", "a", true },
  { "^(?:)*$", "", true },
  -- assertions
  { "\\bfoo\\b", "a foo b", true },
  { "\\bfoo\\b", "afoob", false },
  { "\\Boo\\B", "foob", true },
  { "^(?=.*\\d)(?=.*[a-z]).{6,}$", "abc123", true },
  { "^(?=.*\\d)(?=.*[a-z]).{6,}$", "abcdef", false },
  { "^(?!foo)\\w+$", "bar", true },
  { "^(?!foo)\\w+$", "foobar", false },
  -- code points, not bytes
  { "^.$", "é", true },
  { "^.{2}$", "😀x", true },
  { "^[é-ë]$", "ê", true },
  { "^[^a]$", "€", true },
  { "^á", "ármányos", true },
  { "^á", "élmény", false },
  -- case sensitive
  { "^abc$", "ABC", false },
}

describe("weir.regex", function()
  for _, c in ipairs(cases) do
    it(("%s %s %q"):format(c[1], c[3] and "matches" or "does not match", c[2]), function()
      assert.are.equal(c[3], test(c[1], c[2]))
    end)
  end

  it("rejects bad patterns with PCRE2's message and the byte offset", function()
    local bad = {
      { "*a", "regex: quantifier does not follow a repeatable item at offset 0" },
      { "a**", "regex: quantifier does not follow a repeatable item at offset 2" },
      { "(ab", "regex: missing closing parenthesis at offset 3" },
      { "ab)", "regex: unmatched closing parenthesis at offset 2" },
      { "[abc", "regex: missing terminating ] for character class at offset 4" },
      { "[z-a]", "regex: range out of order in character class at offset 3" },
      { "a{3,1}", "regex: numbers out of order in {} quantifier at offset 5" },
      { "a\\", "regex: \\ at end of pattern at offset 2" },
      -- offsets are the pattern's own, not those of its ECMA-262 rewrite
      { "\\s.(", "regex: missing closing parenthesis at offset 4" },
      { "\255", "regex: UTF-8 error: illegal byte (0xfe or 0xff) at offset 0" },
      { string.rep("a", 4097), "regex: pattern longer than 4096 bytes" },
    }
    for _, b in ipairs(bad) do
      local m, err = regex.compile(b[1])
      assert.is_nil(m, b[1])
      assert.are.equal(b[2], err)
    end
  end)

  it("takes what PCRE2 adds to ECMA-262's patterns", function()
    -- backreferences, fixed-length lookbehind, Unicode properties (long
    -- and short names, scripts)
    assert.is_true(test("^(a)\\1$", "aa"))
    assert.is_true(test("^(?<q>['\"]).*\\k<q>$", "'x'"))
    assert.is_true(test("(?<=a)b", "ab"))
    assert.is_false(test("(?<!a)b", "ab"))
    assert.is_true(test("^\\p{Letter}+$", "πé"))
    assert.is_true(test("^\\p{General_Category=Uppercase_Letter}$", "Á"))
    assert.is_true(test("^\\p{Script=Greek}$", "π"))
    assert.is_false(test("^\\p{L}+$", "123"))
    assert.is_true(test("^\\P{L}+$", "123"))
  end)

  it("gives up on catastrophic backtracking", function()
    local m = assert(regex.compile("^(a+)+$"))
    local ok, err = m:test(string.rep("a", 40) .. "!")
    assert.is_nil(ok)
    assert.are.equal("regex: too complex", err)
    -- and the same matcher still works afterwards
    assert.is_true(m:test("aaaa"))
  end)

  it("handles long subjects with simple loops", function()
    assert.is_true(test("^[a-z]*$", string.rep("abc", 100000)))
    assert.is_true(test("x$", string.rep("a", 100000) .. "x"))
  end)

  it("refuses a value that is not UTF-8, naming the byte", function()
    local m = assert(regex.compile("a"))
    assert.are.same({ nil, "regex: the value is not valid UTF-8 (at byte 1)" },
                    { m:test("a\255a") })
  end)

  it("takes a lower match limit for values nobody trusted, never a higher one", function()
    local m = assert(regex.compile("^(a|aa)+$"))
    local subject = string.rep("a", 30) .. "b"
    assert.are.same({ nil, "regex: too complex" }, { m:test(subject, 1000) })
    assert.is_true(m:test("aaa", 1000))
    -- asking for more than the built-in limit still stops at it
    assert.are.same({ nil, "regex: too complex" },
                    { m:test(string.rep("a", 40) .. "!", 1e12) })
  end)

  it("caches compiled patterns", function()
    assert.are.equal(regex.compile("^cache-me$"), regex.compile("^cache-me$"))
    local _, e1 = regex.compile("(")
    local _, e2 = regex.compile("(")
    assert.are.equal(e1, e2)
  end)

  it("raises on misuse", function()
    assert.has_error(function() regex.compile(nil) end,
                     "regex.compile: bad 'src' (string expected, got nil)")
    local m = assert(regex.compile("a"))
    assert.has_error(function() m:test(1) end,
                     "regex.test: bad 'str' (string expected, got number)")
  end)
end)
