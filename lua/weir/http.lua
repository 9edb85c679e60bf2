-- weir.http: the Lua face of the HTTP server primitive (runtime/http.c).
--
-- libmicrohttpd's threads read and check requests, answer GET/HEAD /health
-- and refuse bad input themselves (problem+json); every other complete
-- request waits in a queue until this side takes it with next() and
-- answers it with respond() or a stream (Server-Sent Events). fd() is an
-- eventfd readable while requests wait, for the supervisor's poll loop.
-- No routes, no policy: those live in the API layer. Owns the server's
-- lifetime (ffi.gc at birth, close() is safe twice).
local F = require("weir._ffi")
local ffi, C = F.ffi, F.C
local check = F.check

local M = {}
local Server = {}
Server.__index = Server
local Stream = {}
Stream.__index = Stream

--- Start a server. opts: address (IPv4/IPv6 literal, default
-- "127.0.0.1"), port (0 or nil = a free one), threads, max_header_bytes,
-- max_body_bytes, max_connections, max_per_address, timeout (idle
-- seconds), request_timeout (seconds Lua may take to answer; 0 = no
-- limit), tls_cert and tls_key (PEM text, not paths), stream_buffer
-- (bytes a stream may hold unsent). Returns the server or nil, err.
function M.new(opts)
  opts = opts or {}
  local o = ffi.new("weir_http_opts")
  o.address = opts.address
  o.port = opts.port or 0
  o.threads = opts.threads or 0
  o.max_header_bytes = opts.max_header_bytes or 0
  o.max_body_bytes = opts.max_body_bytes or 0
  o.max_connections = opts.max_connections or 0
  o.max_per_address = opts.max_per_address or 0
  o.timeout_s = opts.timeout or 0
  o.request_timeout_s = opts.request_timeout or 0
  o.tls_cert = opts.tls_cert
  o.tls_key = opts.tls_key
  o.stream_buffer = opts.stream_buffer or 0
  local out = ffi.new("weir_http *[1]")
  local ok, err = check(C.weir_ffi_http_new(o, out, F.errbuf, F.errlen))
  if not ok then return nil, err end
  return setmetatable({
    h = ffi.gc(out[0], C.weir_ffi_http_delete),
    req = ffi.new("weir_http_req"),
    st = ffi.new("weir_http_stats"),
    streams = {},
  }, Server)
end

--- The port it listens on.
function Server:port() return C.weir_ffi_http_port(self.h) end

--- The eventfd that is readable while requests wait (for a poll loop).
function Server:fd() return C.weir_ffi_http_fd(self.h) end

--- Wait up to timeout_ms (-1 forever) for a request; true when one waits.
function Server:wait(timeout_ms)
  return C.weir_ffi_http_wait(self.h, timeout_ms or -1) == 1
end

--- The next complete request, or nil when none waits: { id, method,
-- path (raw, not percent-decoded), query (raw, "" when none), headers
-- (lowercased name -> value; a repeated field's values joined by ", "),
-- body, client (address text) }, all copied into Lua strings.
function Server:next()
  local r = self.req
  if C.weir_ffi_http_next(self.h, r) == 0 then return nil end
  local headers = {}
  for name, value in ffi.string(r.headers, r.headers_len):gmatch("([^:\n]+): ([^\n]*)\n") do
    local had = headers[name]
    headers[name] = had and (had .. ", " .. value) or value
  end
  return {
    id = r.id,
    method = ffi.string(r.method),
    path = ffi.string(r.path, r.path_len),
    query = ffi.string(r.query, r.query_len),
    headers = headers,
    body = ffi.string(r.body, r.body_len),
    client = ffi.string(r.client),
  }
end

-- "Name: value\n" lines from a table of name -> value (sorted, so the
-- answer does not depend on table order).
local function header_block(headers)
  if not headers then return nil end
  local names = {}
  for k in pairs(headers) do names[#names + 1] = k end
  table.sort(names)
  local out = {}
  for i, k in ipairs(names) do out[i] = k .. ": " .. tostring(headers[k]) .. "\n" end
  return table.concat(out)
end

--- Answer request id (a number or the request's id cdata): status,
-- headers (name -> value), body (string). X-Content-Type-Options: nosniff
-- is added unless given; Content-Length always. true, or nil, err
-- (code "notfound" when the request is no longer waiting: answered,
-- expired or gone with the server).
function Server:respond(id, status, headers, body)
  body = body or ""
  return check(C.weir_ffi_http_respond(self.h, id, status, header_block(headers), body, #body,
                                       F.errbuf, F.errlen))
end

--- Answer request id with a stream (status, headers as in respond).
-- Returns a stream: write(data) -> true or nil, err (code "closed" when
-- the client went away, "limit" when stream_buffer bytes are still
-- unsent), close() (safe twice; the server closes streams it deletes).
function Server:stream(id, status, headers)
  local ok, err = check(C.weir_ffi_http_stream_open(self.h, id, status, header_block(headers),
                                                    F.errbuf, F.errlen))
  if not ok then return nil, err end
  local s = setmetatable({ server = self, id = id }, Stream)
  self.streams[s] = true
  return s
end

function Stream:write(data)
  if not self.id then return nil, require("weir.errors").new("closed", "stream closed") end
  return check(C.weir_ffi_http_stream_write(self.server.h, self.id, data, #data,
                                            F.errbuf, F.errlen))
end

function Stream:close()
  if self.id and self.server.h then
    C.weir_ffi_http_stream_close(self.server.h, self.id)
    self.server.streams[self] = nil
  end
  self.id = nil
end

local STATS = { "queued", "answered", "health", "refused_400", "refused_413", "refused_414",
                "refused_431", "refused_501", "refused_503", "refused_505", "refused_other",
                "streams_gone", "waiting", "in_lua" }

--- The counters (a table of numbers named as in weir_http_stats).
function Server:stats()
  C.weir_ffi_http_stats(self.h, self.st)
  local out = {}
  for _, k in ipairs(STATS) do out[k] = tonumber(self.st[k]) end
  return out
end

--- Stop the server (open streams end, waiting requests get 503) and
-- free it; safe twice.
function Server:close()
  if self.h then
    for s in pairs(self.streams) do s.id = nil end
    self.streams = {}
    C.weir_ffi_http_delete(ffi.gc(self.h, nil))
    self.h = nil
  end
end

return M
