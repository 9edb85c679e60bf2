-- run.lua - run the busted specs of one folder inside the weir binary:
--   weir script tests/lua/run.lua tests/lua/unit
-- The trusted library is embedded in the binary, so specs require the very
-- modules the product runs; busted itself comes from Debian's lua-busted.
local dir = assert(arg[1], "usage: weir script tests/lua/run.lua DIR")
local src = os.getenv("WEIR_SRC") or "."
package.path = src .. "/tests/lua/?.lua;" .. package.path
arg = { "--pattern=_spec", "--output=utfTerminal", "-v", dir }
arg[0] = "busted"
require("busted.runner")({ standalone = false })
