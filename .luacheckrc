std = "luajit"
max_line_length = 100
codes = true
files["tests/**/*_spec.lua"] = { std = "+busted" }
exclude_files = { "build*/**" }
