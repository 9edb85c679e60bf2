-- weir.document: the loader steps pipelines and weir.yaml share.
local document = require("weir.document")

describe("weir.document", function()
  it("decodes YAML with the line of every path, and JSON", function()
    local doc, lines = document.decode("a: 1\nb:\n  - x\n  - y\n", "yaml", "t.yaml")
    assert.same({ a = 1, b = { "x", "y" } }, doc)
    assert.equal(1, lines.a)
    assert.equal(4, lines["b[2]"])
    assert.same({ n = 2 }, (document.decode('{"n":2}', "json", "t.json")))
    local v, err = document.decode("a: [", "yaml", "t.yaml")
    assert.is_nil(v)
    assert.matches("t.yaml", err, 1, true)
  end)

  it("keeps the first error of a path unless keep admits another", function()
    local errs = { { path = "a", message = "own" } }
    document.merge(errs, { { path = "a", message = "schema" }, { path = "b", message = "b1" },
                           { path = "b", message = "b2" } }, nil, true)
    assert.same({ "own", "b1" }, { errs[1].message, errs[2].message })
    local e2 = { { path = "a", message = "own" } }
    document.merge(e2, { { path = "a", message = "req", keyword = "required" } },
                   function(e) return e.keyword == "required" end)
    assert.equal(2, #e2)
  end)

  it("gives errors the line of their nearest path and sorts them in file order", function()
    local errs = document.locate({ { path = "b.c", message = "x" }, { path = "a", message = "y" },
                                   { path = "", message = "z" } }, { a = 3, b = 1 })
    assert.same({ "z", "x", "y" }, { errs[1].message, errs[2].message, errs[3].message })
    assert.same({ nil, 1, 3 }, { errs[1].line, errs[2].line, errs[3].line })
  end)

  it("says why a file cannot be read", function()
    local s, err = document.read("/nonexistent/weir.yaml")
    assert.is_nil(s)
    assert.matches("No such file", err)
    s, err = document.read("/tmp")
    assert.is_nil(s)
    assert.equal("/tmp: is a directory", err)
  end)

  it("refuses a FIFO at once instead of waiting for a writer", function()
    local H = require("helpers")
    local dir = H.tmpdir()
    os.execute("mkfifo " .. H.q(dir .. "/p.lua") .. " " .. H.q(dir .. "/weir.yaml"))
    local s, err = document.read(dir .. "/p.lua")
    assert.is_nil(s)
    assert.matches("not a regular file", err)
    local cfg, errs = require("weir.config").open({ cwd = dir })
    assert.is_nil(cfg)
    assert.matches("weir.yaml: not a regular file", errs[1], 1, true)
    H.cleanup(dir)
  end)
end)
