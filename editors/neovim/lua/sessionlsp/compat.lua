-- The version gate, and the few vim.lsp calls whose spelling changed between Neovim 0.10 and 0.11.
--
-- This module must load on any Neovim, 0.7 included: at load time it touches nothing newer than
-- vim.fn.has, vim.version and vim.notify. Everything else is only called once supported() said yes.
local M = {}

M.minimum = "0.10"

--- Whether this Neovim can run the plugin.
function M.supported()
  return vim.fn.has("nvim-0.10") == 1
end

function M.version_string()
  local v = vim.version()
  return string.format("%d.%d.%d", v.major, v.minor, v.patch)
end

--- The one-line message shown when the plugin refuses to start.
function M.refusal()
  return string.format(
    "sessionlsp.nvim needs Neovim %s or newer (this is %s); the plugin is not loaded.",
    M.minimum,
    M.version_string()
  )
end

--- Say once per editor session that the plugin is not loaded.
function M.refuse()
  if vim.g.sessionlsp_refused then
    return
  end
  vim.g.sessionlsp_refused = true
  vim.notify(M.refusal(), vim.log.levels.WARN)
end

--- What require("sessionlsp") returns on an old Neovim: setup() and every other function only
--- repeat the refusal, and status() is empty, so a config written for a newer Neovim never fails.
function M.refused_module()
  local module = {
    setup = M.refuse,
    status = function()
      return ""
    end,
  }
  return setmetatable(module, {
    __index = function()
      return M.refuse
    end,
  })
end

local function has_011()
  return vim.fn.has("nvim-0.11") == 1
end

--- Start an LSP client that is attached to no buffer. Returns the client id, or nil and a reason.
function M.start_client(config)
  if has_011() then
    local ok, id = pcall(vim.lsp.start, config, {
      attach = false,
      silent = true,
      reuse_client = function()
        return false
      end,
    })
    if not ok then
      return nil, tostring(id)
    end
    if not id then
      return nil, "vim.lsp.start() did not start a client (see the LSP log: " .. vim.lsp.get_log_path() .. ")"
    end
    return id
  end
  local ok, id, err = pcall(vim.lsp.start_client, config)
  if not ok then
    return nil, tostring(id)
  end
  if not id then
    return nil, tostring(err or "vim.lsp.start_client() did not start a client")
  end
  return id
end

--- vim.lsp.rpc.start: (cmd, dispatchers, extra) since 0.10; (cmd, cmd_args, dispatchers, extra)
--- before. Told apart by arity rather than by version, so a backport cannot break it.
function M.rpc_start(cmd, dispatchers, extra)
  local start = vim.lsp.rpc.start
  local info = debug.getinfo(start, "u")
  if info and info.nparams and info.nparams >= 4 then
    local args = {}
    for i = 2, #cmd do
      args[#args + 1] = cmd[i]
    end
    return start(cmd[1], args, dispatchers, extra)
  end
  return start(cmd, dispatchers, extra)
end

-- Method-call style on 0.11 (the dot form is deprecated there); the dot form on 0.10, where the
-- colon form passes the client as the method name.

function M.request(client, method, params, handler)
  if has_011() then
    return client:request(method, params, handler)
  end
  return client.request(method, params, handler)
end

function M.notify(client, method, params)
  if has_011() then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.stop(client, force)
  if has_011() then
    return client:stop(force)
  end
  return client.stop(force)
end

function M.is_stopped(client)
  if has_011() then
    return client:is_stopped()
  end
  return client.is_stopped()
end

return M
