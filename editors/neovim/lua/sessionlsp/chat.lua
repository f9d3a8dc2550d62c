-- Chat buffers: one per session, named sessionlsp://<session id>, filetype markdown. Each holds a
-- transcript (transcript.lua), fed by session/load, session/sync and session/delta, and drawn by
-- render.lua. Changes made by other editors arrive as session/sync and are drawn the same way.
local client = require("sessionlsp.client")
local config = require("sessionlsp.config")
local layout = require("sessionlsp.layout")
local render = require("sessionlsp.render")
local transcript = require("sessionlsp.transcript")

local M = {}

local EARLY_LIMIT = 2000 -- events kept per session while its buffer is being created or loaded

local views = {} ---@type table<string, table> session id -> view
local early = {} ---@type table<string, table[]> session id -> events that came before its view
--- session id -> part ids with session/delta dropped (no loaded view): their text comes from the
--- durable events only, since deltas appended after the gap would leave a hole
local missed = {} ---@type table<string, table<string, true>>
local listeners = { loaded = {}, changed = {} }
local last_session = nil ---@type string?

local function notify(message, level)
  vim.notify("sessionlsp: " .. message, level or vim.log.levels.INFO)
end

--- Report a failed request, unless the client already said the server is gone.
local function failed(what, err)
  if err.code ~= client.SERVER_GONE then
    notify(what .. ": " .. tostring(err.message), vim.log.levels.ERROR)
  end
end
M.failed = failed

local function emit(event, ...)
  for _, fn in ipairs(listeners[event]) do
    fn(...)
  end
end

--- Subscribe to "loaded" (sid) and "changed" (sid, change) of chat views.
function M.on(event, fn)
  table.insert(listeners[event], fn)
end

local function buffer_name(sid)
  return "sessionlsp://" .. sid
end

local function draw(view, change)
  if not vim.api.nvim_buf_is_valid(view.buf) then
    return
  end
  local t = view.transcript
  if change == nil or change.all then
    view.cache = {}
  else
    for id in pairs(change.messages or {}) do
      view.cache[id] = nil
    end
  end
  local segments = layout.session(t)
  for _, id in ipairs(t.order) do
    local cached = view.cache[id]
    if not cached then
      cached = layout.message(t, t:get(id))
      view.cache[id] = cached
    end
    vim.list_extend(segments, cached)
  end
  render.apply(view.buf, segments)
end

local function create_buffer(sid)
  local name = buffer_name(sid)
  local existing = vim.fn.bufnr(name)
  if existing ~= -1 then
    vim.api.nvim_buf_delete(existing, { force = true })
  end
  local buf = vim.api.nvim_create_buf(true, true)
  vim.api.nvim_buf_set_name(buf, name)
  vim.bo[buf].filetype = "markdown"
  vim.bo[buf].undolevels = -1
  vim.bo[buf].modifiable = false
  vim.b[buf].sessionlsp_session = sid
  local group = vim.api.nvim_create_augroup("sessionlsp.chat." .. buf, { clear = true })
  vim.api.nvim_create_autocmd("BufWinEnter", {
    group = group,
    buffer = buf,
    callback = function()
      render.setup_window(vim.api.nvim_get_current_win())
    end,
  })
  vim.api.nvim_create_autocmd("BufWipeout", {
    group = group,
    buffer = buf,
    callback = function()
      render.forget(buf)
      local view = views[sid]
      if view and view.buf == buf then
        views[sid] = nil
      end
      pcall(vim.api.nvim_del_augroup_by_id, group)
    end,
  })
  return buf
end

--- Show `buf` in a window of this tab (opening one as config says); focus it when `focus`.
local function show(buf, focus)
  local current = vim.api.nvim_get_current_win()
  for _, win in ipairs(vim.api.nvim_tabpage_list_wins(0)) do
    if vim.api.nvim_win_get_buf(win) == buf then
      if focus then
        vim.api.nvim_set_current_win(win)
      end
      return win
    end
  end
  local how = config.options.open
  local win
  if how == "current" then
    vim.api.nvim_win_set_buf(current, buf)
    win = current
  elseif how == "tab" then
    vim.cmd("tab sbuffer " .. buf)
    win = vim.api.nvim_get_current_win()
  else
    win = vim.api.nvim_open_win(buf, true, { vertical = how == "vsplit" })
  end
  render.setup_window(win)
  if not focus and how ~= "current" and vim.api.nvim_win_is_valid(current) then
    vim.api.nvim_set_current_win(current)
  end
  return win
end

local function new_view(sid)
  local view = {
    sid = sid,
    buf = create_buffer(sid),
    transcript = transcript.new(sid),
    cache = {},
    loaded = false,
    queue = {},
    waiting = {},
  }
  views[sid] = view
  return view
end

local function replay(view, events)
  for _, event in ipairs(events) do
    local change = view.transcript:apply_sync(event)
    if change and change.reload then
      return false
    end
  end
  return true
end

local function finish_loading(view, err)
  local waiting = view.waiting
  view.waiting = {}
  for _, cb in ipairs(waiting) do
    cb(err, view)
  end
end

local load

--- Load (or reload) the session's history into its view, then apply what arrived meanwhile.
load = function(view)
  view.loaded, view.loading = false, true
  client.request("session/load", { sessionId = view.sid }, function(err, result)
    if views[view.sid] ~= view then
      return
    end
    view.loading = false
    if err then
      failed("cannot open session " .. view.sid, err)
      finish_loading(view, err)
      return
    end
    view.transcript:load(result)
    local pending = vim.list_extend(early[view.sid] or {}, view.queue)
    early[view.sid], view.queue = nil, {}
    if not replay(view, pending) then
      load(view) -- a gap: read the history again
      return
    end
    view.loaded = true
    draw(view, nil)
    emit("loaded", view.sid)
    finish_loading(view, nil)
  end)
end

--- Call cb(err, view) once the session's view is loaded, creating and loading it when needed.
function M.with_view(sid, cb)
  local view = views[sid]
  if view and vim.api.nvim_buf_is_valid(view.buf) then
    if view.loaded then
      cb(nil, view)
      return
    end
    table.insert(view.waiting, cb)
    if not view.loading then
      load(view)
    end
    return
  end
  view = new_view(sid)
  table.insert(view.waiting, cb)
  load(view)
end

--- Open a session's chat buffer (loading its history) and show it.
function M.open(sid, opts)
  opts = opts or {}
  last_session = sid
  M.with_view(sid, function(err, view)
    if not err then
      show(view.buf, opts.focus ~= false)
    end
    if opts.done then
      opts.done(err, view)
    end
  end)
end

--- Create a session (session/new) and show its chat buffer. cb(err, sid) when given.
function M.new(opts, cb)
  opts = opts or {}
  local params = { title = opts.title or "" }
  params.directory = config.session_directory()
  client.request("session/new", params, function(err, result)
    if err then
      failed("cannot create a session", err)
      if cb then
        cb(err)
      end
      return
    end
    local sid = result.sessionId
    local view = new_view(sid)
    view.transcript.session = result.session or view.transcript.session
    -- following started just before the session was created: every event of it is new
    local pending = early[sid] or {}
    early[sid] = nil
    replay(view, pending)
    view.loaded = true
    last_session = sid
    draw(view, nil)
    show(view.buf, opts.focus ~= false)
    emit("loaded", sid)
    if cb then
      cb(nil, sid)
    end
  end)
end

--- The session of the current buffer when it is a chat buffer, else the last one used.
function M.current()
  local sid = vim.b.sessionlsp_session
  if type(sid) == "string" and views[sid] then
    return sid
  end
  return last_session
end

--- Remember `sid` as the session commands act on outside chat buffers.
function M.use(sid)
  last_session = sid
end

--- The chat buffer of a session, if it has one.
function M.buffer(sid)
  local view = views[sid]
  return view and vim.api.nvim_buf_is_valid(view.buf) and view.buf or nil
end

--- Show a session's chat buffer without moving the cursor.
function M.reveal(sid)
  local view = views[sid]
  if view and vim.api.nvim_buf_is_valid(view.buf) then
    show(view.buf, false)
  end
end

client.on("session/sync", function(event)
  local sid = event.sessionId
  local view = views[sid]
  if not view then
    local list = early[sid] or {}
    if #list >= EARLY_LIMIT then
      table.remove(list, 1)
    end
    list[#list + 1] = event
    early[sid] = list
    return
  end
  if not view.loaded then
    table.insert(view.queue, event)
    return
  end
  local change = view.transcript:apply_sync(event)
  if not change then
    return
  end
  if change.reload then
    load(view)
    return
  end
  draw(view, change)
  emit("changed", sid, change)
end)

client.on("session/delta", function(params)
  local sid = params.sessionId
  local view = views[sid]
  if not view or not view.loaded then
    -- the durable text follows as message.part.delta / message.part.updated
    missed[sid] = missed[sid] or {}
    missed[sid][params.partId] = true
    return
  end
  if missed[sid] and missed[sid][params.partId] then
    return
  end
  local change = view.transcript:apply_delta(params)
  if change then
    draw(view, change)
  end
end)

client.on("exit", function()
  -- a new server follows nothing: views load again when next used
  for sid, view in pairs(views) do
    view.loaded, view.loading = false, false
    views[sid] = vim.api.nvim_buf_is_valid(view.buf) and view or nil
  end
  early, missed = {}, {}
end)

return M
