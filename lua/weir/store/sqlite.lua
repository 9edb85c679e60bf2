-- weir.store.sqlite: the metadata store on SQLite (WAL).
--
-- Versioned migrations; pipelines with immutable versions (source hash);
-- runs pinned to a version; one row per task of a run and one per attempt.
-- The engine batches the changes of one step in a transaction and commits
-- before acting on them, so a killed supervisor leaves a resumable run.
local db_mod = require("weir.connectors.sqlite")
local errors = require("weir.errors")
local STORE = require("weir.store")

local M = {}
local S = {}
S.__index = S

M.MIGRATIONS = {
  [1] = [[
    CREATE TABLE pipelines (
      id INTEGER PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      created_at REAL NOT NULL
    );
    CREATE TABLE pipeline_versions (
      id INTEGER PRIMARY KEY,
      pipeline_id INTEGER NOT NULL REFERENCES pipelines(id),
      hash TEXT NOT NULL,
      kind TEXT NOT NULL,
      path TEXT NOT NULL,
      source TEXT NOT NULL,
      created_at REAL NOT NULL,
      UNIQUE (pipeline_id, hash)
    );
    CREATE TABLE runs (
      id TEXT PRIMARY KEY,
      pipeline_id INTEGER NOT NULL REFERENCES pipelines(id),
      version_id INTEGER NOT NULL REFERENCES pipeline_versions(id),
      status TEXT NOT NULL,
      params TEXT NOT NULL,
      options TEXT NOT NULL,
      created_at REAL NOT NULL,
      started_at REAL,
      finished_at REAL,
      supervisor_pid INTEGER,
      error TEXT
    );
    CREATE INDEX runs_created ON runs(created_at);
    CREATE TABLE task_runs (
      run_id TEXT NOT NULL REFERENCES runs(id),
      task TEXT NOT NULL,
      state TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      output TEXT,
      error TEXT,
      started_at REAL,
      finished_at REAL,
      next_try_at REAL,
      rows_in INTEGER NOT NULL DEFAULT 0,
      rows_out INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (run_id, task)
    ) WITHOUT ROWID;
    CREATE TABLE attempts (
      run_id TEXT NOT NULL REFERENCES runs(id),
      task TEXT NOT NULL,
      attempt INTEGER NOT NULL,
      status TEXT NOT NULL,
      worker_pid INTEGER,
      started_at REAL,
      finished_at REAL,
      error TEXT,
      output TEXT,
      log TEXT,
      mem_peak INTEGER,
      rows_in INTEGER,
      rows_out INTEGER,
      PRIMARY KEY (run_id, task, attempt)
    ) WITHOUT ROWID;
  ]],
  -- the supervisor's process identity (weir_ffi_proc_identity), so that a
  -- reused pid does not pass for a live supervisor
  [2] = [[ALTER TABLE runs ADD COLUMN supervisor_id TEXT]],
  -- weir serve: users, API keys (hashed), the audit log, idempotency keys
  -- of triggers; runs listed by status (the queue) and by pipeline, pages
  -- ordered by (created_at, id)
  [3] = [[
    CREATE TABLE users (
      name TEXT PRIMARY KEY,
      role TEXT NOT NULL,
      password_hash TEXT NOT NULL,
      disabled INTEGER NOT NULL DEFAULT 0,
      created_at REAL NOT NULL
    );
    CREATE TABLE api_keys (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      role TEXT NOT NULL,
      hash TEXT NOT NULL,
      created_at REAL NOT NULL,
      revoked_at REAL,
      last_used_at REAL
    );
    CREATE TABLE audit_log (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      at REAL NOT NULL,
      principal TEXT,
      address TEXT,
      method TEXT NOT NULL,
      path TEXT NOT NULL,
      status INTEGER,
      outcome TEXT NOT NULL,
      request_id TEXT,
      detail TEXT
    );
    CREATE TABLE idempotency_keys (
      scope TEXT NOT NULL,
      key TEXT NOT NULL,
      body_hash TEXT NOT NULL,
      run_id TEXT,
      created_at REAL NOT NULL,
      PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);
    DROP INDEX runs_created;
    CREATE INDEX runs_created ON runs(created_at, id);
    CREATE INDEX runs_status ON runs(status, created_at, id);
    CREATE INDEX runs_pipeline ON runs(pipeline_id, created_at, id);
  ]],
  -- the pipelines a user or key may see (a JSON array of names; NULL:
  -- all of them)
  [4] = [[
    ALTER TABLE users ADD COLUMN pipelines TEXT;
    ALTER TABLE api_keys ADD COLUMN pipelines TEXT;
  ]],
  -- the webhook signatures already accepted (replays are refused across
  -- restarts and servers; rows older than the window are pruned)
  [5] = [[
    CREATE TABLE hook_seen (
      pipeline TEXT NOT NULL,
      sig TEXT NOT NULL,
      t REAL NOT NULL,
      PRIMARY KEY (pipeline, sig)
    ) WITHOUT ROWID;
    CREATE INDEX hook_seen_t ON hook_seen (t);
  ]],
  -- schedules: each (pipeline, logical time) fired once, ever; a run
  -- carries its logical time; a schedule can be paused
  [6] = [[
    CREATE TABLE fires (
      pipeline_id INTEGER NOT NULL REFERENCES pipelines(id),
      logical_time REAL NOT NULL,
      kind TEXT NOT NULL,
      run_id TEXT,
      created_at REAL NOT NULL,
      PRIMARY KEY (pipeline_id, logical_time)
    ) WITHOUT ROWID;
    CREATE TABLE schedules (
      pipeline_id INTEGER PRIMARY KEY REFERENCES pipelines(id),
      paused INTEGER NOT NULL DEFAULT 0,
      since REAL NOT NULL,
      last_fire REAL
    );
    ALTER TABLE runs ADD COLUMN logical_time REAL;
  ]],
  -- triggers other than the clock (after, files, datasets): each fire's
  -- key (what caused it) recorded once, ever; each trigger's cursor
  [7] = [[
    CREATE TABLE trigger_fires (
      pipeline_id INTEGER NOT NULL REFERENCES pipelines(id),
      kind TEXT NOT NULL,
      key TEXT NOT NULL,
      run_id TEXT,
      created_at REAL NOT NULL,
      PRIMARY KEY (pipeline_id, kind, key)
    ) WITHOUT ROWID;
    CREATE TABLE trigger_state (
      pipeline_id INTEGER NOT NULL REFERENCES pipelines(id),
      kind TEXT NOT NULL,
      state TEXT NOT NULL,
      PRIMARY KEY (pipeline_id, kind)
    ) WITHOUT ROWID;
    CREATE INDEX runs_success ON runs (pipeline_id, finished_at) WHERE status = 'success';
  ]],
  -- lineage: the datasets each attempt read and wrote (docs/adr/0030);
  -- ids increase in commit order (AUTOINCREMENT, one writer at a time);
  -- what the OpenLineage export sent and dropped, per target
  [8] = [[
    CREATE TABLE lineage (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      run_id TEXT NOT NULL,
      task TEXT NOT NULL,
      attempt INTEGER NOT NULL,
      pipeline TEXT NOT NULL,
      status TEXT NOT NULL,
      dataset TEXT NOT NULL,
      role TEXT NOT NULL,
      rows INTEGER NOT NULL,
      columns TEXT,
      at REAL NOT NULL
    );
    CREATE INDEX lineage_dataset ON lineage (dataset);
    CREATE INDEX lineage_run ON lineage (run_id);
    CREATE TABLE lineage_export (
      target TEXT PRIMARY KEY,
      sent INTEGER NOT NULL DEFAULT 0,
      dropped INTEGER NOT NULL DEFAULT 0,
      last_error TEXT,
      updated_at REAL NOT NULL
    );
  ]],
  -- what each attempt's data-quality checks found (weir.checks)
  [9] = [[
    CREATE TABLE check_results (
      run_id TEXT NOT NULL REFERENCES runs(id),
      task TEXT NOT NULL,
      attempt INTEGER NOT NULL,
      seq INTEGER NOT NULL,
      name TEXT NOT NULL,
      kind TEXT NOT NULL,
      severity TEXT NOT NULL,
      status TEXT NOT NULL,
      dataset TEXT,
      observed TEXT,
      message TEXT,
      samples TEXT,
      PRIMARY KEY (run_id, task, attempt, seq)
    ) WITHOUT ROWID;
  ]],
  -- the versions of a pipeline a run ran: weir retry --reload adds one
  -- (n 2, 3...; n 1 is the version the run was created with), and an
  -- attempt ran the latest one that started before it
  [10] = [[
    CREATE TABLE run_versions (
      run_id TEXT NOT NULL REFERENCES runs(id),
      n INTEGER NOT NULL,
      version_id INTEGER NOT NULL REFERENCES pipeline_versions(id),
      since REAL NOT NULL,
      PRIMARY KEY (run_id, n)
    ) WITHOUT ROWID;
    ALTER TABLE runs ADD COLUMN active_ms REAL;
  ]],
}
--- The newest migration's number (the list may have gaps: numbers are
-- given out per change, and a gap is skipped).
M.LATEST = table.maxn(M.MIGRATIONS)

-- A store error: code "store", and for a damaged file what to do.
local function store_error(path, err)
  if type(err) == "table" and err.code == "store" then return err end
  local msg = tostring(err)
  if msg:find("malformed", 1, true) or msg:find("not a database", 1, true) then
    msg = string.format("the metadata store %s is damaged (%s); recover what it holds with "
                        .. "`sqlite3 %s .recover | sqlite3 NEW.db` and put NEW.db in its "
                        .. "place, or move it away to start a new history", path, msg, path)
  end
  return errors.new("store", msg)
end



--- Open (creating) the store at path and apply pending migrations.
function M.open(path)
  -- outputs, logs, params and sources: for the owner only (SQLite gives
  -- the WAL and shared-memory files the database file's mode)
  local F = require("weir._ffi")
  for i, suffix in ipairs({ "", "-wal", "-shm" }) do
    if F.C.weir_ffi_private_file(path .. suffix, i == 1 and 1 or 0, F.errbuf, F.errlen) ~= 0 then
      return nil, errors.new("store", F.errmsg())
    end
  end
  local db, err = db_mod.open(path, { create = true, busy_ms = 10000, name = "metadata" })
  if not db then return nil, store_error(path, err) end
  local self = setmetatable({ db = db, path = path, depth = 0 }, S)
  -- a store another process is creating at this moment: switching it to
  -- WAL does not wait for its lock (SQLite answers "locked" at once), so
  -- try again for as long as the busy timeout would have waited
  local ex = require("weir.executor")
  local deadline = ex.mono() + 10000
  local ok, merr = pcall(S.migrate, self)
  while not ok and tostring(merr):find("database is locked", 1, true) and ex.mono() < deadline do
    ex.sleep(20)
    ok, merr = pcall(S.migrate, self)
  end
  if not ok then db:close(); return nil, store_error(path, merr) end
  return self
end

-- ok, or raise err as a store error naming this store's file.
function S:check(ok, err)
  if ok == nil then error(store_error(self.path, err), 0) end
  return ok
end

function S:migrate()
  local db = self.db
  self:check(db:exec("PRAGMA journal_mode=WAL"))
  self:check(db:exec("PRAGMA synchronous=" .. (os.getenv("WEIR_SYNC") == "full" and "FULL"
                                           or "NORMAL")))
  self:check(db:exec("PRAGMA foreign_keys=ON"))
  -- checkpoint the WAL every ~40 MB instead of every ~4 MB: a checkpoint
  -- syncs the database, and every engine step commits. Not at close: a
  -- run checkpoints when it ends if the WAL has grown (S:checkpoint)
  self:check(db:exec("PRAGMA wal_autocheckpoint=10000"))
  db:keep_wal()
  self:check(db:exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                .. "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"))
  -- an up-to-date store is opened without taking the write lock; otherwise
  -- the version is read again under it: two processes opening a new store
  -- at once must not both apply a migration
  local top = self:check(db:all("SELECT max(version) AS v FROM schema_migrations"))[1]
  if top and top.v == M.LATEST then return end
  for v = 1, M.LATEST do
    self:check(db:exec("BEGIN IMMEDIATE"))
    local row = self:check(db:all("SELECT max(version) AS v FROM schema_migrations"))[1]
    if (row and row.v or 0) >= v or not M.MIGRATIONS[v] then
      self:check(db:exec("COMMIT"))
    else
      local ok, err = db:exec(M.MIGRATIONS[v])
      if ok then ok, err = db:run("INSERT INTO schema_migrations VALUES (?, ?)", { v, os.time() }) end
      if not ok then db:exec("ROLLBACK"); error("migration " .. v .. ": " .. tostring(err), 0) end
      self:check(db:exec("COMMIT"))
    end
  end
end

--- The schema version in force.
function S:schema_version()
  return self:check(self.db:all("SELECT max(version) AS v FROM schema_migrations"))[1].v
end

-- BEGIN and COMMIT run once per engine step: cached statements, not
-- parsed again each time
function S:begin()
  self.depth = self.depth + 1
  if self.depth == 1 then self:check(self.db:run("BEGIN IMMEDIATE")) end
end

function S:commit()
  self.depth = self.depth - 1
  if self.depth == 0 then self:check(self.db:run("COMMIT")) end
end

function S:rollback()
  self.depth = 0
  self.db:exec("ROLLBACK")
end

--- The version id for this source of pipeline name (created if new).
function S:pipeline_version(name, kind, path, source, hash, now)
  local db = self.db
  self:begin()
  self:check(db:run("INSERT OR IGNORE INTO pipelines (name, created_at) VALUES (?, ?)", { name, now }))
  local pid = self:check(db:all("SELECT id FROM pipelines WHERE name = ?", { name }))[1].id
  self:check(db:run("INSERT OR IGNORE INTO pipeline_versions (pipeline_id, hash, kind, path, source, "
               .. "created_at) VALUES (?, ?, ?, ?, ?, ?)", { pid, hash, kind, path, source, now }))
  local vid = self:check(db:all("SELECT id FROM pipeline_versions WHERE pipeline_id = ? AND hash = ?",
                           { pid, hash }))[1].id
  self:commit()
  return vid, pid
end

--- Record that run_id runs version_id from since on (weir retry
-- --reload): its versions numbered 1 (the one it was created with), 2...
function S:add_run_version(run_id, version_id, since, first_version, created_at)
  local db = self.db
  self:check(db:run("INSERT OR IGNORE INTO run_versions (run_id, n, version_id, since) "
                    .. "VALUES (?, 1, ?, ?)", { run_id, first_version, created_at }))
  self:check(db:run("INSERT INTO run_versions (run_id, n, version_id, since) SELECT ?, "
                    .. "max(n) + 1, ?, ? FROM run_versions WHERE run_id = ?",
                    { run_id, version_id, since, run_id }))
  self:check(db:run("UPDATE runs SET version_id = ? WHERE id = ?", { version_id, run_id }))
end

--- The versions run_id ran, oldest first ({ n, version_id, since, hash });
-- empty for a run never reloaded.
function S:run_versions(run_id)
  return self:check(self.db:all("SELECT rv.n, rv.version_id, rv.since, v.hash FROM run_versions rv "
                                .. "JOIN pipeline_versions v ON v.id = rv.version_id "
                                .. "WHERE rv.run_id = ? ORDER BY rv.n", { run_id }))
end

function S:version(id)
  return self:check(self.db:all("SELECT v.*, p.name AS pipeline FROM pipeline_versions v "
                           .. "JOIN pipelines p ON p.id = v.pipeline_id WHERE v.id = ?",
                           { id }))[1]
end

local COLS = require("weir.store").UPDATABLE
local RUN_COLS, TASK_COLS, ATTEMPT_COLS = COLS.runs, COLS.task_runs, COLS.attempts

local build_update = require("weir.store").updater(function() return "?" end)
local function update(self, tbl, cols, fields, keycols, keys)
  local sql, vals, n = build_update(tbl, cols, fields, keycols, keys)
  if not sql then return end
  vals.n = n
  self:check(self.db:run(sql, vals))
end

function S:create_run(r)
  self:check(self.db:run("INSERT INTO runs (id, pipeline_id, version_id, status, params, options, "
                    .. "created_at, supervisor_pid, supervisor_id, logical_time) "
                    .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    { r.id, r.pipeline_id, r.version_id, r.status, r.params, r.options,
                      r.created_at, r.supervisor_pid, r.supervisor_id, r.logical_time, n = 10 }))
end

function S:update_run(id, fields)
  update(self, "runs", RUN_COLS, fields, { "id" }, { id })
end

--- Create the rows of a run's tasks, all queued: one statement (the
-- names travel as one JSON array), not one per task.
function S:add_tasks(run_id, names)
  self:check(self.db:run("INSERT OR IGNORE INTO task_runs (run_id, task, state) "
                    .. "SELECT ?, value, 'queued' FROM json_each(?)",
                    { run_id, require("weir._native").json_encode(names) }))
end

--- Update the row of task in run_id (created by add_tasks).
function S:set_task(run_id, task, fields)
  update(self, "task_runs", TASK_COLS, fields, { "run_id", "task" }, { run_id, task })
end

-- The engine's hot path, one fixed statement each.

--- A task starts attempt n: its row goes to running, an attempt row is
-- created (or replaced, for a re-queued attempt).
function S:start_attempt(run_id, task, n, started_at, task_started_at, worker_pid)
  local db = self.db
  self:check(db:run("UPDATE task_runs SET state = 'running', attempts = ?, started_at = ? "
               .. "WHERE run_id = ? AND task = ?", { n, task_started_at, run_id, task }))
  self:check(db:run("INSERT OR REPLACE INTO attempts (run_id, task, attempt, status, worker_pid, "
               .. "started_at) VALUES (?, ?, ?, 'running', ?, ?)",
               { run_id, task, n, worker_pid, started_at }))
end

--- Attempt n ended: r holds status, finished_at, error, output, log,
-- mem_peak, rows_in, rows_out (nil stores NULL).
function S:finish_attempt(run_id, task, n, r)
  self:check(self.db:run("UPDATE attempts SET status = ?, finished_at = ?, error = ?, output = ?, "
                    .. "log = ?, mem_peak = ?, rows_in = ?, rows_out = ? "
                    .. "WHERE run_id = ? AND task = ? AND attempt = ?",
                    { r.status, r.finished_at, r.error, r.output, r.log, r.mem_peak, r.rows_in,
                      r.rows_out, run_id, task, n, n = 11 }))
end

--- A task succeeded with output (JSON text).
function S:task_succeeded(run_id, task, output, finished_at, rows_in, rows_out)
  self:check(self.db:run("UPDATE task_runs SET state = 'success', output = ?, finished_at = ?, "
                    .. "error = NULL, rows_in = ?, rows_out = ? WHERE run_id = ? AND task = ?",
                    { output, finished_at, rows_in, rows_out, run_id, task, n = 6 }))
end

--- The results of attempt n's checks (weir.checks: name, check,
-- severity, status, dataset, observed and samples as JSON text, message).
function S:add_checks(run_id, task, n, list)
  local db = self.db
  self:check(db:run("DELETE FROM check_results WHERE run_id = ? AND task = ? AND attempt = ?",
                    { run_id, task, n }))
  for i, c in ipairs(list) do
    self:check(db:run("INSERT INTO check_results (run_id, task, attempt, seq, name, kind, "
                      .. "severity, status, dataset, observed, message, samples) "
                      .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      { run_id, task, n, i, c.name, c.check, c.severity, c.status, c.dataset,
                        c.observed, c.message, c.samples, n = 12 }))
  end
end

--- The check results of a run, by task, attempt and order.
function S:checks(run_id)
  return self:check(self.db:all("SELECT * FROM check_results WHERE run_id = ? "
                                .. "ORDER BY task, attempt, seq", { run_id }))
end

function S:update_attempt(run_id, task, attempt, fields)
  update(self, "attempts", ATTEMPT_COLS, fields, { "run_id", "task", "attempt" },
         { run_id, task, attempt })
end

--- nil: no connection of weir.yaml reaches a file; the worker pool keeps
-- the database's folder out of the file broker's reach (weir.run).
function S.reachable_by(_, _) return nil end

--- After a run: once the WAL has grown past WAL_FOLD bytes, fold it back
-- into the database and truncate it, so that it neither keeps the only
-- copy of many runs nor makes every later open replay much of it (about
-- 2 ms per 10 MB). Smaller WALs wait: a checkpoint syncs the database,
-- 10-40 ms. Readers are not waited for: if one is there, the next run
-- tries again.
local WAL_FOLD = 16 * 1024 * 1024

function S:checkpoint()
  if self.ckpt then return end -- the checkpoint thread's (background_checkpoints)
  local f = io.open(self.path .. "-wal", "rb")
  if not f then return end
  local size = f:seek("end")
  f:close()
  if (size or 0) < WAL_FOLD then return end
  local db = self.db
  db:exec("PRAGMA busy_timeout=0")
  db:exec("PRAGMA wal_checkpoint(TRUNCATE)")
  db:exec("PRAGMA busy_timeout=10000")
end

function S:runs(limit, pipeline)
  if pipeline then
    return self:check(self.db:all("SELECT r.*, p.name AS pipeline FROM runs r JOIN pipelines p "
                             .. "ON p.id = r.pipeline_id WHERE p.name = ? "
                             .. "ORDER BY r.created_at DESC LIMIT ?", { pipeline, limit or 20 }))
  end
  return self:check(self.db:all("SELECT r.*, p.name AS pipeline FROM runs r JOIN pipelines p "
                           .. "ON p.id = r.pipeline_id ORDER BY r.created_at DESC LIMIT ?",
                           { limit or 20 }))
end

--- The ids of at most 3 runs that begin with prefix.
function S:run_ids_with_prefix(prefix)
  local ids = {}
  for k, r in ipairs(self:check(self.db:all("SELECT id FROM runs WHERE substr(id, 1, ?) = ? "
                                            .. "ORDER BY id LIMIT 3", { #prefix, prefix }))) do
    ids[k] = r.id
  end
  return ids
end

function S:run(id)
  return self:check(self.db:all("SELECT r.*, p.name AS pipeline FROM runs r JOIN pipelines p "
                           .. "ON p.id = r.pipeline_id WHERE r.id = ?", { id }))[1]
end

function S:tasks(run_id)
  return self:check(self.db:all("SELECT * FROM task_runs WHERE run_id = ? ORDER BY task", { run_id }))
end

function S:attempts(run_id)
  return self:check(self.db:all("SELECT * FROM attempts WHERE run_id = ? ORDER BY task, attempt",
                           { run_id }))
end

-- weir serve ---------------------------------------------------------------

local conflict = STORE.conflict

function S:pipelines()
  return self:check(self.db:all("SELECT p.name, p.id, p.created_at, count(v.id) AS versions, "
                                .. "max(v.id) AS latest_version_id FROM pipelines p "
                                .. "LEFT JOIN pipeline_versions v ON v.pipeline_id = p.id "
                                .. "GROUP BY p.id ORDER BY p.name"))
end

function S:versions(pipeline)
  return self:check(self.db:all("SELECT v.id, v.hash, v.kind, v.path, v.created_at "
                                .. "FROM pipeline_versions v JOIN pipelines p "
                                .. "ON p.id = v.pipeline_id WHERE p.name = ? "
                                .. "ORDER BY v.created_at DESC, v.id DESC", { pipeline }))
end

function S:runs_by_status(status, limit)
  return self:check(self.db:all("SELECT r.*, p.name AS pipeline FROM runs r JOIN pipelines p "
                                .. "ON p.id = r.pipeline_id WHERE r.status = ? "
                                .. "ORDER BY r.created_at, r.id LIMIT ?", { status, limit or -1 }))
end

local page_sql = STORE.pager(function() return "?" end, "r.id")

function S:runs_page(q)
  local sql, vals, _, limit = page_sql(q or {})
  return STORE.page(self:check(self.db:all(sql, vals)), limit)
end

function S:claim_queued(id, supervisor_pid, supervisor_id)
  self:begin()
  local ok, n = pcall(function()
    return self:check(self.db:run("UPDATE runs SET status = 'running', supervisor_pid = ?, "
                                  .. "supervisor_id = ? WHERE id = ? AND status = 'queued'",
                                  { supervisor_pid, supervisor_id, id, n = 3 }))
  end)
  if not ok then self:rollback(); error(n, 0) end
  self:commit()
  return n == 1
end

-- users and API keys

local function user_row(r)
  if r then r.disabled = r.disabled ~= 0 end
  return r
end

function S:users_add(name, role, password_hash, now, pipelines)
  if self:check(self.db:run("INSERT INTO users (name, role, password_hash, created_at, "
                            .. "pipelines) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                            { name, role, password_hash, now, pipelines, n = 5 })) == 0 then
    conflict("user " .. tostring(name))
  end
end

function S:user(name)
  return user_row(self:check(self.db:all("SELECT * FROM users WHERE name = ?", { name }))[1])
end

function S:users()
  local rows = self:check(self.db:all("SELECT name, role, disabled, created_at, pipelines "
                                      .. "FROM users ORDER BY name"))
  for _, r in ipairs(rows) do user_row(r) end
  return rows
end

function S:user_set_disabled(name, disabled)
  return self:check(self.db:run("UPDATE users SET disabled = ? WHERE name = ?",
                                { disabled and 1 or 0, name })) == 1
end

function S:key_add(k)
  if self:check(self.db:run("INSERT INTO api_keys (id, name, role, hash, created_at, "
                            .. "pipelines) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                            { k.id, k.name, k.role, k.hash, k.created_at, k.pipelines,
                              n = 6 })) == 0 then
    conflict("API key " .. tostring(k.id))
  end
end

function S:key(id)
  return self:check(self.db:all("SELECT * FROM api_keys WHERE id = ?", { id }))[1]
end

function S:keys()
  return self:check(self.db:all("SELECT id, name, role, created_at, revoked_at, last_used_at, "
                                .. "pipelines FROM api_keys ORDER BY created_at, id"))
end

function S:key_revoke(id, now)
  return self:check(self.db:run("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) "
                                .. "WHERE id = ?", { now, id })) == 1
end

function S:key_used(id, now)
  self:check(self.db:run("UPDATE api_keys SET last_used_at = ? WHERE id = ? "
                         .. "AND (last_used_at IS NULL OR last_used_at < ?)", { now, id, now }))
end

function S:principals()
  return self:check(self.db:all("SELECT (SELECT count(*) FROM users WHERE disabled = 0) + "
                                .. "(SELECT count(*) FROM api_keys WHERE revoked_at IS NULL) "
                                .. "AS n"))[1].n
end

-- the audit log

function S:audit_add(a)
  return self:check(self.db:all("INSERT INTO audit_log (at, principal, address, method, path, "
                                .. "status, outcome, request_id, detail) "
                                .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                                { a.at, a.principal, a.address, a.method, a.path, a.status,
                                  a.outcome, a.request_id, a.detail, n = 9 }))[1].id
end

function S:audit(limit, before_id)
  if before_id then
    return self:check(self.db:all("SELECT * FROM audit_log WHERE id < ? ORDER BY id DESC "
                                  .. "LIMIT ?", { before_id, limit or 20 }))
  end
  return self:check(self.db:all("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?",
                                { limit or 20 }))
end

-- idempotency keys of triggers

function S:idem_get(scope, key)
  return self:check(self.db:all("SELECT * FROM idempotency_keys WHERE scope = ? AND key = ?",
                                { scope, key }))[1]
end

function S:idem_put(scope, key, body_hash, run_id, now)
  if self:check(self.db:run("INSERT INTO idempotency_keys (scope, key, body_hash, run_id, "
                            .. "created_at) VALUES (?, ?, ?, ?, ?) "
                            .. "ON CONFLICT (scope, key) DO NOTHING",
                            { scope, key, body_hash, run_id, now, n = 5 })) == 0 then
    conflict("idempotency key")
  end
end

function S:idem_prune(before_ms)
  return self:check(self.db:run("DELETE FROM idempotency_keys WHERE created_at < ?",
                                { before_ms }))
end

--- A long-running writer (weir serve): the WAL is checkpointed by a
-- thread of its own every second instead of inside a commit, so a commit
-- never waits for a checkpoint and its syncs (tens of ms on a slow disk).
function S:background_checkpoints()
  if self.ckpt then return end
  -- start from an empty WAL: a large one costs memory and time at every
  -- open (its index is rebuilt from it)
  self.db:exec("PRAGMA wal_checkpoint(TRUNCATE)")
  local F = require("weir._ffi")
  local out = F.ffi.new("weir_checkpointer *[1]")
  self:check(F.check(F.C.weir_ffi_db_checkpointer_start(self.path, 1000, out, F.errbuf,
                                                        F.errlen)))
  self.ckpt = F.ffi.gc(out[0], F.C.weir_ffi_db_checkpointer_stop)
  self:check(self.db:exec("PRAGMA wal_autocheckpoint=0"))
end

function S:close()
  if self.ckpt then
    local F = require("weir._ffi")
    F.C.weir_ffi_db_checkpointer_stop(F.ffi.gc(self.ckpt, nil))
    self.ckpt = nil
    -- the server stops: leave the next start an empty WAL
    if self.db then self.db:exec("PRAGMA wal_checkpoint(TRUNCATE)") end
  end
  if self.db then self.db:close(); self.db = nil end
end

--- Claim the signatures sigs (a list) of a webhook request of pipeline
-- at t: true when none was claimed before (each is then recorded), false
-- for a replay. In one transaction.
function S:hook_claim(pipeline, sigs, t)
  self:begin()
  local fresh = true
  for _, sig in ipairs(sigs) do
    if self:check(self.db:run("INSERT INTO hook_seen (pipeline, sig, t) VALUES (?, ?, ?) "
                              .. "ON CONFLICT DO NOTHING", { pipeline, sig, t })) == 0 then
      fresh = false
    end
  end
  self:commit()
  return fresh
end

--- Forget the signatures older than t; returns how many.
function S:hook_prune(t)
  return self:check(self.db:run("DELETE FROM hook_seen WHERE t < ?", { t }))
end

--- Fire pipeline_id's schedule at logical_time (ms) with run (as
-- create_run's, queued): the fire and the run in one transaction. Returns
-- false, writing nothing, when that logical time was fired before (by
-- this server, an earlier one or another on the same store).
function S:fire(pipeline_id, logical_time, kind, run, now)
  self:begin()
  local n = self:check(self.db:run("INSERT INTO fires (pipeline_id, logical_time, kind, run_id, "
                                   .. "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                   { pipeline_id, logical_time, kind, run and run.id, now,
                                     n = 5 }))
  if n == 1 then
    if run then self:create_run(run) end
    self:check(self.db:run("UPDATE schedules SET last_fire = max(coalesce(last_fire, 0), ?) "
                           .. "WHERE pipeline_id = ?", { logical_time, pipeline_id }))
  end
  self:commit()
  return n == 1
end

--- The schedule state of pipeline_id ({ paused, since, last_fire }),
-- created with since = now when there is none yet.
function S:schedule_state(pipeline_id, now)
  self:check(self.db:run("INSERT INTO schedules (pipeline_id, since) VALUES (?, ?) "
                         .. "ON CONFLICT DO NOTHING", { pipeline_id, now }))
  local r = self:check(self.db:all("SELECT * FROM schedules WHERE pipeline_id = ?",
                                   { pipeline_id }))[1]
  r.paused = r.paused == 1
  return r
end

--- Move a schedule's last fire to t (ms) without a run (fires skipped
-- by catch-up "none" or "latest").
function S:schedule_skip(pipeline_id, t)
  self:check(self.db:run("UPDATE schedules SET last_fire = max(coalesce(last_fire, 0), ?) "
                         .. "WHERE pipeline_id = ?", { t, pipeline_id }))
end

--- Pause or unpause pipeline_id's schedule.
function S:schedule_pause(pipeline_id, paused, now)
  self:schedule_state(pipeline_id, now)
  self:check(self.db:run("UPDATE schedules SET paused = ? WHERE pipeline_id = ?",
                         { paused and 1 or 0, pipeline_id }))
end

--- Fire pipeline_id's trigger of kind ("after", "files", "dataset") for
-- key (what caused it) with run (as create_run's, queued), in one
-- transaction. Returns false, writing nothing, when that key fired before.
function S:trigger_fire(pipeline_id, kind, key, run, now)
  self:begin()
  local n = self:check(self.db:run("INSERT INTO trigger_fires (pipeline_id, kind, key, run_id, "
                                   .. "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                   { pipeline_id, kind, key, run and run.id, now, n = 5 }))
  if n == 1 and run then self:create_run(run) end
  self:commit()
  return n == 1
end

--- The state (text) of pipeline_id's trigger of kind, set to init when
-- it has none yet.
function S:trigger_state(pipeline_id, kind, init)
  self:check(self.db:run("INSERT INTO trigger_state (pipeline_id, kind, state) VALUES (?, ?, ?) "
                         .. "ON CONFLICT DO NOTHING", { pipeline_id, kind, init }))
  return self:check(self.db:all("SELECT state FROM trigger_state WHERE pipeline_id = ? "
                                .. "AND kind = ?", { pipeline_id, kind }))[1].state
end

--- Move the state of pipeline_id's trigger of kind from old to new;
-- false when it is no longer old (another server moved it first).
function S:trigger_advance(pipeline_id, kind, old, new)
  return self:check(self.db:run("UPDATE trigger_state SET state = ? WHERE pipeline_id = ? "
                                .. "AND kind = ? AND state = ?",
                                { new, pipeline_id, kind, old })) == 1
end

--- The latest successful run of the pipeline named name ({ id,
-- finished_at }), or nil.
function S:latest_success(name)
  return self:check(self.db:all("SELECT r.id, r.finished_at FROM runs r JOIN pipelines p "
                                .. "ON p.id = r.pipeline_id WHERE p.name = ? "
                                .. "AND r.status = 'success' ORDER BY r.finished_at DESC LIMIT 1",
                                { name }))[1]
end

--- When the latest run of pipeline_id was created (ms), or nil.
function S:latest_created(pipeline_id)
  return self:check(self.db:all("SELECT max(created_at) AS t FROM runs WHERE pipeline_id = ?",
                                { pipeline_id }))[1].t
end

-- lineage ------------------------------------------------------------------

--- Record the datasets (weir.connectors' entries: dataset, role, rows,
-- columns) attempt n of task used; status is the attempt's, at (ms) its end.
function S:add_lineage(run_id, task, n, pipeline, status, at, datasets)
  for _, d in ipairs(datasets) do
    self:check(self.db:run("INSERT INTO lineage (run_id, task, attempt, pipeline, status, "
                           .. "dataset, role, rows, columns, at) "
                           .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           { run_id, task, n, pipeline, status, d.dataset, d.role,
                             d.rows or 0, STORE.columns_text(d.columns), at, n = 10 }))
  end
end

function S:dataset_writes_after(after_id, limit)
  return STORE.writes_rows(self:check(self.db:all(STORE.WRITES_SQL:gsub("%$%d", "?"),
                                                  { after_id or 0, limit or 100 })))
end

function S:lineage_run(run_id)
  return STORE.lineage_rows(self:check(self.db:all(STORE.RUN_LINEAGE_SQL:gsub("%$%d", "?"),
                                                   { run_id })))
end

function S:lineage_edges()
  return STORE.edges_rows(self:check(self.db:all(STORE.EDGES_SQL)))
end

function S:export_count(target, sent, dropped, err, now)
  self:check(self.db:run("INSERT INTO lineage_export (target, sent, dropped, last_error, "
                         .. "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (target) DO UPDATE "
                         .. "SET sent = sent + excluded.sent, dropped = dropped + excluded.dropped, "
                         .. "last_error = coalesce(excluded.last_error, last_error), "
                         .. "updated_at = excluded.updated_at",
                         { target, sent, dropped, err, now, n = 5 }))
end

function S:export_stats()
  return self:check(self.db:all("SELECT * FROM lineage_export ORDER BY target"))
end

return M
