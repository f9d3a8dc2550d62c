-- What the statusline shows: the state this server reports for a session (session/status:
-- idle, busy, compacting, retry) and how much of the usable window the next request would use
-- (session/context: tokens / usable).
local chat = require("sessionlsp.chat")
local client = require("sessionlsp.client")

local M = {}

--- session id -> { state, attempt?, tokens?, usable? }
local sessions = {} ---@type table<string, table>
local refreshing = {} ---@type table<string, "busy"|"again">

local WORDS = { idle = "idle", busy = "busy", compacting = "compacting", retry = "retrying" }

local function entry(sid)
  local e = sessions[sid]
  if not e then
    e = { state = "idle" }
    sessions[sid] = e
  end
  return e
end

local function changed()
  pcall(vim.cmd, "redrawstatus")
  vim.api.nvim_exec_autocmds("User", { pattern = "SessionlspStatus", modeline = false })
end

--- "1.2k" for 1234, "7k" for 7000, "842" for 842.
function M.tokens(n)
  if n < 1000 then
    return tostring(n)
  end
  local s = string.format("%.1f", n / 1000)
  return (s:gsub("%.0$", "")) .. "k"
end

--- Ask the server how full the session's context is (one request at a time per session).
function M.refresh(sid)
  if refreshing[sid] then
    refreshing[sid] = "again"
    return
  end
  refreshing[sid] = "busy"
  client.request("session/context", { sessionId = sid }, function(err, result)
    local again = refreshing[sid] == "again"
    refreshing[sid] = nil
    if not err and result then
      local e = entry(sid)
      e.tokens, e.usable = tonumber(result.tokens), tonumber(result.usable)
      changed()
    end
    if again and not err then
      M.refresh(sid)
    end
  end)
end

--- The state of a session: { state, attempt?, tokens?, usable? }.
function M.get(sid)
  return entry(sid)
end

--- The statusline text: "sessionlsp: idle 1.2k/7k"; "" until the server is first started.
function M.line()
  local phase = client.phase()
  if phase == "stopped" then
    return ""
  elseif phase == "starting" then
    return "sessionlsp: starting"
  end
  local sid = chat.current()
  if not sid then
    return "sessionlsp: idle"
  end
  local e = entry(sid)
  local text = "sessionlsp: " .. (WORDS[e.state] or e.state)
  if e.state == "retry" and e.attempt then
    text = text .. " #" .. e.attempt
  end
  if e.tokens and e.usable then
    text = text .. " " .. M.tokens(e.tokens) .. "/" .. M.tokens(e.usable)
  end
  return text
end

client.on("session/status", function(params)
  local e = entry(params.sessionId)
  e.state = params.status
  e.attempt = tonumber(params.attempt)
  changed()
  if params.status == "idle" then
    M.refresh(params.sessionId)
  end
end)

client.on("exit", function()
  -- statuses belong to the server process that sent them
  for _, e in pairs(sessions) do
    e.state, e.attempt = "idle", nil
  end
  refreshing = {}
  changed()
end)

client.on("ready", changed)

chat.on("loaded", function(sid)
  M.refresh(sid)
end)

chat.on("changed", function(sid, change)
  -- other editors' turns and compactions change the context without a status here
  if change.finished or (change.compaction and change.compaction.status == "completed") then
    M.refresh(sid)
  end
end)

return M
