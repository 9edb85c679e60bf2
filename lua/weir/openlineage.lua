-- weir.openlineage: attempts as OpenLineage run events, and their export
-- (docs/lineage.md, docs/adr/0031).
--
-- Every attempt is one OpenLineage run of the job PIPELINE.TASK: a START
-- event when it is sent to a worker, a COMPLETE or FAIL event when it
-- ends, with the datasets it read (inputs) and wrote (outputs, with the
-- schema and output statistics facets) and the weir run as its parent.
-- Run ids are UUIDs derived from (run id, task, attempt), so the two
-- events of an attempt agree without keeping state.
--
-- The exporter never delays or fails a run: events wait in a bounded
-- queue (a full queue drops the new event and counts it); the file
-- transport appends JSON Lines; the HTTP transport POSTs one event at a
-- time (OpenLineage's HTTP transport) with a short timeout, retries with
-- exponential backoff and drops an event after its retries (counted).
-- weir run delivers what is left when the run is over, within
-- flush_timeout; weir serve delivers between the steps of its loop.
local json = require("weir.json")
local type, ipairs, pairs, tostring, tonumber = type, ipairs, pairs, tostring, tonumber
local format, byte, sub, floor, min = string.format, string.byte, string.sub, math.floor, math.min
local concat, remove = table.concat, table.remove

local M = {}

M.PRODUCER = "https://weir.dev/weir"
M.SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
local FACETS = "https://openlineage.io/spec/facets/"
M.FACET_URLS = {
  schema = FACETS .. "1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
  outputStatistics = FACETS .. "1-0-2/OutputStatisticsOutputDatasetFacet.json"
                     .. "#/$defs/OutputStatisticsOutputDatasetFacet",
  parent = FACETS .. "1-0-1/ParentRunFacet.json#/$defs/ParentRunFacet",
  errorMessage = FACETS .. "1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
}

--- A UUID (version 8, RFC 9562: custom) derived from text: the same text
-- gives the same id.
function M.uuid(text)
  local h = require("weir.auth").sha256(text)
  local b = {}
  for i = 1, 16 do b[i] = byte(h, i) end
  b[7] = 0x80 + b[7] % 16          -- version 8
  b[9] = 0x80 + b[9] % 64          -- variant 10
  local hex = {}
  for i = 1, 16 do hex[i] = format("%02x", b[i]) end
  local s = concat(hex)
  return format("%s-%s-%s-%s-%s", sub(s, 1, 8), sub(s, 9, 12), sub(s, 13, 16), sub(s, 17, 20),
                sub(s, 21, 32))
end

--- An OpenLineage dataset's namespace and name for a weir dataset name
-- (docs/adr/0030): postgres://H:P and DB.SCHEMA.TABLE (OpenLineage's
-- naming for PostgreSQL), redis://H:P and DB/KEY, file and PATH, sqlite
-- and PATH#TABLE.
function M.split(name)
  local ns, db, rest = name:match("^(postgres://[^/]+)/([^/]+)/(.+)$")
  if ns then return ns, db .. "." .. rest end
  ns, rest = name:match("^(postgres://[^/]+)/(.+)$")
  if ns then return ns, rest end
  ns, rest = name:match("^(redis://[^/]+)/(.+)$")
  if ns then return ns, rest end
  rest = name:match("^file:(.+)$")
  if rest then return "file", rest end
  rest = name:match("^sqlite:(.+)$")
  if rest then return "sqlite", rest end
  return "weir", name
end

local function iso(ms)
  local s = floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%03dZ", floor(ms - s * 1000))
end
M.iso = iso

local function facet(kind, t)
  t._producer = M.PRODUCER
  t._schemaURL = M.FACET_URLS[kind]
  return t
end

local function array(t) return setmetatable(t or {}, json.array_mt) end

--- The event of kind ("START", "COMPLETE", "FAIL") for attempt o:
-- namespace, pipeline, task, run_id, attempt, at (ms), datasets (the
-- attempt's lineage entries: dataset, role, rows, columns), error.
function M.event(kind, o)
  local inputs, outputs = array(), array()
  for _, d in ipairs(o.datasets or {}) do
    local ns, name = M.split(d.dataset)
    local ds = { namespace = ns, name = name }
    if d.role == "output" then
      local facets = {}
      if type(d.columns) == "table" and #d.columns > 0 then
        local fields = array()
        for i, c in ipairs(d.columns) do fields[i] = { name = c.name, type = c.type } end
        facets.schema = facet("schema", { fields = fields })
      end
      if next(facets) then ds.facets = facets end
      ds.outputFacets = { outputStatistics = facet("outputStatistics", { rowCount = d.rows or 0 }) }
      outputs[#outputs + 1] = ds
    else
      inputs[#inputs + 1] = ds
    end
  end
  local run_facets = {
    parent = facet("parent", {
      run = { runId = M.uuid("weir-run/" .. o.run_id) },
      job = { namespace = o.namespace, name = o.pipeline },
    }),
  }
  if kind == "FAIL" and o.error then
    run_facets.errorMessage = facet("errorMessage", { message = tostring(o.error),
                                                      programmingLanguage = "lua" })
  end
  return {
    eventType = kind,
    eventTime = iso(o.at),
    run = { runId = M.uuid(format("weir-attempt/%s/%s/%d", o.run_id, o.task, o.attempt)),
            facets = run_facets },
    job = { namespace = o.namespace, name = o.pipeline .. "." .. o.task },
    inputs = inputs,
    outputs = outputs,
    producer = M.PRODUCER,
    schemaURL = M.SCHEMA_URL,
  }
end

-- The exporter -------------------------------------------------------------

local E = {}
E.__index = E

--- An exporter for the normalized `openlineage` settings of weir.yaml
-- (weir.config: transport, path or url, endpoint, api_key, namespace,
-- timeout_ms, retries, max_queue, flush_timeout_ms). o: mono() (ms),
-- post(url, body, headers, timeout_ms) -> status or nil, err (default:
-- weir.client.post), append(path, text) -> true or nil, err, redact,
-- live (deliver over HTTP between steps, not only at flush()).
function M.new(cfg, o)
  o = o or {}
  local self = setmetatable({
    cfg = cfg, queue = {}, sent = 0, dropped = 0, last_error = nil,
    reported_sent = 0, reported_dropped = 0,
    mono = o.mono or require("weir.executor").mono,
    post = o.post or function(...) return require("weir.client").post(...) end,
    append = o.append or M.append,
    redact = o.redact or function(s) return s end,
    next_try = 0, live = o.live,
  }, E)
  self.target = cfg.transport == "http" and (cfg.url .. cfg.endpoint) or ("file " .. cfg.path)
  return self
end

--- Append text to the file at path (created 0600 if missing).
function M.append(path, text)
  local f, err = io.open(path, "ab")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  f:close()
  if not ok then return nil, werr end
  return true
end

--- Queue an event (a table); dropped and counted when the queue is full.
function E:push(ev)
  if #self.queue >= self.cfg.max_queue then
    self.dropped = self.dropped + 1
    self.last_error = "queue full"
    return false
  end
  self.queue[#self.queue + 1] = { body = self.redact(json.encode(ev)), tries = 0 }
  return true
end

local function attempt_of(self, e, t, at)
  return { namespace = self.cfg.namespace, pipeline = e.P.name, task = t.name,
           run_id = e.run_id, attempt = t.attempt, at = at }
end

--- weir.engine: attempt t of engine e was sent to a worker at at (ms).
function E:started(e, t, at)
  local o = attempt_of(self, e, t, at)
  o.datasets = {}
  self:push(M.event("START", o))
end

--- weir.engine: attempt t ended with status at at (ms), having used
-- datasets (lineage entries, may be nil); err: why it failed.
function E:finished(e, t, status, at, datasets, err)
  local o = attempt_of(self, e, t, at)
  o.datasets, o.error = datasets, err
  self:push(M.event(status == "success" and "COMPLETE" or "FAIL", o))
end

--- Deliver queued events. The file transport writes them all; the HTTP
-- transport sends in order while they succeed, and after a failure waits
-- (backoff 0.5 s, doubling, at most 30 s) before it tries again; an
-- event that failed retries + 1 times is dropped. Returns the number left.
function E:pump()
  local q, cfg = self.queue, self.cfg
  if #q == 0 then return 0 end
  if cfg.transport == "file" then
    local lines = {}
    for i, item in ipairs(q) do lines[i] = item.body end
    local ok, err = self.append(cfg.path, concat(lines, "\n") .. "\n")
    if ok then
      self.sent = self.sent + #q
      self.queue = {}
    else
      self.dropped = self.dropped + #q
      self.last_error = tostring(err)
      self.queue = {}
    end
    return 0
  end
  while #q > 0 and self.mono() >= self.next_try do
    local item = q[1]
    local headers = { "Content-Type: application/json" }
    if cfg.api_key then headers[2] = "Authorization: Bearer " .. cfg.api_key end
    local status, err = self.post(cfg.url .. cfg.endpoint, item.body, headers, cfg.timeout_ms)
    if status and status >= 200 and status < 300 then
      remove(q, 1)
      self.sent = self.sent + 1
    else
      item.tries = item.tries + 1
      self.last_error = self.redact(status and ("HTTP " .. status) or tostring(err))
      self.next_try = self.mono() + min(30000, 500 * 2 ^ (item.tries - 1))
      if item.tries > cfg.retries or (status and status >= 400 and status < 500
                                      and status ~= 408 and status ~= 429) then
        -- out of retries, or refused as it is (a 4xx other than 408/429)
        remove(q, 1)
        self.dropped = self.dropped + 1
        self.next_try = 0
      end
      break
    end
  end
  return #q
end

--- Between steps: the file transport writes what is queued; the HTTP
-- transport sends only when the exporter is live (weir serve, whose loop
-- never ends; weir run sends when the run is over, flush).
function E:tick()
  if #self.queue > 0 and (self.live or self.cfg.transport == "file") then self:pump() end
end

--- Deliver what is queued until it is done or flush_timeout passed (the
-- waits between retries count); what is left is dropped and counted.
function E:flush()
  local deadline = self.mono() + self.cfg.flush_timeout_ms
  while #self.queue > 0 and self.mono() < deadline do
    if self:pump() == 0 then break end
    local wait = self.next_try - self.mono()
    if wait > 0 then
      if self.mono() + wait >= deadline then break end
      require("weir.executor").sleep(floor(wait))
    end
  end
  if #self.queue > 0 then
    self.dropped = self.dropped + #self.queue
    self.last_error = self.last_error or "not delivered within flush_timeout"
    self.queue = {}
  end
end

--- Add what was sent and dropped since the last report to the store's
-- counters (weir health shows them). Never raises.
function E:report(store, now)
  local ds, dd = self.sent - self.reported_sent, self.dropped - self.reported_dropped
  if ds == 0 and dd == 0 then return end
  local ok = pcall(function()
    store:begin()
    store:export_count(self.target, ds, dd, dd > 0 and self.last_error or nil, now)
    store:commit()
  end)
  if ok then
    self.reported_sent, self.reported_dropped = self.sent, self.dropped
  else
    pcall(store.rollback, store)
  end
end

--- One line about the export, or nil when every event was delivered.
function E:summary()
  if self.dropped == 0 then return nil end
  return format("openlineage: %d event(s) sent to %s, %d dropped (%s)", self.sent, self.target,
                self.dropped, tostring(self.last_error))
end

-- settings -------------------------------------------------------------------

M.DEFAULTS = { namespace = "weir", endpoint = "/api/v1/lineage", timeout_ms = 2000,
               retries = 3, max_queue = 10000, flush_timeout_ms = 10000 }

--- weir.yaml's `openlineage` mapping checked (errors through add(path,
-- message)) and normalized; dir: weir.yaml's folder (a relative path is
-- taken from there). Returns the settings, or nil.
function M.normalize(c, dir, add)
  if type(c) ~= "table" then return nil end
  local util = require("weir.util")
  local d = M.DEFAULTS
  local s = {}
  for k, v in pairs(d) do s[k] = v end
  s.transport = c.transport
  if type(c.namespace) == "string" and c.namespace ~= "" then s.namespace = c.namespace end
  if c.transport == "file" then
    if type(c.path) ~= "string" or c.path == "" then
      add("openlineage.path", "the file transport needs a path (a JSON Lines file)")
    else
      s.path = sub(c.path, 1, 1) == "/" and c.path or util.join(dir or ".", c.path)
    end
  elseif c.transport == "http" then
    local url = type(c.url) == "string" and c.url or ""
    local auth = url:match("^https?://([^/]*)")
    if not auth or auth == "" or auth:find("@", 1, true) then
      add("openlineage.url", "expected http(s)://HOST[:PORT][/PATH] (no user or password in the "
                             .. "URL: put a token in api_key)")
    else
      s.url = url:gsub("/+$", "")
    end
    if c.endpoint ~= nil then
      if type(c.endpoint) ~= "string" or sub(c.endpoint, 1, 1) ~= "/" then
        add("openlineage.endpoint", "expected a path starting with /")
      else
        s.endpoint = c.endpoint
      end
    end
    if type(c.api_key) == "string" and c.api_key ~= "" then s.api_key = c.api_key end
  else
    add("openlineage.transport", "expected file or http")
  end
  for _, k in ipairs({ "timeout", "flush_timeout" }) do
    if c[k] ~= nil then
      local v, err = util.duration(c[k])
      if v and v > 0 then s[k .. "_ms"] = floor(v * 1000)
      else add("openlineage." .. k, err or "expected a positive duration") end
    end
  end
  for _, k in ipairs({ "retries", "max_queue" }) do
    if c[k] ~= nil then
      local v = tonumber(c[k])
      if not v or v ~= floor(v) or v < (k == "retries" and 0 or 1) or v > 1e6 then
        add("openlineage." .. k, format("expected an integer %d..1000000",
                                        k == "retries" and 0 or 1))
      else
        s[k] = v
      end
    end
  end
  return s
end

return M
