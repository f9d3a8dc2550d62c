-- Run by the Neovim 0.7 test (tests/editors/test_neovim.py) with the plugin on 'runtimepath':
-- loading the plugin, calling setup() and the API must not fail, and nothing may be defined.
-- Exits 0 when all holds; a failed check is a Lua error, which the caller turns into exit 1.
assert(vim.g.loaded_sessionlsp == true, "plugin/sessionlsp.lua was not sourced")
local commands = { "SessionNew", "SessionPrompt", "SessionCompact", "SessionCancel", "SessionList", "SessionContext" }
for _, name in ipairs(commands) do
  assert(vim.fn.exists(":" .. name) == 0, ":" .. name .. " is defined on an unsupported Neovim")
end
local sessionlsp = require("sessionlsp")
sessionlsp.setup({ cmd = { "sessionlsp", "serve" } })
assert(sessionlsp.status() == "", "status() must be empty")
sessionlsp.prompt("hello")
assert(#vim.lsp.get_active_clients() == 0, "a language server was started")
vim.cmd("qall!")
