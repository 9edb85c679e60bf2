-- weir.templates: the template library and its use in pipelines.
--
-- A template is a pipeline file with a `template = { version, summary,
-- ... }` table: the embedded library (pipelines/NAME/*.lua, compiled into
-- the binary as text) and the folders weir.yaml lists under `templates`.
-- A template is loaded like any Lua pipeline (its code runs only in a
-- worker's sandbox); this module finds it by name and version pin, checks
-- a team folder's copy against the content hash in weir.lock, checks the
-- `with` values against the params' JSON Schema, and splices its tasks
-- into the pipeline that uses it (one task: `uses`; a group: `include`).
-- ADR 48 says why it works this way, ADR 49 how versions are pinned.
local json = require("weir.json")
local util = require("weir.util")
local native = require("weir._native")
local type, pairs, ipairs, tostring, format = type, pairs, ipairs, tostring, string.format
local sort, concat = table.sort, table.concat

local M = {}

M.LOCK = "weir.lock"
M.MAX_DEPTH = 4

--- Split "name@1" / "name@1.2.3" / "name": name, pin ({ major } or
-- { exact = "1.2.3" } or nil). nil, message when malformed.
function M.parse_ref(ref)
  if type(ref) ~= "string" then return nil, "expected a string NAME@VERSION" end
  local name, rest = ref:match("^([A-Za-z_][A-Za-z0-9_]*)(.*)$")
  if not name then return nil, format("bad template name %s", util.show(ref)) end
  if rest == "" then return name, nil end
  local maj = rest:match("^@(%d+)$")
  if maj then return name, { major = tonumber(maj) } end
  local exact = rest:match("^@(%d+%.%d+%.%d+)$")
  if exact then return name, { exact = exact } end
  return nil, format("bad version pin in %s (expected NAME@MAJOR or NAME@MAJOR.MINOR.PATCH)",
                     util.show(ref))
end

local function semver(v)
  local a, b, c = tostring(v):match("^(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  return { tonumber(a), tonumber(b), tonumber(c) }
end

local function newer(a, b)
  local x, y = semver(a.version) or { 0, 0, 0 }, semver(b.version) or { 0, 0, 0 }
  for i = 1, 3 do if x[i] ~= y[i] then return x[i] > y[i] end end
  return false
end

-- The metadata of a template source without running it: name and
-- version, read from the text (the file is loaded in a worker later). A
-- template declares them as plain string literals.
local function peek(source)
  local name = source:match("[^%w_]name%s*=%s*\"([A-Za-z_][A-Za-z0-9_]*)\"")
  local version = source:match("[^%w_]version%s*=%s*\"(%d+%.%d+%.%d+)\"")
  return name, version
end

local Catalog = {}
Catalog.__index = Catalog

local function add_entry(cat, e)
  local name, version = peek(e.source)
  if not name or not version then
    cat.problems[#cat.problems + 1] = format("%s: not a template (no name = \"...\" and "
                                             .. "template = { version = \"X.Y.Z\" })", e.path)
    return
  end
  e.name, e.version, e.hash = name, version, require("weir.pipeline").sha256(e.source)
  local list = cat.by_name[name]
  if not list then list = {}; cat.by_name[name] = list end
  for _, o in ipairs(list) do
    if o.version == version then
      cat.problems[#cat.problems + 1] = format("template %s@%s is defined twice: %s and %s",
                                               name, version, o.path, e.path)
      return
    end
  end
  list[#list + 1] = e
  sort(list, newer)
end

local function scan_dir(cat, dir, rel)
  local names, err = util.list_dir(dir)
  if not names then
    cat.problems[#cat.problems + 1] = format("templates folder %s: %s", dir, tostring(err))
    return
  end
  local F = require("weir._ffi")
  for _, n in ipairs(names) do
    local p = util.join(dir, n)
    local kind = F.C.weir_ffi_path_kind(p)
    if kind == F.C.WEIR_KIND_DIR and not rel:find("/", 1, true) and n:sub(1, 1) ~= "." then
      scan_dir(cat, p, rel == "" and n or rel .. "/" .. n)
    elseif n:match("%.lua$") and not n:match("_spec%.lua$") then
      local src = require("weir.document").read(p)
      if src then
        add_entry(cat, { source = src, path = p, origin = "folder", folder = dir })
      end
    end
  end
end

--- The catalog: the embedded library plus conf.templates (absolute
-- folders, from weir.yaml) with conf.dir (weir.yaml's folder, where
-- weir.lock is). conf may be nil.
function M.catalog(conf)
  local cat = setmetatable({ by_name = {}, problems = {}, lock = nil,
                             dir = conf and conf.dir, folders = {} }, Catalog)
  local index = native.resource("pipelines/INDEX") or ""
  for rel in index:gmatch("[^\n]+") do
    add_entry(cat, { source = native.resource(rel), path = rel, origin = "embedded" })
  end
  for _, d in ipairs(conf and conf.templates or {}) do
    cat.folders[#cat.folders + 1] = d
    scan_dir(cat, d, "")
  end
  if cat.dir then
    local text = require("weir.document").read(util.join(cat.dir, M.LOCK))
    if text then
      local doc = json.decode(text)
      cat.lock = type(doc) == "table" and type(doc.templates) == "table" and doc.templates or {}
      cat.lock_bad = type(doc) ~= "table" or type(doc.templates) ~= "table"
    end
  end
  return cat
end

--- The catalog of the weir.yaml found from here (--config/WEIR_CONFIG
-- or ./weir.yaml); only the embedded library when there is none or it
-- does not load (then cat.config_error says why).
function M.default_catalog()
  local config = require("weir.config")
  local path = config.find()
  if not path then return M.catalog(nil) end
  local cfg, errs = config.load(path)
  if not cfg then
    local cat = M.catalog(nil)
    cat.config_error = type(errs) == "table" and concat(errs, "; ") or tostring(errs)
    return cat
  end
  return M.catalog(cfg)
end

--- Every template, newest version of each name first, sorted by name.
function Catalog:list(all_versions)
  local names, out = {}, {}
  for n in pairs(self.by_name) do names[#names + 1] = n end
  sort(names)
  for _, n in ipairs(names) do
    for i, e in ipairs(self.by_name[n]) do
      if i == 1 or all_versions then out[#out + 1] = e end
    end
  end
  return out
end

--- The entry ref names (pin nil: the newest; needs_pin: refuse no pin).
-- Returns the entry, or nil, message. A team folder's entry must match
-- the hash weir.lock holds for it.
function Catalog:find(ref, needs_pin)
  local name, pin = M.parse_ref(ref)
  if not name then return nil, pin end
  local list = self.by_name[name]
  if not list then
    local names = {}
    for n in pairs(self.by_name) do names[#names + 1] = n end
    sort(names)
    return nil, format("no template %q (known: %s)%s", name,
                       #names > 0 and concat(names, ", ") or "none",
                       #self.problems > 0 and "; " .. concat(self.problems, "; ") or "")
      .. (self.config_error and "; the templates folders of weir.yaml were not read: "
          .. self.config_error or "")
  end
  if not pin and needs_pin then
    return nil, format("pin a version: %s@%s (or %s@%s)", name,
                       semver(list[1].version)[1], name, list[1].version)
  end
  local found
  for _, e in ipairs(list) do
    if not pin or (pin.exact and e.version == pin.exact)
        or (pin.major and semver(e.version)[1] == pin.major) then
      found = e
      break
    end
  end
  if not found then
    local vs = {}
    for i, e in ipairs(list) do vs[i] = e.version end
    return nil, format("no version of template %s matches %s (available: %s)", name,
                       ref:match("@(.*)$"), concat(vs, ", "))
  end
  if found.origin == "folder" then
    local key = found.name .. "@" .. found.version
    local lock = self.lock
    if lock == nil or self.lock_bad then
      return nil, format("template %s from %s is not pinned: no valid %s beside weir.yaml "
                         .. "(run `weir templates lock` after reviewing it)", key,
                         found.folder, M.LOCK)
    end
    local want = type(lock[key]) == "table" and lock[key].sha256 or nil
    if want == nil then
      return nil, format("template %s from %s is not in %s (run `weir templates lock` after "
                         .. "reviewing it)", key, found.folder, M.LOCK)
    end
    if want ~= found.hash then
      return nil, format("template %s (%s) changed since %s was written (sha256 %s, locked "
                         .. "%s): review the change, then run `weir templates lock`", key,
                         found.path, M.LOCK, found.hash:sub(1, 12), tostring(want):sub(1, 12))
    end
  end
  return found
end

--- Write weir.lock: the content hash of every team folder's template.
-- Returns the path and the number of templates, or nil, message.
function Catalog:write_lock()
  if not self.dir then return nil, "no weir.yaml: weir.lock goes beside it" end
  local lines = {}
  for _, e in ipairs(self:list(true)) do
    if e.origin == "folder" then
      local rel = e.path
      if rel:sub(1, #self.dir + 1) == self.dir .. "/" then rel = rel:sub(#self.dir + 2) end
      lines[#lines + 1] = "    " .. json.encode(e.name .. "@" .. e.version) .. ": "
        .. json.encode({ sha256 = e.hash, path = rel })
    end
  end
  local n = #lines
  local path = util.join(self.dir, M.LOCK)
  local text = "{\n  \"version\": 1,\n  \"templates\": {" .. (n > 0 and "\n" or "")
    .. concat(lines, ",\n") .. (n > 0 and "\n  " or "") .. "}\n}"
  local f, err = io.open(path .. ".tmp", "wb")
  if not f then return nil, tostring(err) end
  f:write(text, "\n")
  f:close()
  local ok, rerr = os.rename(path .. ".tmp", path)
  if not ok then return nil, tostring(rerr) end
  return path, n
end

--- The JSON Schema of a template's params (an object; required: the
-- params without a default; no other keys).
function M.params_schema(params)
  local props, required = {}, setmetatable({}, json.array_mt)
  local names = {}
  for n in pairs(params or {}) do names[#names + 1] = n end
  sort(names)
  for _, n in ipairs(names) do
    local p = params[n]
    local s = { type = p.type, enum = p.enum, items = p.items, description = p.description,
                default = p.default, examples = p.examples }
    props[n] = s
    if p.default == nil then required[#required + 1] = n end
  end
  return { type = "object", properties = props, required = required,
           additionalProperties = false }
end

--- A value of a param's type when nothing better is known (a checked
-- reference's stand-in, a skeleton's "fill in").
function M.blank(ptype)
  return ({ string = "", integer = 0, number = 0, boolean = false })[ptype]
         or setmetatable({}, json.array_mt)
end

-- the `with` values checked against the template's params; defaults
-- filled in. A value "${params.NAME}" stands for the run's param NAME
-- (taken when the task starts): pipeline_params must declare it with the
-- template param's type. Errors go to add(path, message). Returns the
-- values and the references (param -> run param), or nil.
local function check_with(T, with, base, add, pipeline_params)
  with = with == nil and {} or with
  if type(with) ~= "table" then return nil end -- the schema says so
  local params = T.def.params or {}
  local schema = require("weir.schema")
  local v = assert(schema.compile(M.params_schema(params)))
  local refs, checked = nil, {}
  for k, x in pairs(with) do
    local ref = type(x) == "string" and x:match("^%${params%.([A-Za-z_][A-Za-z0-9_]*)}$")
    local tp = params[k]
    if ref and tp then
      local pp = type(pipeline_params) == "table" and pipeline_params[ref]
      if not pp then
        add(base .. "." .. k, format("%s: the pipeline declares no param %q", x, ref))
        return nil
      elseif pp.type ~= tp.type then
        add(base .. "." .. k, format("%s is a param of type %s; %s of template %s takes %s", x,
                                     tostring(pp.type), k, T.def.name, tostring(tp.type)))
        return nil
      end
      refs = refs or {}
      refs[k] = ref
      x = type(tp.enum) == "table" and tp.enum[1] or tp.default
      if x == nil then x = M.blank(tp.type) end
    end
    checked[k] = x
  end
  local ok, errs = v:validate(checked)
  if not ok then
    for _, e in ipairs(errs) do
      local p = (e.path == nil or e.path == "") and base or base .. "." .. e.path
      local msg = e.message
      if e.keyword == "required" then
        local missing = msg:match("\"([^\"]+)\"") or msg:match("'([^']+)'")
        if missing then p = base .. "." .. missing end
        msg = format("required by template %s@%s", T.def.name, T.def.template.version)
      elseif e.keyword == "additionalProperties" then
        local extra = msg:match("\"([^\"]+)\"")
        local names = {}
        for n in pairs(params) do names[#names + 1] = n end
        sort(names)
        if extra then p = base .. "." .. extra end
        msg = format("unknown param of template %s (it takes: %s)", T.def.name,
                     #names > 0 and concat(names, ", ") or "none")
      end
      add(p, msg)
    end
    return nil
  end
  local out = {}
  for k, x in pairs(with) do out[k] = x end
  for k, p in pairs(params) do
    if out[k] == nil and p.default ~= nil then out[k] = p.default end
  end
  if refs then for k in pairs(refs) do out[k] = nil end end
  return out, refs
end

local TASK_KEYS = { after = true, run = true, uses = true, with = true }

-- One template loaded (in a worker, through weir.pipeline) for a pipeline
-- being loaded; cached per load.
local function load_template(entry, o)
  local key = entry.name .. "@" .. entry.version .. "#" .. entry.hash
  local T = o.cache[key]
  if T then return T end
  for _, k in ipairs(o.stack) do
    if k == key then return nil, "template " .. entry.name .. " uses itself" end
  end
  if #o.stack >= M.MAX_DEPTH then return nil, "templates nested more than "
    .. M.MAX_DEPTH .. " deep" end
  local stack = { unpack(o.stack) }
  stack[#stack + 1] = key
  local P, errs = require("weir.pipeline").load("template:" .. entry.name .. "@" .. entry.version,
    { exec = o.exec, source = entry.source, kind = "lua", catalog = o.catalog(),
      template_stack = stack, cache = o.cache })
  if not P then
    return nil, format("template %s@%s does not load: %s", entry.name, entry.version,
                       require("weir.pipeline").format_errors(errs))
  end
  if type(P.def.template) ~= "table" then
    return nil, format("%s is a pipeline, not a template (it has no template = { ... })",
                       entry.path)
  end
  if P.def.name ~= entry.name or P.def.template.version ~= entry.version then
    return nil, format("%s: name and template.version must be plain strings, the first "
                       .. "ones in the file", entry.path)
  end
  o.cache[key] = P
  return P
end

--- Replace the `uses` tasks and the `include` groups of def by the
-- templates' tasks. fns: task name -> compiled function (filled in);
-- o: catalog (a function returning it, called only when a template is
-- used), exec, template_stack, cache. Errors go to add(path, msg).
-- Returns params (task name -> its `with` values), used (a list of
-- { name, version, hash, origin } of the templates used) and refs (task
-- name -> { with key -> run param name }) and aliases (a group's task ->
-- { upstream task's full name -> its name inside the template }).
function M.expand(def, fns, o, add)
  local tasks = def.tasks
  local params, used, groups, defaults_of, refs, aliases = {}, {}, {}, {}, {}, {}
  if type(tasks) ~= "table" then return params, used end
  o.cache = o.cache or {}
  o.stack = o.template_stack or {}
  local function resolve(ref, base)
    local entry, err = o.catalog():find(ref, true)
    if not entry then add(base .. ".uses", err); return nil end
    local T, lerr = load_template(entry, o)
    if not T then add(base .. ".uses", lerr); return nil end
    used[#used + 1] = { name = entry.name, version = entry.version, hash = entry.hash,
                        origin = entry.origin }
    return T
  end
  local function task_params(T, tn, with)
    -- a template's own `uses` task keeps the values its author gave it
    local inner = T.tasks[tn] and T.tasks[tn].params
    return inner or with
  end

  local names = {}
  for n in pairs(tasks) do names[#names + 1] = n end
  sort(names)
  for _, name in ipairs(names) do
    local t = tasks[name]
    if type(t) == "table" and t.uses ~= nil then
      local base = "tasks." .. name
      local T = resolve(t.uses, base)
      if T then
        local tnames = {}
        for n in pairs(T.def.tasks) do tnames[#tnames + 1] = n end
        sort(tnames)
        local with, wrefs = check_with(T, t.with, base .. ".with", add, def.params)
        if #tnames ~= 1 then
          add(base .. ".uses", format("template %s has %d tasks (%s): include it as a group, "
                                      .. "include = { %s = template(%q, { ... }) }",
                                      T.def.name, #tnames, concat(tnames, ", "), name, t.uses))
        elseif with then
          local tt = T.def.tasks[tnames[1]]
          local merged = {}
          for k, v in pairs(tt) do if not TASK_KEYS[k] then merged[k] = v end end
          for k, v in pairs(t) do if not TASK_KEYS[k] then merged[k] = v end end
          merged.after, merged.run = t.after, "<function>"
          tasks[name] = merged
          fns[name] = T.fns[tnames[1]]
          params[name] = task_params(T, tnames[1], with)
          refs[name] = wrefs
          defaults_of[name] = T.def.defaults
        end
      end
    end
  end

  local inc = type(def.include) == "table" and def.include or {}
  local gnames = {}
  for g in pairs(inc) do gnames[#gnames + 1] = g end
  sort(gnames)
  for _, g in ipairs(gnames) do
    local u, base = inc[g], "include." .. g
    if tasks[g] ~= nil then add(base, format("a task is also called %q", g)) end
    local T = type(u) == "table" and resolve(u.uses, base)
    local with, wrefs
    if T then with, wrefs = check_with(T, u.with, base .. ".with", add, def.params) end
    -- a group that failed is already reported: `after` it says no more
    groups[g] = {}
    if with then
      local members = {}
      local tnames = {}
      for n in pairs(T.def.tasks) do tnames[#tnames + 1] = n end
      sort(tnames)
      for _, tn in ipairs(tnames) do
        local tt, full = T.def.tasks[tn], g .. "." .. tn
        local copy = {}
        for k, v in pairs(tt) do if not TASK_KEYS[k] then copy[k] = v end end
        local after = setmetatable({}, json.array_mt)
        if type(tt.after) == "table" and #tt.after > 0 then
          -- the template's code reads ctx.inputs by its own task names
          local own = {}
          for i, d in ipairs(tt.after) do
            after[i] = g .. "." .. d
            own[g .. "." .. d] = d
          end
          aliases[full] = own
        else
          for i, d in ipairs(type(u.after) == "table" and u.after or {}) do after[i] = d end
        end
        copy.after, copy.run = after, "<function>"
        tasks[full] = copy
        fns[full] = T.fns[tn]
        params[full] = task_params(T, tn, with)
        refs[full] = wrefs or nil
        defaults_of[full] = T.def.defaults
        members[#members + 1] = full
      end
      groups[g] = members
    end
  end
  def.include = nil

  -- `after = { "group" }`: after every task of the group
  for _, t in pairs(tasks) do
    if type(t) == "table" and type(t.after) == "table" then
      local out, seen = setmetatable({}, json.array_mt), {}
      for _, d in ipairs(t.after) do
        for _, x in ipairs(groups[d] or { d }) do
          if not seen[x] then seen[x] = true; out[#out + 1] = x end
        end
      end
      t.after = out
    end
  end
  -- a template's own defaults apply to its tasks under the pipeline's
  for name, d in pairs(defaults_of) do
    if type(d) == "table" then
      local t = tasks[name]
      for k, v in pairs(d) do
        if t[k] == nil and (type(def.defaults) ~= "table" or def.defaults[k] == nil) then
          t[k] = v
        end
      end
    end
  end
  return params, used, refs, aliases
end

--- The params a template task starts with: its `with` values, and the
-- run's params its references name.
function M.task_params(spec, run_params)
  if not spec.param_refs then return spec.params end
  local out = {}
  for k, v in pairs(spec.params) do out[k] = v end
  for k, ref in pairs(spec.param_refs) do out[k] = run_params[ref] end
  return out
end

--- The template of a `template:NAME[@PIN]` path: its entry, or nil, msg.
function M.entry_for_path(path, catalog)
  local ref = path:match("^template:(.+)$")
  if not ref then return nil end
  return catalog:find(ref, false)
end

--- A loaded template (weir.pipeline's P) in Markdown: summary, params,
-- datasets, example, how to use it. level: the heading level.
function M.describe(P, level)
  local d, m = P.def, P.def.template
  local h = string.rep("#", level or 2)
  local out = { format("%s %s %s", h, d.name, m.version), "", m.summary, "" }
  if m.description then out[#out + 1] = m.description:gsub("%s+$", ""); out[#out + 1] = "" end
  out[#out + 1] = "Params:"
  out[#out + 1] = ""
  out[#out + 1] = M.params_table(d)
  out[#out + 1] = ""
  for _, k in ipairs({ "reads", "writes" }) do
    if type(m[k]) == "table" and #m[k] > 0 then
      out[#out + 1] = (k == "reads" and "- Reads: " or "- Writes: ") .. concat(m[k], "; ")
    end
  end
  local tnames = {}
  for n in pairs(d.tasks) do tnames[#tnames + 1] = n end
  sort(tnames)
  out[#out + 1] = "- Tasks: " .. concat(tnames, ", ")
  out[#out + 1] = ""
  local major = m.version:match("^(%d+)")
  out[#out + 1] = "```"
  if m.example then out[#out + 1] = m.example end
  if #tnames == 1 then
    out[#out + 1] = format("-- in a pipeline: task { uses = \"%s@%s\", with = { ... } }", d.name, major)
  end
  out[#out + 1] = format("-- as a group: include = { %s = template(\"%s@%s\", { ... }) }", d.name,
                         d.name, major)
  out[#out + 1] = "```"
  return concat(out, "\n")
end

--- Markdown: the params of a loaded template as a table.
function M.params_table(def)
  local names = {}
  for n in pairs(def.params or {}) do names[#names + 1] = n end
  sort(names)
  local out = { "| param | type | required | default | description |",
                "| --- | --- | --- | --- | --- |" }
  for _, n in ipairs(names) do
    local p = def.params[n]
    local ty = p.type
    if type(p.enum) == "table" then
      local e = {}
      for i, x in ipairs(p.enum) do e[i] = util.show(x) end
      ty = ty .. " (" .. concat(e, " \\| ") .. ")"
    end
    local desc = (p.description or ""):gsub("\n", " ")
    if type(p.examples) == "table" and p.examples[1] ~= nil then
      desc = desc .. (desc ~= "" and " " or "") .. "e.g. `" .. json.encode(p.examples[1]) .. "`"
    end
    out[#out + 1] = format("| `%s` | %s | %s | %s | %s |", n, ty,
                           p.default == nil and "yes" or "no",
                           p.default == nil and "" or "`" .. json.encode(p.default) .. "`", desc)
  end
  if #names == 0 then out[#out + 1] = "| (none) | | | | |" end
  return concat(out, "\n")
end

return M
