-- weir.store: the metadata store interface.
--
-- A backend implements: migrate(), schema_version(), begin(), commit(),
-- rollback(), pipeline_version(name, kind, path, source, hash, now) ->
-- version_id, pipeline_id, create_run(run), update_run(id, fields),
-- add_tasks(run_id, names), set_task(run_id, task, fields),
-- start_attempt, finish_attempt, task_succeeded (the engine's hot path),
-- checkpoint(), update_attempt(run_id, task, attempt, fields),
-- runs(limit, pipeline), run(id), tasks(run_id), attempts(run_id),
-- version(id), close(). Rows are tables keyed by column name; SQL NULL is
-- an absent field; times are numbers (ms).
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
  runs = { "status", "started_at", "finished_at", "supervisor_pid", "error" },
  task_runs = { "state", "attempts", "output", "error", "started_at", "finished_at",
                "next_try_at", "rows_in", "rows_out" },
  attempts = { "status", "worker_pid", "started_at", "finished_at", "error", "output",
               "log", "mem_peak", "rows_in", "rows_out" },
}

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
