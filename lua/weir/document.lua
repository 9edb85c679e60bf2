-- weir.document: the steps every checked document goes through, shared by
-- pipelines (weir.pipeline) and weir.yaml (weir.config): read the file,
-- decode YAML (with the line of every path) or JSON, check it against an
-- embedded JSON Schema, merge the schema's errors with the module's own
-- semantic ones (the semantic message, the clearer one, wins on a path),
-- give each error the line of its nearest path and sort them in file
-- order. An error is { path = "a.b[1]", message = "...", line = n }.
local json = require("weir.json")
local schema = require("weir.schema")
local util = require("weir.util")
local native = require("weir._native")
local ipairs, pcall, tostring = ipairs, pcall, tostring

local M = {}

--- Read a whole file (trusted side). Returns text or nil, err. Only a
-- regular file: a FIFO or a device could block forever or never end.
function M.read(path)
  local F = require("weir._ffi")
  local kind = F.C.weir_ffi_path_kind(path)
  if kind == F.C.WEIR_KIND_DIR then return nil, path .. ": is a directory" end
  if kind == F.C.WEIR_KIND_OTHER then
    return nil, path .. ": not a regular file (a FIFO, device or socket)"
  end
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s, rerr = f:read("*a")
  f:close()
  if not s then return nil, path .. ": " .. tostring(rerr) end
  return s
end

local validators = {}
--- The compiled validator of an embedded schema (e.g.
-- "weir/schemas/pipeline.schema.json"), compiled once.
function M.validator(resource)
  local v = validators[resource]
  if not v then
    local text = assert(native.resource(resource))
    v = assert(schema.compile(assert(json.decode(text))))
    validators[resource] = v
  end
  return v
end

--- Decode source as kind "yaml" or "json" (path names it in errors).
-- Returns doc, lines (path -> line; YAML only) or nil, message. JSON
-- arrays carry json.array_mt, null is json.null.
function M.decode(source, kind, path)
  if kind == "yaml" then
    local ok, v, lines = pcall(native.yaml_decode, source, path, json.array_mt, json.null)
    if not ok then return nil, tostring(v) end
    return v, lines
  end
  local v, err = json.decode(source)
  if v == nil then return nil, tostring(err) end
  return v
end

--- Append to errs each error of more whose path has no error in errs yet.
-- keep(e) (optional) admits one anyway; with one_each, a path is taken
-- once from more too.
function M.merge(errs, more, keep, one_each)
  local seen = {}
  for _, e in ipairs(errs) do seen[e.path] = true end
  for _, e in ipairs(more or {}) do
    if not seen[e.path] or (keep and keep(e)) then
      errs[#errs + 1] = e
      if one_each then seen[e.path] = true end
    end
  end
  return errs
end

--- Give each error the line of its nearest path in lines and sort them by
-- line, path and message. Returns errs.
function M.locate(errs, lines)
  for _, e in ipairs(errs) do e.line = e.line or util.line_for(lines, e.path) end
  table.sort(errs, function(a, b)
    if (a.line or 0) ~= (b.line or 0) then return (a.line or 0) < (b.line or 0) end
    if a.path ~= b.path then return a.path < b.path end
    return a.message < b.message
  end)
  return errs
end

return M
