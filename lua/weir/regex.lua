-- weir.regex - JSON Schema patterns (ECMA-262 flavoured) matched by PCRE2
-- through runtime/regex.c (ADR 42): what differs from ECMA-262 is listed
-- there and in the ADR.
--
-- Searches anywhere unless anchored, as JSON Schema requires; subjects are
-- UTF-8 and matched by code point. Every test runs under PCRE2's match,
-- depth and heap limits, so a pattern that backtracks catastrophically on
-- a hostile value returns nil, "regex: too complex" instead of hanging:
-- safe for patterns and values nobody trusted. Compiled patterns are
-- cached by source.
local F = require("weir._ffi")
local ffi, C = F.ffi, F.C
local errbuf, errlen = F.errbuf, F.errlen
local regex_new, regex_test, regex_delete =
  C.weir_ffi_regex_new, C.weir_ffi_regex_test, C.weir_ffi_regex_delete
local error, setmetatable, type = error, setmetatable, type
local OK, ELIMIT, MATCH_LIMIT = C.WEIR_OK, C.WEIR_ELIMIT, C.WEIR_REGEX_MATCH_LIMIT
local min, max = math.min, math.max

local M = {}

local CACHE_LIMIT = 512
local out = ffi.new("weir_regex *[1]")
local matched = ffi.new("int32_t[1]")

local Matcher = {}
Matcher.__index = Matcher

--- Tests whether the pattern matches anywhere in `str`, taking at most
-- `limit` match steps (PCRE2's match limit; default and at most
-- WEIR_REGEX_MATCH_LIMIT, 1e6: a caller matching values nobody trusted
-- may pass less). Returns true or false, or nil and an error: "regex: too
-- complex" when a limit stopped the search, "regex: the value is not
-- valid UTF-8 ...".
function Matcher:test(str, limit)
  if type(str) ~= "string" then
    error("regex.test: bad 'str' (string expected, got " .. type(str) .. ")", 2)
  end
  limit = limit and min(max(limit, 1), MATCH_LIMIT) or 0
  local rc = regex_test(self.re, str, #str, limit, matched, errbuf, errlen)
  if rc == OK then return matched[0] == 1 end
  if rc == ELIMIT then return nil, "regex: too complex" end
  return nil, "regex: " .. ffi.string(errbuf)
end

function Matcher:__tostring()
  return "regex(" .. self.source .. ")"
end

local cache, cached = {}, 0

--- Compiles a pattern into a matcher (cached by source). Returns the
-- matcher, or nil and an error ("regex: quantifier does not follow a
-- repeatable item at offset 0").
function M.compile(src)
  if type(src) ~= "string" then
    error("regex.compile: bad 'src' (string expected, got " .. type(src) .. ")", 2)
  end
  local hit = cache[src]
  if hit then
    if hit.err then return nil, hit.err end
    return hit
  end
  local entry
  if regex_new(src, #src, out, errbuf, errlen) == OK then
    entry = setmetatable({ source = src, re = ffi.gc(out[0], regex_delete) }, Matcher)
  else
    entry = { err = "regex: " .. ffi.string(errbuf) }
  end
  if cached >= CACHE_LIMIT then cache, cached = {}, 0 end
  cache[src] = entry
  cached = cached + 1
  if entry.err then return nil, entry.err end
  return entry
end

return M
