-- The plugin's options: defaults, and setup()'s checks.
local M = {}

local OPEN_MODES = { vsplit = true, split = true, tab = true, current = true }

--- @class sessionlsp.Options
--- @field cmd string[] how to start the server
--- @field cmd_env table<string,string>? extra environment for the server
--- @field cmd_cwd string? working directory of the server
--- @field init_options table? settings sent as initializationOptions (never the API key)
--- @field open string where a chat buffer opens: "vsplit", "split", "tab" or "current"
--- @field directory false|string|fun():string? the directory new sessions work in (their tools
---   read it); false for sessions without tools
--- @field timeout_ms integer how long :checkhealth waits for the server to start
local defaults = {
  cmd = { "sessionlsp", "serve" },
  cmd_env = nil,
  cmd_cwd = nil,
  init_options = nil,
  open = "vsplit",
  directory = function()
    return vim.fn.getcwd()
  end,
  timeout_ms = 15000,
}

--- @type sessionlsp.Options
M.options = vim.deepcopy(defaults)

local function fail(message)
  error("sessionlsp.setup: " .. message, 3)
end

local function check(opts)
  if type(opts.cmd) ~= "table" or #opts.cmd == 0 then
    fail("cmd must be a non-empty list of strings, e.g. { 'sessionlsp', 'serve' }")
  end
  for i, arg in ipairs(opts.cmd) do
    if type(arg) ~= "string" then
      fail(string.format("cmd[%d] must be a string, got %s", i, type(arg)))
    end
  end
  if opts.cmd_env ~= nil and type(opts.cmd_env) ~= "table" then
    fail("cmd_env must be a table of environment variables")
  end
  if opts.cmd_cwd ~= nil and type(opts.cmd_cwd) ~= "string" then
    fail("cmd_cwd must be a directory path")
  end
  if opts.init_options ~= nil and type(opts.init_options) ~= "table" then
    fail("init_options must be a table of sessionlsp settings (see docs/protocol.md)")
  end
  if not OPEN_MODES[opts.open] then
    fail("open must be one of vsplit, split, tab, current; got " .. tostring(opts.open))
  end
  local dir = opts.directory
  if dir ~= false and dir ~= nil and type(dir) ~= "string" and type(dir) ~= "function" then
    fail("directory must be false, a path or a function returning one")
  end
  if type(opts.timeout_ms) ~= "number" or opts.timeout_ms <= 0 then
    fail("timeout_ms must be a positive number")
  end
end

--- Merge user options over the defaults. Returns the effective options.
function M.setup(user)
  user = user or {}
  if type(user) ~= "table" then
    fail("expects a table of options")
  end
  local opts = vim.tbl_extend("force", vim.deepcopy(defaults), user)
  if user.init_options then
    opts.init_options = vim.deepcopy(user.init_options)
    -- Editors log initializationOptions, so the server ignores the key there; never send it.
    for _, key in ipairs({ "apiKey", "api_key" }) do
      if opts.init_options[key] ~= nil then
        opts.init_options[key] = nil
        vim.notify(
          "sessionlsp: init_options." .. key .. " is ignored: set SESSIONLSP_API_KEY in the "
            .. "environment (or apiKey in the sessionlsp config file) instead",
          vim.log.levels.WARN
        )
      end
    end
    if next(opts.init_options) == nil then
      opts.init_options = nil
    end
  end
  check(opts)
  M.options = opts
  return opts
end

--- The directory for a new session, or nil for none.
function M.session_directory()
  local dir = M.options.directory
  if type(dir) == "function" then
    dir = dir()
  end
  if type(dir) == "string" and dir ~= "" then
    return dir
  end
  return nil
end

return M
