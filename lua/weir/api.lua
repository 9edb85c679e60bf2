-- weir.api: the HTTP API of weir serve (/api/v1, /ready, /metrics).
--
-- One table, ROUTES, says for each route its method, path, the least role
-- that may call it, and its handler; the router, the roles matrix of
-- docs/api.md, the OpenAPI document (/api/v1/openapi.json) and the test
-- that walks the matrix all read it. Answers are JSON; errors are RFC 9457
-- problem details, never an HTML page, a stack trace or a secret. GET
-- /health is answered by the HTTP thread itself (runtime/http.c).
--
-- Principals: an API key ("Authorization: Bearer weir_...") or a JWT
-- from POST /api/v1/auth/token; either way the role is read from the
-- store at each request (a disabled user or a revoked key stops at once;
-- nothing in a request body or a token raises it). A principal's role
-- must reach the route's: viewer < operator < developer < admin.
local json = require("weir.json")
local util = require("weir.util")
local limits = require("weir.limits")
local scheduler = require("weir.scheduler")
local executor = require("weir.executor")
local format, concat = string.format, table.concat

local M = {}
local Api = {}
Api.__index = Api

local auth = require("weir.auth")
M.ROLES = auth.ROLE_RANK

local REASONS = {
  [200] = "OK", [201] = "Created", [202] = "Accepted", [400] = "Bad Request",
  [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [409] = "Conflict", [413] = "Content Too Large",
  [415] = "Unsupported Media Type", [422] = "Unprocessable Content",
  [429] = "Too Many Requests", [500] = "Internal Server Error",
  [503] = "Service Unavailable",
}

local JSON_HEADERS = { ["Content-Type"] = "application/json" }
local PROBLEM_HEADERS = { ["Content-Type"] = "application/problem+json" }

--- A problem (RFC 9457) as a Lua table.
function M.problem(status, title, detail, errors)
  return { type = "about:blank", title = title or REASONS[status] or "Error",
           status = status, detail = detail, errors = errors }
end

-- JSON answer helpers: handlers return status, body (a table), headers
local function ok(body, status) return status or 200, body end
local function fail(status, title, detail, errors)
  return status, M.problem(status, title, detail, errors), PROBLEM_HEADERS
end

-- Times as the API (and the CLI's JSON) shows them: RFC 3339, UTC, ms.
local t3339 = require("weir.util").rfc3339

-- A run row as the API shows it: run_id and RFC 3339 times, the shape of
-- `weir runs --json` and `weir show --json` (docs/cli.md).
local function run_view(row, tasks)
  local v = { run_id = row.id, pipeline = row.pipeline, status = row.status,
              version_id = row.version_id, created_at = t3339(row.created_at),
              started_at = t3339(row.started_at), finished_at = t3339(row.finished_at),
              error = row.error,
              logical_time = row.logical_time and scheduler.iso(row.logical_time) or nil }
  v.trigger = row.options and require("weir.triggers").describe(row.options, v.logical_time)
  v.params = row.params and json.decode(row.params) or nil
  if tasks then
    local list = {}
    for i, t in ipairs(tasks) do
      list[i] = { task = t.task, state = t.state, attempts = t.attempts, error = t.error,
                  started_at = t3339(t.started_at), finished_at = t3339(t.finished_at),
                  rows_in = t.rows_in, rows_out = t.rows_out,
                  output = t.output and json.decode(t.output) or nil }
    end
    v.tasks = setmetatable(list, json.array_mt)
  end
  return v
end

local function array(t) return setmetatable(t, json.array_mt) end

-- A run just recorded queued (id, its pipeline, what Service:trigger says
-- it wrote), as the API shows runs, without reading it back.
local function queued_view(id, pipeline, info)
  return { run_id = id, pipeline = pipeline, status = "queued", version_id = info.version_id,
           created_at = t3339(info.created_at), params = info.params, tasks = array({}) }
end

--- The set of pipeline names of a stored scope (JSON array text), or nil
-- (no scope: every pipeline).
function M.scope(text)
  if text == nil then return nil end
  local set = {}
  for _, name in ipairs(json.decode(text) or {}) do set[name] = true end
  return set
end

--- The stored scope of a list of names (nil: every pipeline), or nil,
-- message.
function M.scope_text(list)
  if list == nil then return nil end
  if type(list) ~= "table" or (next(list) ~= nil and #list == 0) then
    return nil, "pipelines: expected a list of pipeline names"
  end
  for _, n in ipairs(list) do
    if type(n) ~= "string" or not n:match("^[%a_][%w_]*$") then
      return nil, "pipelines: " .. util.show(n) .. " is not a pipeline name"
    end
  end
  return json.encode(array({ unpack(list) }))
end

--- The query string as a table (names and values percent-decoded).
local function decode_pct(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
function M.query(q)
  local out = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    out[decode_pct(k)] = decode_pct(v)
  end
  return out
end

-- A path segment: percent-decoded, and only what a name or id may hold
-- (anything else, "..", "/" or a NUL included, is not found).
local function segment(s)
  s = decode_pct(s)
  if not s:match("^[%w_.:-]+$") or s:find("..", 1, true) then return nil end
  return s
end

local function body_json(req)
  if req.body == nil or req.body == "" then return {} end
  local ct = req.headers["content-type"] or ""
  if not ct:match("^application/json") then
    return nil, { 415, "unsupported media type", "the body must be application/json" }
  end
  local v, err = json.decode(req.body, { max_depth = 32 })
  if v == nil then return nil, { 400, "malformed JSON", err } end
  if type(v) ~= "table" or getmetatable(v) == json.array_mt then
    return nil, { 400, "malformed body", "expected a JSON object" }
  end
  return v
end

---------------------------------------------------------------------------
-- Handlers: function(api, req, caps, principal) -> status, body, headers
---------------------------------------------------------------------------

local H = {}

-- Whether principal may see pipeline name: a principal scoped to some
-- pipelines sees nothing of the others; what it may not see answers
-- exactly like what does not exist.
local function visible(principal, name)
  local scope = principal and principal.pipelines
  return scope == nil or scope[name] == true
end

-- The run id as principal may see it: its row, or nil (missing or not
-- visible: the same answer).
local function run_for(api, id, principal)
  local row = api.s.store:run(id)
  if row and visible(principal, row.pipeline) then return row end
end

function H.ready(api)
  local s = api.s
  local ok_store = pcall(s.store.schema_version, s.store)
  local body = { status = ok_store and "ready" or "not ready", store = ok_store,
                 workers = s.exec.n, pipelines = util.count(s.catalog),
                 draining = s.draining or false }
  if not ok_store or s.draining then return 503, body end
  return 200, body
end

function H.openapi(api)
  return 200, api:openapi()
end

function H.pipelines(api, _, _, principal)
  local out = {}
  for _, p in ipairs(api.s.store:pipelines()) do
    if not visible(principal, p.name) then goto continue end
    local c = api.s.catalog[p.name]
    out[#out + 1] = { name = p.name, versions = p.versions, available = c ~= nil,
                      current_version_id = c and c.version_id or nil,
                      description = c and c.P.def.description or nil }
    ::continue::
  end
  return ok({ pipelines = array(out) })
end

local function pipeline_view(c, versions)
  local P = c.P
  local tasks = {}
  for name, t in pairs(P.tasks) do
    tasks[#tasks + 1] = { name = name, after = array({ unpack(t.after) }),
                          retries = t.retries, timeout = t.timeout }
  end
  table.sort(tasks, function(a, b) return a.name < b.name end)
  for _, v in ipairs(versions) do v.created_at = t3339(v.created_at) end
  return { name = P.name, description = P.def.description, current_version_id = c.version_id,
           file = c.file, params = P.def.params or json.null, schedule = P.def.schedule,
           max_active_runs = P.def.max_active_runs, tasks = array(tasks),
           versions = array(versions) }
end

function H.pipeline(api, _, caps, principal)
  local c = visible(principal, caps[1]) and api.s.catalog[caps[1]]
  if not c then return fail(404, "no such pipeline", caps[1]) end
  return ok(pipeline_view(c, api.s.store:versions(c.name)))
end

function H.version_source(api, _, caps, principal)
  local vid = visible(principal, caps[1]) and tonumber(caps[2])
  local v = vid and api.s.store:version(vid)
  if not v or v.pipeline ~= caps[1] then return fail(404, "no such version", caps[2]) end
  return ok({ pipeline = v.pipeline, version_id = v.id, hash = v.hash, kind = v.kind,
              source = v.source })
end

function H.reload(api)
  local n, errs = api.s:load_pipelines()
  return ok({ pipelines = n, errors = array(errs) })
end

-- The body's hash (idempotency: the same key must come with the same body).
local function body_hash(req)
  return require("weir.pipeline").sha256(req.body or "")
end

local DURATION_MAX = 300

function H.trigger(api, req, caps, principal)
  local s = api.s
  if not visible(principal, caps[1]) then return fail(404, "no such pipeline", caps[1]) end
  if s.draining then return fail(503, "draining", "the service is stopping") end
  local body, berr = body_json(req)
  if not body then return fail(berr[1], berr[2], berr[3]) end
  for k in pairs(body) do
    if k ~= "params" then
      return fail(422, "invalid body", "unknown field " .. util.show(k),
                  array({ { pointer = "/" .. tostring(k), detail = "unknown field" } }))
    end
  end
  local params = body.params or {}
  if type(params) ~= "table" or getmetatable(params) == json.array_mt then
    return fail(422, "invalid params", "params must be an object",
                array({ { pointer = "/params", detail = "expected an object" } }))
  end
  local q = M.query(req.query)
  local wait
  if q.wait then
    wait = util.duration(q.wait)
    if not wait or wait > DURATION_MAX then
      return fail(400, "bad wait", format("wait: expected a duration up to %ds", DURATION_MAX))
    end
  end
  local key = req.headers["idempotency-key"]
  local hash
  if key then
    if #key > 200 or not key:match("^[%w%-_.:]+$") then
      return fail(400, "bad Idempotency-Key", "at most 200 of A-Z a-z 0-9 - _ . :")
    end
    hash = body_hash(req) .. ":" .. caps[1]
    local prev = s.store:idem_get(principal.name, key)
    if prev then
      if prev.body_hash ~= hash then
        return fail(422, "idempotency key reused", "this Idempotency-Key came with another "
                    .. "request; use a new key for a new run")
      end
      return api:answer_run(prev.run_id, 200, wait, req)
    end
  end
  local id, perr = s:trigger(caps[1], params, principal.name, key and function(store, rid)
    store:idem_put(principal.name, key, hash, rid, executor.now())
  end)
  if not id then
    if type(perr) == "table" and perr.status then
      local errors
      if perr.status == 422 then
        local pname = perr.detail:match('param "([^"]+)"')
        errors = array({ { pointer = "/params" .. (pname and "/" .. pname or ""),
                           detail = perr.detail } })
      end
      return fail(perr.status, perr.title, perr.detail, errors)
    end
    if type(perr) == "table" and perr.code == "conflict" then
      return fail(409, "in flight", "a request with this Idempotency-Key is being handled")
    end
    error(perr, 0)
  end
  if not wait then
    -- just recorded: the run as it was written, without reading it back
    return 201, queued_view(id, caps[1], perr) -- on success perr is what was recorded
  end
  return api:answer_run(id, 201, wait, req)
end

function H.retry(api, _, caps, principal)
  local s = api.s
  local row = run_for(api, caps[1], principal)
  if not row then return fail(404, "no such run", caps[1]) end
  if s.runner.runs[row.id] or (row.status ~= "failed" and row.status ~= "cancelled") then
    return fail(409, "not retryable", format("run %s is %s; only a failed or cancelled run "
                                              .. "is retried", row.id, row.status))
  end
  if s.draining then return fail(503, "draining", "the service is stopping") end
  local okr, why = s:resume_run(row)
  if not okr then return fail(409, "not retryable", why) end
  return ok({ run_id = row.id, status = "running" }, 202)
end

function H.attempt(api, _, caps, principal)
  local n = tonumber(caps[3])
  local store = api.s.store
  local attempts = run_for(api, caps[1], principal) and store:attempts(caps[1]) or {}
  for _, a in ipairs(attempts) do
    if a.task == caps[2] and a.attempt == n then
      local checks = require("weir.store").check_views(store:checks(caps[1]))
      return ok({ run_id = caps[1], task = a.task, attempt = a.attempt, status = a.status,
                  started_at = t3339(a.started_at), finished_at = t3339(a.finished_at),
                  error = a.error, log = a.log, output = a.output and json.decode(a.output) or nil,
                  rows_in = a.rows_in, rows_out = a.rows_out, mem_peak = a.mem_peak,
                  worker_pid = a.worker_pid,
                  checks = checks[a.task .. "\0" .. a.attempt] })
    end
  end
  return fail(404, "no such attempt", format("%s/%s/%s", caps[1], caps[2], caps[3]))
end

function H.events(api, req, caps, principal)
  local s = api.s
  local row = run_for(api, caps[1], principal)
  if not row then return fail(404, "no such run", caps[1]) end
  s:subscribe(req, row)
  return nil -- a stream, answered by the service
end

-- A pipeline source in a body: { "source": TEXT, "kind": "lua"|"yaml"|"json" }.
local function source_of(req)
  local body, berr = body_json(req)
  if not body then return nil, berr end
  if type(body.source) ~= "string" then
    return nil, { 422, "invalid body", "source: expected the pipeline's text" }
  end
  local kind = body.kind or "lua"
  if kind ~= "lua" and kind ~= "yaml" and kind ~= "json" then
    return nil, { 422, "invalid body", "kind: expected lua, yaml or json" }
  end
  return body.source, kind
end

local function load_errors(errs)
  local out = {}
  for i, e in ipairs(errs) do
    out[i] = { pointer = "/" .. (e.path or ""):gsub("%.", "/"), line = e.line, detail = e.message }
  end
  return array(out)
end

function H.validate(api, req)
  local src, kind = source_of(req)
  if not src then return fail(kind[1], kind[2], kind[3]) end
  local P, errs = api.s:define_source("validate", src, kind)
  if not P then return ok({ valid = false, errors = load_errors(errs) }) end
  return ok({ valid = true, name = P.name, errors = array({}) })
end

function H.put_pipeline(api, req, caps, principal)
  if not visible(principal, caps[1]) then return fail(404, "no such pipeline", caps[1]) end
  local src, kind = source_of(req)
  if not src then return fail(kind[1], kind[2], kind[3]) end
  local P, errs = api.s:define_source(caps[1], src, kind)
  if not P then
    return fail(422, "invalid pipeline", "the pipeline does not validate", load_errors(errs))
  end
  if P.name ~= caps[1] then
    return fail(422, "name mismatch", format("the source defines %s, not %s", P.name, caps[1]),
                array({ { pointer = "/name", detail = "expected " .. caps[1] } }))
  end
  local c, created = api.s:add_uploaded(P)
  return ok({ name = P.name, version_id = c.version_id, hash = P.hash }, created and 201 or 200)
end

--- POST /hooks/{pipeline}: a run started by a signed request (no role:
-- the signature is the credential; docs/scheduling.md, ADR 22).
function H.hook(api, req, caps)
  local s = api.s
  local c = s.catalog[caps[1]]
  local trig = c and type(c.P.def.triggers) == "table" and c.P.def.triggers
  local wh = trig and trig.webhook
  if type(wh) ~= "table" then return fail(404, "no such webhook", caps[1]) end
  if s.draining then return fail(503, "draining", "the service is stopping") end
  local secret, serr = s:hook_secret(wh.secret)
  if not secret then
    s.log("weir serve: webhook of " .. c.name .. ": " .. serr)
    return fail(503, "webhook not available", "its secret cannot be read; the server log "
                .. "says why")
  end
  local hooks = require("weir.hooks")
  local okv, why = s:hook_verifier(c.name, wh):check(secret, req.headers["weir-signature"],
                                                     req.body or "",
                                                     math.floor(executor.now() / 1000))
  if not okv then
    return 401, M.problem(401, "bad signature", why),
           { ["Content-Type"] = "application/problem+json",
             ["WWW-Authenticate"] = 'Weir-Signature realm="weir"' }
  end
  local params, perrs = hooks.params(c.P.def.params, req.body or "", wh.params)
  if not params then
    return fail(422, "invalid params", "the body does not give the pipeline's params",
                array(perrs))
  end
  local id, info = s:trigger(c.name, params, "webhook")
  if not id then
    if type(info) == "table" and info.status then
      return fail(info.status, info.title, info.detail)
    end
    error(info, 0)
  end
  return 202, queued_view(id, c.name, info)
end

--- The schedules: each scheduled pipeline's cron, zone, catch-up, state
-- and next five logical times (UTC and local).
function H.schedules(api, _, _, principal)
  local s = api.s
  local out = {}
  local now = s.now()
  local names = {}
  for name, c in pairs(s.catalog) do
    if c.P.schedule and visible(principal, name) then names[#names + 1] = name end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local c = s.catalog[name]
    local sc = c.P.schedule
    s.store:begin()
    local st = s.store:schedule_state(c.pipeline_id, now)
    s.store:commit()
    local next_ = scheduler.upcoming(sc, now, 5)
    for _, x in ipairs(next_) do x.utc = scheduler.iso(x.utc) end
    out[#out + 1] = { pipeline = name, cron = sc.cron, timezone = sc.timezone,
                      catchup = sc.catchup, max_catchup = sc.max_catchup,
                      paused = st.paused and true or false,
                      last_fire = st.last_fire and scheduler.iso(st.last_fire) or nil,
                      next = array(next_) }
  end
  return ok({ schedules = array(out) })
end

local BACKFILL_MAX = 100000

--- POST /api/v1/pipelines/{name}/backfill { from, to, dry_run, rerun,
-- max_active }:
-- one run per logical time of the pipeline's schedule in [from, to].
function H.backfill(api, req, caps, principal)
  local s = api.s
  local c = visible(principal, caps[1]) and s.catalog[caps[1]]
  if not c then return fail(404, "no such pipeline", caps[1]) end
  if not c.P.schedule then
    return fail(422, "no schedule", caps[1] .. " has no schedule to backfill")
  end
  if s.draining then return fail(503, "draining", "the service is stopping") end
  local body, berr = body_json(req)
  if not body then return fail(berr[1], berr[2], berr[3]) end
  local from, to = scheduler.parse_time(body.from), scheduler.parse_time(body.to)
  local errs = {}
  if not from then errs[#errs + 1] = { pointer = "/from", detail = "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ" } end
  if not to then errs[#errs + 1] = { pointer = "/to", detail = "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ" } end
  if from and to and to < from then errs[#errs + 1] = { pointer = "/to", detail = "before from" } end
  local ma = body.max_active
  if ma ~= nil and (type(ma) ~= "number" or ma < 1 or ma ~= math.floor(ma) or ma > 1e6) then
    errs[#errs + 1] = { pointer = "/max_active", detail = "expected an integer from 1" }
  end
  if #errs > 0 then return fail(422, "invalid range", errs[1].detail, array(errs)) end
  local lts, lerr = scheduler.between(c.P.schedule, from, to, BACKFILL_MAX)
  if not lts then return fail(422, "range too large", lerr) end
  local out = { pipeline = c.name, logical_times = #lts, dry_run = body.dry_run == true,
                first = lts[1] and scheduler.iso(lts[1]) or nil,
                last = lts[#lts] and scheduler.iso(lts[#lts]) or nil }
  if body.dry_run == true then return ok(out) end
  local created, skipped = s:fire_times(c, lts, "backfill", body.rerun == true,
                                        { trigger = principal.name,
                                          backfill = ma and require("weir.engine").new_run_id() or true,
                                          max_active = ma })
  if not created then return fail(422, "cannot backfill", skipped) end
  out.created, out.skipped = created, skipped
  return ok(out, 202)
end

local function pause(api, caps, principal, paused)
  local s = api.s
  local c = visible(principal, caps[1]) and s.catalog[caps[1]]
  if not c or not (c.P.schedule or require("weir.triggers").of(c.P)) then
    return fail(404, "no such schedule", caps[1])
  end
  s.store:begin()
  s.store:schedule_pause(c.pipeline_id, paused, s.now())
  s.store:commit()
  s.next_schedule = nil
  return ok({ pipeline = c.name, paused = paused })
end
function H.pause(api, _, caps, principal) return pause(api, caps, principal, true) end
function H.unpause(api, _, caps, principal) return pause(api, caps, principal, false) end

-- A time in a query (since, until): RFC 3339 (or YYYY-MM-DD), UTC, as ms;
-- a number is taken as ms.
local function api_time(text)
  if text == nil then return nil end
  return tonumber(text) or scheduler.parse_time(text)
end

function H.runs(api, req, _, principal)
  local q = M.query(req.query)
  local limit = tonumber(q.limit or 50)
  if not limit or limit < 1 or limit > 1000 or limit ~= math.floor(limit) then
    return fail(400, "bad limit", "limit: an integer 1..1000")
  end
  local rows, cursor = api.s.store:runs_page({ pipeline = q.pipeline, status = q.status,
                                               since = api_time(q.since),
                                               until_ = api_time(q["until"]), limit = limit,
                                               after = q.cursor })
  -- a scoped principal's page holds only what it may see (so it may be
  -- shorter than limit; next_cursor still goes on)
  local out = {}
  if q.pipeline and not visible(principal, q.pipeline) then rows, cursor = {}, nil end
  for _, r in ipairs(rows) do
    if visible(principal, r.pipeline) then out[#out + 1] = run_view(r) end
  end
  return ok({ runs = array(out), next_cursor = cursor })
end

function H.run(api, _, caps, principal)
  local row = run_for(api, caps[1], principal)
  if not row then return fail(404, "no such run", caps[1]) end
  return ok(run_view(row, api.s.store:tasks(row.id)))
end

function H.cancel(api, _, caps, principal)
  local s = api.s
  local row = run_for(api, caps[1], principal)
  if not row then return fail(404, "no such run", caps[1]) end
  local why = "cancelled by " .. principal.name
  if s.runner:cancel(row.id, why) then
    return ok({ run_id = row.id, status = "cancelling" }, 202)
  end
  if row.status == "queued" then
    s.store:begin()
    s.store:update_run(row.id, { status = "cancelled", error = why,
                                 finished_at = executor.now() })
    s.store:commit()
    s:notify(row.id)
    return ok({ run_id = row.id, status = "cancelled" })
  end
  return fail(409, "not active", format("run %s is %s", row.id, row.status))
end

function H.token(api, req)
  local s = api.s
  local jwt = s.settings.jwt
  if not jwt then
    return fail(404, "tokens not configured", "serve.jwt is not set in weir.yaml")
  end
  local body, berr = body_json(req)
  if not body then return fail(berr[1], berr[2], berr[3]) end
  local name, pw = body.username, body.password
  local user = type(name) == "string" and s.store:user(name) or nil
  local stored = user and not user.disabled and user.password_hash or nil
  -- a hash is computed for unknown users too: the time does not tell
  -- whether a name exists
  local good = type(pw) == "string" and auth.verify_password(pw, stored)
  if not good or not stored then
    return fail(401, "bad credentials", "unknown user, wrong password or disabled user")
  end
  local now = math.floor(executor.now() / 1000)
  local token = auth.sign({ sub = user.name, nbf = now }, api.jwt, now)
  return ok({ access_token = token, token_type = "Bearer", expires_in = api.jwt.ttl })
end

function H.audit(api, req)
  local q = M.query(req.query)
  local limit = math.min(tonumber(q.limit) or 100, 1000)
  local rows = api.s.store:audit(limit, tonumber(q.before))
  for _, r in ipairs(rows) do r.at = t3339(r.at) end
  return ok({ entries = array(rows) })
end

local NAME = "^[%w_.@-]+$"

local function role_of(body)
  local role = body.role
  if type(role) ~= "string" or not auth.ROLE_RANK[role] then
    return nil, { 422, "invalid role", "role: one of viewer, operator, developer, admin",
                  array({ { pointer = "/role", detail = "expected a role" } }) }
  end
  return role
end

local function name_of(body)
  local name = body.name
  if type(name) ~= "string" or #name > 64 or not name:match(NAME) then
    return nil, { 422, "invalid name", "name: 1..64 of A-Z a-z 0-9 _ . @ -",
                  array({ { pointer = "/name", detail = "expected a name" } }) }
  end
  return name
end

-- The body of a request that makes a principal, its role and name; or
-- nil, problem.
local function principal_body(req)
  local body, berr = body_json(req)
  if not body then return nil, berr end
  local role, rerr = role_of(body)
  if not role then return nil, rerr end
  local name, nerr = name_of(body)
  if not name then return nil, nerr end
  return body, role, name
end

-- rows of users or keys with their scope as a list
local function scoped_rows(rows)
  for _, r in ipairs(rows) do
    if r.pipelines then r.pipelines = json.decode(r.pipelines) end
    for _, k in ipairs({ "created_at", "revoked_at", "last_used_at" }) do r[k] = t3339(r[k]) end
  end
  return array(rows)
end

function H.users(api)
  return ok({ users = scoped_rows(api.s.store:users()) })
end

function H.add_user(api, req)
  local body, role, name = principal_body(req)
  if not body then return fail(unpack(role)) end
  local scope, serr = M.scope_text(body.pipelines)
  if serr then return fail(422, "invalid pipelines", serr) end
  local pw = body.password
  if type(pw) ~= "string" or #pw < 8 or #pw > 1024 then
    return fail(422, "invalid password", "password: 8..1024 bytes",
                array({ { pointer = "/password", detail = "8..1024 bytes" } }))
  end
  local store = api.s.store
  if store:user(name) then return fail(409, "exists", "user " .. name .. " exists") end
  local hash = auth.hash_password(pw)
  store:begin()
  store:users_add(name, role, hash, executor.now(), scope)
  store:commit()
  return ok({ name = name, role = role }, 201)
end

function H.disable_user(api, _, caps)
  local store = api.s.store
  store:begin()
  local found = store:user_set_disabled(caps[1], true)
  store:commit()
  if not found then return fail(404, "no such user", caps[1]) end
  return ok({ name = caps[1], disabled = true })
end

function H.keys(api)
  return ok({ keys = scoped_rows(api.s.store:keys()) })
end

function H.add_key(api, req)
  local body, role, name = principal_body(req)
  if not body then return fail(unpack(role)) end
  local scope, serr = M.scope_text(body.pipelines)
  if serr then return fail(422, "invalid pipelines", serr) end
  local k = auth.new_api_key()
  local store = api.s.store
  store:begin()
  store:key_add({ id = k.id, name = name, role = role, hash = k.hash,
                  created_at = executor.now(), pipelines = scope })
  store:commit()
  -- the only time the clear key is shown
  return ok({ id = k.id, name = name, role = role, key = k.key }, 201)
end

function H.revoke_key(api, _, caps)
  local store = api.s.store
  store:begin()
  local found = store:key_revoke(caps[1], executor.now())
  store:commit()
  if not found then return fail(404, "no such key", caps[1]) end
  return ok({ id = caps[1], revoked = true })
end

function H.metrics(api)
  return 200, api:metrics(), { ["Content-Type"] = "text/plain; version=0.0.4" }
end

---------------------------------------------------------------------------
-- The routes: method, path (OpenAPI form), least role (nil: public),
-- handler, summary, the schema of a 2xx answer (components.schemas, or
-- false: not JSON). The router matches the path with {x} as one segment.
---------------------------------------------------------------------------

M.ROUTES = {
  { "GET", "/ready", nil, H.ready, "store reachable and workers up", "Ready" },
  { "GET", "/metrics", nil, H.metrics, "Prometheus text format", false },
  { "GET", "/api/v1/openapi.json", nil, H.openapi, "this API as OpenAPI 3.1", "Object" },
  { "POST", "/api/v1/auth/token", nil, H.token, "a password for a short-lived JWT", "Token" },
  { "POST", "/hooks/{name}", nil, H.hook,
    "start a run with a request signed for the pipeline's webhook (Weir-Signature)", "Run" },
  { "GET", "/api/v1/pipelines", "viewer", H.pipelines, "list pipelines", "PipelineList" },
  { "POST", "/api/v1/pipelines:reload", "developer", H.reload,
    "read the pipelines folders again", "Reload" },
  { "POST", "/api/v1/pipelines:validate", "developer", H.validate,
    "validate a source ({source, kind}) without storing it", "Validation" },
  { "PUT", "/api/v1/pipelines/{name}", "developer", H.put_pipeline,
    "store a source ({source, kind}) as the pipeline's new version", "VersionRef" },
  { "GET", "/api/v1/pipelines/{name}", "viewer", H.pipeline,
    "a pipeline: tasks, params, versions", "Pipeline" },
  { "GET", "/api/v1/pipelines/{name}/versions/{version}", "viewer", H.version_source,
    "one version's source", "Version" },
  { "POST", "/api/v1/pipelines/{name}/runs", "operator", H.trigger,
    "trigger a run (Idempotency-Key, ?wait=DURATION)", "Run" },
  { "GET", "/api/v1/schedules", "viewer", H.schedules,
    "scheduled pipelines: cron, zone, catch-up, paused, last fire, next five", "Schedules" },
  { "POST", "/api/v1/pipelines/{name}/backfill", "operator", H.backfill,
    "one run per logical time of the schedule in [from, to] ({from, to, dry_run, rerun})",
    "Backfill" },
  { "POST", "/api/v1/pipelines/{name}/schedule/pause", "operator", H.pause,
    "stop firing the pipeline's schedule", "ScheduleState" },
  { "POST", "/api/v1/pipelines/{name}/schedule/unpause", "operator", H.unpause,
    "fire the pipeline's schedule again (catch-up decides about what was missed)",
    "ScheduleState" },
  { "GET", "/api/v1/runs", "viewer", H.runs,
    "list runs (pipeline, status, since, until, limit, cursor)", "RunList" },
  { "GET", "/api/v1/runs/{id}", "viewer", H.run, "a run with its tasks", "Run" },
  { "POST", "/api/v1/runs/{id}/cancel", "operator", H.cancel, "cancel a run", "RunState" },
  { "POST", "/api/v1/runs/{id}/retry", "operator", H.retry,
    "run a failed or cancelled run's unfinished tasks again", "RunState" },
  { "GET", "/api/v1/runs/{id}/events", "viewer", H.events,
    "the run's state changes as Server-Sent Events", false },
  { "GET", "/api/v1/runs/{id}/tasks/{task}/attempts/{attempt}", "viewer", H.attempt,
    "one attempt: status, error, log, output", "Attempt" },
  { "GET", "/api/v1/audit", "admin", H.audit, "the audit log (limit, before)", "Audit" },
  { "GET", "/api/v1/users", "admin", H.users, "list users", "UserList" },
  { "POST", "/api/v1/users", "admin", H.add_user, "add a user ({name, role, password})", "User" },
  { "POST", "/api/v1/users/{name}/disable", "admin", H.disable_user, "disable a user", "User" },
  { "GET", "/api/v1/keys", "admin", H.keys, "list API keys (never the keys)", "KeyList" },
  { "POST", "/api/v1/keys", "admin", H.add_key,
    "create an API key ({name, role}); the answer holds the key, once", "NewKey" },
  { "POST", "/api/v1/keys/{id}/revoke", "admin", H.revoke_key, "revoke an API key", "KeyState" },
}

-- path patterns: "{x}" matches one segment
for _, r in ipairs(M.ROUTES) do
  local pat, n = r[2]:gsub("[%.%-%:]", "%%%0"):gsub("{%w+}", "([^/]+)")
  r.pattern, r.ncaps = "^" .. pat .. "$", n
end

local function match(method, path)
  local allowed
  for _, r in ipairs(M.ROUTES) do
    local caps = r.ncaps > 0 and { path:match(r.pattern) } or {}
    if caps[1] or (r.ncaps == 0 and path:match(r.pattern)) then
      if r[1] == method then return r, caps end
      allowed = allowed or {}
      allowed[#allowed + 1] = r[1]
    end
  end
  return nil, allowed
end

---------------------------------------------------------------------------

--- The API of service s (weir.serve).
function M.new(s)
  local jwt, sv = s.settings.jwt, s.settings
  local origins = {}
  for _, o in ipairs(sv.cors_origins) do origins[o] = true end
  return setmetatable({
    s = s, counts = {}, origins = origins,
    proxies = #sv.trusted_proxies > 0 and limits.proxies(sv.trusted_proxies) or nil,
    by_address = limits.limiter({ rate = sv.rate_limit.per_address.rate,
                                  burst = sv.rate_limit.per_address.burst, max_keys = 10000 }),
    by_principal = limits.limiter({ rate = sv.rate_limit.per_principal.rate,
                                    burst = sv.rate_limit.per_principal.burst,
                                    max_keys = 10000 }),
    jwt = jwt and auth.jwt_config({ keys = jwt.keys, current = jwt.current, iss = jwt.issuer,
                                    aud = jwt.audience, ttl = math.floor(jwt.ttl) }),
  }, Api)
end

-- The principal of req: { name, role, kind } or nil, reason.
function Api:principal(req)
  local h = req.headers.authorization
  if not h then return nil, "no credentials" end
  local tok = h:match("^[Bb]earer +(%S+)$")
  if not tok then return nil, "expected Authorization: Bearer TOKEN" end
  local store = self.s.store
  if tok:sub(1, 5) == "weir_" then
    local id = auth.parse_api_key(tok)
    local key = id and store:key(id)
    if not key or not auth.verify_api_key(tok, key.hash) then return nil, "unknown API key" end
    if key.revoked_at then return nil, "revoked API key" end
    return { name = "key:" .. key.name, role = key.role, kind = "key", key_id = key.id,
             pipelines = M.scope(key.pipelines) }
  end
  if not self.jwt then return nil, "tokens not configured" end
  local claims, why = auth.verify(tok, self.jwt, math.floor(executor.now() / 1000))
  if not claims then return nil, why end
  local user = type(claims.sub) == "string" and store:user(claims.sub) or nil
  if not user or user.disabled then return nil, "unknown or disabled user" end
  return { name = user.name, role = user.role, kind = "user", pipelines = M.scope(user.pipelines) }
end

-- Answer with run id: now (status) or, with wait seconds, when it ends
-- (200 with the finished run) or when the wait is over (202).
function Api:answer_run(id, status, wait, req)
  local store = self.s.store
  local function now_view() return run_view(store:run(id), store:tasks(id)) end
  if not wait then return status, now_view() end
  local v = now_view()
  if v.status ~= "queued" and v.status ~= "running" then return 200, v end
  local http = self.http
  self.s:wait_for(id, wait * 1000, function()
    self:send(http, req, 200, now_view())
  end, function()
    self:send(http, req, 202, now_view())
  end)
  return nil -- answered later
end

-- Count a request for /metrics (route, not path: few label values).
function Api:count(route, method, status)
  local key = route .. "\0" .. method .. "\0" .. status
  self.counts[key] = (self.counts[key] or 0) + 1
end

local SECURITY = {
  ["X-Content-Type-Options"] = "nosniff",
  ["Cache-Control"] = "no-store",
}

--- Send an answer to req.
function Api:send(http, req, status, body, headers)
  local text
  if type(body) == "string" then text = body else
    text = json.encode(body)
    if not text then
      status, text = 500, json.encode(M.problem(500, nil, "the answer could not be encoded"))
      headers = PROBLEM_HEADERS
    end
  end
  local h = {}
  for k, v in pairs(SECURITY) do h[k] = v end
  for k, v in pairs(headers or JSON_HEADERS) do h[k] = v end
  if req.cors then
    h["Access-Control-Allow-Origin"] = req.cors
    h["Vary"] = "Origin"
  end
  if self.s.settings.tls then h["Strict-Transport-Security"] = "max-age=31536000" end
  self:count(req.route or "other", req.method, status)
  http:respond(req.id, status, h, text)
end

-- The audit entry of a mutating request or a denial (in the caller's
-- transaction).
function Api:audit_entry(req, principal, status, outcome)
  self.s.store:audit_add({ at = executor.now(), principal = principal and principal.name or nil,
                           address = req.addr, method = req.method, path = req.path,
                           status = status, outcome = outcome,
                           request_id = tostring(tonumber(req.id)) })
end

-- The same in a transaction of its own.
function Api:audit(req, principal, status, outcome)
  local store = self.s.store
  local done = pcall(function()
    store:begin()
    self:audit_entry(req, principal, status, outcome)
    store:commit()
  end)
  if not done then pcall(store.rollback, store) end
end

local function too_many(self, http, req, secs, who)
  req.route = req.route or "other"
  return self:send(http, req, 429, M.problem(429, "too many requests",
                                             format("%s: retry in %d s", who, secs)),
                   { ["Content-Type"] = "application/problem+json",
                     ["Retry-After"] = tostring(secs) })
end

--- Handle one request.
function Api:handle(http, req)
  self.http = http
  req.addr = limits.client_address(req.client, req.headers["x-forwarded-for"], self.proxies)
  -- CORS: only the origins of the allow-list, named exactly
  local origin = req.headers.origin
  req.cors = origin and self.origins[origin] and origin or nil
  if req.method == "OPTIONS" and req.cors then
    req.route = "preflight"
    return self:send(http, req, 204, "", {
      ["Access-Control-Allow-Methods"] = "GET, POST, PUT",
      ["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Idempotency-Key",
      ["Access-Control-Max-Age"] = "600" })
  end
  local okt, secs = self.by_address:take(limits.address_key(req.addr), executor.mono())
  if not okt then return too_many(self, http, req, secs, "this address") end
  local r, caps = match(req.method, req.path)
  if not r then
    if caps then
      req.route = "other"
      return self:send(http, req, fail(405, nil, "allowed: " .. concat(caps, ", ")))
    end
    req.route = "other"
    return self:send(http, req, fail(404, nil, "no such route"))
  end
  req.route = r[2]
  for i, c in ipairs(caps) do
    caps[i] = segment(c)
    if not caps[i] then return self:send(http, req, fail(404, nil, "no such object")) end
  end
  local principal
  if r[3] then
    local why
    principal, why = self:principal(req)
    if not principal then
      self:audit(req, nil, 401, "denied: " .. tostring(why))
      return self:send(http, req, 401, M.problem(401, "unauthenticated", why),
                       { ["Content-Type"] = "application/problem+json",
                         ["WWW-Authenticate"] = 'Bearer realm="weir"' })
    end
    local okp, psecs = self.by_principal:take(principal.name, executor.mono())
    if not okp then return too_many(self, http, req, psecs, principal.name) end
    if not auth.role_allows(principal.role, r[3]) then
      self:audit(req, principal, 403, "denied: needs " .. r[3])
      return self:send(http, req, fail(403, "forbidden",
                                       format("this needs the %s role", r[3])))
    end
  end
  -- a change and its audit entry are one transaction, committed before
  -- the answer
  local store = self.s.store
  local mutating = r[1] ~= "GET"
  if mutating then store:begin() end
  local okh, status, body, headers = pcall(r[4], self, req, caps, principal)
  if mutating and okh and store.depth == 1 then
    local okc, cerr = pcall(function()
      self:audit_entry(req, principal, status or 202, status and status < 400 and "ok" or
                       (status and "failed" or "waiting"))
      store:commit()
    end)
    if okc then
      mutating = false -- audited
    else
      okh, status = false, cerr
    end
  end
  if store.depth > 0 then
    -- a handler that failed inside a transaction: nothing of it stays
    pcall(store.rollback, store)
  end
  if not okh and type(status) == "table" and status.code == "conflict" then
    okh, status, body, headers = true, fail(409, "conflict", status.message or tostring(status))
  elseif not okh and type(status) == "table" and status.code == "invalid" then
    okh, status, body, headers = true, fail(400, "bad request", status.message or tostring(status))
  end
  if not okh then
    self.s.log("weir serve: " .. req.method .. " " .. r[2] .. ": "
               .. self.s.conf.redact(tostring(status)))
    status, body, headers = fail(500, nil, "the request failed; the server log says why")
  end
  if mutating then
    self:audit(req, principal, status or 202, status and status < 400 and "ok" or
               (status and "failed" or "waiting"))
  end
  if status then self:send(http, req, status, body, headers) end
end

--- Answer the requests waiting in the HTTP queue, at most max (64) of
-- them: the runs go on between two batches however fast requests come.
-- Returns how many were answered.
function Api:serve_pending(http, max)
  max = max or 64
  for n = 1, max do
    local req = http:next()
    if not req then return n - 1 end
    self:handle(http, req)
  end
  return max
end

function Api:metrics()
  local s = self.s
  local out = {}
  local function add(...) out[#out + 1] = format(...) end
  add("# TYPE weir_runs_active gauge\nweir_runs_active %d", s.runner.active)
  add("# TYPE weir_runs_queued gauge\nweir_runs_queued %d", s.queued)
  add("# TYPE weir_runs_triggered_total counter\nweir_runs_triggered_total %d",
      s.stats.triggered)
  add("# TYPE weir_runs_finished_total counter")
  for _, st in ipairs({ "success", "failed", "cancelled" }) do
    add('weir_runs_finished_total{status="%s"} %d', st, s.stats.finished[st] or 0)
  end
  local busy = 0
  for i = 0, s.exec.n - 1 do
    if #s.runner.pool.slots[i].queue > 0 then busy = busy + 1 end
  end
  add("# TYPE weir_workers gauge\nweir_workers %d", s.exec.n)
  add("# TYPE weir_workers_busy gauge\nweir_workers_busy %d", busy)
  add("# TYPE weir_http_requests_total counter")
  local keys = {}
  for k in pairs(self.counts) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local route, method, status = k:match("^(.-)%z(.-)%z(.*)$")
    add('weir_http_requests_total{route="%s",method="%s",status="%s"} %d', route, method,
        status, self.counts[k])
  end
  local h = s.http:stats()
  add("# TYPE weir_http_answered_in_thread_total counter")
  for k, v in pairs(h) do add('weir_http_answered_in_thread_total{kind="%s"} %d', k, v) end
  add("# TYPE weir_tasks_finished_total counter")
  for _, st in ipairs({ "success", "failed", "up_for_retry", "upstream_failed", "cancelled" }) do
    add('weir_tasks_finished_total{state="%s"} %d', st, s.stats.tasks[st] or 0)
  end
  add("# TYPE weir_rows_total counter")
  add('weir_rows_total{direction="in"} %d', s.stats.rows_in)
  add('weir_rows_total{direction="out"} %d', s.stats.rows_out)
  local breakers = require("weir.breaker")
  local names = {}
  for name in pairs(s.conf.connections) do names[#names + 1] = name end
  table.sort(names)
  add("# TYPE weir_breaker_open gauge")
  for _, name in ipairs(names) do
    local b = breakers.info(s.conf.connections[name])
    if b then
      add('weir_breaker_open{connection="%s"} %d', name, b.state == "closed" and 0 or 1)
    end
  end
  local buckets = require("weir.serve").BUCKETS
  local function histogram(name, hist)
    add("# TYPE %s histogram", name)
    local cum = 0
    for i, b in ipairs(buckets) do
      cum = cum + (hist[i] or 0)
      add('%s_bucket{le="%s"} %d', name, tostring(b), cum)
    end
    cum = cum + (hist.inf or 0)
    add('%s_bucket{le="+Inf"} %d', name, cum)
    add("%s_sum %.6f", name, hist.sum)
    add("%s_count %d", name, cum)
  end
  histogram("weir_run_duration_seconds", s.stats.run_seconds)
  histogram("weir_task_duration_seconds", s.stats.task_seconds)
  return concat(out, "\n") .. "\n"
end

-- The JSON Schemas of the answers (OpenAPI components). Loose where the
-- content is the user's (params, outputs), strict on weir's own fields.
local function obj(props, required)
  return { type = "object", properties = props, required = required and array(required) or nil }
end
local STR, INT, NUM, BOOL = { type = "string" }, { type = "integer" }, { type = "number" },
  { type = "boolean" }
local OPT_STR = { type = array({ "string", "null" }) }
local function list_of(ref) return { type = "array", items = { ["$ref"] = "#/components/schemas/" .. ref } } end
local RUN_STATUS = { enum = array({ "queued", "running", "success", "failed", "cancelled" }) }
M.SCHEMAS = {
  Object = { type = "object" },
  Problem = obj({ type = STR, title = STR, status = INT, detail = STR,
                  errors = { type = "array", items = obj({ pointer = STR, detail = STR,
                                                           line = INT }) } },
                { "type", "title", "status" }),
  Ready = obj({ status = { enum = array({ "ready", "not ready" }) }, store = BOOL, workers = INT,
                pipelines = INT, draining = BOOL }, { "status", "store", "workers" }),
  Token = obj({ access_token = STR, token_type = { const = "Bearer" }, expires_in = INT },
              { "access_token", "token_type", "expires_in" }),
  PipelineList = obj({ pipelines = { type = "array", items = obj({
    name = STR, versions = INT, available = BOOL, current_version_id = INT,
    description = STR }, { "name", "versions", "available" }) } }, { "pipelines" }),
  Pipeline = obj({ name = STR, description = STR, current_version_id = INT, file = STR,
                   schedule = STR, max_active_runs = INT,
                   params = { type = array({ "object", "null" }) },
                   tasks = { type = "array", items = obj({ name = STR, after = { type = "array",
                     items = STR }, retries = INT, timeout = NUM }, { "name", "after" }) },
                   versions = { type = "array", items = obj({ id = INT, hash = STR, kind = STR,
                     created_at = STR }, { "id", "hash" }) } },
                 { "name", "current_version_id", "tasks", "versions" }),
  Version = obj({ pipeline = STR, version_id = INT, hash = STR, kind = STR, source = STR },
                { "pipeline", "version_id", "hash", "source" }),
  VersionRef = obj({ name = STR, version_id = INT, hash = STR }, { "name", "version_id" }),
  Reload = obj({ pipelines = INT, errors = { type = "array", items = STR } },
               { "pipelines", "errors" }),
  Validation = obj({ valid = BOOL, name = STR, errors = { type = "array" } },
                   { "valid", "errors" }),
  Task = obj({ task = STR, state = STR, attempts = INT, error = OPT_STR, started_at = STR,
               finished_at = STR, rows_in = INT, rows_out = INT }, { "task", "state" }),
  Run = obj({ run_id = STR, pipeline = STR, status = RUN_STATUS, version_id = INT,
              logical_time = STR, trigger = STR,
              created_at = STR, started_at = STR, finished_at = STR, error = STR,
              params = { type = "object" },
              tasks = list_of("Task") }, { "run_id", "pipeline", "status", "created_at" }),
  RunList = obj({ runs = list_of("Run"), next_cursor = STR }, { "runs" }),
  RunState = obj({ run_id = STR, status = STR }, { "run_id", "status" }),
  Attempt = obj({ run_id = STR, task = STR, attempt = INT, status = STR, error = STR, log = STR,
                  started_at = STR, finished_at = STR, rows_in = INT, rows_out = INT,
                  mem_peak = INT, worker_pid = INT,
                  checks = { type = "array", items = obj({ name = STR, check = STR,
                    severity = STR, status = STR, dataset = STR, message = STR,
                    samples = { type = "array" } }, { "name", "check", "severity", "status" }) } },
                { "run_id", "task", "attempt", "status" }),
  Audit = obj({ entries = { type = "array", items = obj({ id = INT, at = STR, principal = STR,
    address = STR, method = STR, path = STR, status = INT, outcome = STR, request_id = STR },
    { "id", "at", "method", "path" }) } }, { "entries" }),
  User = obj({ name = STR, role = STR, disabled = BOOL }, { "name" }),
  UserList = obj({ users = { type = "array", items = obj({ name = STR, role = STR,
    disabled = BOOL, created_at = STR, pipelines = { type = "array", items = STR } },
    { "name", "role" }) } }, { "users" }),
  KeyList = obj({ keys = { type = "array", items = obj({ id = STR, name = STR, role = STR,
    created_at = STR, revoked_at = STR, last_used_at = STR,
    pipelines = { type = "array", items = STR } }, { "id", "name", "role" }) } },
    { "keys" }),
  NewKey = obj({ id = STR, name = STR, role = STR, key = STR }, { "id", "name", "role", "key" }),
  KeyState = obj({ id = STR, revoked = BOOL }, { "id", "revoked" }),
  ScheduleState = obj({ pipeline = STR, paused = BOOL }, { "pipeline", "paused" }),
  Backfill = obj({ pipeline = STR, logical_times = INT, dry_run = BOOL, first = STR, last = STR,
                   created = INT, skipped = INT }, { "pipeline", "logical_times", "dry_run" }),
  Schedules = obj({ schedules = { type = "array", items = obj({
    pipeline = STR, cron = STR, timezone = STR, catchup = STR, max_catchup = INT,
    paused = BOOL, last_fire = STR,
    next = { type = "array", items = obj({ utc = STR, ["local"] = STR }, { "utc", "local" }) } },
    { "pipeline", "cron", "timezone", "paused", "next" }) } }, { "schedules" }),
}
-- an attempt's output and a task's are the task's own JSON: any value
M.SCHEMAS.Task.properties.output = true
M.SCHEMAS.Attempt.properties.output = true

--- The OpenAPI 3.1 document of ROUTES.
function Api.openapi()
  local paths = {}
  for _, r in ipairs(M.ROUTES) do
    local p = paths[r[2]] or {}
    paths[r[2]] = p
    local params = {}
    for name in r[2]:gmatch("{(%w+)}") do
      params[#params + 1] = { name = name, ["in"] = "path", required = true,
                              schema = { type = "string" } }
    end
    local ok_content
    if r[6] then
      ok_content = { ["application/json"] = {
        schema = { ["$ref"] = "#/components/schemas/" .. r[6] } } }
    elseif r[2] == "/metrics" then
      ok_content = { ["text/plain"] = { schema = { type = "string" } } }
    else
      ok_content = { ["text/event-stream"] = { schema = { type = "string" } } }
    end
    p[r[1]:lower()] = {
      summary = r[5],
      parameters = #params > 0 and array(params) or nil,
      security = r[3] and array({ { bearer = array({}) } }) or array({}),
      ["x-weir-role"] = r[3] or "public",
      responses = {
        default = { description = "a problem (RFC 9457)",
                    content = { ["application/problem+json"] = {
                      schema = { ["$ref"] = "#/components/schemas/Problem" } } } },
        ["2XX"] = { description = "success", content = ok_content },
      },
    }
  end
  return {
    openapi = "3.1.0",
    info = { title = "weir", version = require("weir.cli").VERSION },
    paths = paths,
    components = {
      securitySchemes = { bearer = { type = "http", scheme = "bearer" } },
      schemas = M.SCHEMAS,
    },
  }
end

return M
