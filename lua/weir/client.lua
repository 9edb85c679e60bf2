-- weir.client: the command line as a client of weir serve.
--
-- The server's URL comes from --server or WEIR_SERVER (default
-- http://127.0.0.1:8080), the credentials from WEIR_TOKEN (an API key or
-- a JWT), never from an argument (it would show in ps). https:// checks
-- the server's certificate against WEIR_SERVER_CA (a PEM file) or the
-- system's CA bundle, and its name against the URL's host.
local F = require("weir._ffi")
local json = require("weir.json")
local ffi, C = F.ffi, F.C
local format = string.format

local M = {}

local MAX_ANSWER = 64 * 1024 * 1024

--- host, port, base path, tls (true for https) of url, or nil, message
-- (what: the setting the URL came from, "--server" by default).
function M.parse_url(url, what)
  what = what or "--server"
  local scheme, rest = url:match("^(%a+)://(.+)$")
  if scheme ~= "http" and scheme ~= "https" then
    return nil, format("%s: expected http(s)://HOST:PORT, got %q", what, url)
  end
  local host, port, path = rest:match("^%[([%x:.]+)%]:(%d+)(.*)$")
  if not host then host, port, path = rest:match("^([^:/]+):(%d+)(.*)$") end
  if not host then
    host, path = rest:match("^([^:/]+)(.*)$")
    port = scheme == "https" and 443 or 80
  end
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil, format("%s: expected http(s)://HOST:PORT, got %q", what, url)
  end
  return host, port, (path:gsub("/$", "")), scheme == "https"
end

-- The CA certificates (PEM text) an https server is checked against.
local function ca_text()
  local file = os.getenv("WEIR_SERVER_CA")
  local from = "WEIR_SERVER_CA"
  if not file or file == "" then
    file, from = ffi.string(C.weir_ffi_tls_default_ca()), "the system's CA bundle"
  end
  local f, err = io.open(file, "rb")
  if not f then return nil, format("cannot read %s (%s): %s", from, file, tostring(err)) end
  local text = f:read("*a")
  f:close()
  return text
end

-- Send req (a whole request) to host:port, over TLS when tls, and read
-- the answer (at most max bytes) within timeout_ms: status, head, body,
-- or nil, message.
local function exchange(host, port, tls, req, timeout_ms, max)
  local ca
  if tls then
    local cerr
    ca, cerr = ca_text()
    if not ca then return nil, cerr end
  end
  local out = ffi.new("char *[1]")
  local outlen = ffi.new("size_t[1]")
  local rc = C.weir_ffi_http_exchange(host, port, ca, req, #req, timeout_ms, max, out, outlen,
                                      F.errbuf, F.errlen)
  if rc ~= 0 then return nil, F.errmsg() end
  local answer = ffi.string(out[0], outlen[0])
  C.weir_ffi_client_free(out[0])
  local head, rest = answer:match("^(.-)\r\n\r\n(.*)$")
  local status = head and tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then return nil, format("%s:%d did not answer in HTTP", host, port) end
  return status, head, rest
end

--- POST body (JSON text) to url (http://HOST[:PORT]/PATH) with the extra
-- header lines headers, within timeout_ms. Returns the status, or nil,
-- message (the message never holds the headers).
function M.post(url, body, headers, timeout_ms)
  local host, port, path, tls = M.parse_url(url, "url")
  if not host then return nil, port end
  local lines = { format("POST %s HTTP/1.1", path ~= "" and path or "/"),
                  format("Host: %s:%d", host, port), "Connection: close", "User-Agent: weir",
                  "Content-Length: " .. #body }
  for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
  local req = table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
  local status, err = exchange(host, port, tls, req, timeout_ms, 1024 * 1024)
  if not status then return nil, err end
  return status
end

local function pct(s)
  return (s:gsub("[^%w%-_.~]", function(c) return format("%%%02X", c:byte()) end))
end
M.pct = pct

--- A request to the server: method, path (with its query), body (a
-- table, sent as JSON), o: server, token, timeout_ms. Returns status,
-- decoded body (or the text when it is not JSON), or nil, message.
function M.request(method, path, body, o)
  o = o or {}
  local url = o.server or os.getenv("WEIR_SERVER") or "http://127.0.0.1:8080"
  local host, port, base, tls = M.parse_url(url)
  if not host then return nil, port end
  local token = o.token or os.getenv("WEIR_TOKEN")
  local text = body and json.encode(body) or nil
  local lines = { format("%s %s%s HTTP/1.1", method, base, path),
                  format("Host: %s:%d", host, port), "Connection: close",
                  "Accept: application/json", "User-Agent: weir" }
  if token and token ~= "" then lines[#lines + 1] = "Authorization: Bearer " .. token end
  if text then
    lines[#lines + 1] = "Content-Type: application/json"
    lines[#lines + 1] = "Content-Length: " .. #text
  else
    lines[#lines + 1] = "Content-Length: 0"
  end
  local req = table.concat(lines, "\r\n") .. "\r\n\r\n" .. (text or "")
  local status, head, rest = exchange(host, port, tls, req, o.timeout_ms or 330000, MAX_ANSWER)
  if not status then return nil, head end
  if head:lower():find("\ntransfer%-encoding:%s*chunked") then
    local parts, pos = {}, 1
    while true do
      local size, at = rest:match("^(%x+)[^\r\n]*\r\n()", pos)
      size = size and tonumber(size, 16)
      if not size or size == 0 then break end
      parts[#parts + 1] = rest:sub(at, at + size - 1)
      pos = at + size + 2
    end
    rest = table.concat(parts)
  end
  local v = json.decode(rest)
  if v == nil then v = rest end
  return status, v
end

--- An error line for a problem answer (RFC 9457) or any other.
function M.describe(status, body)
  if type(body) == "table" then
    local t = format("%d %s", status, body.title or "")
    if body.detail then t = t .. ": " .. tostring(body.detail) end
    for _, e in ipairs(body.errors or {}) do
      t = t .. format("\n  %s: %s", tostring(e.pointer), tostring(e.detail))
    end
    return t
  end
  return format("%d %s", status, tostring(body):sub(1, 200))
end

return M
