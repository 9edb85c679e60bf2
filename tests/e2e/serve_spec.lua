-- weir serve end to end: the real binary, real HTTP (curl), real workers,
-- the SQLite store. Triggers, waits, idempotency, limits and the queue,
-- cancellation, roles, problem details, the OpenAPI document, the audit
-- log, a drain on SIGTERM and a restart after kill -9 that resumes what
-- was left.
local H = require("helpers")
local json = require("weir.json")

local SECRET = string.rep("k", 40)
local api = require("weir.api")
local schema = require("weir.schema")

-- Every JSON answer is checked against the OpenAPI document the server
-- serves (DOC, fetched in setup): its route's 2XX schema, or Problem.
local DOC
local validators = {}
local function check_answer(method, url, status, body)
  if not DOC or type(body) ~= "table" or status == 204 then return end
  local path = url:match("^https?://[^/]+([^?]*)")
  local name = "Problem"
  if status < 400 then
    name = nil
    for _, r in ipairs(api.ROUTES) do
      if r[1] == method and path:match(r.pattern) then name = r[6] end
    end
  end
  if not name then return end
  local v = validators[name]
  if not v then
    v = assert(schema.compile({ ["$ref"] = "#/components/schemas/" .. name,
                                components = DOC.components }))
    validators[name] = v
  end
  local ok, errs = v:validate(body)
  assert(ok, method .. " " .. path .. " " .. status .. " (" .. name .. "): "
             .. (errs and schema.format_errors(errs) or ""))
end

-- curl: method, url, headers (list), body; returns status, decoded body
-- (or the text), the headers text
local function curl(method, url, headers, body)
  local hfile, bfile = os.tmpname(), os.tmpname()
  local args = { "curl -s -o", H.q(bfile), "-D", H.q(hfile), "-X", method }
  for _, h in ipairs(headers or {}) do args[#args + 1] = "-H " .. H.q(h) end
  if body then
    args[#args + 1] = "-H 'Content-Type: application/json' --data-binary " .. H.q(body)
  end
  args[#args + 1] = H.q(url)
  H.status(table.concat(args, " "))
  local head, text = H.read(hfile) or "", H.read(bfile) or ""
  os.remove(hfile); os.remove(bfile)
  local status = tonumber(head:match("^HTTP/%S+ (%d+)"))
  local answer = json.decode(text) or text
  if status then check_answer(method, url, status, answer) end
  return status, answer, head
end

-- Raw bytes to 127.0.0.1:port, the whole answer back (the server closes).
local function exchange(port, bytes)
  local F = require("weir._ffi")
  local out, n = F.ffi.new("char *[1]"), F.ffi.new("size_t[1]")
  local rc = F.C.weir_ffi_http_exchange("127.0.0.1", port, nil, bytes, #bytes, 10000, 1000000, out, n,
                                        F.errbuf, F.errlen)
  assert(rc == 0, F.errmsg())
  local text = F.ffi.string(out[0], n[0])
  F.C.weir_ffi_client_free(out[0])
  return text
end

local HOOK_SECRET = string.rep("h", 32)
local function start(dir) return H.serve(dir, { WEIR_TEST_HOOK_SECRET = HOOK_SECRET }) end

describe("weir serve", function()
  local dir, pid, base, log, ops, viewer, admin
  local function auth(key) return { "Authorization: Bearer " .. key } end

  setup(function()
    dir = H.tmpdir()
    H.write(dir .. "/weir.yaml", [[
pipelines: [pipelines]
serve:
  max_active_runs: 4
  drain: 20s
  jwt:
    keys: { k1: "]] .. SECRET .. [[" }
    ttl: 10m
]])
    H.write(dir .. "/pipelines/hello.lua", [[
      return pipeline { name = "hello",
        params = { who = { type = "string", default = "world" },
                   n = { type = "integer", default = 1 } },
        tasks = { greet = task { run = function(ctx)
          return { hello = ctx.params.who, n = ctx.params.n } end } } }
    ]])
    H.write(dir .. "/pipelines/hooked.lua", [[
      return pipeline { name = "hooked",
        params = { day = { type = "string" }, n = { type = "integer", default = 1 } },
        triggers = { webhook = { secret = "${env:WEIR_TEST_HOOK_SECRET}",
                                 params = { day = "/data/day" }, window = "5m" } },
        tasks = { t = task { run = function(ctx) return ctx.params.day end } } }
    ]])
    H.write(dir .. "/pipelines/slow.lua", [[
      return pipeline { name = "slow", max_active_runs = 1,
        params = { ms = { type = "integer", default = 60000 } },
        tasks = { wait = task { timeout = "5m", run = function(ctx)
          local t0 = os.clock()
          while (os.clock() - t0) * 1000 < ctx.params.ms do end
          return "done" end } } }
    ]])
    local function key(name, role)
      local code, out, err = H.weir(dir, "keys create " .. name .. " --role " .. role)
      assert.equal(0, code, err)
      return out:match("(weir_%S+)")
    end
    ops, viewer, admin = key("ops", "operator"), key("watch", "viewer"), key("root", "admin")
    assert.truthy(ops)
    pid, base, log = start(dir)
    local st
    st, DOC = curl("GET", base .. "/api/v1/openapi.json")
    assert.equal(200, st)
  end)
  teardown(function()
    if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null"); H.wait_dead(pid) end
    H.cleanup(dir)
  end)

  it("answers /health and /ready without credentials", function()
    local st, body = curl("GET", base .. "/health")
    assert.equal(200, st)
    assert.equal("ok", body.status)
    -- and keeps the connection for the next request (keep-alive)
    local trace = H.output("curl -sv -o /dev/null -o /dev/null " .. H.q(base .. "/health") .. " "
                           .. H.q(base .. "/health") .. " 2>&1")
    assert.truthy(trace:find("Re-using existing connection", 1, true), trace)
    assert.is_nil(trace:lower():find("< connection: close", 1, true))
    st, body = curl("GET", base .. "/ready")
    assert.equal(200, st, H.read(log))
    assert.equal("ready", body.status)
  end)

  it("triggers a run and waits for its outputs", function()
    local st, body = curl("POST", base .. "/api/v1/pipelines/hello/runs?wait=30s", auth(ops),
                          '{"params":{"who":"weir","n":3}}')
    assert.equal(200, st, H.read(log))
    assert.equal("success", body.status)
    assert.same({ hello = "weir", n = 3 }, body.tasks[1].output)
    -- the run is in the store, the same one weir show reads
    assert.equal("success", H.show(dir, body.run_id).status)
  end)

  it("refuses without credentials, with a wrong key, and below the route's role", function()
    local st, body, head = curl("POST", base .. "/api/v1/pipelines/hello/runs", nil, "{}")
    assert.equal(401, st)
    assert.matches("application/problem%+json", head)
    assert.equal(401, body.status)
    st = curl("POST", base .. "/api/v1/pipelines/hello/runs", auth(ops .. "x"), "{}")
    assert.equal(401, st)
    st, body = curl("POST", base .. "/api/v1/pipelines/hello/runs", auth(viewer), "{}")
    assert.equal(403, st)
    assert.matches("operator", body.detail)
    st = curl("GET", base .. "/api/v1/runs", auth(viewer))
    assert.equal(200, st)
    st = curl("GET", base .. "/api/v1/audit", auth(ops))
    assert.equal(403, st)
  end)

  it("checks params against the pipeline and points at the bad one", function()
    local st, body = curl("POST", base .. "/api/v1/pipelines/hello/runs", auth(ops),
                          '{"params":{"n":"three"}}')
    assert.equal(422, st)
    assert.equal("/params/n", body.errors[1].pointer)
    st = curl("POST", base .. "/api/v1/pipelines/hello/runs", auth(ops), '{"params":{"nope":1}}')
    assert.equal(422, st)
    st, body = curl("POST", base .. "/api/v1/pipelines/hello/runs", auth(ops), '{"params":')
    assert.equal(400, st)
    assert.is_string(body.detail)
    st = curl("POST", base .. "/api/v1/pipelines/nope/runs", auth(ops), "{}")
    assert.equal(404, st)
  end)

  it("returns the same run for the same Idempotency-Key and body, 422 for another body", function()
    local h = auth(ops)
    h[2] = "Idempotency-Key: order-42"
    local st1, r1 = curl("POST", base .. "/api/v1/pipelines/hello/runs", h, '{"params":{"n":1}}')
    local st2, r2 = curl("POST", base .. "/api/v1/pipelines/hello/runs", h, '{"params":{"n":1}}')
    assert.equal(201, st1)
    assert.equal(200, st2)
    assert.equal(r1.run_id, r2.run_id)
    local st3 = curl("POST", base .. "/api/v1/pipelines/hello/runs", h, '{"params":{"n":2}}')
    assert.equal(422, st3)
  end)

  it("queues runs over a pipeline's limit and cancels a running one", function()
    local ids = {}
    for i = 1, 3 do
      local st, r = curl("POST", base .. "/api/v1/pipelines/slow/runs", auth(ops), "{}")
      assert.equal(201, st)
      ids[i] = r.run_id
    end
    local running = H.wait_for(function()
      local _, r = curl("GET", base .. "/api/v1/runs/" .. ids[1], auth(viewer))
      return r.status == "running" and r
    end, 20)
    assert.truthy(running)
    local _, r2 = curl("GET", base .. "/api/v1/runs/" .. ids[2], auth(viewer))
    assert.equal("queued", r2.status)
    -- a queued run is cancelled at once, a running one by stopping its worker
    local st = curl("POST", base .. "/api/v1/runs/" .. ids[3] .. "/cancel", auth(ops))
    assert.equal(200, st)
    st = curl("POST", base .. "/api/v1/runs/" .. ids[1] .. "/cancel", auth(ops))
    assert.equal(202, st)
    local done = H.wait_for(function()
      local _, r = curl("GET", base .. "/api/v1/runs/" .. ids[1], auth(viewer))
      return r.status == "cancelled" and r
    end, 20)
    assert.truthy(done)
    assert.equal("cancelled by key:ops", done.tasks[1].error)
    -- the next queued run of the pipeline starts
    assert.truthy(H.wait_for(function()
      local _, r = curl("GET", base .. "/api/v1/runs/" .. ids[2], auth(viewer))
      return r.status == "running"
    end, 20))
    curl("POST", base .. "/api/v1/runs/" .. ids[2] .. "/cancel", auth(ops))
  end)

  it("pages through runs with a cursor, no run twice", function()
    local made = {}
    for _ = 1, 5 do
      local st, r = curl("POST", base .. "/api/v1/pipelines/hello/runs", auth(ops), "{}")
      assert.equal(201, st)
      made[r.run_id] = true
    end
    local seen, cursor, pages = {}, nil, 0
    repeat
      local url = base .. "/api/v1/runs?limit=2&pipeline=hello" .. (cursor and "&cursor=" .. cursor or "")
      local st, page = curl("GET", url, auth(viewer))
      assert.equal(200, st)
      assert.is_true(#page.runs <= 2)
      for _, r in ipairs(page.runs) do
        assert.is_nil(seen[r.run_id])
        seen[r.run_id] = true
        assert.equal("hello", r.pipeline)
      end
      cursor, pages = page.next_cursor, pages + 1
    until not cursor or pages > 20
    for id in pairs(made) do assert.is_true(seen[id], id) end
    assert.is_true(pages >= 3)
    -- run_id and RFC 3339 times, the shape of weir runs --json; a time
    -- range in the same form
    local _, all = curl("GET", base .. "/api/v1/runs?pipeline=hello&limit=100", auth(viewer))
    local newest = all.runs[1]
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", newest.created_at)
    local _, after = curl("GET", base .. "/api/v1/runs?pipeline=hello&limit=100&since="
                                 .. newest.created_at, auth(viewer))
    assert.is_true(#after.runs >= 1 and #after.runs < #all.runs, #after.runs .. " of " .. #all.runs)
    for _, r in ipairs(after.runs) do assert.is_true(r.created_at >= newest.created_at) end
    local _, before = curl("GET", base .. "/api/v1/runs?pipeline=hello&limit=100&until=2000-01-01",
                           auth(viewer))
    assert.equal(0, #before.runs)
  end)

  it("answers problems as JSON: unknown routes, methods and ids", function()
    local st, body, head = curl("GET", base .. "/nothing/here", auth(viewer))
    assert.equal(404, st)
    assert.matches("application/problem%+json", head)
    assert.equal(404, body.status)
    st = curl("DELETE", base .. "/api/v1/runs", auth(viewer))
    assert.equal(405, st)
    st = curl("GET", base .. "/api/v1/runs/..%2f..%2fweir.yaml", auth(viewer))
    assert.equal(404, st)
    st = curl("GET", base .. "/api/v1/runs?cursor=nothing", auth(viewer))
    assert.equal(400, st)
    st = curl("GET", base .. "/api/v1/runs?limit=0", auth(viewer))
    assert.equal(400, st)
  end)

  it("serves an OpenAPI document listing every route it serves", function()
    local st, doc = curl("GET", base .. "/api/v1/openapi.json")
    assert.equal(200, st)
    assert.equal("3.1.0", doc.openapi)
    local routes = require("weir.api").ROUTES
    local n = 0
    for _, r in ipairs(routes) do
      assert.truthy(doc.paths[r[2]] and doc.paths[r[2]][r[1]:lower()], r[2])
      n = n + 1
    end
    local m = 0
    for _, ops_ in pairs(doc.paths) do for _ in pairs(ops_) do m = m + 1 end end
    assert.equal(n, m)
  end)

  it("gives a user a token for a password and takes it as credentials", function()
    H.write(dir .. "/pw", "correct horse battery\n")
    local code, _, err = H.weir(dir, "users add alice --role operator < " .. H.q(dir .. "/pw"))
    assert.equal(0, code, err)
    local st = curl("POST", base .. "/api/v1/auth/token", nil,
                    '{"username":"alice","password":"wrong one"}')
    assert.equal(401, st)
    local tok
    st, tok = curl("POST", base .. "/api/v1/auth/token", nil,
                   '{"username":"alice","password":"correct horse battery"}')
    assert.equal(200, st, H.read(log))
    local st2, r = curl("POST", base .. "/api/v1/pipelines/hello/runs?wait=30s",
                        auth(tok.access_token), "{}")
    assert.equal(200, st2)
    assert.equal("success", r.status)
    -- disabled: the same token stops working at once
    H.weir(dir, "users disable alice")
    st2 = curl("GET", base .. "/api/v1/runs", auth(tok.access_token))
    assert.equal(401, st2)
  end)

  it("keeps an audit log of changes and denials, readable by admins", function()
    local st, body = curl("GET", base .. "/api/v1/audit?limit=500", auth(admin))
    assert.equal(200, st)
    local denied, triggered = false, false
    for _, e in ipairs(body.entries) do
      if e.status == 403 then denied = true end
      if e.method == "POST" and e.status == 201 and e.principal == "key:ops" then triggered = true end
      assert.is_nil(e.detail and e.detail:find("weir_", 1, true))
    end
    assert.is_true(denied)
    assert.is_true(triggered)
  end)

  it("serves /metrics in the Prometheus text format", function()
    local st, text = curl("GET", base .. "/metrics")
    assert.equal(200, st)
    assert.matches("weir_runs_finished_total{status=\"success\"} %d+", text)
    assert.matches('weir_http_requests_total{route="/api/v1/pipelines/{name}/runs",method="POST",'
                   .. 'status="201"} %d+', text)
    assert.matches("weir_run_duration_seconds_bucket{le=\"%+Inf\"} %d+", text)
    assert.matches("weir_task_duration_seconds_count [1-9]", text)
    assert.matches('weir_tasks_finished_total{state="success"} [1-9]', text)
  end)

  it("lets each role do exactly what the matrix of docs/api.md says", function()
    local keys = { viewer = viewer, operator = ops, admin = admin }
    local code, out = H.weir(dir, "keys create dev --role developer")
    assert.equal(0, code)
    keys.developer = out:match("(weir_%S+)")
    local A = require("weir.auth")
    for _, r in ipairs(api.ROUTES) do
      if r[3] then
        -- ids that exist nowhere: an allowed request gets past the role
        -- check (404, 422, 400 ...), a denied one is 403 before anything
        local path = r[2]:gsub("{%w+}", "nope")
        for role, key in pairs(keys) do
          local st = curl(r[1], base .. path, auth(key), r[1] ~= "GET" and "{}" or nil)
          if A.role_allows(role, r[3]) then
            assert.is_true(st ~= 403 and st ~= 401, r[1] .. " " .. path .. " as " .. role
                                                     .. ": " .. tostring(st))
          else
            assert.equal(403, st, r[1] .. " " .. path .. " as " .. role)
          end
        end
      end
    end
  end)

  it("manages users and keys over the API, showing a key once", function()
    local st, k = curl("POST", base .. "/api/v1/keys", auth(admin),
                       '{"name":"robot","role":"viewer"}')
    assert.equal(201, st)
    assert.matches("^weir_", k.key)
    st = curl("GET", base .. "/api/v1/runs", auth(k.key))
    assert.equal(200, st)
    local _, list = curl("GET", base .. "/api/v1/keys", auth(admin))
    for _, e in ipairs(list.keys) do assert.is_nil(e.key); assert.is_nil(e.hash) end
    st = curl("POST", base .. "/api/v1/keys/" .. k.id .. "/revoke", auth(admin))
    assert.equal(200, st)
    st = curl("GET", base .. "/api/v1/runs", auth(k.key))
    assert.equal(401, st)
    -- a role is never taken from a body that is not an admin's
    st = curl("POST", base .. "/api/v1/users", auth(ops),
              '{"name":"mallory","role":"admin","password":"12345678"}')
    assert.equal(403, st)
    st = curl("POST", base .. "/api/v1/users", auth(admin),
              '{"name":"bob","role":"superuser","password":"12345678"}')
    assert.equal(422, st)
  end)

  it("streams a run's changes as Server-Sent Events, ending with the run", function()
    local st, r = curl("POST", base .. "/api/v1/pipelines/slow/runs", auth(ops),
                       '{"params":{"ms":500}}')
    assert.equal(201, st)
    local out = H.output("curl -sN --max-time 30 -H " .. H.q("Authorization: Bearer " .. viewer)
                         .. " " .. H.q(base .. "/api/v1/runs/" .. r.run_id .. "/events"))
    assert.matches("^event: run\ndata: {", out)
    assert.matches('event: task\ndata: {[^\n]*"state":"success"', out)
    local last = out:match("event: run\ndata: ([^\n]*)\n\n$")
    assert.truthy(last, out)
    assert.equal("success", json.decode(last).status)
  end)

  it("retries a failed run's unfinished tasks and uploads a new version", function()
    local src = [[return pipeline { name = "flaky", params = { ok = { type = "boolean", default = false } },
      tasks = { a = task { run = function() return 1 end, checks = {
                  { "custom", name = "seven", severity = "warn", run = function() return false, 7 end } } },
                b = task { after = { "a" }, run = function(ctx)
                  if not ctx.params.ok then error("not yet") end return 2 end } } }]]
    local st, v = curl("POST", base .. "/api/v1/pipelines:validate", auth(admin),
                       json.encode({ source = "return 1" }))
    assert.equal(200, st)
    assert.is_false(v.valid)
    st = curl("PUT", base .. "/api/v1/pipelines/flaky", auth(admin), json.encode({ source = src }))
    assert.equal(201, st)
    local st2, r = curl("POST", base .. "/api/v1/pipelines/flaky/runs?wait=30s", auth(ops), "{}")
    assert.equal(200, st2)
    assert.equal("failed", r.status)
    -- the attempt's error and log are there
    local st3, a = curl("GET", base .. "/api/v1/runs/" .. r.run_id .. "/tasks/b/attempts/1", auth(viewer))
    assert.equal(200, st3)
    assert.matches("not yet", a.error)
    -- and an attempt's check results
    local st4, a1 = curl("GET", base .. "/api/v1/runs/" .. r.run_id .. "/tasks/a/attempts/1", auth(viewer))
    assert.equal(200, st4)
    assert.same({ { name = "seven", check = "custom", severity = "warn", status = "warn",
                    observed = 7, message = "7" } },
                { { name = a1.checks[1].name, check = a1.checks[1].check,
                    severity = a1.checks[1].severity, status = a1.checks[1].status,
                    observed = a1.checks[1].observed, message = a1.checks[1].message } })
    -- retry: b runs again (and fails again: same params); a is kept
    st = curl("POST", base .. "/api/v1/runs/" .. r.run_id .. "/retry", auth(ops))
    assert.equal(202, st)
    assert.truthy(H.wait_for(function()
      local _, x = curl("GET", base .. "/api/v1/runs/" .. r.run_id, auth(viewer))
      return x.status == "failed" and x
    end, 20))
    local _, x = curl("GET", base .. "/api/v1/runs/" .. r.run_id, auth(viewer))
    for _, t in ipairs(x.tasks) do
      if t.task == "a" then assert.equal(1, t.attempts) else assert.equal(2, t.attempts) end
    end
    -- a source whose name differs from the path is refused
    st = curl("PUT", base .. "/api/v1/pipelines/other", auth(admin), json.encode({ source = src }))
    assert.equal(422, st)
  end)

  it("refuses oversized bodies and malformed HTTP with problem details", function()
    local big = '{"params":{"who":"' .. string.rep("x", 2 * 1024 * 1024) .. '"}}'
    H.write(dir .. "/big.json", big)
    local out = H.output("curl -s -o /dev/null -w '%{http_code}' -X POST -H "
                         .. H.q("Authorization: Bearer " .. ops)
                         .. " -H 'Content-Type: application/json' --data-binary @"
                         .. H.q(dir .. "/big.json") .. " "
                         .. H.q(base .. "/api/v1/pipelines/hello/runs"))
    assert.equal("413", out)
    local port = base:match(":(%d+)$")
    -- conflicting Content-Length: refused by the HTTP thread, as JSON
    local raw = exchange(tonumber(port), "POST /api/v1/runs HTTP/1.1\r\nHost: x\r\n"
                         .. "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab")
    assert.matches("^HTTP/1%.1 400", raw)
    assert.matches("application/problem%+json", raw)
    local st = curl("GET", base .. "/health")
    assert.equal(200, st)
  end)

  it("is a server for the command line: trigger, runs, show, cancel", function()
    local other = H.tmpdir() -- no store of its own: everything goes to the server
    local env = { WEIR_SERVER = base, WEIR_TOKEN = ops }
    local code, out, err = H.weir(other, "trigger hello --param who=cli --param n=7 --wait --json", env)
    assert.equal(0, code, err)
    local r = json.decode(out)
    assert.equal("success", r.status)
    assert.same({ hello = "cli", n = 7 }, r.tasks[1].output)
    code, out = H.weir(other, "runs --pipeline hello --limit 50", env)
    assert.equal(0, code)
    assert.matches(r.run_id, out, 1, true)
    code, out = H.weir(other, "show " .. r.run_id, env)
    assert.equal(0, code)
    assert.matches("greet%s+success", out)
    -- last is the server's newest run; --failed leaves out what succeeded
    code, out = H.weir(other, "show last --json --failed", env)
    assert.equal(0, code)
    local last = json.decode(out)
    assert.equal(r.run_id, last.run_id)
    assert.equal(0, #last.tasks)
    -- errors come back as the server's problem, exit 1
    local _
    code, _, err = H.weir(other, "trigger hello --param n=x", env)
    assert.equal(1, code)
    assert.matches('422 invalid params: param "n"', err)
    code, _, err = H.weir(other, "trigger hello", { WEIR_SERVER = base, WEIR_TOKEN = viewer })
    assert.equal(1, code)
    assert.matches("403", err)
    -- a server that is not there: exit 3
    code, _, err = H.weir(other, "runs --server http://127.0.0.1:1", env)
    assert.equal(3, code)
    assert.matches("cannot connect to 127.0.0.1:1", err)
    assert.is_nil(io.open(other .. "/.weir/weir.db"))
    H.cleanup(other)
  end)

  it("shows a principal scoped to some pipelines nothing of the others, like missing ones", function()
    local code, out, err = H.weir(dir, "keys create scoped --role operator --pipelines hello")
    assert.equal(0, code, err)
    local scoped = out:match("(weir_%S+)")
    local _, list = curl("GET", base .. "/api/v1/pipelines", auth(scoped))
    assert.equal(1, #list.pipelines)
    assert.equal("hello", list.pipelines[1].name)
    -- a pipeline out of scope answers exactly as one that does not exist
    local st1, b1 = curl("GET", base .. "/api/v1/pipelines/slow", auth(scoped))
    local st2, b2 = curl("GET", base .. "/api/v1/pipelines/nothere", auth(scoped))
    assert.equal(404, st1)
    assert.equal(st2, st1)
    assert.equal(b2.title, b1.title)
    assert.equal(404, (curl("POST", base .. "/api/v1/pipelines/slow/runs", auth(scoped), "{}")))
    -- and so does a run of it
    local _, r = curl("POST", base .. "/api/v1/pipelines/slow/runs", auth(ops), '{"params":{"ms":1}}')
    local st3, b3 = curl("GET", base .. "/api/v1/runs/" .. r.run_id, auth(scoped))
    local st4, b4 = curl("GET", base .. "/api/v1/runs/20261207T000000-000000000000", auth(scoped))
    assert.equal(404, st3)
    assert.equal(st4, st3)
    assert.equal(b4.title, b3.title)
    assert.equal(404, (curl("POST", base .. "/api/v1/runs/" .. r.run_id .. "/cancel", auth(scoped))))
    local _, page = curl("GET", base .. "/api/v1/runs?limit=200", auth(scoped))
    for _, x in ipairs(page.runs) do assert.equal("hello", x.pipeline) end
    -- in scope: works
    assert.equal(201, (curl("POST", base .. "/api/v1/pipelines/hello/runs", auth(scoped), "{}")))
    code, _, err = H.weir(dir, "keys create bad --role viewer --pipelines 'a b'")
    assert.equal(2, code)
    assert.matches("is not a pipeline name", err)
  end)

  it("starts a run from a signed webhook, once: replays and bad signatures get 401", function()
    local hooks = require("weir.hooks")
    local body = '{"data":{"day":"2026-12-07"},"other":"ignored"}'
    local now = os.time()
    local sig = hooks.sign(HOOK_SECRET, now, body)
    local function post(header, text)
      local h = { "Content-Type: application/json" }
      if header then h[2] = "Weir-Signature: " .. header end
      local hfile, bfile = os.tmpname(), os.tmpname()
      H.write(bfile .. ".in", text)
      local args = { "curl -s -o", H.q(bfile), "-D", H.q(hfile), "-X POST" }
      for _, x in ipairs(h) do args[#args + 1] = "-H " .. H.q(x) end
      args[#args + 1] = "--data-binary @" .. H.q(bfile .. ".in")
      args[#args + 1] = H.q(base .. "/hooks/hooked")
      H.status(table.concat(args, " "))
      local st = tonumber((H.read(hfile) or ""):match("^HTTP/%S+ (%d+)"))
      local out = json.decode(H.read(bfile) or "")
      os.remove(hfile); os.remove(bfile); os.remove(bfile .. ".in")
      return st, out
    end
    local st, r = post(sig, body)
    assert.equal(202, st)
    assert.equal("queued", r.status)
    assert.truthy(H.wait_for(function()
      local _, x = curl("GET", base .. "/api/v1/runs/" .. r.run_id, auth(viewer))
      return x.status == "success" and x.tasks[1].output == "2026-12-07"
    end, 20))
    local st2, p2 = post(sig, body)
    assert.equal(401, st2)
    assert.equal("replayed", p2.detail)
    assert.equal(401, (post(hooks.sign("wrong" .. HOOK_SECRET, now, body), body)))
    assert.equal(401, (post(hooks.sign(HOOK_SECRET, now - 3600, body), body)))
    assert.equal(401, (post(nil, body)))
    local st3, p3 = post(hooks.sign(HOOK_SECRET, now + 1, '{"data":{}}'), '{"data":{}}')
    assert.equal(422, st3)
    assert.equal("/data/day", p3.errors[1].pointer)
    -- the refusals are in the audit log, without the signature
    local _, audit = curl("GET", base .. "/api/v1/audit?limit=500", auth(admin))
    local n = 0
    for _, e in ipairs(audit.entries) do
      if e.path == "/hooks/hooked" and e.status == 401 then n = n + 1 end
      assert.is_nil((e.detail or ""):find(sig, 1, true))
    end
    assert.is_true(n >= 4)
    -- a pipeline without a webhook has none
    assert.equal(404, (curl("POST", base .. "/hooks/hello", nil, body)))
  end)

  it("drains on SIGTERM, and the next start resumes what was left, also after kill -9", function()
    local st, r = curl("POST", base .. "/api/v1/pipelines/slow/runs", auth(ops),
                       '{"params":{"ms":3000}}')
    assert.equal(201, st)
    local st2, q = curl("POST", base .. "/api/v1/pipelines/slow/runs", auth(ops),
                        '{"params":{"ms":100}}')
    assert.equal(201, st2)
    assert.truthy(H.wait_for(function()
      local _, x = curl("GET", base .. "/api/v1/runs/" .. r.run_id, auth(viewer))
      return x.status == "running"
    end, 20))
    os.execute("kill -TERM " .. pid)
    -- draining: new triggers are refused, the active run ends
    assert.truthy(H.wait_dead(pid, 30))
    assert.equal("success", H.show(dir, r.run_id).status)
    assert.equal("queued", H.show(dir, q.run_id).status)
    pid, base, log = start(dir)
    assert.truthy(H.wait_for(function() return H.show(dir, q.run_id).status == "success" end, 30))
    -- kill -9 with a run active: the next start takes it over
    st, r = curl("POST", base .. "/api/v1/pipelines/slow/runs", auth(ops),
                 '{"params":{"ms":2000}}')
    assert.equal(201, st)
    assert.truthy(H.wait_for(function() return H.show(dir, r.run_id).status == "running" end, 20))
    os.execute("kill -9 " .. pid)
    H.wait_dead(pid)
    pid, base, log = start(dir)
    assert.truthy(H.wait_for(function() return H.show(dir, r.run_id).status == "success" end, 30),
                  H.read(log))
  end)

  it("refuses a non-loopback address while no user or key exists", function()
    local d2 = H.tmpdir()
    H.write(d2 .. "/weir.yaml", "pipelines: []\n")
    local code, _, err = H.weir(d2, "serve --listen 0.0.0.0:0")
    assert.equal(2, code)
    assert.matches("refusing to listen on 0%.0%.0%.0:0 with no user or API key", err)
    H.cleanup(d2)
  end)
end)

describe("weir serve with limits, CORS, TLS and SIGHUP", function()
  local dir, pid, base, key
  setup(function()
    dir = H.tmpdir()
    -- a throwaway certificate for localhost
    assert(H.succeeds("cd " .. H.q(dir) .. " && openssl req -x509 -newkey rsa:2048 -nodes "
                      .. "-keyout key.pem -out cert.pem -days 1 -subj /CN=localhost "
                      .. "-addext subjectAltName=DNS:localhost >/dev/null 2>&1"))
    H.write(dir .. "/weir.yaml", [[
pipelines: [pipelines]
serve:
  rate_limit:
    per_address: { rate: 1, burst: 5 }
  cors_origins: [https://ok.example]
  tls: { cert: cert.pem, key: key.pem }
]])
    H.write(dir .. "/pipelines/p.lua",
            'return pipeline { name = "p", tasks = { a = task { run = function() return 1 end } } }')
    local code, out = H.weir(dir, "keys create k --role viewer")
    assert.equal(0, code)
    key = out:match("(weir_%S+)")
    pid = H.serve(dir)
    base = "https://localhost:" .. H.read(dir .. "/serve.log"):match("127%.0%.0%.1:(%d+)")
  end)
  teardown(function()
    if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null"); H.wait_dead(pid) end
    H.cleanup(dir)
  end)

  -- curl over TLS, checked against the throwaway certificate; returns the
  -- status and the header text
  local function get(path, extra)
    local out = H.output("curl -s -o /dev/null -D - --cacert " .. H.q(dir .. "/cert.pem")
                         .. " --resolve localhost:" .. base:match(":(%d+)$") .. ":127.0.0.1 "
                         .. (extra or "") .. " " .. H.q(base .. path))
    return tonumber(out:match("^HTTP/%S+ (%d+)")), out
  end

  it("serves HTTPS with HSTS, and answers CORS only for the listed origin", function()
    local st, head = get("/api/v1/runs", "-H " .. H.q("Authorization: Bearer " .. key)
                         .. " -H 'Origin: https://ok.example'")
    assert.equal(200, st)
    assert.matches("Strict%-Transport%-Security: max%-age=", head)
    assert.matches("Access%-Control%-Allow%-Origin: https://ok%.example", head)
    local _, head2 = get("/api/v1/runs", "-H " .. H.q("Authorization: Bearer " .. key)
                         .. " -H 'Origin: https://evil.example'")
    assert.is_nil(head2:find("Access-Control-Allow-Origin", 1, true))
    -- the CLI as a client over https: the certificate is checked against
    -- WEIR_SERVER_CA (else the system's bundle, which does not know it)
    local env = { WEIR_SERVER = base, WEIR_TOKEN = key, WEIR_SERVER_CA = dir .. "/cert.pem" }
    local code, out, err = H.weir(dir, "runs --json", env)
    assert.equal(0, code, err)
    assert.equal("table", type(json.decode(out)))
    code, out, err = H.weir(dir, "runs --json", { WEIR_SERVER = base, WEIR_TOKEN = key })
    assert.is_true(code ~= 0)
    assert.matches("certificate verify failed", out .. err)
    code, out, err = H.weir(dir, "runs --json", { WEIR_SERVER = base:gsub("localhost", "127.0.0.1"),
                                                  WEIR_TOKEN = key, WEIR_SERVER_CA = dir .. "/cert.pem" })
    assert.is_true(code ~= 0) -- the certificate names localhost, not 127.0.0.1
    assert.matches("tls", out .. err)
    -- plain HTTP on the TLS port is not served
    local plain = H.output("curl -s -o /dev/null -w '%{http_code}' --max-time 5 "
                           .. H.q((base:gsub("^https", "http"))) .. "/health")
    assert.is_true(plain ~= "200")
  end)

  it("limits requests per address with 429 and Retry-After", function()
    local limited, retry
    for _ = 1, 12 do
      local st, head = get("/api/v1/pipelines", "-H " .. H.q("Authorization: Bearer " .. key))
      if st == 429 then limited, retry = true, head:match("Retry%-After: (%d+)") end
    end
    assert.is_true(limited)
    assert.truthy(tonumber(retry))
    -- /health is never limited: the HTTP thread answers it
    assert.equal(200, (get("/health")))
  end)

  it("reads the pipelines folder again on SIGHUP: a changed file is a new version", function()
    H.write(dir .. "/pipelines/p.lua",
            'return pipeline { name = "p", tasks = { b = task { run = function() return 2 end } } }')
    os.execute("kill -HUP " .. pid)
    os.execute("sleep 1.5") -- the address's bucket refills, the reload happens
    local v = H.wait_for(function()
      local out = H.output("curl -s --cacert " .. H.q(dir .. "/cert.pem") .. " --resolve localhost:"
                           .. base:match(":(%d+)$") .. ":127.0.0.1 -H "
                           .. H.q("Authorization: Bearer " .. key) .. " "
                           .. H.q(base .. "/api/v1/pipelines/p"))
      local p = json.decode(out)
      return p and p.versions and #p.versions == 2 and p
    end, 15)
    assert.truthy(v, "no second version after SIGHUP")
    assert.equal("b", v.tasks[1].name)
  end)
end)
