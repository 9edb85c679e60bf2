std = "luajit"
max_line_length = 120
codes = true
files["tests/**/*_spec.lua"] = { std = "+busted" }
exclude_files = { "build*/**" }
files["tests/lua/run.lua"] = { globals = { "arg" } }
-- pipeline files run in the definition sandbox, which provides these
files["examples/**/pipeline.lua"] = { read_globals = { "pipeline", "task" } }
-- the template library: pipeline files, and their specs beside them
files["pipelines/**/*.lua"] = { read_globals = { "pipeline", "task", "template" } }
files["pipelines/**/*_spec.lua"] = { std = "+busted" }
