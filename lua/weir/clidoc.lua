-- weir.clidoc: everything the command line says about itself, made from
-- the one table of command definitions (weir.cli's M.COMMANDS): the
-- argument parser, the overview of `weir help`, each command's help,
-- bash, zsh and fish completion scripts and the man page. A command is
-- one definition; nothing here names a command (docs/adr/0036).
--
-- A definition: name; args, its positional arguments as shown ("FILE",
-- "[NAME]" optional, "ARGS..." repeated); summary, one line; help, more
-- text (optional); options, a list of { name, arg = METAVAR (absent: a
-- flag), help, short = letter, number = true (with min, max), choices =
-- list, many = true (repeated: a list), pairs = true (k=v, repeated: a
-- table) }; complete, per positional "file", "dir" or a list of words;
-- raw = true to get the arguments unparsed; usage, lines replacing the
-- generated usage line; run(o, pos) returns the exit code.
local format, concat, rep = string.format, table.concat, string.rep

local M = {}

--- Options every command takes (after its own).
M.COMMON = {
  { name = "help", short = "h", help = "show this command's help and exit" },
  { name = "log-level", arg = "LEVEL", choices = { "debug", "info", "warn", "error" },
    help = "what to print besides results: debug, info (default), warn or error" },
  { name = "verbose", short = "v", help = "same as --log-level debug" },
  { name = "quiet", short = "q", help = "same as --log-level error" },
}

local function options_of(def)
  local list = {}
  for _, o in ipairs(def.options or {}) do list[#list + 1] = o end
  for _, o in ipairs(M.COMMON) do list[#list + 1] = o end
  return list
end
M.options_of = options_of

local function find_option(def, name, short)
  for _, o in ipairs(options_of(def)) do
    if (name and o.name == name) or (short and o.short == short) then return o end
  end
end

-- the fewest and most positionals def takes (most: nil, unbounded)
local function arity(def)
  local lo, hi = 0, 0
  for _, a in ipairs(def.args or {}) do
    if a:sub(-3) == "..." then hi = nil end
    if a:sub(1, 1) ~= "[" then lo = lo + 1 end
    if hi then hi = hi + 1 end
  end
  return lo, hi
end

--- Parse args (a list of strings) for def. Returns o (option name ->
-- value; o.params for pairs options), pos (the positionals); or nil and
-- a message for a usage error.
function M.parse(def, args)
  local o, pos = { params = {} }, {}
  local i, only_pos = 1, false
  local function value(opt, val)
    if opt.pairs then
      local k, v = val:match("^([^=]+)=(.*)$")
      if not k then return format("--%s expects K=V, got %q", opt.name, val) end
      if o.params[k] ~= nil then return format("--%s %s given twice", opt.name, k) end
      o.params[k] = v
      return
    end
    if opt.number then
      local n = tonumber(val)
      if not n or n ~= math.floor(n) then return format("--%s expects a whole number, got %q",
                                                        opt.name, val) end
      if (opt.min and n < opt.min) or (opt.max and n > opt.max) then
        return format("--%s must be %d..%d", opt.name, opt.min, opt.max)
      end
      val = n
    elseif opt.choices then
      local ok = false
      for _, c in ipairs(opt.choices) do ok = ok or c == val end
      if not ok then
        return format("--%s must be %s, got %q", opt.name, concat(opt.choices, ", "), val)
      end
    end
    if opt.many then
      o[opt.name] = o[opt.name] or {}
      local l = o[opt.name]
      l[#l + 1] = val
    elseif o[opt.name] ~= nil then
      return format("--%s given twice", opt.name)
    else
      o[opt.name] = val
    end
  end
  while i <= #args do
    local a = args[i]
    local name, val, short
    if not only_pos then
      if a == "--" then only_pos = true; a = nil
      else
        name, val = a:match("^%-%-([%w][%w%-]*)=(.*)$")
        name = name or a:match("^%-%-([%w][%w%-]*)$")
        if not name then short = a:match("^%-(%a)$") end
      end
    end
    if name or short then
      local opt = find_option(def, name, short)
      if not opt then return nil, format("unknown option %s", a) end
      if opt.arg then
        if not val then
          i = i + 1
          val = args[i]
          if val == nil then return nil, format("option --%s needs a value (%s)", opt.name,
                                                 opt.arg) end
        end
        local err = value(opt, val)
        if err then return nil, err end
      elseif val then
        return nil, format("option --%s takes no value", opt.name)
      else
        o[opt.name] = true
      end
    elseif a then
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  if o.help then return o, pos end
  local lo, hi = arity(def)
  if #pos < lo then
    return nil, format("expected %s", concat(def.args, " "))
  end
  if hi and #pos > hi then
    return nil, format("unexpected argument %q", pos[hi + 1])
  end
  return o, pos
end

local function option_usage(opt)
  local s = "--" .. opt.name
  if opt.arg then s = s .. " " .. opt.arg end
  if opt.many or opt.pairs then s = s .. "]..." else s = s .. "]" end
  return "[" .. s
end

--- The usage line(s) of def: "weir run FILE [--param K=V]... ...".
function M.usage(def)
  if def.usage then
    local out = {}
    for k, l in ipairs(def.usage) do out[k] = "weir " .. def.name .. " " .. l end
    return out
  end
  local parts = { "weir", def.name }
  for _, a in ipairs(def.args or {}) do parts[#parts + 1] = a end
  for _, opt in ipairs(def.options or {}) do parts[#parts + 1] = option_usage(opt) end
  -- wrapped at 78 columns, continuation lines indented
  local lines, line = {}, ""
  for _, p in ipairs(parts) do
    if #line + #p + 1 > 78 and line ~= "" then
      lines[#lines + 1] = line
      line = "       " .. p
    else
      line = line == "" and p or line .. " " .. p
    end
  end
  lines[#lines + 1] = line
  return lines
end

local function wrap(text, width, indent)
  local lines, line = {}, ""
  for word in text:gmatch("%S+") do
    if #line + #word + 1 > width and line ~= "" then
      lines[#lines + 1] = line
      line = word
    else
      line = line == "" and word or line .. " " .. word
    end
  end
  if line ~= "" then lines[#lines + 1] = line end
  for k, l in ipairs(lines) do lines[k] = indent .. l end
  return concat(lines, "\n")
end

local function option_label(opt)
  local s = (opt.short and ("-" .. opt.short .. ", ") or "") .. "--" .. opt.name
  if opt.arg then s = s .. " " .. opt.arg end
  return s
end

-- Append to out a label and its text wrapped in a column from 27: beside
-- the label when it is short, else on the lines below it.
local function two_columns(out, label, text)
  text = wrap(text, 50, rep(" ", 26))
  if #label < 25 then
    out[#out + 1] = label .. rep(" ", 26 - #label) .. text:sub(27)
  else
    out[#out + 1] = label
    out[#out + 1] = text
  end
end

--- `weir help CMD` / `weir CMD --help`.
function M.command_help(def)
  local out = { "usage: " .. concat(M.usage(def), "\n   or: "), "", wrap(def.summary, 76, "") }
  if def.help then
    for para in (def.help .. "\n\n"):gmatch("(.-)\n\n") do
      if para:match("%S") then out[#out + 1] = ""; out[#out + 1] = wrap(para, 76, "") end
    end
  end
  out[#out + 1] = ""
  out[#out + 1] = "options:"
  for _, opt in ipairs(options_of(def)) do
    two_columns(out, "  " .. option_label(opt), opt.help)
  end
  return concat(out, "\n") .. "\n"
end

--- The command list of `weir help`: each command's arguments and summary.
function M.overview(defs)
  local out = {}
  for _, def in ipairs(defs) do
    if not def.hidden then
      two_columns(out, "  " .. def.name .. (def.args and #def.args > 0
                                             and " " .. concat(def.args, " ") or ""),
                  def.summary)
    end
  end
  return concat(out, "\n") .. "\n"
end

-- every option spelling of def, for completion
local function spellings(def)
  local s = {}
  for _, opt in ipairs(options_of(def)) do
    s[#s + 1] = "--" .. opt.name
    if opt.short then s[#s + 1] = "-" .. opt.short end
  end
  return s
end

local function names(defs)
  local n = {}
  for _, def in ipairs(defs) do if not def.hidden then n[#n + 1] = def.name end end
  return n
end

-- what the first positional of def completes to: "file", "dir", words
local function first_complete(def)
  local c = def.complete and def.complete[1]
  return c
end

local function bash(defs)
  local out = { "# bash completion for weir (weir completion bash)",
                "_weir() {",
                "  local cur prev cmd",
                "  cur=\"${COMP_WORDS[COMP_CWORD]}\"",
                "  prev=\"${COMP_WORDS[COMP_CWORD-1]}\"",
                "  if [ \"$COMP_CWORD\" -eq 1 ]; then",
                format("    COMPREPLY=($(compgen -W %q -- \"$cur\"))", concat(names(defs), " ")),
                "    return",
                "  fi",
                "  cmd=\"${COMP_WORDS[1]}\"",
                "  case \"$cmd\" in" }
  for _, def in ipairs(defs) do
    out[#out + 1] = "  " .. def.name .. ")"
    -- an option's value: its choices, or a file
    local vals = {}
    for _, opt in ipairs(options_of(def)) do
      if opt.choices then
        vals[#vals + 1] = format("      --%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return;;",
                                 opt.name, concat(opt.choices, " "))
      elseif opt.arg == "FILE" then
        vals[#vals + 1] = format("      --%s) COMPREPLY=($(compgen -f -- \"$cur\")); return;;",
                                 opt.name)
      end
    end
    if #vals > 0 then
      out[#out + 1] = "    case \"$prev\" in"
      for _, v in ipairs(vals) do out[#out + 1] = v end
      out[#out + 1] = "    esac"
    end
    local c = first_complete(def)
    local words = concat(spellings(def), " ")
    out[#out + 1] = "    if [[ \"$cur\" == -* ]]; then"
    out[#out + 1] = format("      COMPREPLY=($(compgen -W %q -- \"$cur\"))", words)
    if c == "file" then
      out[#out + 1] = "    else COMPREPLY=($(compgen -f -- \"$cur\"))"
    elseif type(c) == "table" then
      out[#out + 1] = format("    else COMPREPLY=($(compgen -W %q -- \"$cur\"))",
                             concat(c, " "))
    end
    out[#out + 1] = "    fi;;"
  end
  out[#out + 1] = "  esac"
  out[#out + 1] = "}"
  out[#out + 1] = "complete -o default -F _weir weir"
  return concat(out, "\n") .. "\n"
end

local function zsh_quote(s) return (s:gsub("'", "'\\''"):gsub("%[", "\\["):gsub("%]", "\\]")) end

local function zsh(defs)
  local out = { "#compdef weir", "# zsh completion for weir (weir completion zsh)", "",
                "_weir() {", "  local -a cmds", "  cmds=(" }
  for _, def in ipairs(defs) do
    if not def.hidden then
      out[#out + 1] = format("    '%s:%s'", def.name, zsh_quote(def.summary:gsub(":", "\\:")))
    end
  end
  out[#out + 1] = "  )"
  out[#out + 1] = "  if (( CURRENT == 2 )); then _describe 'command' cmds; return; fi"
  out[#out + 1] = "  local cmd=$words[2]; shift words; (( CURRENT-- ))"
  out[#out + 1] = "  case $cmd in"
  for _, def in ipairs(defs) do
    out[#out + 1] = "  " .. def.name .. ")"
    local specs = { "    _arguments -s" }
    for _, opt in ipairs(options_of(def)) do
      local what = ""
      if opt.choices then
        what = ":" .. opt.arg:lower() .. ":(" .. concat(opt.choices, " ") .. ")"
      elseif opt.arg == "FILE" then what = ":file:_files"
      elseif opt.arg then what = ":" .. opt.arg:lower() .. ":" end
      local body = format("[%s]%s", zsh_quote(opt.help), what)
      if opt.short then
        specs[#specs + 1] = format("{-%s,--%s}'%s'", opt.short, opt.name, body)
      else
        specs[#specs + 1] = format("'%s--%s%s'", (opt.many or opt.pairs) and "*" or "",
                                   opt.name, body)
      end
    end
    local c = first_complete(def)
    if c == "file" then specs[#specs + 1] = "'1:file:_files'"
    elseif type(c) == "table" then
      specs[#specs + 1] = format("'1:%s:(%s)'", "argument", concat(c, " "))
    end
    out[#out + 1] = concat(specs, " \\\n      ") .. ";;"
  end
  out[#out + 1] = "  esac"
  out[#out + 1] = "}"
  out[#out + 1] = "_weir \"$@\""
  return concat(out, "\n") .. "\n"
end

local function fish_quote(s) return "'" .. s:gsub("\\", "\\\\"):gsub("'", "\\'") .. "'" end

local function fish(defs)
  local out = { "# fish completion for weir (weir completion fish)",
                "complete -c weir -f" }
  for _, def in ipairs(defs) do
    if not def.hidden then
      out[#out + 1] = format("complete -c weir -n __fish_use_subcommand -a %s -d %s", def.name,
                             fish_quote(def.summary))
    end
  end
  for _, def in ipairs(defs) do
    local cond = "'__fish_seen_subcommand_from " .. def.name .. "'"
    for _, opt in ipairs(options_of(def)) do
      local line = format("complete -c weir -n %s -l %s", cond, opt.name)
      if opt.short then line = line .. " -s " .. opt.short end
      if opt.choices then line = line .. " -x -a " .. fish_quote(concat(opt.choices, " "))
      elseif opt.arg == "FILE" then line = line .. " -r -F"
      elseif opt.arg then line = line .. " -x" end
      out[#out + 1] = line .. " -d " .. fish_quote(opt.help)
    end
    local c = first_complete(def)
    if c == "file" then
      out[#out + 1] = format("complete -c weir -n %s -F", cond)
    elseif type(c) == "table" then
      out[#out + 1] = format("complete -c weir -n %s -a %s", cond, fish_quote(concat(c, " ")))
    end
  end
  return concat(out, "\n") .. "\n"
end

M.SHELLS = { bash = bash, zsh = zsh, fish = fish }

--- The completion script for shell ("bash", "zsh" or "fish").
function M.completion(shell, defs)
  return M.SHELLS[shell](defs)
end

local function roff(s)
  s = s:gsub("\\", "\\e"):gsub("%-", "\\-")
  return (s:gsub("\n%.", "\n\\&."):gsub("^%.", "\\&."):gsub("\n'", "\n\\&'"))
end

--- The man page weir(1) in roff: the commands and their options from
-- defs, then the sections of sections (a list of { title, text }).
function M.man(defs, version, sections)
  local out = { format('.TH WEIR 1 "" "weir %s" "User Commands"', version),
                ".SH NAME", "weir \\- run data pipelines written in Lua, YAML or JSON",
                ".SH SYNOPSIS", ".B weir", ".I command", "[options]",
                ".SH COMMANDS" }
  for _, def in ipairs(defs) do
    if not def.hidden then
      out[#out + 1] = ".SS " .. roff(concat(M.usage(def), " "):gsub("%s+", " "))
      out[#out + 1] = roff(def.summary)
      if def.help then
        for para in (def.help .. "\n\n"):gmatch("(.-)\n\n") do
          if para:match("%S") then out[#out + 1] = ".PP"; out[#out + 1] = roff(para) end
        end
      end
      for _, opt in ipairs(def.options or {}) do
        out[#out + 1] = ".TP"
        out[#out + 1] = "\\fB" .. roff(option_label(opt)) .. "\\fR"
        out[#out + 1] = roff(opt.help)
      end
    end
  end
  out[#out + 1] = ".SH COMMON OPTIONS"
  for _, opt in ipairs(M.COMMON) do
    out[#out + 1] = ".TP"
    out[#out + 1] = "\\fB" .. roff(option_label(opt)) .. "\\fR"
    out[#out + 1] = roff(opt.help)
  end
  for _, s in ipairs(sections) do
    out[#out + 1] = ".SH " .. s[1]:upper()
    out[#out + 1] = ".nf"
    out[#out + 1] = roff((s[2]:gsub("^  ", ""):gsub("\n  ", "\n")))
    out[#out + 1] = ".fi"
  end
  return concat(out, "\n") .. "\n"
end

return M
