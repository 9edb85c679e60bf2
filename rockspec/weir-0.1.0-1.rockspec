-- The Lua library of weir as a LuaRocks package (the C primitives come from
-- libweir, built with CMake; see README.md). A spec checks that this list
-- names every module under lua/weir and nothing else.
package = "weir"
version = "0.1.0-1"
source = { url = "git+file:///weir" }
description = {
  summary = "Data-pipeline orchestration runtime: the trusted Lua library",
  license = "MIT",
}
dependencies = { "lua == 5.1" }
build = {
  type = "builtin",
  modules = {
    ["weir._attempt"] = "lua/weir/_attempt.lua",
    ["weir._ctx"] = "lua/weir/_ctx.lua",
    ["weir._define"] = "lua/weir/_define.lua",
    ["weir._ffi"] = "lua/weir/_ffi.lua",
    ["weir._ser"] = "lua/weir/_ser.lua",
    ["weir._session"] = "lua/weir/_session.lua",
    ["weir._worker"] = "lua/weir/_worker.lua",
    ["weir.api"] = "lua/weir/api.lua",
    ["weir.auth"] = "lua/weir/auth.lua",
    ["weir.breaker"] = "lua/weir/breaker.lua",
    ["weir.checks"] = "lua/weir/checks.lua",
    ["weir.cron"] = "lua/weir/cron.lua",
    ["weir.cli"] = "lua/weir/cli.lua",
    ["weir.clidoc"] = "lua/weir/clidoc.lua",
    ["weir.color"] = "lua/weir/color.lua",
    ["weir.client"] = "lua/weir/client.lua",
    ["weir.config"] = "lua/weir/config.lua",
    ["weir.connectors"] = "lua/weir/connectors/init.lua",
    ["weir.connectors.file"] = "lua/weir/connectors/file.lua",
    ["weir.connectors.postgres"] = "lua/weir/connectors/postgres.lua",
    ["weir.connectors.redis"] = "lua/weir/connectors/redis.lua",
    ["weir.connectors.sqlite"] = "lua/weir/connectors/sqlite.lua",
    ["weir.document"] = "lua/weir/document.lua",
    ["weir.engine"] = "lua/weir/engine.lua",
    ["weir.errors"] = "lua/weir/errors.lua",
    ["weir.executor"] = "lua/weir/executor.lua",
    ["weir.hooks"] = "lua/weir/hooks.lua",
    ["weir.http"] = "lua/weir/http.lua",
    ["weir.json"] = "lua/weir/json.lua",
    ["weir.limits"] = "lua/weir/limits.lua",
    ["weir.lineage"] = "lua/weir/lineage.lua",
    ["weir.openlineage"] = "lua/weir/openlineage.lua",
    ["weir.picture"] = "lua/weir/picture.lua",
    ["weir.pipeline"] = "lua/weir/pipeline.lua",
    ["weir.regex"] = "lua/weir/regex.lua",
    ["weir.repl"] = "lua/weir/repl.lua",
    ["weir.sandbox"] = "lua/weir/sandbox.lua",
    ["weir.run"] = "lua/weir/run.lua",
    ["weir.runner"] = "lua/weir/runner.lua",
    ["weir.scheduler"] = "lua/weir/scheduler.lua",
    ["weir.triggers"] = "lua/weir/triggers.lua",
    ["weir.schema"] = "lua/weir/schema.lua",
    ["weir.serve"] = "lua/weir/serve.lua",
    ["weir.store"] = "lua/weir/store/init.lua",
    ["weir.store.postgres"] = "lua/weir/store/postgres.lua",
    ["weir.store.sqlite"] = "lua/weir/store/sqlite.lua",
    ["weir.stream"] = "lua/weir/stream.lua",
    ["weir.stubs"] = "lua/weir/stubs.lua",
    ["weir.templates"] = "lua/weir/templates.lua",
    ["weir.tz"] = "lua/weir/tz.lua",
    ["weir.util"] = "lua/weir/util.lua",
    ["weir.view"] = "lua/weir/view.lua",
  },
  -- the template library: pipeline files loaded as text (the weir binary
  -- embeds the same files), with their specs
  copy_directories = { "lua/weir/schemas", "pipelines" },
}
