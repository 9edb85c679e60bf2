-- weir.store: the metadata store interface.
--
-- A backend implements: migrate(), begin(), commit(), rollback(),
-- pipeline_version(name, kind, path, source, hash) -> version_id,
-- create_run(run), update_run(id, fields), add_tasks(run_id, names),
-- set_task(run_id, task, fields), start_attempt, finish_attempt,
-- task_succeeded (the engine's hot path), checkpoint(),
-- update_attempt(run_id, task, attempt, fields),
-- runs(limit), run(id), tasks(run_id), attempts(run_id), version(id),
-- close(). Today: SQLite (default). WEIR_METADATA_URL selects another
-- backend once one exists (PostgreSQL is planned in the connectors issue).
local M = {}

--- Open the store for a weir home directory (created if missing).
function M.open(home)
  local url = os.getenv("WEIR_METADATA_URL")
  if url and url ~= "" and not url:match("^sqlite:") then
    return nil, "WEIR_METADATA_URL: only sqlite: URLs are supported in this build"
  end
  local path = url and url:match("^sqlite:(.+)$") or (home .. "/weir.db")
  return require("weir.store.sqlite").open(path)
end

return M
