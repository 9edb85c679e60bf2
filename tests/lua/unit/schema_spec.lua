-- Specs for weir.schema: the JSON-Schema-Test-Suite (draft 2020-12) for every
-- supported keyword, then weir's own error paths and messages.
local json = require "weir.json"
local schema = require "weir.schema"
local H = require("helpers")

local function decode(text)
  local v, err = json.decode(text)
  assert(v ~= nil, err)
  return v
end

local function compile(s)
  if type(s) == "string" then s = decode(s) end
  return assert(schema.compile(s))
end

-- Validates and returns the errors as "path: message" lines.
local function errors_of(s, value)
  if type(value) == "string" then value = decode(value) end
  local ok, errs = compile(s):validate(value)
  assert.is_false(ok)
  return schema.format_errors(errs), errs
end

---------------------------------------------------------------------------
-- JSON-Schema-Test-Suite
---------------------------------------------------------------------------

local SUITE_FILES = {
  "type", "enum", "const", "properties", "required", "additionalProperties",
  "patternProperties", "items", "prefixItems", "minItems", "maxItems",
  "uniqueItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
  "multipleOf", "minLength", "maxLength", "allOf", "anyOf", "oneOf", "not",
  "if-then-else", "ref", "defs", "dependentRequired", "propertyNames",
  "minProperties", "maxProperties", "pattern", "boolean_schema",
}

-- Cases (by file and description) that need features outside weir's subset.
local ID = "needs $id-based base URI resolution"
local SKIP = {
  { file = "not", case = "collect annotations inside a 'not', even if collection is disabled",
    reason = "needs unevaluatedProperties (annotation collection)" },
  { file = "defs", case = "validate definition against metaschema",
    reason = "needs the remote 2020-12 metaschema" },
  { file = "ref", case = "remote ref, containing refs itself",
    reason = "needs the remote 2020-12 metaschema" },
  { file = "ref", case = "Recursive references between schemas", reason = ID },
  { file = "ref", case = "ref creates new scope when adjacent to keywords",
    reason = "needs unevaluatedProperties (annotation collection)" },
  { file = "ref", case = "refs with relative uris and defs", reason = ID },
  { file = "ref", case = "relative refs with absolute uris and defs", reason = ID },
  { file = "ref", case = "$id must be resolved against nearest parent, not just immediate parent",
    reason = ID },
  { file = "ref", case = "order of evaluation: $id and $ref", reason = ID },
  { file = "ref", case = "order of evaluation: $id and $anchor and $ref",
    reason = "needs $id and $anchor resolution" },
  { file = "ref", case = "order of evaluation: $id and $ref on nested schema", reason = ID },
  { file = "ref", case = "simple URN base URI with $ref via the URN", reason = ID },
  { file = "ref", case = "URN base URI with URN and JSON pointer ref", reason = ID },
  { file = "ref", case = "URN base URI with URN and anchor ref",
    reason = "needs $id and $anchor resolution" },
  { file = "ref", case = "URN ref with nested pointer ref", reason = ID },
  { file = "ref", case = "ref to if", reason = ID },
  { file = "ref", case = "ref to then", reason = ID },
  { file = "ref", case = "ref to else", reason = ID },
  { file = "ref", case = "ref with absolute-path-reference", reason = ID },
}

local function skip_reason(file, case)
  for _, s in ipairs(SKIP) do
    if s.file == file and s.case == case then return s.reason end
  end
  return nil
end

local function find_suite()
  local base = os.getenv("WEIR_TESTDATA") or "../shared/testdata"
  local root = base .. "/json-schema-test-suite"
  local layouts = { "/tests/draft2020-12", "/draft2020-12", "/draft2020-12/tests/draft2020-12" }
  for _, sub in ipairs(layouts) do
    if H.read(root .. sub .. "/type.json") then return root .. sub, root end
  end
  return nil, root
end

-- Runs one suite case; returns the number of tests whose verdict is wrong.
local function run_case(case)
  local v = schema.compile(case.schema)
  local wrong = 0
  for _, t in ipairs(case.tests) do
    if not v or v:validate(t.data) ~= t.valid then wrong = wrong + 1 end
  end
  return wrong
end

describe("weir.schema against JSON-Schema-Test-Suite draft2020-12", function()
  local dir, root = find_suite()
  if not dir then
    pending("json-schema-test-suite not found at " .. root)
    return
  end

  local loaded = {}
  for _, file in ipairs(SUITE_FILES) do
    local path = dir .. "/" .. file .. ".json"
    local text = H.read(path)
    if not text then
      it(file .. ".json is present", function()
        error("missing " .. path)
      end)
    else
      loaded[file] = assert(json.decode(text), path)
    end
  end

  for _, file in ipairs(SUITE_FILES) do
    local cases = loaded[file]
    if cases then
      describe(file, function()
        for _, case in ipairs(cases) do
          local reason = skip_reason(file, case.description)
          if reason then
            pending(case.description .. ": " .. reason)
          else
            describe(case.description, function()
              local v, err
              setup(function() v, err = schema.compile(case.schema) end)
              for _, t in ipairs(case.tests) do
                it(t.description, function()
                  assert(v, err)
                  local ok, errs = v:validate(t.data)
                  assert.are.equal(t.valid, ok, schema.format_errors(errs))
                  assert.are.equal(t.valid, #errs == 0)
                end)
              end
            end)
          end
        end
      end)
    end
  end

  it("skip list names only cases that exist and still fail", function()
    for _, s in ipairs(SKIP) do
      local found
      for _, case in ipairs(loaded[s.file] or {}) do
        if case.description == s.case then found = case end
      end
      assert(found, "skip entry names no case: " .. s.file .. ": " .. s.case)
      assert(run_case(found) > 0,
             "skipped case now passes, unskip it: " .. s.file .. ": " .. s.case)
    end
  end)
end)

---------------------------------------------------------------------------
-- weir's own behaviour
---------------------------------------------------------------------------

describe("weir.schema", function()
  local pipeline = [[{
    "type": "object",
    "required": ["name", "tasks"],
    "additionalProperties": false,
    "properties": {
      "name": {"type": "string", "minLength": 1},
      "mode": {"enum": ["append", "replace"]},
      "tasks": {"type": "object", "additionalProperties": {"$ref": "#/$defs/task"}}
    },
    "$defs": {
      "task": {
        "type": "object",
        "required": ["run"],
        "additionalProperties": false,
        "properties": {
          "run": {"type": "string"},
          "retries": {"type": "integer", "minimum": 0},
          "after": {"type": "array", "items": {"type": "string"}}
        }
      }
    }
  }]]

  describe("validate", function()
    it("returns true and no errors for a valid value", function()
      local ok, errs = compile(pipeline):validate(decode([[{
        "name": "p", "mode": "append",
        "tasks": {"extract": {"run": "x", "retries": 2, "after": []}}
      }]]))
      assert.is_true(ok)
      assert.are.same({}, errs)
    end)

    it("reports every error with its path, message and keyword", function()
      local ok, errs = compile(pipeline):validate(decode([[{
        "mode": "x",
        "tasks": {
          "extract": {"run": "a", "retries": "three", "retires": 2},
          "load": {"after": ["extract", 2], "retries": -1}
        }
      }]]))
      assert.is_false(ok)
      assert.are.same({
        { path = "mode", keyword = "enum",
          message = 'must be one of "append", "replace", got "x"' },
        { path = "tasks.extract.retries", keyword = "type",
          message = 'expected integer, got "three"' },
        { path = "tasks.extract", keyword = "additionalProperties",
          message = 'unknown property "retires"' },
        { path = "tasks.load.after[2]", keyword = "type", message = "expected string, got 2" },
        { path = "tasks.load.retries", keyword = "minimum", message = "must be >= 0, got -1" },
        { path = "tasks.load", keyword = "required", message = 'missing required property "run"' },
        { path = "", keyword = "required", message = 'missing required property "name"' },
      }, errs)
    end)

    it("treats 1.0 as an integer and 1.5 as not", function()
      local v = compile('{"type": "integer"}')
      assert.is_true(v:validate(1.0))
      assert.is_false(v:validate(1.5))
    end)

    it("tells an empty array from an empty object", function()
      assert.is_true(compile('{"type": "array"}'):validate(decode("[]")))
      assert.is_false(compile('{"type": "array"}'):validate(decode("{}")))
      assert.is_true(compile('{"type": "object"}'):validate({}))
      assert.is_false(compile('{"const": []}'):validate({}))
    end)

    it("accepts plain Lua schemas and values", function()
      local v = compile({ type = "object", required = { "a" },
                          properties = { a = { type = "array", items = { type = "number" } } } })
      assert.is_true(v:validate({ a = { 1, 2 } }))
      assert.is_false(v:validate({ a = { 1, "x" } }))
    end)

    it("counts characters, not bytes", function()
      local v = compile('{"minLength": 2, "maxLength": 2}')
      assert.is_true(v:validate("é😀"))
      assert.is_false(v:validate("é"))
    end)

    it("compares enum and const values deeply", function()
      local v = compile('{"enum": [{"a": [1, {"b": null}]}, 2]}')
      assert.is_true(v:validate(decode('{"a": [1.0, {"b": null}]}')))
      assert.is_false(v:validate(decode('{"a": [1, {"b": false}]}')))
      assert.is_true(v:validate(2.0))
    end)

    it("tolerates floating-point error in multipleOf", function()
      local v = compile('{"multipleOf": 0.01}')
      assert.is_true(v:validate(0.07))
      assert.is_true(v:validate(19.99))
      assert.is_false(v:validate(0.075))
    end)

    it("follows recursive refs", function()
      local v = compile([[{
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
        "required": ["name"]
      }]])
      assert.is_true(v:validate(decode('{"name": 1, "children": [{"name": 2, "children": []}]}')))
      assert.are.equal("children[1].children[1]: missing required property \"name\"",
                       (errors_of(v.schema,
                                  '{"name": 1, "children": [{"name": 2, "children": [{}]}]}')))
    end)

    it("stops a $ref loop that consumes no data", function()
      local text = errors_of('{"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}', "1")
      assert.matches("schema recursion deeper than 512 $ref levels", text, 1, true)
    end)
  end)

  describe("messages", function()
    local function message(s, value)
      local _, errs = errors_of(s, value)
      return errs[1].message, errs[1].path, errs[1].keyword, #errs
    end

    it("name the expected type and the bad value", function()
      assert.are.equal('expected integer, got "three"', message('{"type": "integer"}', '"three"'))
      assert.are.equal("expected string or null, got true",
                       message('{"type": ["string", "null"]}', "true"))
      assert.are.equal('expected number, got {"a":[1,2]}',
                       message('{"type": "number"}', '{"a": [1, 2]}'))
      assert.are.equal("expected object, got null", message('{"type": "object"}', "null"))
    end)

    it("cut long values to 40 characters", function()
      local long = string.rep("x", 100)
      assert.are.equal('expected number, got "' .. string.rep("x", 40) .. '..."',
                       message('{"type": "number"}', '"' .. long .. '"'))
      local m = message('{"type": "string"}', "[" .. string.rep("1,", 50) .. "1]")
      assert.are.equal("expected string, got [" .. string.rep("1,", 19) .. "1...", m)
    end)

    it("describe bounds", function()
      assert.are.equal("must be >= 0, got -1", message('{"minimum": 0}', "-1"))
      assert.are.equal("must be <= 10, got 10.5", message('{"maximum": 10}', "10.5"))
      assert.are.equal("must be > 0, got 0", message('{"exclusiveMinimum": 0}', "0"))
      assert.are.equal("must be < 1.5, got 2", message('{"exclusiveMaximum": 1.5}', "2"))
      assert.are.equal("must be a multiple of 0.5, got 1.3", message('{"multipleOf": 0.5}', "1.3"))
    end)

    it("describe lengths and sizes", function()
      assert.are.equal('must be at least 3 characters long, got "ab"',
                       message('{"minLength": 3}', '"ab"'))
      assert.are.equal('must be at most 1 character long, got "ab"',
                       message('{"maxLength": 1}', '"ab"'))
      assert.are.equal("must have at least 1 item, got 0", message('{"minItems": 1}', "[]"))
      assert.are.equal("must have at most 2 items, got 3", message('{"maxItems": 2}', "[1, 2, 3]"))
      assert.are.equal("must have at least 2 properties, got 1",
                       message('{"minProperties": 2}', '{"a": 1}'))
      assert.are.equal("must have at most 0 properties, got 1",
                       message('{"maxProperties": 0}', '{"a": 1}'))
      assert.are.equal("must have at most 1 item, got 2",
                       message('{"prefixItems": [true], "items": false}', "[1, 2]"))
    end)

    it("describe objects", function()
      assert.are.equal('missing required property "run"', message('{"required": ["run"]}', "{}"))
      assert.are.equal('unknown property "retires"',
                       message('{"properties": {"retries": {}}, "additionalProperties": false}',
                               '{"retires": 1}'))
      assert.are.equal('missing property "b", required when "a" is present',
                       message('{"dependentRequired": {"a": ["b"]}}', '{"a": 1}'))
      assert.are.equal('invalid property name "Foo": must match pattern "^[a-z]+$", got "Foo"',
                       message('{"propertyNames": {"pattern": "^[a-z]+$"}}', '{"Foo": 1}'))
      assert.are.equal('property "a" is not allowed',
                       message('{"propertyNames": false}', '{"a": 1}'))
    end)

    it("describe values", function()
      assert.are.equal('must be one of "append", "replace", got "x"',
                       message('{"enum": ["append", "replace"]}', '"x"'))
      assert.are.equal('must be 3, got 4', message('{"const": 3}', "4"))
      assert.are.equal('must match pattern "^a+$", got "b"', message('{"pattern": "^a+$"}', '"b"'))
      assert.are.equal('must have unique items, got 1 at [1] and [3]',
                       message('{"uniqueItems": true}', "[1, 2, 1.0]"))
      assert.are.equal("not allowed, got 1", message("false", "1"))
      assert.are.equal("must not match the schema in not, got 1", message('{"not": {}}', "1"))
    end)

    it("summarise anyOf and oneOf failures at their path", function()
      local msg, path, kw, n = message('{"properties": {"v": {"anyOf": [{"type": "string"}, '
                                       .. '{"type": "array"}]}}}', '{"v": 3}')
      assert.are.same({ "expected string or array, got 3", "v", "anyOf", 1 }, { msg, path, kw, n })

      local text, errs = errors_of('{"anyOf": [{"type": "string"}, {"type": "object", '
                                   .. '"required": ["x"]}]}', '{"y": 1}')
      assert.are.equal('(root): must match at least one schema in anyOf, got {"y":1}\n'
                       .. '(root): missing required property "x"', text)
      assert.are.equal("anyOf", errs[1].keyword)

      assert.are.equal("must match exactly one schema in oneOf, but matches #1 and #2, got 1",
                       message('{"oneOf": [{"type": "number"}, {"type": "integer"}]}', "1"))
      assert.are.equal("expected string or boolean, got 1",
                       message('{"oneOf": [{"type": "string"}, {"type": "boolean"}]}', "1"))
    end)

    it("quote odd keys in paths", function()
      local _, path = message('{"properties": {"a.b": {"properties": {"": {"type": "string"}}}}}',
                              '{"a.b": {"": 1}}')
      assert.are.equal('["a.b"][""]', path)
    end)
  end)

  describe("format_errors", function()
    it("writes one line per error and shows the root as (root)", function()
      assert.are.equal("(root): expected object, got 1\ntasks.a: bad",
                       schema.format_errors({
                         { path = "", message = "expected object, got 1" },
                         { path = "tasks.a", message = "bad" },
                       }))
      assert.are.equal("", schema.format_errors({}))
    end)

    it("raises on misuse", function()
      assert.has_error(function() schema.format_errors(nil) end,
                       "schema.format_errors: bad 'errors' (table expected, got nil)")
    end)
  end)

  describe("compile", function()
    local bad = {
      { '{"minimum": "0"}', 'schema: "minimum" must be a number at #/minimum' },
      { '{"properties": {"a": {"minLength": -1}}}',
        'schema: "minLength" must be a non-negative integer at #/properties/a/minLength' },
      { '{"type": "strng"}', 'schema: unknown type "strng" at #/type' },
      { '{"pattern": "(("}',
        'schema: invalid pattern "((" (regex: missing closing parenthesis at offset 2) at #/pattern' },
      { '{"$ref": "#/$defs/nope"}', 'schema: unresolvable $ref "#/$defs/nope" at #/$ref' },
      { '{"$ref": "other.json"}',
        'schema: unsupported $ref "other.json" (only local refs like "#/$defs/name") at #/$ref' },
      { '{"$ref": "#anchor"}',
        'schema: unsupported $ref "#anchor" (anchors are not supported) at #/$ref' },
      { '{"items": [{}]}',
        'schema: "items" must be a schema (use "prefixItems" for tuples) at #/items' },
      { '{"anyOf": []}', 'schema: "anyOf" must be a non-empty array of schemas at #/anyOf' },
      { '{"required": [1]}', 'schema: "required" must be an array of strings at #/required/0' },
      { '{"multipleOf": 0}', 'schema: "multipleOf" must be > 0 at #/multipleOf' },
      { '{"$defs": {"a/b": 3}}',
        "schema: a schema must be an object or a boolean, got 3 at #/$defs/a~1b" },
      { "3", "schema: a schema must be an object or a boolean, got 3 at #" },
    }
    for _, b in ipairs(bad) do
      it("rejects " .. b[1], function()
        local v, err = schema.compile(decode(b[1]))
        assert.is_nil(v)
        assert.are.equal(b[2], err)
      end)
    end

    it("ignores unknown keywords", function()
      assert.is_true(compile('{"x-weir": 1, "format": "email", "title": "t"}'):validate("x"))
    end)

    it("resolves JSON pointers with escapes", function()
      local v = compile([[{
        "$defs": {"a/b": {"type": "integer"}, "c~d": {"type": "string"}, "e f": {"minimum": 1}},
        "properties": {
          "x": {"$ref": "#/$defs/a~1b"},
          "y": {"$ref": "#/$defs/c~0d"},
          "z": {"$ref": "#/$defs/e%20f"},
          "w": {"$ref": "#/properties/x"}
        }
      }]])
      assert.is_true(v:validate(decode('{"x": 1, "y": "s", "z": 2, "w": 3}')))
      assert.are.equal('w: expected integer, got 1.5\nx: expected integer, got "1"\n'
                       .. 'y: expected string, got 1\nz: must be >= 1, got 0',
                       (errors_of(v.schema, '{"x": "1", "y": 1, "z": 0, "w": 1.5}')))
    end)

    it("raises on misuse", function()
      assert.has_error(function() schema.compile(nil) end,
                       "schema.compile: bad 'schema' (schema expected, got nil)")
    end)
  end)
end)
