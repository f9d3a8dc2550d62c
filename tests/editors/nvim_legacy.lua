-- Run by the Neovim 0.7 test (tests/editors/test_neovim.py) with the plugin on 'runtimepath':
-- loading the plugin, calling setup() and the API must not fail, nothing may be defined, and
-- :checkhealth sessionlsp reports the refusal as an error (not a failed health check).
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
vim.cmd("silent checkhealth sessionlsp")
local report = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
assert(not report:find("Failed to run healthcheck", 1, true), report)
assert(report:find("ERROR: sessionlsp.nvim needs Neovim 0.10 or newer", 1, true), report)
vim.cmd("qall!")
