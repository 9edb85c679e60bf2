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
-- Rows are tables keyed by column name; SQL NULL is an absent field; times
-- are numbers (ms).
--
-- Backends, chosen by WEIR_METADATA_URL:
--   unset or empty        SQLite at WEIR_HOME/weir.db (weir.store.sqlite)
--   sqlite:PATH           SQLite at PATH
--   postgres://USER:PASSWORD@HOST:PORT/DB (or postgresql://)
--                         PostgreSQL (weir.store.postgres); several
--                         supervisors may share the database
-- begin()/commit() nest; inside them run(id) is a claim: on PostgreSQL
-- the row stays locked until commit, on SQLite the write lock is held.
local M = {}

--- The columns update_run, set_task and update_attempt may change, per
-- table: both backends build their UPDATE statements from these lists
-- only, never from callers' keys.
M.UPDATABLE = {
  runs = { "status", "started_at", "finished_at", "supervisor_pid", "supervisor_id", "error" },
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

return M
