-- The connection to `sessionlsp serve`: starts it through vim.lsp (so $/progress, the LSP log and
-- :checkhealth vim.lsp work as for any server), sends requests once it is initialized, hands its
-- notifications to subscribers, and says clearly what to do when it cannot start or stops.
local compat = require("sessionlsp.compat")
local config = require("sessionlsp.config")

local M = {}

M.NAME = "sessionlsp"
M.PROTOCOL_VERSION = 1
--- error.code given to callbacks whose request could not be answered because the server is gone
--- (a client-side code, outside the server's table in docs/protocol.md)
M.SERVER_GONE = -32099

local state = {
  client_id = nil, ---@type integer?
  phase = "stopped", ---@type "stopped"|"starting"|"running"
  waiting = {}, ---@type fun(err: table?)[] callbacks waiting for the server to be ready
  pending = {}, ---@type table<integer, fun(err: table?, result: any)> requests in flight
  next_token = 0,
  info = nil, ---@type table? what initialize said: { server = serverInfo, caps = sessionlsp caps }
  listeners = {}, ---@type table<string, fun(...)[]>
  quiet = {}, ---@type table<integer, boolean> clients whose exit is expected
  leaving = false,
}

local function emit(event, ...)
  for _, fn in ipairs(state.listeners[event] or {}) do
    local ok, err = pcall(fn, ...)
    if not ok then
      vim.notify("sessionlsp: error while handling " .. event .. ": " .. tostring(err), vim.log.levels.ERROR)
    end
  end
end

--- Subscribe to "session/sync", "session/delta", "session/status" (params), "ready" (info) or
--- "exit" ({ code, signal, expected }).
function M.on(event, fn)
  state.listeners[event] = state.listeners[event] or {}
  table.insert(state.listeners[event], fn)
end

local function gone(message)
  return { code = M.SERVER_GONE, message = message or "the sessionlsp server is not running" }
end

local function fail_all(err)
  local waiting, pending = state.waiting, state.pending
  state.waiting, state.pending = {}, {}
  for _, cb in ipairs(waiting) do
    cb(err)
  end
  for _, cb in pairs(pending) do
    cb(err, nil)
  end
end

local function missing_message(exe)
  return string.format(
    "sessionlsp: cannot start the server: `%s` is not an executable on $PATH. Install sessionlsp "
      .. "(in a checkout, ./dev creates .venv/bin/sessionlsp) or give its path: "
      .. "require('sessionlsp').setup({ cmd = { '/path/to/sessionlsp', 'serve' } })",
    exe
  )
end

local function init_error_message(err)
  local message = type(err) == "table" and tostring(err.message) or tostring(err)
  local code = type(err) == "table" and err.code or nil
  local fix = "check init_options in require('sessionlsp').setup() and `sessionlsp config`"
  if code == -31005 then
    fix = "check the database path (--db or the db setting) and that it is writable"
  end
  return string.format("sessionlsp: the server refused to start: %s (%s)", message, fix)
end

local function exit_message(code, signal)
  local how = signal ~= 0 and ("signal " .. signal) or ("exit code " .. code)
  return string.format(
    "sessionlsp: the server stopped unexpectedly (%s). Its error output is in the LSP log: %s. "
      .. "Run :checkhealth sessionlsp; the next :Session command starts it again.",
    how,
    vim.lsp.get_log_path()
  )
end

local SECRET_WORDS = { "KEY", "TOKEN", "SECRET", "PASSWORD" }

--- cmd_env split into the variables vim.lsp.rpc.start may see and the secrets (SESSIONLSP_API_KEY
--- and the like): it writes its spawn options to the LSP log (at level info).
local function split_env(env)
  local plain, secrets = nil, {}
  for name, value in pairs(env or {}) do
    local upper = name:upper()
    local secret = vim.iter(SECRET_WORDS):any(function(word)
      return upper:find(word, 1, true) ~= nil
    end)
    if secret then
      secrets[name] = value
    else
      plain = plain or {}
      plain[name] = value
    end
  end
  return plain, secrets
end

--- pcall(fn) with `vars` set in Neovim's own environment, put back afterwards: the server is
--- spawned inside fn, synchronously, and inherits them without them passing through the log.
local function with_env(vars, fn)
  local saved = {}
  for name, value in pairs(vars) do
    saved[name] = vim.env[name] or false
    vim.env[name] = tostring(value)
  end
  local ok, result = pcall(fn)
  for name, value in pairs(saved) do
    vim.env[name] = value or nil
  end
  return ok, result
end

--- Spawn the server through vim.lsp.rpc, with initialize answered by an error turned into one
--- clear message and a stopped process instead of vim.lsp's assertion.
local function spawner(cmd, opts, on_init_error, spawn)
  local env, secrets = split_env(opts.cmd_env)
  return function(dispatchers)
    local ok, rpc = with_env(secrets, function()
      return compat.rpc_start(cmd, dispatchers, { cwd = opts.cmd_cwd, env = env })
    end)
    if not ok then
      spawn.error = tostring(rpc) -- vim.lsp swallows it (silent start); start() reports it
      error(rpc, 0)
    end
    local request = rpc.request
    rpc.request = function(method, params, callback, notify_reply_callback)
      if method == "initialize" then
        local inner = callback
        callback = function(err, result)
          if err then
            on_init_error(err)
            rpc.terminate()
            return
          end
          return inner(err, result)
        end
      end
      return request(method, params, callback, notify_reply_callback)
    end
    return rpc
  end
end

local function dispatch(method)
  return function(_, params, ctx)
    if ctx.client_id == state.client_id then
      emit(method, params)
    end
    return vim.NIL
  end
end

local function read_info(result)
  local caps = result and result.capabilities or {}
  local experimental = type(caps.experimental) == "table" and caps.experimental or {}
  return {
    server = result and result.serverInfo or {},
    caps = type(experimental.sessionlsp) == "table" and experimental.sessionlsp or {},
  }
end

--- Build a vim.lsp client config for the server. `hooks` gets on_init(client, result),
--- on_init_error(err) and on_exit(code, signal, client_id) (the last from a libuv callback).
local function lsp_config(name, opts, handlers, hooks)
  local spawn = {}
  return {
    name = name,
    cmd = spawner(vim.deepcopy(opts.cmd), opts, hooks.on_init_error, spawn),
    init_options = opts.init_options,
    capabilities = vim.lsp.protocol.make_client_capabilities(),
    handlers = handlers,
    on_init = hooks.on_init,
    on_exit = hooks.on_exit,
  }, spawn
end

local function start()
  local opts = config.options
  local exe = opts.cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    local message = missing_message(exe)
    vim.notify(message, vim.log.levels.ERROR)
    fail_all(gone(message))
    return
  end
  state.phase = "starting"
  state.info = nil
  local handlers = {
    ["session/sync"] = dispatch("session/sync"),
    ["session/delta"] = dispatch("session/delta"),
    ["session/status"] = dispatch("session/status"),
  }
  local cfg, spawn = lsp_config(M.NAME, opts, handlers, {
    on_init = function(client, result)
      if client.id ~= state.client_id then
        return
      end
      state.info = read_info(result)
      state.phase = "running"
      local version = state.info.caps.protocolVersion
      if version ~= M.PROTOCOL_VERSION then
        vim.notify(
          string.format(
            "sessionlsp: the server speaks protocol version %s, this plugin version %d; "
              .. "update the one that is older",
            tostring(version),
            M.PROTOCOL_VERSION
          ),
          vim.log.levels.WARN
        )
      end
      local waiting = state.waiting
      state.waiting = {}
      for _, cb in ipairs(waiting) do
        cb(nil)
      end
      emit("ready", state.info)
    end,
    on_init_error = function(err)
      -- runs before on_init, so the client id is the one being started
      if state.client_id then
        state.quiet[state.client_id] = true
      end
      local message = init_error_message(err)
      vim.notify(message, vim.log.levels.ERROR)
      state.client_id, state.phase, state.info = nil, "stopped", nil
      fail_all(gone(message))
      emit("exit", { code = nil, signal = nil, expected = false })
    end,
    on_exit = function(code, signal, client_id)
      -- called from a libuv callback: nothing here may touch the editor directly
      vim.schedule(function()
        local expected = state.quiet[client_id] or state.leaving
        state.quiet[client_id] = nil
        if client_id ~= state.client_id then
          return
        end
        state.client_id, state.phase, state.info = nil, "stopped", nil
        local message = exit_message(code, signal)
        -- a clean exit (code 0, or SIGTERM as :LspStop sends) is someone's choice, not a failure
        local crashed = code ~= 0 or (signal ~= 0 and signal ~= 15)
        expected = expected or not crashed
        if not expected then
          vim.notify(message, vim.log.levels.ERROR)
        end
        fail_all(gone(expected and "the sessionlsp server was stopped" or message))
        emit("exit", { code = code, signal = signal, expected = expected })
      end)
    end,
  })
  local id, err = compat.start_client(cfg)
  if not id then
    state.phase = "stopped"
    local message = string.format(
      "sessionlsp: cannot start the server (%s): %s",
      table.concat(opts.cmd, " "),
      tostring(spawn.error or err)
    )
    vim.notify(message, vim.log.levels.ERROR)
    fail_all(gone(message))
    return
  end
  state.client_id = id
end

--- Call cb(err) once the server is initialized, starting it when needed.
function M.ensure(cb)
  if state.phase == "running" then
    cb(nil)
    return
  end
  table.insert(state.waiting, cb)
  if state.phase == "stopped" then
    start()
  end
end

local function current_client()
  return state.client_id and vim.lsp.get_client_by_id(state.client_id) or nil
end

--- Send a request; cb(err, result) gets the server's answer (err: { code, message, data? }).
function M.request(method, params, cb)
  cb = cb or function() end
  M.ensure(function(err)
    if err then
      cb(err, nil)
      return
    end
    local client = current_client()
    if not client then
      cb(gone(), nil)
      return
    end
    state.next_token = state.next_token + 1
    local token = state.next_token
    state.pending[token] = cb
    local ok = compat.request(client, method, params or vim.empty_dict(), function(rerr, result)
      local callback = state.pending[token]
      if callback then
        state.pending[token] = nil
        callback(rerr, result)
      end
    end)
    if not ok then
      state.pending[token] = nil
      cb(gone(), nil)
    end
  end)
end

--- Send a notification (only when the server is running; returns false otherwise).
function M.notify(method, params)
  local client = state.phase == "running" and current_client() or nil
  if not client then
    return false
  end
  return compat.notify(client, method, params or vim.empty_dict())
end

--- Stop the server (it is started again by the next request).
function M.stop()
  local id = state.client_id
  if not id then
    return
  end
  local client = vim.lsp.get_client_by_id(id)
  state.quiet[id] = true
  state.client_id, state.phase, state.info = nil, "stopped", nil
  fail_all(gone("the sessionlsp server was stopped"))
  emit("exit", { code = 0, signal = 0, expected = true })
  if client then
    compat.stop(client)
  end
end

--- "stopped", "starting" or "running".
function M.phase()
  return state.phase
end

--- The running client's id, or nil.
function M.client_id()
  return state.phase == "running" and state.client_id or nil
end

--- What the running server said at initialize: { server = serverInfo, caps = sessionlsp caps }.
function M.info()
  return state.info
end

--- Start a separate, short-lived server with the current options, wait for its initialize
--- answer (at most timeout_ms), stop it, and report: { info = {...} } or { error = "..." }.
--- Used by :checkhealth, so it blocks.
function M.probe(timeout_ms)
  local opts = config.options
  local exe = opts.cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    return { error = missing_message(exe) }
  end
  local outcome = {}
  local cfg, spawn = lsp_config(M.NAME .. "-health", opts, {}, {
    on_init = function(_, result)
      outcome.info = read_info(result)
    end,
    on_init_error = function(err)
      outcome.error = init_error_message(err)
    end,
    on_exit = function(code, signal)
      outcome.exited = { code = code, signal = signal }
    end,
  })
  local id, err = compat.start_client(cfg)
  if not id then
    return { error = "cannot start " .. table.concat(opts.cmd, " ") .. ": " .. tostring(spawn.error or err) }
  end
  local done = vim.wait(timeout_ms, function()
    return outcome.info ~= nil or outcome.error ~= nil or outcome.exited ~= nil
  end, 20)
  local client = vim.lsp.get_client_by_id(id)
  if client and not compat.is_stopped(client) then
    compat.stop(client)
    vim.wait(2000, function()
      return outcome.exited ~= nil
    end, 20)
  end
  if outcome.info then
    return { info = outcome.info }
  end
  if outcome.error then
    return { error = outcome.error }
  end
  if outcome.exited then
    return { error = exit_message(outcome.exited.code, outcome.exited.signal) }
  end
  if not done then
    return { error = string.format("the server did not answer initialize within %d ms", timeout_ms) }
  end
  return { error = "the server did not start" }
end

vim.api.nvim_create_autocmd("VimLeavePre", {
  group = vim.api.nvim_create_augroup("sessionlsp.client", { clear = true }),
  callback = function()
    -- vim.lsp stops every client as the editor quits; that exit is expected
    state.leaving = true
  end,
})

return M
