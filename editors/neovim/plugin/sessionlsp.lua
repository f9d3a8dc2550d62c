-- sessionlsp.nvim entry point. The version check comes first: on Neovim older than 0.10 the
-- plugin says so in one line and defines nothing.
if vim.g.loaded_sessionlsp then
  return
end
vim.g.loaded_sessionlsp = true

local compat = require("sessionlsp.compat")
if not compat.supported() then
  compat.refuse()
  return
end

require("sessionlsp.commands").define()
