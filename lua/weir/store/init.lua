-- weir.store: the metadata store interface.
--
-- A backend implements: migrate(), schema_version(), begin(), commit(),
-- rollback(), pipeline_version(name, kind, path, source, hash, now) ->
-- version_id, pipeline_id, create_run(run), update_run(id, fields),
-- add_tasks(run_id, names), set_task(run_id, task, fields),
-- start_attempt, finish_attempt, task_succeeded (the engine's hot path),
-- checkpoint() (after a run), update_attempt(run_id, task, attempt, fields),
-- runs(limit, pipeline), run(id), tasks(run_id), attempts(run_id),
-- version(id), reachable_by(connections) (a message naming a weir.yaml
-- connection through which tasks could reach the store, or nil), close().
--
-- Lineage (migration 8, docs/adr/0030):
--   add_lineage(run_id, task, attempt, pipeline, status, at, datasets):
--     one row per entry { dataset, role ("input"|"output"), rows,
--     columns ({ name, type } list, optional) } of the attempt, which
--     ended with status at time at (ms).
--   dataset_writes_after(after_id, limit) -> { id, dataset, run_id,
--     pipeline, task, at (unix seconds) } for every dataset an attempt
--     that succeeded wrote, id > after_id (0 or nil: from the start),
--     id ascending, at most limit (default 100). ids increase in commit
--     order, so a reader that keeps the last id it saw misses none.
--   lineage_run(run_id) -> the run's rows { id, task, attempt, pipeline,
--     status, dataset, role, rows, columns (decoded), at (ms) } by id.
--   lineage_edges() -> { pipeline, task, dataset, role, runs, last_at }:
--     who read and wrote what, over the attempts that succeeded.
--   export_count(target, sent, dropped, last_error, now) adds to the
--     OpenLineage export's counters of target; export_stats() -> { target,
--     sent, dropped, last_error, updated_at } by target.
--
-- For weir serve (migration 3):
--   pipelines() -> { name, id, created_at, versions (count),
--     latest_version_id (the last stored) } by name;
--     versions(pipeline) -> { id, hash, kind, path, created_at } newest
--     first (no source; version(id) has it), {} for an unknown name.
--   runs_by_status(status, limit) -> runs (with pipeline) oldest first
--     (created_at, then id): the durable queue; limit nil is all.
--   runs_page({ pipeline, status, since, until_, limit, after }) -> rows,
--     next: newest first (created_at DESC, id DESC), filters optional
--     (since <= created_at < until_), limit default 20; next is an opaque
--     cursor for `after` (nil after the last page). A cursor this store
--     did not make raises an error value with code "invalid".
--   claim_queued(id, supervisor_pid, supervisor_id) -> true when the run
--     was queued and is now running under this supervisor, false when
--     another took it or it is not queued (atomic; on PostgreSQL it also
--     takes the run's advisory lock, as update_run(status = running)).
--   users_add(name, role, password_hash, now, pipelines); user(name) ->
--     { name, role, password_hash, disabled (boolean), created_at,
--     pipelines } or nil (pipelines: the JSON array of the names the user
--     may see, as text, or absent: all); users() ->
--     the same without password_hash, by name; user_set_disabled(name,
--     disabled) -> false when no such user.
--   key_add({ id, name, role, hash, created_at, pipelines }); key(id) ->
--     { id, name, role, hash, created_at, revoked_at, last_used_at,
--     pipelines } or nil; keys() ->
--     the same without hash, by created_at; key_revoke(id, now) -> false
--     when no such key (a revoked key keeps its first revoked_at);
--     key_used(id, now) (last_used_at only moves forward).
--   principals() -> enabled users + unrevoked keys.
--   audit_add({ at, principal, address, method, path, status, outcome,
--     request_id, detail }) -> its id (increasing, never reused); at,
--     method, path and outcome are required. audit(limit, before_id) ->
--     rows newest first (id DESC), those below before_id when given.
--   idem_get(scope, key) -> { scope, key, body_hash, run_id, created_at }
--     or nil; idem_put(scope, key, body_hash, run_id, now); idem_prune(
--     before_ms) -> how many keys created before it were deleted.
--   hook_claim(pipeline, sigs, t) -> true when none of the webhook
--     signatures sigs was claimed before (all are recorded), false for a
--     replay; hook_prune(t) -> how many older than t were forgotten.
-- users_add, key_add and idem_put raise an error value with code
-- "conflict" when the name, id or (scope, key) exists; nothing else is
-- written then, and an open transaction stays usable. Single-statement
-- writes join the caller's begin()/commit() when one is open and stand
-- alone otherwise; claim_queued opens its own (nested when one is open).
-- Rows are tables keyed by column name; SQL NULL is an absent field; times
-- are numbers (ms).
--
-- Backends, chosen by WEIR_METADATA_URL:
--   unset or empty        SQLite at WEIR_HOME/weir.db (weir.store.sqlite)
--   sqlite:PATH           SQLite at PATH
--   postgres://USER:PASSWORD@HOST:PORT/DB (or postgresql://)
--                         PostgreSQL (weir.store.postgres); several
--                         supervisors may share the database
-- For checks (migration 9): add_checks(run_id, task, attempt, results)
-- replaces that attempt's results (weir.checks: name, check, severity,
-- status, dataset, message, observed and samples as JSON text);
-- checks(run_id) -> rows by task, attempt, seq (the kind in `kind`);
-- M.check_views(rows) turns them into what weir show and the API give.
--
-- begin()/commit() nest; inside them run(id) is a claim: on PostgreSQL
-- the row stays locked until commit, on SQLite the write lock is held.
local M = {}

--- Check result rows (checks(run_id)) as shown: by "task\0attempt", a
-- JSON array of { name, check, severity, status, dataset, message,
-- observed, samples }, observed and samples decoded from their JSON text.
function M.check_views(rows)
  local json = require("weir.json")
  local out = {}
  for _, r in ipairs(rows) do
    local key = r.task .. "\0" .. r.attempt
    local list = out[key]
    if not list then list = setmetatable({}, json.array_mt); out[key] = list end
    list[#list + 1] = {
      name = r.name, check = r.kind, severity = r.severity, status = r.status,
      dataset = r.dataset, message = r.message,
      observed = r.observed and json.decode(r.observed),
      samples = r.samples and json.decode(r.samples) or nil,
    }
  end
  return out
end

--- The columns update_run, set_task and update_attempt may change, per
-- table: both backends build their UPDATE statements from these lists
-- only, never from callers' keys.
M.UPDATABLE = {
  runs = { "status", "started_at", "finished_at", "supervisor_pid", "supervisor_id", "error",
           "active_ms" },
  task_runs = { "state", "attempts", "output", "error", "started_at", "finished_at",
                "next_try_at", "rows_in", "rows_out" },
  attempts = { "status", "worker_pid", "started_at", "finished_at", "error", "output",
               "log", "mem_peak", "rows_in", "rows_out" },
}

--- An UPDATE builder for a backend: ph(k) is its k-th placeholder ("?" or
-- "$k"), conv (optional) converts each bound value. The returned
-- function(tbl, cols, fields, keycols, keys) gives the statement and its
-- values (n of them), or nil when fields set nothing. Columns come from the
-- fixed list cols, never from callers' keys (an unknown one raises); the
-- text is cached per table and set of columns (a bit mask), so the hot
-- path builds no strings.
function M.updater(ph, conv)
  local cache = {}
  return function(tbl, cols, fields, keycols, keys)
    local mask, bit_ = 0, 1
    local vals, n = {}, 0
    for i = 1, #cols do
      local v = fields[cols[i]]
      if v ~= nil then
        mask = mask + bit_
        n = n + 1
        vals[n] = conv and conv(v) or v
      end
      bit_ = bit_ * 2
    end
    local count = 0
    for _ in pairs(fields) do count = count + 1 end
    if count ~= n then
      for k in pairs(fields) do
        local known = false
        for i = 1, #cols do if cols[i] == k then known = true end end
        if not known then error("weir.store: unknown column " .. tostring(k), 4) end
      end
    end
    if n == 0 then return nil end
    local per = cache[tbl]
    if not per then per = {}; cache[tbl] = per end
    local sql = per[mask]
    if not sql then
      local sets, wh = {}, {}
      for i = 1, #cols do
        if fields[cols[i]] ~= nil then sets[#sets + 1] = cols[i] .. " = " .. ph(#sets + 1) end
      end
      for i, k in ipairs(keycols) do wh[i] = k .. " = " .. ph(n + i) end
      sql = "UPDATE " .. tbl .. " SET " .. table.concat(sets, ", ") .. " WHERE "
            .. table.concat(wh, " AND ")
      per[mask] = sql
    end
    for i = 1, #keys do vals[n + i] = keys[i] end
    return sql, vals, n + #keys
  end
end

--- A conflict: what exists already (an error value with code "conflict").
function M.conflict(what)
  error(require("weir.errors").new("conflict", what .. " already exists"), 0)
end

-- A cursor of runs_page: created_at (all 17 digits) and the run id, as
-- hex, so that it travels in a URL as it is.
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- The cursor after a row of runs_page.
function M.cursor(row)
  return hex(string.format("%.17g", row.created_at) .. " " .. row.id)
end

--- created_at, id of a cursor from M.cursor; raises an error value with
-- code "invalid" for anything else.
function M.uncursor(c)
  local s = type(c) == "string" and #c % 2 == 0 and not c:find("[^%x]")
    and c:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
  local at, id = (s or ""):match("^(%S+) (.+)$")
  at = tonumber(at)
  if not at or at ~= at or at == math.huge or at == -math.huge then
    error(require("weir.errors").new("invalid", "not a cursor of this run list: start again "
                                     .. "from the first page"), 0)
  end
  return at, id
end

--- The statement of runs_page q for a backend: ph(k) is its k-th
-- placeholder, id its expression that orders run ids (PostgreSQL: in
-- bytes, as SQLite). Returns sql, values, n, limit. The text comes from
-- fixed parts only, one per filter given (cached); values are bound.
function M.pager(ph, id)
  local cache = {}
  local parts = {
    { "pipeline", "r.pipeline_id = (SELECT id FROM pipelines WHERE name = %s)" },
    { "status", "r.status = %s" },
    { "since", "r.created_at >= %s" },
    { "until_", "r.created_at < %s" },
  }
  return function(q)
    local limit = q.limit or 20
    if type(limit) ~= "number" or limit < 1 or limit % 1 ~= 0 then
      error("weir.store.runs_page: limit must be a positive integer", 3)
    end
    local vals, n, mask = {}, 0, 0
    for i, p in ipairs(parts) do
      local v = q[p[1]]
      if v ~= nil then
        n = n + 1
        vals[n] = v
        mask = mask + 2 ^ (i - 1)
      end
    end
    if q.after ~= nil then
      vals[n + 1], vals[n + 2] = M.uncursor(q.after)
      n = n + 2
      mask = mask + 16
    end
    -- one row more than asked: whether there is a next page
    n = n + 1
    vals[n] = limit + 1
    vals.n = n
    local sql = cache[mask]
    if not sql then
      local wh, k = {}, 0
      for _, p in ipairs(parts) do
        if q[p[1]] ~= nil then
          k = k + 1
          wh[#wh + 1] = string.format(p[2], ph(k))
        end
      end
      if q.after ~= nil then
        wh[#wh + 1] = string.format("(r.created_at, %s) < (%s, %s)", id, ph(k + 1), ph(k + 2))
        k = k + 2
      end
      sql = "SELECT r.*, p.name AS pipeline FROM runs r JOIN pipelines p ON p.id = r.pipeline_id"
        .. (#wh > 0 and " WHERE " .. table.concat(wh, " AND ") or "")
        .. " ORDER BY r.created_at DESC, " .. id .. " DESC LIMIT " .. ph(k + 1)
      cache[mask] = sql
    end
    return sql, vals, n, limit
  end
end

--- rows, next cursor of a page read with limit + 1 rows.
function M.page(rows, limit)
  if #rows <= limit then return rows, nil end
  rows[#rows] = nil
  return rows, M.cursor(rows[#rows])
end

--- Open the store for a weir home directory (created if missing). url
-- defaults to WEIR_METADATA_URL. Returns the store, or nil, err; err never
-- quotes the URL (it may hold a password).
function M.open(home, url)
  url = url or os.getenv("WEIR_METADATA_URL")
  if url == nil or url == "" then
    return require("weir.store.sqlite").open(home .. "/weir.db")
  end
  local path = url:match("^sqlite:(.+)$")
  if path then return require("weir.store.sqlite").open(path) end
  local scheme = url:match("^([%a][%w+.-]*)://")
  scheme = scheme and scheme:lower()
  if scheme == "postgres" or scheme == "postgresql" then
    return require("weir.store.postgres").open(url)
  end
  return nil, "WEIR_METADATA_URL: expected sqlite:PATH, postgres:// or postgresql://"
end

--- The columns of a lineage entry as stored (JSON text), or nil.
function M.columns_text(columns)
  if type(columns) ~= "table" or #columns == 0 then return nil end
  return require("weir.json").encode(columns)
end

-- The statements of the lineage readers ($k placeholders; SQLite's
-- backend turns them into ?).
M.WRITES_SQL = "SELECT id, dataset, run_id, pipeline, task, at FROM lineage WHERE id > $1 "
  .. "AND role = 'output' AND status = 'success' ORDER BY id LIMIT $2"
M.RUN_LINEAGE_SQL = "SELECT id, task, attempt, pipeline, status, dataset, role, rows, columns, "
  .. "at FROM lineage WHERE run_id = $1 ORDER BY id"
M.EDGES_SQL = "SELECT pipeline, task, dataset, role, count(DISTINCT run_id) AS runs, "
  .. "max(at) AS last_at FROM lineage WHERE status = 'success' "
  .. "GROUP BY pipeline, task, dataset, role"

--- Rows of WRITES_SQL as dataset_writes_after returns them (at in s).
function M.writes_rows(rows)
  for _, r in ipairs(rows) do r.at = r.at / 1000 end
  return rows
end

--- Rows of EDGES_SQL by pipeline, task, dataset and role, as bytes (the
-- same order on every backend, whatever its collation).
function M.edges_rows(rows)
  table.sort(rows, function(a, b)
    if a.pipeline ~= b.pipeline then return a.pipeline < b.pipeline end
    if a.task ~= b.task then return a.task < b.task end
    if a.dataset ~= b.dataset then return a.dataset < b.dataset end
    return a.role < b.role
  end)
  return rows
end

--- Rows of RUN_LINEAGE_SQL with their columns decoded.
function M.lineage_rows(rows)
  for _, r in ipairs(rows) do
    if r.columns then r.columns = require("weir.json").decode(r.columns) end
  end
  return rows
end

return M
