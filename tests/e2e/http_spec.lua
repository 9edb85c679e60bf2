-- The HTTP primitive through its Lua face (weir.http), in a real process:
-- a `weir script` echo server (written below; it is how a server runs
-- without `weir serve`) driven by curl. Its loop polls the server's fd,
-- answers each request with a JSON echo of its fields, streams events,
-- and can be made busy (a blocking sleep) to show /health is answered
-- without it.
local H = require("helpers")
local json = require("weir.json")

local SERVER = [[
local http = require("weir.http")
local json = require("weir.json")
local dir = arg[1]
local function read(p) local f = io.open(p, "rb"); if not f then return nil end
  local s = f:read("*a"); f:close(); return s end
local tls = read(dir .. "/cert.pem") and arg[2] == "tls"
local srv = assert(http.new({
  port = 0, max_body_bytes = 1024, max_header_bytes = 2048,
  tls_cert = tls and read(dir .. "/cert.pem") or nil,
  tls_key = tls and read(dir .. "/key.pem") or nil,
}))
local f = io.open(dir .. "/port.tmp", "w"); f:write(srv:port()); f:close()
os.rename(dir .. "/port.tmp", dir .. "/port")
local streams = {}
while true do
  srv:wait(50)
  for s, n in pairs(streams) do
    local ok, err = s:write("data: " .. n .. "\n\n")
    if not ok then
      f = io.open(dir .. "/stream_end", "w"); f:write(err.code); f:close()
      s:close(); streams[s] = nil
    else
      streams[s] = n + 1
    end
  end
  local r = srv:next()
  while r do
    if r.path == "/quit" then
      srv:respond(r.id, 200, nil, "bye"); srv:close(); os.exit(0)
    elseif r.path == "/sleep" then
      f = io.open(dir .. "/sleeping", "w"); f:close()
      os.execute("sleep 2")
      srv:respond(r.id, 200, nil, "slept")
    elseif r.path == "/events" then
      local s = assert(srv:stream(r.id, 200, { ["Content-Type"] = "text/event-stream" }))
      if r.query == "n=3" then
        for i = 1, 3 do assert(s:write("data: " .. i .. "\n\n")) end
        s:close()
      else
        streams[s] = 1
      end
    else
      assert(srv:respond(r.id, 200, { ["Content-Type"] = "application/json", ["X-Id"] = tostring(r.id) },
        json.encode({ method = r.method, path = r.path, query = r.query, body = r.body,
                      client = r.client, thing = r.headers["x-thing"] or json.null,
                      stats = srv:stats() })))
    end
    r = srv:next()
  end
end
]]

local function curl(args)
  return H.output("curl -s -S --max-time 10 " .. args .. " 2>&1")
end

local function start(dir, mode)
  H.write(dir .. "/server.lua", SERVER)
  os.remove(dir .. "/port")
  local pid = H.spawn(dir, "script server.lua " .. H.q(dir) .. " " .. (mode or "plain"),
                      dir .. "/server.log")
  local port = H.wait_for(function() return H.read(dir .. "/port") end, 10)
  assert(port, "server did not start: " .. tostring(H.read(dir .. "/server.log")))
  return pid, tonumber(port)
end

local function stop(pid, base)
  H.output("curl -s -k --max-time 5 " .. base .. "/quit")
  H.wait_dead(pid, 5)
  os.execute("kill " .. pid .. " 2>/dev/null")
end

describe("weir.http", function()
  local dir, pid, base

  setup(function()
    dir = H.tmpdir()
    local port
    pid, port = start(dir)
    base = "http://127.0.0.1:" .. port
  end)

  teardown(function()
    if pid then stop(pid, base) end
    H.cleanup(dir)
  end)

  it("hands the Lua loop the request's fields and sends its answer", function()
    local out = curl("-i -X POST -H 'X-Thing: a b' --data-binary 'hello' "
                     .. H.q(base .. "/a%20b/c?x=1&y=%41"))
    assert.matches("^HTTP/1%.1 200", out)
    assert.matches("X%-Content%-Type%-Options: nosniff", out)
    assert.matches("Content%-Type: application/json", out)
    local got = json.decode(out:match("\r\n\r\n(.*)$"))
    assert.equal("POST", got.method)
    assert.equal("/a%20b/c", got.path)
    assert.equal("x=1&y=%41", got.query)
    assert.equal("hello", got.body)
    assert.equal("127.0.0.1", got.client)
    assert.equal("a b", got.thing)
  end)

  it("answers /health in C while the Lua loop is busy", function()
    local slow = os.tmpname()
    os.execute("curl -s --max-time 10 " .. H.q(base .. "/sleep") .. " >" .. slow .. " 2>&1 &")
    -- once the loop took it and sleeps, ask for /health
    assert.truthy(H.wait_for(function() return H.read(dir .. "/sleeping") end, 10))
    assert.equal('{"status":"ok"}', curl(H.q(base .. "/health")))
    assert.equal("", H.read(slow))
    H.wait_for(function() return H.read(slow) == "slept" end, 10)
    assert.equal("slept", H.read(slow))
    os.remove(slow)
  end)

  it("refuses oversized and malformed requests with problem+json", function()
    local big = string.rep("x", 1025)
    local out = curl("-i --data-binary " .. H.q(big) .. " " .. H.q(base .. "/b"))
    assert.matches("^HTTP/1%.1 413", out)
    assert.matches("application/problem%+json", out)
    assert.matches('"status":413', out)
    out = curl("-i -H " .. H.q("X-Big: " .. string.rep("y", 2100)) .. " " .. H.q(base .. "/h"))
    assert.matches("^HTTP/1%.1 431", out)
    out = curl("-i -H 'Content-Length: 1' -H 'Transfer-Encoding: chunked' -d x "
               .. H.q(base .. "/c"))
    assert.matches("^HTTP/1%.1 400", out)
    assert.not_matches("<html", out)
    -- at the limit: accepted, the body arrives whole
    local got = json.decode(curl("--data-binary " .. H.q(string.rep("z", 1024)) .. " "
                                 .. H.q(base .. "/b")))
    assert.equal(1024, #got.body)
    assert.is_true(got.stats.refused_413 >= 1)
  end)

  it("streams Server-Sent Events and notices a client that leaves", function()
    local out = curl("-N " .. H.q(base .. "/events?n=3"))
    assert.equal("data: 1\n\ndata: 2\n\ndata: 3\n\n", out)
    os.remove(dir .. "/stream_end")
    out = curl("-N --max-time 1 " .. H.q(base .. "/events"))
    assert.matches("^data: 1\n\n", out)
    H.wait_for(function() return H.read(dir .. "/stream_end") end, 10)
    assert.equal("closed", H.read(dir .. "/stream_end"))
  end)
end)

describe("weir.http over TLS", function()
  local dir, pid, base

  setup(function()
    dir = H.tmpdir()
    assert(H.succeeds("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                      .. "-addext subjectAltName=IP:127.0.0.1 -keyout " .. H.q(dir .. "/key.pem")
                      .. " -out " .. H.q(dir .. "/cert.pem") .. " >/dev/null 2>&1"))
    local port
    pid, port = start(dir, "tls")
    base = "https://127.0.0.1:" .. port
  end)

  teardown(function()
    if pid then stop(pid, base) end
    H.cleanup(dir)
  end)

  it("serves /health and requests with the given certificate", function()
    local ca = "--cacert " .. H.q(dir .. "/cert.pem") .. " "
    assert.equal('{"status":"ok"}', curl(ca .. H.q(base .. "/health")))
    local got = json.decode(curl(ca .. "-d hi " .. H.q(base .. "/t")))
    assert.equal("hi", got.body)
    -- plain HTTP to the TLS port gets no answer from the application
    assert.not_matches('"method"', curl(H.q((base:gsub("^https", "http")) .. "/t")))
  end)
end)
