-- weir.stubs: the LuaLS definitions of what pipeline files and tasks see
-- (`weir stubs` prints them): pipeline, task, ctx and streams, so that an
-- editor with lua-language-server knows `pipeline` and completes `ctx.`.
-- Kept next to weir._ctx and weir.stream: a spec checks that every ctx
-- function and stream method is declared here.
return [==[
---@meta weir
-- LuaLS definitions for weir pipelines (printed by `weir stubs`).
-- Save as e.g. .luals/weir.lua and add that folder to
-- "workspace.library" in .luarc.json.

---@class weir.TaskOptions
---@field retries? integer retries after a failed attempt (default 0)
---@field retry_delay? number|string wait before the first retry ("1s")
---@field retry_backoff? number factor the wait grows by (default 2)
---@field retry_max_delay? number|string longest wait between retries
---@field timeout? number|string an attempt running longer is killed ("1h")
---@field memory? integer|string memory cap of an attempt ("512MB")
---@field output_max? integer|string largest output the task may return
---@field log_max? integer|string most log text an attempt keeps

---@class weir.Task: weir.TaskOptions
---@field run fun(ctx: weir.Ctx): any the task's work; its return value (JSON) is its output
---@field after? string[] tasks this one runs after (their outputs are ctx.inputs)
---@field description? string

---@class weir.Param
---@field type "string"|"integer"|"number"|"boolean"|"date"|"datetime"
---@field default? any
---@field description? string
---@field enum? any[]
---@field pattern? string regular expression the value must match
---@field minimum? number|string
---@field maximum? number|string
---@field list? boolean comma-separated items, an array for the task

---@class weir.Pipeline
---@field name string
---@field description? string
---@field tasks table<string, weir.Task>
---@field params? table<string, weir.Param>
---@field defaults? weir.TaskOptions
---@field schedule? string|table cron expression, or { cron, timezone, catchup, max_catchup, jitter }
---@field timezone? string
---@field max_active_runs? integer
---@field triggers? table

--- Declare the pipeline (the file returns it).
---@param def weir.Pipeline
---@return weir.Pipeline
function pipeline(def) end

--- Declare a task.
---@param def weir.Task
---@return weir.Task
function task(def) end

---@class weir.Run
---@field id string
---@field logical_time? string ISO 8601 UTC, for scheduled fires and backfills

---@class weir.Ctx
---@field run_id string
---@field run weir.Run
---@field task string
---@field attempt integer
---@field pipeline string
---@field params table<string, any>
---@field inputs table<string, any> outputs of the tasks this one runs after
---@field NULL lightuserdata SQL NULL in rows
local Ctx = {}

--- One line in the attempt's log (shown live by weir run).
---@param fmt any
---@param ... any
function Ctx.log(fmt, ...) end

--- The absolute path p resolves to (relative to the pipeline's folder).
---@param p string
---@return string
function Ctx.path(p) end

---@class weir.CsvOptions
---@field delimiter? string one character (default ",")
---@field quote? string one character, or "" for none
---@field types? table<string, "string"|"number"|"integer"|"boolean">
---@field dead_letter? string rows that cannot be read go to this JSON Lines file
---@field max_row_bytes? integer

--- A stream of a CSV file's rows.
---@param path string
---@param opts? weir.CsvOptions
---@return weir.Stream
function Ctx.csv(path, opts) end

--- A stream of a JSON Lines file's objects.
---@param path string
---@param opts? { dead_letter?: string }
---@return weir.Stream
function Ctx.jsonl(path, opts) end

--- A SQLite database file.
---@param path string
---@param opts? table
---@return weir.Db
function Ctx.sqlite(path, opts) end

--- A stream over an array of rows, or over a generator's rows (one per
--- call, nil at the end; constant memory).
---@param rows table[]|fun(): table?
---@param opts? { columns?: string[] }
---@return weir.Stream
function Ctx.rows(rows, opts) end

--- The connection NAME of weir.yaml (PostgreSQL or Redis).
---@param name string
---@return weir.Db
function Ctx.source(name) end

--- The connection NAME of weir.yaml (the same object as ctx.source).
---@param name string
---@return weir.Db
function Ctx.sink(name) end

--- Data-quality checks on a table of a database from ctx, now (the list
--- form of a task's `checks`, or the older rules); results are stored with
--- the attempt; raises when a check of severity "fail" fails.
---@param db weir.Db
---@param table string
---@param rules table
---@return { checks: string, row_count?: integer, warnings?: integer }
function Ctx.check(db, table, rules) end

--- A SQL identifier quoted ("a.b": schema a, table b), for SQL built from
--- names; values go as bound parameters.
---@param name string
---@return string
function Ctx.ident(name) end

--- Fail the attempt with a message.
---@param message any
function Ctx.fail(message) end

---@class weir.Db
local Db = {}
---@param sql string
---@param params? any[]
---@return weir.Stream
function Db:query(sql, params) end
---@param sql string
---@param params? any[]
---@return integer changed
function Db:exec(sql, params) end
---@param sql string
---@param params? any[]
---@return table[]
function Db:rows(sql, params) end
---@param fn fun(db: weir.Db): any
---@return any
function Db:transaction(fn) end

---@class weir.LoadResult
---@field rows integer rows loaded
---@field rejected? integer rows the source sent to its dead-letter file

---@class weir.Stream
local Stream = {}
---@param fn fun(row: table): table?
---@return weir.Stream
function Stream:map(fn) end
---@param fn fun(row: table): any
---@return weir.Stream
function Stream:filter(fn) end
---@param ... string
---@return weir.Stream
function Stream:select(...) end
---@param map table<string, string>
---@return weir.Stream
function Stream:rename(map) end
---@param n integer
---@return weir.Stream
function Stream:batch(n) end
---@param fn fun(row: table)
---@return integer
function Stream:each(fn) end
---@return integer
function Stream:count() end
---@param limit? integer
---@return table[]
function Stream:collect(limit) end
---@param target weir.Db
---@param table string
---@param opts? { mode?: "append"|"replace"|"upsert"|"replace_partition", key?: string|string[] }
---@return weir.LoadResult
function Stream:into(target, table, opts) end
---@param path string
---@param opts? { columns?: string[], delimiter?: string }
---@return weir.LoadResult
function Stream:to_csv(path, opts) end
---@param path string
---@return weir.LoadResult
function Stream:to_jsonl(path) end
--- Rows that fail schema (a JSON Schema table) or fn (returns true, or
--- false and why) go to opts.dead_letter with their reason; the rest flow on.
---@param schema_or_fn table|fun(row: table): boolean, string?
---@param opts? { dead_letter?: string }
---@return weir.Stream
function Stream:validate(schema_or_fn, opts) end
]==]
