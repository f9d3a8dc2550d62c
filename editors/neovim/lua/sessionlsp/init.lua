-- sessionlsp.nvim: chat sessions run by `sessionlsp serve`. setup() and the API behind the
-- :Session* commands. See :help sessionlsp.
local compat = require("sessionlsp.compat")
if not compat.supported() then
  return compat.refused_module()
end

local chat = require("sessionlsp.chat")
local client = require("sessionlsp.client")
local config = require("sessionlsp.config")
local context = require("sessionlsp.context")
local status = require("sessionlsp.status")

local M = {}

local function notify(message, level)
  vim.notify("sessionlsp: " .. message, level or vim.log.levels.INFO)
end

--- Configure the plugin; see :help sessionlsp-setup. A running server is stopped, so the next
--- command starts one with the new options.
function M.setup(opts)
  config.setup(opts)
  if client.phase() ~= "stopped" then
    client.stop()
  end
end

--- Create a session and open its chat buffer. opts: { title?, focus? }; cb(err, sid) optional.
function M.new(opts, cb)
  chat.new(opts or {}, cb)
end

--- Open a session's chat buffer.
function M.open(sid, opts)
  chat.open(sid, opts)
end

--- The session commands act on: the current chat buffer's, else the last one used.
function M.current_session()
  return chat.current()
end

local function first_line(text)
  local line = text:match("^%s*([^\n]*)") or ""
  if #line > 60 then
    line = line:sub(1, 57) .. "..."
  end
  return line
end

local function send_prompt(sid, text)
  chat.use(sid)
  chat.with_view(sid, function(err)
    if err then
      return
    end
    chat.reveal(sid)
    local params = { sessionId = sid, prompt = { { type = "text", text = text } } }
    client.request("session/prompt", params, function(perr, result)
      if perr then
        chat.failed("the prompt was refused", perr)
        return
      end
      if result.stopReason == "error" and result.error then
        local e = result.error
        notify(
          string.format("the answer failed: %s: %s", tostring(e.name), tostring(e.message)),
          vim.log.levels.ERROR
        )
      end
    end)
  end)
end

--- Send `text` to the current session (creating one when there is none). Without text, ask for
--- it with vim.ui.input.
function M.prompt(text, sid)
  if text == nil or text == "" then
    vim.ui.input({ prompt = "sessionlsp> " }, function(input)
      if input and input:match("%S") then
        M.prompt(input, sid)
      end
    end)
    return
  end
  if not text:match("%S") then
    return
  end
  sid = sid or chat.current()
  if sid then
    send_prompt(sid, text)
    return
  end
  chat.new({ title = first_line(text), focus = false }, function(err, new_sid)
    if not err then
      send_prompt(new_sid, text)
    end
  end)
end

local function need_session()
  local sid = chat.current()
  if not sid then
    notify("no session yet: :SessionNew starts one, :SessionList opens one", vim.log.levels.WARN)
  end
  return sid
end

--- Compact the current session now; `instructions` says what the summary must keep.
function M.compact(instructions, sid)
  sid = sid or need_session()
  if not sid then
    return
  end
  chat.with_view(sid, function(err)
    if err then
      return
    end
    local params = { sessionId = sid }
    if instructions and instructions ~= "" then
      params.instructions = instructions
    end
    client.request("session/compact", params, function(cerr, result)
      if cerr then
        chat.failed("compaction refused", cerr)
      elseif result.status == "failed" then
        local e = result.error or {}
        notify(
          string.format("compaction failed: %s: %s", tostring(e.code), tostring(e.message)),
          vim.log.levels.WARN
        )
      elseif result.created == false and result.status == "completed" then
        notify("nothing new to compact since the last compaction")
      end
    end)
  end)
end

--- Stop the current session's running answer (and queued prompts, and compactions).
function M.cancel(sid)
  sid = sid or need_session()
  if not sid then
    return
  end
  client.request("session/cancel", { sessionId = sid }, function(err, result)
    if err then
      chat.failed("cancel failed", err)
    elseif result and result.cancelled == 0 then
      notify("nothing was running here (another editor's turn is told to stop too)")
    end
  end)
end

--- Pick a session with vim.ui.select and open it.
function M.list()
  client.request("session/list", { limit = 200 }, function(err, result)
    if err then
      chat.failed("cannot list sessions", err)
      return
    end
    local sessions = result.sessions or {}
    if #sessions == 0 then
      notify("no sessions yet: :SessionNew starts one")
      return
    end
    vim.ui.select(sessions, {
      prompt = "sessionlsp sessions",
      kind = "sessionlsp.session",
      format_item = function(s)
        local title = (s.title and s.title ~= "") and s.title or "(untitled)"
        local updated = "?"
        if s.time and s.time.updated then
          updated = os.date("%Y-%m-%d %H:%M", math.floor(s.time.updated / 1000))
        end
        return string.format("%s  %s  %s", title, updated, s.id)
      end,
    }, function(choice)
      if choice then
        chat.open(choice.id)
      end
    end)
  end)
end

--- Show what the model would receive next for the current session, in a scratch buffer.
function M.context(sid)
  sid = sid or need_session()
  if not sid then
    return
  end
  client.request("session/context", { sessionId = sid }, function(err, result)
    if err then
      chat.failed("cannot read the context", err)
      return
    end
    context.show(result)
  end)
end

--- Statusline text, e.g. "sessionlsp: idle 1.2k/7k" ("" before the server is first used).
function M.status()
  return status.line()
end

--- Stop the server (the next command starts it again).
function M.stop()
  client.stop()
end

return M
