local executor = require("weir.executor")

describe("weir.executor", function()
  it("gets a failure record built in C when Lua cannot run the job", function()
    -- a memory cap below what the prepared sandbox already uses: the worker
    -- answers without running Lua (runtime/worker.c: send_failure)
    local ex = assert(executor.new({ workers = 1, exe = os.getenv("WEIR_BIN") }))
    assert(ex:send(0, 1000, "unused"))
    local res
    local deadline = executor.mono() + 10000
    while not res and executor.mono() < deadline do
      for _, e in ipairs(assert(ex:poll(100))) do
        assert.equal("result", e.kind)
        res = e.result
      end
    end
    ex:close()
    assert.is_table(res)
    assert.equal("failed", res.status)
    assert.equal("memory", res.kind)
    assert.matches("^memory limit of 1000 bytes is below what the sandbox itself needs %(%d+%)$",
                   res.error)
    local n = 0
    for _ in pairs(res) do n = n + 1 end
    assert.equal(3, n)
  end)
end)
