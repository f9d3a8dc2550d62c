-- :checkhealth sessionlsp: the Neovim version, the server executable, a real start of the
-- server (its version from initialize's serverInfo) and the configuration it reports.
local compat = require("sessionlsp.compat")

local M = {}

function M.check()
  if not compat.supported() then
    -- before 0.10 vim.health is missing or spells its functions report_*
    local old = vim.health or require("health")
    old.report_start("sessionlsp")
    old.report_error(compat.refusal())
    return
  end
  local health = vim.health
  health.start("sessionlsp")
  health.ok("Neovim " .. compat.version_string() .. " (needs " .. compat.minimum .. " or newer)")

  local client = require("sessionlsp.client")
  local config = require("sessionlsp.config")
  local opts = config.options
  local exe = opts.cmd[1]
  local path = vim.fn.exepath(exe)
  if path == "" then
    health.error("server executable not found: `" .. exe .. "`", {
      "Install sessionlsp (in a checkout, ./dev creates .venv/bin/sessionlsp)",
      "or set its path: require('sessionlsp').setup({ cmd = { '/path/to/sessionlsp', 'serve' } })",
    })
    return
  end
  health.ok("server executable: " .. path)
  health.info("command: " .. table.concat(opts.cmd, " "))

  local probe = client.probe(opts.timeout_ms)
  if probe.error then
    health.error("the server did not start: " .. probe.error, {
      "Run the command in a terminal to see its error output",
      "Check init_options in setup() and the output of `sessionlsp config`",
    })
    return
  end
  local server, caps = probe.info.server or {}, probe.info.caps or {}
  health.ok(string.format("server started: %s %s", tostring(server.name), tostring(server.version)))
  if caps.protocolVersion == client.PROTOCOL_VERSION then
    health.ok("protocol version " .. tostring(caps.protocolVersion))
  else
    health.error(
      string.format(
        "protocol version %s, but this plugin speaks %d",
        tostring(caps.protocolVersion),
        client.PROTOCOL_VERSION
      ),
      { "Update whichever of the plugin and the server is older" }
    )
  end

  health.start("sessionlsp: effective configuration (as the server reports it)")
  health.info("provider: " .. tostring(caps.provider))
  if caps.model == "" then
    health.warn("model: (none): prompts will fail", { "Set model (SESSIONLSP_MODEL or init_options.model)" })
  else
    health.info("model: " .. tostring(caps.model))
  end
  health.info("contextLimit: " .. tostring(caps.contextLimit))
  health.info("outputLimit: " .. tostring(caps.outputLimit))
  if type(caps.contextLimit) == "number" and type(caps.outputLimit) == "number" then
    -- as docs/protocol.md defines it: automatic compaction fires when usage reaches it
    local usable = caps.contextLimit - math.min(caps.outputLimit, 20000)
    health.info("usable window: " .. tostring(usable) .. " tokens")
  end
  health.info("autoCompact: " .. tostring(caps.autoCompact))
  if caps.db then
    health.info("database: " .. tostring(caps.db))
  end
  if caps.provider ~= "offline" then
    if caps.baseUrl == nil or caps.baseUrl == vim.NIL then
      health.warn("baseUrl: (none): prompts will fail", { "Set baseUrl (SESSIONLSP_BASE_URL or init_options.baseUrl)" })
    else
      health.info("baseUrl: " .. tostring(caps.baseUrl))
    end
  end
  if caps.apiKey == "set" then
    health.info("API key: set") -- whether, never which
  elseif caps.apiKey ~= nil then
    local say = caps.provider == "offline" and health.info or health.warn
    say("API key: not set", { "Set SESSIONLSP_API_KEY in the environment Neovim starts the server in" })
  end
  if opts.init_options then
    health.info("init_options sent: " .. vim.inspect(opts.init_options, { newline = " ", indent = "" }))
  end

  local running = client.info()
  if running then
    health.ok(
      string.format(
        "this editor's server is running (client id %d, %s %s)",
        client.client_id(),
        tostring(running.server.name),
        tostring(running.server.version)
      )
    )
  else
    health.info("no server running for this editor yet; the first :Session command starts it")
  end
end

return M
