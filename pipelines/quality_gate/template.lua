-- quality_gate: data-quality checks that stop a pipeline or warn.
return pipeline {
  name = "quality_gate",
  description = "a data-quality gate: checks that fail or warn",
  template = {
    version = "1.0.0",
    summary = "Check a SQLite table (row count, not null, unique): fail the run's downstream tasks, or warn",
    description = [[
Runs `ctx.check` on `table` of the SQLite database `database` with
`rules` (`row_count = { min, max }`, `not_null = { cols }`, `unique = {
cols }`). With `severity = "fail"` a failed check fails the task, so the
tasks after it do not run (upstream_failed); with `"warn"` the task
succeeds and its output lists the failures (`passed = false`) and its log
says them. It reads only, so retries and re-runs change nothing.]],
    reads = { "`table` of `database`" },
    example = "weir run template:quality_gate --param database=out/shop.db --param table=orders "
      .. "--param 'rules={\"not_null\":[\"id\"],\"unique\":[\"id\"],\"row_count\":{\"min\":1}}'",
  },
  params = {
    database = { type = "string", description = "the SQLite database file", examples = { "out/shop.db" } },
    table = { type = "string", description = "the table to check", examples = { "orders" } },
    rules = { type = "object", description = "the checks (docs/pipelines.md, ctx.check)",
              examples = { { not_null = { "id" }, unique = { "id" }, row_count = { min = 1 } } } },
    severity = { type = "string", enum = { "fail", "warn" }, default = "fail",
                 description = "fail: a failed check fails the task; warn: it is reported" },
  },
  tasks = {
    check = task {
      run = function(ctx)
        local p = ctx.params
        local db = ctx.sqlite(p.database, { create = false })
        local ok, res = pcall(ctx.check, db, p.table, p.rules)
        if ok then return { passed = true, row_count = res.row_count } end
        if p.severity == "fail" then error(res, 0) end
        ctx.log("warning: %s", tostring(res))
        return { passed = false, failures = tostring(res) }
      end,
    },
  },
}
