-- weir.limits: request limiting building blocks for `weir serve`: a
-- token-bucket rate limiter with a bounded number of keys, and the client
-- address of a request (X-Forwarded-For honoured only from trusted
-- proxies). Pure Lua, no I/O; the clock is the caller's.
local byte, char, concat, find, format, gsub, match, sub =
  string.byte, string.char, table.concat, string.find, string.format,
  string.gsub, string.match, string.sub
local ceil, floor, max, min = math.ceil, math.floor, math.max, math.min
local error, ipairs, setmetatable, tonumber, type, unpack =
  error, ipairs, setmetatable, tonumber, type, unpack

local M = {}

---------------------------------------------------------------------------
-- Token buckets
---------------------------------------------------------------------------

local Limiter = {}
Limiter.__index = Limiter

--- A rate limiter: every key has a bucket of `burst` tokens that refills
-- at `rate` tokens per second; a request takes one. At most `max_keys`
-- buckets are kept: a new key beyond that evicts the key used least
-- recently (which starts over with a full bucket if it comes back), so
-- memory stays bounded whatever keys arrive. Size max_keys above the
-- number of principals or addresses active within burst / rate seconds.
function M.limiter(opts)
  if type(opts) ~= "table" then error("weir.limits.limiter: bad 'opts' (table expected)", 2) end
  local rate, burst, max_keys = opts.rate, opts.burst, opts.max_keys
  if type(rate) ~= "number" or not (rate > 0 and rate < math.huge) then
    error("weir.limits.limiter: bad 'rate' (tokens per second > 0 expected)", 2)
  end
  if type(burst) ~= "number" or not (burst >= 1 and burst < math.huge) then
    error("weir.limits.limiter: bad 'burst' (number >= 1 expected)", 2)
  end
  if type(max_keys) ~= "number" or max_keys < 1 or max_keys ~= floor(max_keys) then
    error("weir.limits.limiter: bad 'max_keys' (integer >= 1 expected)", 2)
  end
  return setmetatable({
    per_ms = rate / 1000, burst = burst, max_keys = max_keys,
    n = 0, map = {}, head = nil, tail = nil, -- head: most recently used
  }, Limiter)
end

--- Take one token from key's bucket at now_ms (milliseconds of a
-- monotonic clock). Returns true, or false and the whole seconds (>= 1)
-- after which a token will be there (for Retry-After).
function Limiter:take(key, now_ms)
  local map = self.map
  local node = map[key]
  if node then
    if node ~= self.head then -- move to the front
      node.prev.next = node.next
      if node.next then node.next.prev = node.prev else self.tail = node.prev end
      node.prev, node.next = nil, self.head
      self.head.prev = node
      self.head = node
    end
    local elapsed = now_ms - node.t
    if elapsed > 0 then -- a clock that went back refills nothing
      node.tokens = min(self.burst, node.tokens + elapsed * self.per_ms)
      node.t = now_ms
    end
  else
    if self.n >= self.max_keys then -- reuse the least recently used node
      node = self.tail
      map[node.key] = nil
      self.tail = node.prev
      if self.tail then self.tail.next = nil else self.head = nil end
      node.prev = nil
    else
      node = {}
      self.n = self.n + 1
    end
    node.key, node.tokens, node.t = key, self.burst, now_ms
    node.next = self.head
    if self.head then self.head.prev = node end
    self.head = node
    if not self.tail then self.tail = node end
    map[key] = node
  end
  if node.tokens >= 1 then
    node.tokens = node.tokens - 1
    return true
  end
  return false, max(1, ceil((1 - node.tokens) / self.per_ms / 1000))
end

--- The number of keys the limiter holds (at most max_keys).
function Limiter:size()
  return self.n
end

---------------------------------------------------------------------------
-- Addresses
---------------------------------------------------------------------------

-- The 4 bytes of a dotted IPv4 address (decimal, no leading zeros), or nil.
local function ipv4(s)
  local p = { match(s, "^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$") }
  if not p[1] then return nil end
  for i = 1, 4 do
    local x = p[i]
    if #x > 1 and byte(x, 1) == 48 then return nil end
    x = tonumber(x)
    if x > 255 then return nil end
    p[i] = x
  end
  return char(p[1], p[2], p[3], p[4])
end

-- The 16-bit groups of one side of "::" (v4: a dotted IPv4 may end it).
local function groups(part, v4)
  local out = {}
  if part == "" then return out end
  local fields = {}
  for f in (part .. ":"):gmatch("(.-):") do fields[#fields + 1] = f end
  for i, f in ipairs(fields) do
    if v4 and i == #fields and find(f, ".", 1, true) then
      local b = ipv4(f)
      if not b then return nil end
      local a1, a2, a3, a4 = byte(b, 1, 4)
      out[#out + 1] = a1 * 256 + a2
      out[#out + 1] = a3 * 256 + a4
    elseif find(f, "^%x%x?%x?%x?$") then
      out[#out + 1] = tonumber(f, 16)
    else
      return nil
    end
  end
  return out
end

-- The 16 bytes of an IPv6 address (RFC 4291 2.2 text forms, no zone), or nil.
local function ipv6(s)
  if #s > 45 then return nil end
  local head, tail = s, nil
  local dc = find(s, "::", 1, true)
  if dc then
    head, tail = sub(s, 1, dc - 1), sub(s, dc + 2)
    if find(tail, "::", 1, true) then return nil end
  end
  local h, t = groups(head, not dc), {}
  if dc then t = groups(tail, true) end
  if not h or not t then return nil end
  if dc then
    if #h + #t > 7 then return nil end
    for _ = 1, 8 - #h - #t do h[#h + 1] = 0 end
    for _, g in ipairs(t) do h[#h + 1] = g end
  elseif #h ~= 8 then
    return nil
  end
  local b = {}
  for i = 1, 8 do
    b[2 * i - 1] = floor(h[i] / 256)
    b[2 * i] = h[i] % 256
  end
  return char(unpack(b))
end

local MAPPED = ("\0"):rep(10) .. "\255\255"

--- The bytes of the address text s (4 for IPv4, 16 for IPv6; an
-- IPv4-mapped IPv6 address gives its IPv4 bytes), or nil.
local function parse(s)
  if type(s) ~= "string" then return nil end
  local b = ipv4(s) or ipv6(s)
  if b and #b == 16 and sub(b, 1, 12) == MAPPED then b = sub(b, 13) end
  return b
end

--- The text of address bytes b: dotted IPv4, or IPv6 as RFC 5952 says
-- (lowercase, no leading zeros, the longest run of two or more zero
-- groups as "::").
local function text(b)
  if #b == 4 then return format("%d.%d.%d.%d", byte(b, 1, 4)) end
  local g = {}
  for i = 1, 8 do g[i] = byte(b, 2 * i - 1) * 256 + byte(b, 2 * i) end
  local best, best_len, i = nil, 1, 1
  while i <= 8 do
    if g[i] == 0 then
      local j = i
      while j < 8 and g[j + 1] == 0 do j = j + 1 end
      if j - i + 1 > best_len then best, best_len = i, j - i + 1 end
      i = j + 1
    else
      i = i + 1
    end
  end
  local parts = {}
  for k = 1, 8 do parts[k] = format("%x", g[k]) end
  if not best then return concat(parts, ":") end
  return concat(parts, ":", 1, best - 1) .. "::" .. concat(parts, ":", best + best_len, 8)
end

--- The canonical text of address s (IPv4, or IPv6 per RFC 5952, an
-- IPv4-mapped one as IPv4), or nil when s is not an address.
function M.address(s)
  local b = parse(s)
  return b and text(b)
end

--- The rate-limit key of the canonical address addr: the address for
-- IPv4, its /64 for IPv6 (one host usually holds a whole /64, so keying
-- by /128 would give it 2^64 buckets).
function M.address_key(addr)
  local b = parse(addr)
  if not b then return addr end
  if #b == 4 then return text(b) end
  return text(sub(b, 1, 8) .. ("\0"):rep(8)) .. "/64"
end

local Proxies = {}
Proxies.__index = Proxies

--- A trusted-proxy list from CIDR texts ("10.0.0.0/8", "fd00::/8", or a
-- single address). Returns it, or nil and an error naming the bad entry
-- (a prefix with bits set past its length is refused: "10.1.0.0/8" is
-- most likely a mistake).
function M.proxies(list)
  if type(list) ~= "table" then error("weir.limits.proxies: bad 'list' (table expected)", 2) end
  local nets = {}
  for i, entry in ipairs(list) do
    local addr, bits = nil, nil
    if type(entry) == "string" then
      addr, bits = match(entry, "^([^/]+)/(%d%d?%d?)$")
      if not addr then addr = entry end
    end
    local b = parse(addr)
    if not b then
      return nil, format("trusted proxy %d: expected an address or CIDR, got %s", i,
                         type(entry) == "string" and format("%q", entry:sub(1, 60)) or type(entry))
    end
    -- an IPv4-mapped prefix ("::ffff:10.0.0.0/104") counts as IPv4
    local n = tonumber(bits) or #b * 8
    if bits and #b == 4 and not ipv4(addr) then n = n - 96 end
    if n < 0 or n > #b * 8 then
      return nil, format("trusted proxy %q: prefix length out of range", entry)
    end
    local whole, rest = floor(n / 8), n % 8
    local tail = sub(b, whole + 1)
    if rest > 0 then
      local lowmask = 2 ^ (8 - rest)
      if byte(tail, 1) % lowmask ~= 0 then tail = "x" else tail = sub(tail, 2) end
    end
    if find(tail, "[^%z]") then
      return nil, format("trusted proxy %q: address has bits set past the prefix", entry)
    end
    nets[#nets + 1] = { len = #b, whole = whole, prefix = sub(b, 1, whole), rest = rest,
                        byte = rest > 0 and byte(b, whole + 1) or 0 }
  end
  return setmetatable({ nets = nets }, Proxies)
end

--- True when the address bytes b fall in one of the proxies' networks.
function Proxies:contains_bytes(b)
  for _, net in ipairs(self.nets) do
    if net.len == #b and sub(b, 1, net.whole) == net.prefix then
      if net.rest == 0 then return true end
      local span = 2 ^ (8 - net.rest)
      if floor(byte(b, net.whole + 1) / span) == floor(net.byte / span) then return true end
    end
  end
  return false
end

--- True when address text s is in one of the proxies' networks.
function Proxies:contains(s)
  local b = parse(s)
  return b ~= nil and self:contains_bytes(b)
end

-- The address of one X-Forwarded-For entry: an address, "[v6]" or
-- "[v6]:port", or "v4:port"; spaces around it are ignored.
local function hop(s)
  s = gsub(s, "^[ \t]+", "")
  s = gsub(s, "[ \t]+$", "")
  local inner, rest = match(s, "^%[([^%]]*)%](.*)$")
  if inner then
    if rest ~= "" and not find(rest, "^:%d+$") then return nil end
    local b = ipv6(inner)
    if b and sub(b, 1, 12) == MAPPED then b = sub(b, 13) end
    return b
  end
  local v4 = match(s, "^([%d.]+):%d+$")
  if v4 then return ipv4(v4) end
  return parse(s)
end

--- The most X-Forwarded-For entries looked at, right to left.
M.MAX_HOPS = 32

--- The client address of a request, as canonical text. peer is the
-- address of the connection; xff the X-Forwarded-For value (its header
-- lines joined with "," in order, or a list of them); proxies a list from
-- M.proxies (or nil: no proxy is trusted). Only when the peer is a trusted
-- proxy is the header read, right to left, skipping trusted proxies: the
-- first entry that is not one is the client. Entries to its left were
-- written by the client and are never believed. An entry that is not an
-- address stops the walk at the last trusted hop before it, and so does
-- a chain of only trusted hops (or of more than MAX_HOPS).
function M.client_address(peer, xff, proxies)
  local last = parse(peer)
  if not last then return peer end
  if not proxies or not proxies:contains_bytes(last) or xff == nil then return text(last) end
  if type(xff) == "table" then xff = concat(xff, ",") end
  local entries = {}
  for e in (xff .. ","):gmatch("(.-),") do entries[#entries + 1] = e end
  for i = #entries, max(1, #entries - M.MAX_HOPS + 1), -1 do
    local b = hop(entries[i])
    if not b then break end
    if not proxies:contains_bytes(b) then return text(b) end
    last = b
  end
  return text(last)
end

return M
