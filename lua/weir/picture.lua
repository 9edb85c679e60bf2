-- weir.picture: pictures of pipelines and runs, as text.
--
-- graph(P, format): a loaded pipeline's DAG as a tree for a terminal, as
-- Graphviz DOT or as Mermaid (weir graph; SVG is DOT through Graphviz).
-- A pipeline that includes template groups (`include`, task names
-- GROUP.TASK) is drawn with a block per group; any other pipeline is drawn
-- by stage (stage k: the longest chain of dependencies above the task has
-- k - 1 tasks), so the tasks of one stage are those that may run at once.
-- timeline(run, attempts): a text Gantt chart of a run's attempts (weir
-- show --timeline). Pure functions; nothing here reads files or the store.
local util = require("weir.util")
local ipairs, pairs, format, concat, sort, floor, max, rep =
  ipairs, pairs, string.format, table.concat, table.sort, math.floor, math.max, string.rep

local M = {}

--- The tasks of P by name, sorted, and the stage of each (1 for a task
-- with no dependency).
function M.stages(P)
  local names = {}
  for name in pairs(P.tasks) do names[#names + 1] = name end
  sort(names)
  local stage = {}
  local function depth(n, seen)
    if stage[n] then return stage[n] end
    seen[n] = true
    local d = 1
    for _, a in ipairs(P.tasks[n].after) do
      if not seen[a] then d = max(d, depth(a, seen) + 1) end
    end
    seen[n] = nil
    stage[n] = d
    return d
  end
  local top = 0
  for _, n in ipairs(names) do top = max(top, depth(n, {})) end
  return names, stage, top
end

local function details(t)
  if (t.retries or 0) > 0 then return "retries " .. t.retries end
  return ""
end

-- a tree: every task under its first dependency (by name), the others
-- named beside it
local function text(P)
  local names, _, top = M.stages(P)
  local children = {}
  local roots = {}
  for _, n in ipairs(names) do
    local after = { unpack(P.tasks[n].after) }
    sort(after)
    if #after == 0 then
      roots[#roots + 1] = n
    else
      local l = children[after[1]] or {}
      children[after[1]] = l
      l[#l + 1] = n
    end
  end
  local groups = M.groups(P)
  local lines = { format("%s: %d tasks in %d stages%s", P.name, #names, top,
                         #groups > 0 and ", groups " .. concat(groups, ", ") or "") }
  local function put(n, indent, last, root)
    local t = P.tasks[n]
    local after = { unpack(t.after) }
    sort(after)
    local also = #after > 1 and "  (also after " .. concat(after, ", ", 2) .. ")" or ""
    local d = details(t)
    local label = n .. (d ~= "" and "  [" .. d .. "]" or "") .. also
    if root then
      lines[#lines + 1] = label
    else
      lines[#lines + 1] = indent .. (last and "└── " or "├── ") .. label
    end
    local kids = children[n] or {}
    local sub = root and "" or indent .. (last and "    " or "│   ")
    for i, k in ipairs(kids) do put(k, sub, i == #kids, false) end
  end
  for _, r in ipairs(roots) do put(r, "", true, true) end
  return concat(lines, "\n") .. "\n"
end

local function dq(s) return '"' .. s:gsub('[\\"]', "\\%0") .. '"' end
local function mq(s) return '"' .. s:gsub('"', "#quot;") .. '"' end

-- DOT and Mermaid share one layout: a block per stage holding its tasks,
-- then one line per dependency. L: head (lines), open(stage), task(name,
-- index), close, edge(from, to) (each gives a line), tail (lines).
--- The groups of P's tasks (GROUP.TASK names of `include`), sorted, or
-- an empty list.
function M.groups(P)
  local seen, out = {}, {}
  for name in pairs(P.tasks) do
    local g = name:match("^([^.]+)%.")
    if g and not seen[g] then seen[g] = true; out[#out + 1] = g end
  end
  sort(out)
  return out
end

local function blocks(P, L)
  local names, stage, top = M.stages(P)
  local index = {}
  for i, n in ipairs(names) do index[n] = i end
  local out = { unpack(L.head) }
  local groups = M.groups(P)
  if #groups > 0 then
    -- a block per group; the pipeline's own tasks outside them
    for _, n in ipairs(names) do
      if not n:find(".", 1, true) then out[#out + 1] = L.task(n, index[n]) end
    end
    for gi, g in ipairs(groups) do
      out[#out + 1] = L.open(gi, "group " .. g)
      for _, n in ipairs(names) do
        if n:sub(1, #g + 1) == g .. "." then out[#out + 1] = L.task(n, index[n]) end
      end
      out[#out + 1] = L.close
    end
  else
    for s = 1, top do
      out[#out + 1] = L.open(s, "stage " .. s)
      for _, n in ipairs(names) do
        if stage[n] == s then out[#out + 1] = L.task(n, index[n]) end
      end
      out[#out + 1] = L.close
    end
  end
  for _, n in ipairs(names) do
    local after = { unpack(P.tasks[n].after) }
    sort(after)
    for _, a in ipairs(after) do out[#out + 1] = L.edge(a, n, index[a], index[n]) end
  end
  for _, l in ipairs(L.tail) do out[#out + 1] = l end
  return concat(out, "\n") .. "\n"
end

local function dot(P)
  return blocks(P, {
    head = { "digraph " .. dq(P.name) .. " {", "  rankdir=LR;",
             "  node [shape=box, style=rounded, fontname=\"Helvetica\"];" },
    open = function(s, label)
      return format("  subgraph cluster_%d {\n    label=%s; style=dashed; color=gray;", s,
                    dq(label))
    end,
    task = function(n) return "    " .. dq(n) .. ";" end,
    close = "  }",
    edge = function(a, n) return format("  %s -> %s;", dq(a), dq(n)) end,
    tail = { "}" },
  })
end

-- Mermaid ids are t1, t2... (names by order): any name can be a label
local function mermaid(P)
  return blocks(P, {
    head = { "flowchart LR" },
    open = function(s, label) return format("  subgraph b%d [%s]", s, mq(label)) end,
    task = function(n, i) return format("    t%d[%s]", i, mq(n)) end,
    close = "  end",
    edge = function(_, _, i, j) return format("  t%d --> t%d", i, j) end,
    tail = {},
  })
end

M.FORMATS = { text = text, dot = dot, mermaid = mermaid }

--- P's DAG as text in format (text, dot or mermaid).
function M.graph(P, fmt)
  return M.FORMATS[fmt](P)
end

--- A run's attempts as a text Gantt chart: one line per attempt (task,
-- attempt, status, start from the run's first attempt, duration) and a
-- bar on a common scale of width columns; retries are marked.
function M.timeline(run, attempts, width)
  width = width or 40
  local t0, t1
  local now = run.finished_at
  for _, a in ipairs(attempts) do
    if a.started_at then
      t0 = t0 and math.min(t0, a.started_at) or a.started_at
      local e = a.finished_at or a.started_at
      t1 = t1 and max(t1, e) or e
    end
  end
  local lines = { format("run %s of %s: %s", run.id, run.pipeline or "?", run.status) }
  if not t0 then
    lines[#lines + 1] = "no attempt has started"
    return concat(lines, "\n") .. "\n"
  end
  t1 = max(t1, now or t1)
  local span = max(t1 - t0, 1)
  lines[1] = lines[1] .. format(", %s from the first attempt's start to the last one's end",
                                util.human_duration((t1 - t0) / 1000))
  local wname = 4
  for _, a in ipairs(attempts) do wname = max(wname, #a.task) end
  local sorted = {}
  for i, a in ipairs(attempts) do sorted[i] = a end
  sort(sorted, function(a, b)
    local sa, sb = a.started_at or math.huge, b.started_at or math.huge
    if sa ~= sb then return sa < sb end
    if a.task ~= b.task then return a.task < b.task end
    return a.attempt < b.attempt
  end)
  lines[#lines + 1] = format("%-" .. wname .. "s  %-3s %-9s %9s %9s  %s", "TASK", "TRY", "STATUS",
                             "START", "DURATION", "|" .. rep(" ", width) .. "|")
  for _, a in ipairs(sorted) do
    local bar
    local start, dur = "-", "-"
    if a.started_at then
      local s = a.started_at - t0
      local e = (a.finished_at or t1) - t0
      local c0 = floor(s / span * width + 0.5)
      local c1 = max(c0 + 1, floor(e / span * width + 0.5))
      if c1 > width then c1 = width; c0 = math.min(c0, width - 1) end
      local fill = a.status == "success" and "█" or (a.status == "running" and "▒" or "░")
      bar = rep(" ", c0) .. rep(fill, c1 - c0) .. rep(" ", width - c1)
      start = "+" .. util.human_duration(s / 1000)
      dur = a.finished_at and util.human_duration((a.finished_at - a.started_at) / 1000) or "running"
    else
      bar = rep(" ", width)
    end
    lines[#lines + 1] = format("%-" .. wname .. "s  %-3d %-9s %9s %9s  |%s|%s", a.task, a.attempt,
                               a.status or "?", start, dur, bar,
                               a.attempt > 1 and "  retry " .. (a.attempt - 1) or "")
  end
  lines[#lines + 1] = "█ succeeded  ░ failed or stopped  ▒ running"
  return concat(lines, "\n") .. "\n"
end

return M
