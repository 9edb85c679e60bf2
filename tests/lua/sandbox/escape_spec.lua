-- Escape specs: each case is one way out of the sandbox that must stay
-- closed. Task cases run in real workers (one pipeline, one task per
-- case); definition cases load a pipeline file. Each checks the clear
-- error and that the rest of the run went on.
local H = require("helpers")

-- name -> { code of the task, pattern its error must match }
local TASK_CASES = {
  ffi_global = { "return ffi.C", "ffi is not available in tasks" },
  require_ffi = { "return require('ffi')", "require is not available in tasks" },
  debug_library = { "return debug.getinfo(1)", "debug is not available in tasks" },
  io_library = { "return io.open('/etc/passwd')",
                 "io is not available in tasks: read and write files with ctx.csv" },
  os_execute = { "return os.execute('id')", "execute" },
  os_getenv = { "return os.getenv('HOME')",
               "os.getenv is not available in tasks: put settings in weir.yaml" },
  os_exit = { "return os.exit(3)", "exit" },
  os_remove = { "return os.remove('x')", "remove" },
  package_library = { "return package.loaded", "package is not available in tasks" },
  jit_library = { "return jit.off()", "jit is not available in tasks" },
  -- nor once the task moves data
  jit_library_after_stream = { "ctx.rows({ { a = 1 } }):count() return jit.off()",
                               "jit is not available in tasks" },
  string_dump = { "return string.dump(function() end)", "dump" },
  string_dump_through_metatable = { "return ('').dump(function() end)", "dump" },
  string_metatable = { "local mt = getmetatable('') return mt.__index", "'mt' %(a nil value%)" },
  bytecode_load = { "return assert(load('\\27LJ\\2\\0'))()", "wrong mode" },
  bytecode_loadstring = { "return assert(loadstring('\\27LJ\\2\\0'))()", "wrong mode" },
  load_function_reader = { "return assert(load(function() return nil end))()", "only a string" },
  getfenv_host = { "return getfenv(ctx.log)", "getfenv is not available in tasks" },
  setfenv_host = { "return setfenv(1, {})", "setfenv is not available in tasks" },
  rawset_env = { "return rawset(_G, 'x', 1)", "rawset is not available in tasks" },
  dofile = { "return dofile('/etc/passwd')", "dofile is not available in tasks" },
  loadfile = { "return loadfile('/etc/passwd')", "loadfile is not available in tasks" },
  collectgarbage_stop = { "return collectgarbage('stop')", "only accepts \"count\"" },
  newproxy = { "return newproxy(true)", "newproxy is not available in tasks" },
  library_tables_read_only = { "string.format = nil", "read%-only" },
  library_metatable_locked = { "return setmetatable(string, {})", "protected metatable" },
  file_outside_roots = { "return ctx.csv('/etc/passwd'):count()", "outside the allowed roots" },
  file_dotdot_escape = { "return ctx.csv('../../../../etc/passwd'):count()",
                         "outside the allowed roots" },
  file_symlink_escape = { "return ctx.csv('link_out/passwd'):count()", "outside" },
  metadata_store = { "return ctx.sqlite('.weir/weir.db'):rows('select * from runs')",
                     "state folder" },
  sqlite_fts3_tokenizer_pointer = {
    "return ctx.sqlite('f.db'):rows(\"SELECT fts3_tokenizer('simple') AS v\")", "not authorized" },
  sqlite_fts3_tokenizer_register = {
    "local d = ctx.sqlite('g.db') "
    .. "d:rows(\"SELECT fts3_tokenizer('evil', X'4141414141414141') AS v\") "
    .. "d:exec('CREATE VIRTUAL TABLE v USING fts3(tokenize=evil)')", "not authorized" },
  sqlite_load_extension = {
    "return ctx.sqlite('h.db'):rows(\"SELECT load_extension('/tmp/x.so') AS v\")",
    "not authorized" },
  to_csv_columns_grow = {
    "local cols = { 'a' } "
    .. "return ctx.rows({ { a = 1 }, { a = 2 } }):map(function(r) "
    .. "for i = 1, 200 do cols[#cols + 1] = 'c' .. #cols end return r end)"
    .. ":to_csv('grow.csv', { columns = cols }) and error('wrote ' .. #cols)", "wrote 401" },
  error_metamethods_not_called = {
    "error(setmetatable({}, { __tostring = function() while true do end end }))",
    "error object %(table%)" },
}

-- values that must come back as the task's output
local TASK_VALUES = {
  db_object_is_opaque = { "local d = ctx.sqlite('x.db') return { getmetatable(d), next(d) }",
                          { false } },
  stream_object_is_opaque = { "local s = ctx.rows({ { a = 1 } }) return { getmetatable(s), next(s) }",
                              { false } },
  ctx_functions_hide_upvalues = { "return type(ctx.log)", "function" },
  env_is_fresh_per_attempt = { "local seen = rawget(_G, 'leaked') leaked = 1 return seen == nil",
                               true },
}

describe("sandbox escape", function()
  local dir, run
  lazy_setup(function()
    dir = H.tmpdir()
    os.execute("ln -s /etc " .. H.q(dir .. "/link_out"))
    local parts = { "return pipeline { name = 'escapes', tasks = {" }
    for name, c in pairs(TASK_CASES) do
      parts[#parts + 1] = string.format("%s = task { timeout = '5s', run = function(ctx) %s end },",
                                        name, c[1])
    end
    for name, c in pairs(TASK_VALUES) do
      parts[#parts + 1] = string.format("%s = task { run = function(ctx) %s end },", name, c[1])
    end
    parts[#parts + 1] = "canary = task { run = function() return 'still running' end } } }"
    H.write(dir .. "/escapes.lua", table.concat(parts, "\n"))
    H.weir(dir, "run escapes.lua --workers 2")
    run = H.show(dir, H.last_run(dir))
  end)
  lazy_teardown(function() H.cleanup(dir) end)

  for name, c in pairs(TASK_CASES) do
    it("is closed: " .. name:gsub("_", " "), function()
      local t = H.task(run, name)
      assert.equal("failed", t.state)
      assert.matches(c[2], t.error)
    end)
  end

  for name, c in pairs(TASK_VALUES) do
    it("holds: " .. name:gsub("_", " "), function()
      local t = H.task(run, name)
      assert.equal("success", t.state, t.error)
      assert.same(c[2], t.output)
    end)
  end

  it("lets the rest of the run go on", function()
    assert.equal("success", H.task(run, "canary").state)
    assert.equal("still running", H.task(run, "canary").output)
  end)
end)

describe("a metadata store named by weir.yaml's metadata_url", function()
  it("is out of the tasks' reach, as WEIR_HOME is", function()
    local dir = H.tmpdir()
    os.execute("mkdir -p " .. H.q(dir .. "/state"))
    H.write(dir .. "/weir.yaml", 'metadata_url: "sqlite:' .. dir .. '/state/meta.db"\n')
    H.write(dir .. "/p.lua", "return pipeline { name = 'peek', tasks = { peek = task { "
                             .. "run = function(ctx) return ctx.sqlite('state/meta.db')"
                             .. ":rows('select * from runs') end } } }")
    assert.equal(1, (H.weir(dir, "run p.lua")))
    local t = H.task(H.show(dir, H.last_run(dir)), "peek")
    assert.equal("failed", t.state)
    assert.matches("state folder", t.error)
    assert.is_nil(H.read(dir .. "/.weir/weir.db"))
    H.cleanup(dir)
  end)
end)

-- This LuaJIT's JIT compiler crashes (SIGSEGV) on this plain Lua loop after
-- about 10,000 iterations; the interpreter runs it fine. Task code must
-- never be compiled (ADR 9), before or after it moves data. The loop is a
-- copy of weir._ser's decoder fed random strings, kept as it was found: a
-- task cannot require the library, and the copy must not change with it.
describe("the JIT compiler", function()
  local LOOP = [[
    local byte, sub, find = string.byte, string.sub, string.find
    local function decode(s)
      local refs, pos = {}, 1
      local function num_until(ch)
        local e = find(s, ch, pos, true)
        if not e then error("truncated", 0) end
        local v = tonumber(sub(s, pos, e - 1))
        if not v then error("bad number", 0) end
        pos = e + 1
        return v
      end
      local dec
      function dec()
        local tag = byte(s, pos)
        pos = pos + 1
        if tag == 110 then return nil
        elseif tag == 84 then return true
        elseif tag == 70 then return false
        elseif tag == 100 then return num_until(";")
        elseif tag == 78 then return 0 / 0
        elseif tag == 73 then return math.huge
        elseif tag == 105 then return -math.huge
        elseif tag == 115 or tag == 98 then
          local len = num_until(":")
          local str = sub(s, pos, pos + len - 1)
          if #str ~= len then error("truncated", 0) end
          pos = pos + len
          if tag == 115 then return str end
          error("unknown builtin", 0)
        elseif tag == 114 then
          return refs[num_until(";")]
        elseif tag == 116 then
          local t = {}
          refs[num_until(";")] = t
          if byte(s, pos) == 65 then pos = pos + 1 end
          while byte(s, pos) ~= 101 do
            if pos > #s then error("truncated", 0) end
            local k = dec()
            t[k] = dec()
          end
          pos = pos + 1
          return t
        end
        error("bad tag", 0)
      end
      return pcall(dec)
    end
    math.randomseed(1)
    local alphabet = { "d-0;", "d1e2;", "d0x1p4;", "s1.0:", "t1;", "t2;", "e", "A", "s1:",
                       "s2:", "d1;", "r1;", "r2;", "n", "T", "F", "N", "I", "a", "b", "x", ";", ":" }
    for _ = 1, 30000 do
      local parts = {}
      for j = 1, math.random(1, 12) do parts[j] = alphabet[math.random(#alphabet)] end
      decode(table.concat(parts))
    end
    return "ok"
  ]]

  it("never compiles task code", function()
    local dir = H.tmpdir()
    H.write(dir .. "/p.lua", "return pipeline { name = 'nojit', tasks = {\n"
            .. "  plain = task { retries = 0, run = function(ctx)\n" .. LOOP .. " end },\n"
            .. "  data = task { retries = 0, run = function(ctx)\n"
            .. "    ctx.rows({ { a = 1 } }):count()\n" .. LOOP .. " end },\n"
            .. "} }\n")
    local code, _, err = H.weir(dir, "run p.lua --quiet")
    local run = H.show(dir, H.last_run(dir))
    assert.equal(0, code, err)
    assert.equal("ok", H.task(run, "plain").output)
    assert.equal("ok", H.task(run, "data").output)
    H.cleanup(dir)
  end)
end)

describe("sandbox of the definition phase", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.cleanup(dir) end)

  local function validate(src, env)
    H.write(dir .. "/p.lua", src)
    return H.weir(dir, "validate p.lua", env)
  end

  it("offers no io while loading", function()
    local code, _, err = validate("io.open('/tmp/x', 'w') return pipeline { name = 'a', tasks = {} }")
    assert.equal(1, code)
    assert.matches("io is not available in pipeline files", err, 1, true)
  end)

  it("stops a file that loops forever while loading", function()
    local code, _, err = validate("while true do end", { WEIR_LOAD_TIMEOUT = "500" })
    assert.equal(1, code)
    assert.matches("loading took longer than", err, 1, true)
  end)

  it("caps the memory a file may use while loading", function()
    local code, _, err = validate("local t = {} for i = 1, 1e9 do t[i] = i end")
    assert.equal(1, code)
    assert.matches("memory limit", err, 1, true)
  end)

  it("caps the memory of encoding what the file built, too", function()
    -- one 4 MB string named by 40 tasks: 160 MB once encoded
    local code, _, err = validate([[
      local big = string.rep("x", 4 * 1024 * 1024)
      local tasks = {}
      for i = 1, 40 do tasks["t" .. i] = task { description = big, run = function() end } end
      return pipeline { name = "big", tasks = tasks }
    ]])
    assert.equal(1, code)
    assert.matches("memory limit", err, 1, true)
  end)

  it("refuses to capture a host function into a task", function()
    local code, _, err = validate([[
      local t = task
      return pipeline { name = "cap", tasks = { a = task { run = function() return t end } } }
    ]])
    -- capturing `task` itself is allowed by name, but it does not exist in a task
    assert.equal(0, code, err)
    local rc = H.weir(dir, "run p.lua")
    assert.equal(1, rc)
    local run = H.show(dir, H.last_run(dir))
    assert.matches("unknown builtin task", H.task(run, "a").error, 1, true)
  end)

  it("never takes compiled code from the pipeline's own data", function()
    local forged = 'f1;9:\\27LJ\\2xxxxx0;'
    local code, _, err = validate("return pipeline { name = 'f', tasks = { a = task { run = "
                                  .. "{ __weir_function = '" .. forged .. "' } } } }")
    assert.equal(1, code)
    assert.matches("tasks.a.run: expected function", err, 1, true)
    H.write(dir .. "/p.json", '{"name": "f", "tasks": {"a": {"run": {"__weir_function": "f1;1:x0;"}}}}')
    code, _, err = H.weir(dir, "validate p.json")
    assert.equal(1, code)
    assert.matches("tasks.a.run: expected string", err, 1, true)
  end)

  it("requires the file to return pipeline { ... }", function()
    local code, _, err = validate("return { name = 'x', tasks = {} }")
    assert.equal(1, code)
    assert.matches("must return pipeline", err, 1, true)
  end)
end)
