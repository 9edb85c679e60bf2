-- weir.regex - a small backtracking regex engine for JSON Schema patterns.
--
-- Supports the ECMA-262 subset JSON Schema authors use: literals and escapes
-- (\t \n \r \f \v \0 \xHH \uHHHH \u{H...} \cX), ".", classes ([a-z], [^...],
-- \d \w \s \D \W \S), anchors (^ $ \b \B), groups ((...), (?:...),
-- (?<name>...)), lookahead ((?=...), (?!...)), alternation and greedy or lazy
-- quantifiers (* + ? {n} {n,} {n,m}). Backreferences and lookbehind are
-- rejected at compile time. Matching works on Unicode code points (the
-- subject is read as UTF-8) and searches anywhere unless anchored, as
-- JSON Schema requires. A step budget stops catastrophic backtracking.
local byte, char, find, format = string.byte, string.char, string.find,
  string.format
local huge = math.huge
local error, pcall, setmetatable, tonumber, tostring, type =
  error, pcall, setmetatable, tonumber, tostring, type

local M = {}

--- Steps (choice points tried) one test() may take before giving up.
M.max_steps = 1000000

local TOO_COMPLEX = "regex: too complex"
local CACHE_LIMIT = 512

-- Thrown from inside a match to stop it.
local Budget = setmetatable({}, { __tostring = function() return TOO_COMPLEX end })

---------------------------------------------------------------------------
-- UTF-8 to code points
---------------------------------------------------------------------------

-- Decodes s into an array of code points. A byte that does not start a valid
-- sequence becomes 0x110000 + byte, which no pattern character matches;
-- returns the array, its length and whether such bytes were seen.
local function code_points(s)
  local out, n, bad = {}, 0, false
  local len = #s
  local i = 1
  while i <= len do
    local c = byte(s, i)
    if c < 0x80 then
      n = n + 1
      out[n] = c
      i = i + 1
    else
      local cnt, min
      if c >= 0xC2 and c <= 0xDF then cnt, min = 1, 0x80
      elseif c >= 0xE0 and c <= 0xEF then cnt, min = 2, 0x800
      elseif c >= 0xF0 and c <= 0xF4 then cnt, min = 3, 0x10000
      else cnt = nil end
      local cp
      if cnt then
        cp = c % (2 ^ (6 - cnt))
        for j = i + 1, i + cnt do
          local cc = byte(s, j)
          if not cc or cc < 0x80 or cc > 0xBF then cp = nil break end
          cp = cp * 64 + cc - 0x80
        end
        if cp and (cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF)) then
          cp = nil
        end
      end
      n = n + 1
      if cp then
        out[n] = cp
        i = i + cnt + 1
      else
        out[n] = 0x110000 + c
        bad = true
        i = i + 1
      end
    end
  end
  return out, n, bad
end

---------------------------------------------------------------------------
-- Character sets
---------------------------------------------------------------------------

local function is_digit(c) return c >= 48 and c <= 57 end

local function is_word(c)
  return c and ((c >= 48 and c <= 57) or (c >= 65 and c <= 90)
    or (c >= 97 and c <= 122) or c == 95) or false
end

local function is_space(c)
  return c == 32 or (c >= 9 and c <= 13) or c == 0xA0 or c == 0x1680
    or (c >= 0x2000 and c <= 0x200A) or c == 0x2028 or c == 0x2029
    or c == 0x202F or c == 0x205F or c == 0x3000 or c == 0xFEFF
end

local function is_line_terminator(c)
  return c == 10 or c == 13 or c == 0x2028 or c == 0x2029
end

local class_escapes = {
  d = { is_digit, false }, D = { is_digit, true },
  w = { is_word, false }, W = { is_word, true },
  s = { is_space, false }, S = { is_space, true },
}

-- Builds a predicate from ranges {lo1, hi1, lo2, hi2, ...} and class
-- escapes {{fn, negated}, ...}; ASCII answers come from a lookup table.
local function make_set(ranges, classes, negate)
  local function slow(c)
    for i = 1, #ranges, 2 do
      if c >= ranges[i] and c <= ranges[i + 1] then return true end
    end
    for i = 1, #classes do
      local cl = classes[i]
      if cl[1](c) ~= cl[2] then return true end
    end
    return false
  end
  local ascii = {}
  for c = 0, 127 do ascii[c] = slow(c) ~= negate end
  return function(c)
    if c < 128 then return ascii[c] end
    return slow(c) ~= negate
  end
end

local function dot(c) return not is_line_terminator(c) end

---------------------------------------------------------------------------
-- Parser: pattern text -> tree
---------------------------------------------------------------------------

local Parser = {}
Parser.__index = Parser

function Parser:fail(msg, pos)
  error({ regex_error = format("regex: %s at position %d", msg, pos or self.i) }, 0)
end

function Parser:peek(k) return self.cp[self.i + (k or 0)] end

function Parser:eat(c)
  if self.cp[self.i] == c then
    self.i = self.i + 1
    return true
  end
  return false
end

-- Reads exactly `count` hex digits; returns the value or nil (no advance).
function Parser:hex(count)
  local v = 0
  for k = 0, count - 1 do
    local c = self.cp[self.i + k]
    local d = c and tonumber(char(c < 128 and c or 0), 16)
    if not c or c >= 128 or not d then return nil end
    v = v * 16 + d
  end
  self.i = self.i + count
  return v
end

-- After a backslash: returns ("char", cp) or ("class", {fn, negated}) or
-- ("assert", kind). in_class changes \b (backspace) and \B/\- handling.
function Parser:escape(in_class)
  local at = self.i - 1
  local c = self:peek()
  if not c then self:fail("pattern ends with a backslash", at) end
  self.i = self.i + 1
  local ch = c < 128 and char(c) or ""
  if class_escapes[ch] then return "class", class_escapes[ch] end
  if ch == "b" then
    if in_class then return "char", 8 end
    return "assert", "word"
  end
  if ch == "B" and not in_class then return "assert", "nonword" end
  if ch == "t" then return "char", 9 end
  if ch == "n" then return "char", 10 end
  if ch == "v" then return "char", 11 end
  if ch == "f" then return "char", 12 end
  if ch == "r" then return "char", 13 end
  if ch == "0" and not (self:peek() and is_digit(self:peek())) then
    return "char", 0
  end
  if ch == "x" then
    local v = self:hex(2)
    if v then return "char", v end
    return "char", c -- Annex B: "\x" without digits is "x"
  end
  if ch == "u" then
    if self:peek() == 123 then -- \u{...}
      local j, v = self.i + 1, 0
      local digits = 0
      while self.cp[j] and self.cp[j] ~= 125 do
        local d = self.cp[j] < 128 and tonumber(char(self.cp[j]), 16)
        if not d then self:fail("invalid \\u{} escape", at) end
        v = v * 16 + d
        digits = digits + 1
        j = j + 1
      end
      if not self.cp[j] or digits == 0 or v > 0x10FFFF then
        self:fail("invalid \\u{} escape", at)
      end
      self.i = j + 1
      return "char", v
    end
    local v = self:hex(4)
    if not v then return "char", c end -- Annex B: "\u" without digits is "u"
    if v >= 0xD800 and v <= 0xDBFF and self:peek() == 92 and self:peek(1) == 117 then
      local save = self.i
      self.i = self.i + 2
      local lo = self:hex(4)
      if lo and lo >= 0xDC00 and lo <= 0xDFFF then
        return "char", 0x10000 + (v - 0xD800) * 1024 + (lo - 0xDC00)
      end
      self.i = save
    end
    return "char", v
  end
  if ch == "c" then
    local l = self:peek()
    if l and ((l >= 65 and l <= 90) or (l >= 97 and l <= 122)) then
      self.i = self.i + 1
      return "char", l % 32
    end
    return "char", 92 -- Annex B: "\c" not followed by a letter is a backslash
  end
  if ch == "p" or ch == "P" then
    self:fail("unicode property escapes (\\p{...}) are not supported", at)
  end
  if not in_class and c >= 49 and c <= 57 then
    self:fail("backreferences are not supported", at)
  end
  if not in_class and ch == "k" and self:peek() == 60 then
    self:fail("backreferences are not supported", at)
  end
  return "char", c -- identity escape
end

function Parser:class()
  local start = self.i - 1
  local negate = self:eat(94) -- ^
  local ranges, classes = {}, {}
  local function atom()
    local c = self:peek()
    if not c then self:fail("unterminated character class", start) end
    self.i = self.i + 1
    if c == 92 then
      local kind, v = self:escape(true)
      return kind, v
    end
    return "char", c
  end
  while true do
    local c = self:peek()
    if not c then self:fail("unterminated character class", start) end
    if c == 93 then self.i = self.i + 1 break end -- ]
    local kind, v = atom()
    if kind == "class" then
      classes[#classes + 1] = v
    elseif self:peek() == 45 and self:peek(1) and self:peek(1) ~= 93 then -- a-z
      local at = self.i
      self.i = self.i + 1
      local kind2, v2 = atom()
      if kind2 == "class" then -- Annex B: [a-\d] is a, -, \d
        ranges[#ranges + 1] = v
        ranges[#ranges + 1] = v
        ranges[#ranges + 1] = 45
        ranges[#ranges + 1] = 45
        classes[#classes + 1] = v2
      else
        if v2 < v then self:fail("range out of order in character class", at) end
        ranges[#ranges + 1] = v
        ranges[#ranges + 1] = v2
      end
    else
      ranges[#ranges + 1] = v
      ranges[#ranges + 1] = v
    end
  end
  return { type = "set", pred = make_set(ranges, classes, negate) }
end

-- Parses {n}, {n,}, {n,m} at self.i (on "{"); returns min, max or nil.
function Parser:braces()
  local j = self.i + 1
  local function number()
    local v, digits = 0, 0
    while self.cp[j] and is_digit(self.cp[j]) do
      v = v * 10 + self.cp[j] - 48
      digits = digits + 1
      j = j + 1
    end
    return digits > 0 and v or nil
  end
  local min = number()
  if not min then return nil end
  local max = min
  if self.cp[j] == 44 then -- ,
    j = j + 1
    max = number() or huge
  end
  if self.cp[j] ~= 125 then return nil end
  local at = self.i
  self.i = j + 1
  if max < min then self:fail("numbers out of order in {} quantifier", at) end
  return min, max
end

function Parser:quantifier(node)
  local c = self:peek()
  local min, max
  local at = self.i
  if c == 42 then min, max = 0, huge; self.i = self.i + 1       -- *
  elseif c == 43 then min, max = 1, huge; self.i = self.i + 1   -- +
  elseif c == 63 then min, max = 0, 1; self.i = self.i + 1      -- ?
  elseif c == 123 then min, max = self:braces()                 -- {
  end
  if not min then return node end
  if node.type == "bol" or node.type == "eol" or node.type == "boundary" then
    self:fail("nothing to repeat", at)
  end
  local greedy = not self:eat(63)
  return { type = "repeat", inner = node, min = min, max = max, greedy = greedy }
end

function Parser:term()
  local c = self:peek()
  local at = self.i
  self.i = self.i + 1
  if c == 94 then return { type = "bol" } end                   -- ^
  if c == 36 then return { type = "eol" } end                   -- $
  if c == 46 then return self:quantifier({ type = "set", pred = dot }) end
  if c == 91 then return self:quantifier(self:class()) end      -- [
  if c == 40 then                                               -- (
    local node
    if self:eat(63) then -- (?
      if self:eat(58) then -- (?:
        node = { type = "group" }
      elseif self:eat(61) then -- (?=
        node = { type = "look", positive = true }
      elseif self:eat(33) then -- (?!
        node = { type = "look", positive = false }
      elseif self:peek() == 60 and (self:peek(1) == 61 or self:peek(1) == 33) then
        self:fail("lookbehind is not supported", at)
      elseif self:eat(60) then -- (?<name>
        while self:peek() and self:peek() ~= 62 do self.i = self.i + 1 end
        if not self:eat(62) then self:fail("unterminated group name", at) end
        node = { type = "group" }
      else
        self:fail("invalid group", at)
      end
    else
      node = { type = "group" }
    end
    node.inner = self:alternation()
    if not self:eat(41) then self:fail("missing ')'", at) end
    return self:quantifier(node)
  end
  if c == 41 then self:fail("unmatched ')'", at) end
  if c == 42 or c == 43 or c == 63 then self:fail("nothing to repeat", at) end
  if c == 123 then
    self.i = at
    if self:braces() then self:fail("nothing to repeat", at) end
    self.i = at + 1
    return self:quantifier({ type = "char", cp = c })
  end
  if c == 92 then                                               -- \
    local kind, v = self:escape(false)
    if kind == "class" then
      local fn, negated = v[1], v[2]
      local pred = negated and function(x) return not fn(x) end or fn
      return self:quantifier({ type = "set", pred = pred })
    elseif kind == "assert" then
      return { type = "boundary", word = v == "word" }
    end
    return self:quantifier({ type = "char", cp = v })
  end
  return self:quantifier({ type = "char", cp = c })
end

function Parser:sequence()
  local items = {}
  while true do
    local c = self:peek()
    if not c or c == 124 or c == 41 then break end -- end, |, )
    items[#items + 1] = self:term()
  end
  return { type = "seq", items = items }
end

function Parser:alternation()
  local branches = { self:sequence() }
  while self:eat(124) do branches[#branches + 1] = self:sequence() end
  if #branches == 1 then return branches[1] end
  return { type = "alt", branches = branches }
end

local function parse(src)
  local cp, n, bad = code_points(src)
  if bad then
    error({ regex_error = "regex: pattern is not valid utf-8" }, 0)
  end
  local p = setmetatable({ cp = cp, n = n, i = 1 }, Parser)
  local tree = p:alternation()
  if p.i <= n then p:fail("unmatched ')'") end
  return tree
end

---------------------------------------------------------------------------
-- Compiler: tree -> matcher closures
---------------------------------------------------------------------------

-- Each compiled node is a function(i) -> boolean that matches at position i
-- and then calls its continuation; the continuation is fixed when the node
-- is compiled, so matching allocates nothing.
local function build(tree)
  local s, n, steps = nil, 0, 0

  local function accept() return true end

  local compile

  local function single(node)
    if node.type == "char" then
      local cp = node.cp
      return function(c) return c == cp end
    elseif node.type == "set" then
      return node.pred
    end
    return nil
  end

  local function compile_repeat(node, nxt)
    local min, max, greedy = node.min, node.max, node.greedy
    local pred = single(node.inner)
    if pred then -- one char per iteration: loop, no recursion
      if greedy then
        return function(i)
          local j, limit = i, i + max
          while j <= n and j < limit and pred(s[j]) do j = j + 1 end
          for p = j, i + min, -1 do
            steps = steps + 1
            if steps > M.max_steps then error(Budget, 0) end
            if nxt(p) then return true end
          end
          return false
        end
      end
      return function(i)
        local j = i
        for _ = 1, min do
          if j <= n and pred(s[j]) then j = j + 1 else return false end
        end
        local count = min
        while true do
          steps = steps + 1
          if steps > M.max_steps then error(Budget, 0) end
          if nxt(j) then return true end
          if count >= max or j > n or not pred(s[j]) then return false end
          j, count = j + 1, count + 1
        end
      end
    end
    -- General case. count/start describe the innermost active loop of this
    -- node; they are saved and restored around every nested use.
    local count, start = 0, 0
    local body
    local function iterate(i)
      local c0, s0 = count, start
      count, start = c0 + 1, i
      local r = body(i)
      count, start = c0, s0
      return r
    end
    local function loop(i)
      steps = steps + 1
      if steps > M.max_steps then error(Budget, 0) end
      if count < min then return iterate(i) end
      if greedy then
        if count < max and iterate(i) then return true end
        return nxt(i)
      end
      if nxt(i) then return true end
      return count < max and iterate(i)
    end
    body = compile(node.inner, function(j)
      -- an iteration past the minimum that matched nothing ends the loop
      if j == start and count > min then return false end
      return loop(j)
    end)
    return function(i)
      local c0, s0 = count, start
      count, start = 0, 0
      local r = loop(i)
      count, start = c0, s0
      return r
    end
  end

  compile = function(node, nxt)
    local t = node.type
    if t == "char" then
      local cp = node.cp
      return function(i)
        if s[i] == cp then return nxt(i + 1) end
        return false
      end
    elseif t == "set" then
      local pred = node.pred
      return function(i)
        if i <= n and pred(s[i]) then return nxt(i + 1) end
        return false
      end
    elseif t == "seq" then
      local m = nxt
      for k = #node.items, 1, -1 do m = compile(node.items[k], m) end
      return m
    elseif t == "alt" then
      local fns = {}
      for k = 1, #node.branches do fns[k] = compile(node.branches[k], nxt) end
      local nb = #fns
      return function(i)
        for k = 1, nb do
          steps = steps + 1
          if steps > M.max_steps then error(Budget, 0) end
          if fns[k](i) then return true end
        end
        return false
      end
    elseif t == "group" then
      return compile(node.inner, nxt)
    elseif t == "look" then
      local inner, positive = compile(node.inner, accept), node.positive
      return function(i)
        if inner(i) == positive then return nxt(i) end
        return false
      end
    elseif t == "bol" then
      return function(i)
        if i == 1 then return nxt(i) end
        return false
      end
    elseif t == "eol" then
      return function(i)
        if i == n + 1 then return nxt(i) end
        return false
      end
    elseif t == "boundary" then
      local want = node.word
      return function(i)
        if (is_word(s[i - 1]) ~= is_word(s[i])) == want then return nxt(i) end
        return false
      end
    elseif t == "repeat" then
      if node.max == 0 then return nxt end
      return compile_repeat(node, nxt)
    end
    error("regex: internal error: node " .. tostring(t))
  end

  local first = tree.type == "seq" and tree.items[1]
  local anchored = first and first.type == "bol"
  local start = compile(tree, accept)

  local function search()
    if anchored then return start(1) end
    for i = 1, n + 1 do
      if start(i) then return true end
    end
    return false
  end

  return function(str)
    s, n = code_points(str)
    steps = 0
    local ok, r = pcall(search)
    s = nil
    if ok then return r end
    if r == Budget or (type(r) == "string" and find(r, "stack overflow", 1, true)) then
      return nil, TOO_COMPLEX
    end
    error(r, 0)
  end
end

---------------------------------------------------------------------------
-- Public API
---------------------------------------------------------------------------

local Matcher = {}
Matcher.__index = Matcher

--- Tests whether the pattern matches anywhere in `str`.
-- Returns true or false, or nil and "regex: too complex" when the step
-- budget (regex.max_steps) runs out.
function Matcher:test(str)
  if type(str) ~= "string" then
    error("regex.test: bad 'str' (string expected, got " .. type(str) .. ")", 2)
  end
  return self.run(str)
end

function Matcher:__tostring()
  return "regex(" .. self.source .. ")"
end

local cache, cached = {}, 0

--- Compiles an ECMA-262-subset pattern into a matcher (cached by source).
-- Returns the matcher, or nil and an error
-- ("regex: nothing to repeat at position 1").
function M.compile(src)
  if type(src) ~= "string" then
    error("regex.compile: bad 'src' (string expected, got " .. type(src) .. ")", 2)
  end
  local hit = cache[src]
  if hit then
    if hit.err then return nil, hit.err end
    return hit
  end
  local ok, tree = pcall(parse, src)
  local entry
  if ok then
    entry = setmetatable({ source = src, run = build(tree) }, Matcher)
  elseif type(tree) == "table" and tree.regex_error then
    entry = { err = tree.regex_error }
  else
    error(tree, 0)
  end
  if cached >= CACHE_LIMIT then cache, cached = {}, 0 end
  cache[src] = entry
  cached = cached + 1
  if entry.err then return nil, entry.err end
  return entry
end

-- Exposed for weir.schema (minLength/maxLength count code points).
M._code_points = code_points

return M
