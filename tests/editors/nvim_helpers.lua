-- Helpers that tests/editors/test_neovim.py loads into the Neovim it drives (as the global H).
-- Every wait is vim.wait on a condition, with a timeout that fails the test with a description.
local H = {}

H.notes = {} -- messages given to vim.notify: { msg, level }

--- Record vim.notify messages (and keep them out of the way of the test).
function H.capture_notify()
  vim.notify = function(msg, level)
    table.insert(H.notes, { msg = tostring(msg), level = level })
  end
end

function H.notes_text()
  local out = {}
  for _, n in ipairs(H.notes) do
    out[#out + 1] = n.msg
  end
  return table.concat(out, "\n")
end

--- Wait for cond() to be true; fail with `what` (and recent messages) after `ms`.
function H.wait(ms, cond, what)
  if not vim.wait(ms, cond, 10) then
    error(string.format("timed out after %d ms waiting for %s; messages:\n%s", ms, what, H.notes_text()), 2)
  end
end

function H.lines(buf)
  return vim.api.nvim_buf_get_lines(buf, 0, -1, false)
end

function H.text(buf)
  return table.concat(H.lines(buf), "\n")
end

--- A request through the plugin's own connection, waited for.
function H.request(method, params, ms)
  local done, err, result = false, nil, nil
  require("sessionlsp.client").request(method, params, function(e, r)
    done, err, result = true, e, r
  end)
  H.wait(ms or 20000, function()
    return done
  end, method)
  if err then
    error(method .. " failed: " .. vim.inspect(err), 2)
  end
  return result
end

--- Record the method of every request the plugin sends from now on, in H.requests.
function H.record_requests()
  H.requests = {}
  local client = require("sessionlsp.client")
  local request = client.request
  client.request = function(method, ...)
    table.insert(H.requests, method)
    return request(method, ...)
  end
end

--- The chat buffer of a session, once it exists.
function H.chat_buf(sid, ms)
  local chat = require("sessionlsp.chat")
  H.wait(ms or 20000, function()
    return chat.buffer(sid) ~= nil
  end, "the chat buffer of " .. tostring(sid))
  return chat.buffer(sid)
end

--- :SessionNew, waited for; returns the new session id and its buffer.
function H.new_session(title)
  local before = require("sessionlsp").current_session()
  vim.cmd("SessionNew " .. (title or ""))
  H.wait(20000, function()
    local sid = require("sessionlsp").current_session()
    return sid ~= nil and sid ~= before
  end, "a new session")
  local sid = require("sessionlsp").current_session()
  return sid, H.chat_buf(sid)
end

--- The messages of a session as stored: { {id, kind, role, text, error, finished}, ... }.
function H.stored(sid)
  local loaded = H.request("session/load", { sessionId = sid })
  local out = {}
  for _, m in ipairs(loaded.messages) do
    local texts = {}
    for _, p in ipairs(m.parts) do
      if p.type == "text" then
        texts[#texts + 1] = p.text
      end
    end
    out[#out + 1] = {
      id = m.info.id,
      kind = m.info.kind,
      role = m.info.role,
      text = table.concat(texts),
      error = m.info.error and m.info.error.name or vim.NIL,
      finished = m.info.finish ~= nil or m.info.error ~= nil,
    }
  end
  return out
end

--- How many answers the session's chat buffer shows, or -1 while one is in progress.
function H.answers_shown(sid)
  local buf = require("sessionlsp.chat").buffer(sid)
  if not buf then
    return -1
  end
  local n = 0
  for _, line in ipairs(H.lines(buf)) do
    if line:match("^## Assistant") then
      if line:find(": in progress", 1, true) then
        return -1
      end
      n = n + 1
    end
  end
  return n
end

--- Index (1-based) of the first line of `buf` equal to / starting with `prefix`, or nil.
function H.find_line(buf, prefix, from)
  for i, line in ipairs(H.lines(buf)) do
    if i >= (from or 1) and line:sub(1, #prefix) == prefix then
      return i
    end
  end
  return nil
end

--- Record each status a compaction marker's header shows in `buf`, as each edit lands, in
--- H.marker_states (repeats left out).
function H.record_marker_states(buf)
  H.marker_states = {}
  vim.api.nvim_buf_attach(buf, false, {
    on_lines = function()
      local l = H.find_line(buf, "## Compaction: ")
      if l then
        local s = H.lines(buf)[l]:match("^## Compaction: (%a+)")
        if H.marker_states[#H.marker_states] ~= s then
          table.insert(H.marker_states, s)
        end
      end
    end,
  })
end

--- Record LSP progress as the $/progress handler sees it (H.progress_handled) and as
--- LspProgress autocommands see it (H.progress_events).
function H.record_progress()
  H.progress_handled, H.progress_events = {}, {}
  local default = vim.lsp.handlers["$/progress"]
  vim.lsp.handlers["$/progress"] = function(err, params, ctx, cfg)
    local v = params.value
    local entry = { token = params.token, kind = v.kind, title = v.title, message = v.message }
    table.insert(H.progress_handled, entry)
    return default(err, params, ctx, cfg)
  end
  vim.api.nvim_create_autocmd("LspProgress", {
    callback = function(ev)
      table.insert(H.progress_events, {
        token = ev.data.params.token,
        kind = ev.data.params.value.kind,
        client = vim.lsp.get_client_by_id(ev.data.client_id).name,
      })
    end,
  })
end

--- Stop the server and wait until its process is gone.
function H.shutdown()
  local client = require("sessionlsp.client")
  local id = client.client_id()
  client.stop()
  if id then
    vim.wait(5000, function()
      return vim.lsp.get_client_by_id(id) == nil
    end, 10)
  end
end

return H
