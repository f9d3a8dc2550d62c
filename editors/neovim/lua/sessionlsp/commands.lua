-- The :Session* user commands, thin wrappers around require("sessionlsp").
local M = {}

local function arg(opts)
  return opts.args ~= "" and opts.args or nil
end

function M.define()
  local create = vim.api.nvim_create_user_command
  local function api()
    return require("sessionlsp")
  end
  create("SessionNew", function(opts)
    api().new({ title = arg(opts) })
  end, { nargs = "?", desc = "sessionlsp: start a session (optional title)" })
  create("SessionPrompt", function(opts)
    api().prompt(arg(opts))
  end, { nargs = "*", desc = "sessionlsp: send a prompt (asks for it without text)" })
  create("SessionCompact", function(opts)
    api().compact(arg(opts))
  end, { nargs = "*", desc = "sessionlsp: compact the session now (optional instructions)" })
  create("SessionCancel", function()
    api().cancel()
  end, { nargs = 0, desc = "sessionlsp: stop the running answer" })
  create("SessionList", function()
    api().list()
  end, { nargs = 0, desc = "sessionlsp: pick a session to open" })
  create("SessionContext", function()
    api().context()
  end, { nargs = 0, desc = "sessionlsp: show what the model would see next" })
end

return M
