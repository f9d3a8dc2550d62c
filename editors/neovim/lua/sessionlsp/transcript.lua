-- A pure model of one session's history: session/load results, session/sync events and
-- session/delta notifications applied to an in-memory transcript (docs/protocol.md §5, §7).
-- No editor calls here, so it can be tested on its own.
--
-- Every apply function returns what changed, for the renderer:
--   nil                                   nothing visible changed (duplicate, other session, unknown)
--   { messages = { [id] = true } }        these messages must be drawn again
--   { session = true }                    the session header changed
--   { reload = true }                     a gap was detected: load the session again
-- plus `finished = true` when an assistant message ended and `compaction = data` on
-- compaction.updated, so callers can refresh what depends on them.
local M = {}

local Transcript = {}
Transcript.__index = Transcript

--- Number of characters (code points) in a UTF-8 string, as the server counts them.
function M.char_len(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

--- The part of UTF-8 string `s` after its first `n` characters.
function M.char_drop(s, n)
  if n <= 0 then
    return s
  end
  local seen = 0
  for i = 1, #s do
    local b = s:byte(i)
    if b < 128 or b >= 192 then
      if seen == n then
        return s:sub(i)
      end
      seen = seen + 1
    end
  end
  return ""
end

function M.new(session_id)
  return setmetatable({
    session_id = session_id,
    session = { id = session_id, title = "" },
    seq = 0, -- the highest event seq applied
    messages = {}, -- id -> { info = ..., parts = { [id] = part }, part_ids = { sorted } }
    order = {}, -- message ids, sorted (ids sort by creation)
    compactions = {}, -- marker id -> compaction.updated data
    deleted = false,
  }, Transcript)
end

-- Insert `id` into sorted list `list` unless present. Appending is the common case.
local function insert_sorted(list, id)
  local n = #list
  if n == 0 or list[n] < id then
    list[n + 1] = id
    return
  end
  local lo, hi = 1, n
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if list[mid] == id then
      return
    elseif list[mid] < id then
      lo = mid + 1
    else
      hi = mid - 1
    end
  end
  table.insert(list, lo, id)
end

local function remove_value(list, id)
  for i, v in ipairs(list) do
    if v == id then
      table.remove(list, i)
      return
    end
  end
end

function Transcript:_message(id)
  local msg = self.messages[id]
  if not msg then
    -- a placeholder until its message.updated arrives (a delta can come first)
    msg = { info = { id = id, sessionId = self.session_id }, parts = {}, part_ids = {}, placeholder = true }
    self.messages[id] = msg
    insert_sorted(self.order, id)
  end
  return msg
end

local function put_part(msg, part)
  if not msg.parts[part.id] then
    insert_sorted(msg.part_ids, part.id)
  end
  msg.parts[part.id] = part
end

--- A new, empty part of `type` ("text" or "reasoning") for streamed text to go into.
function Transcript:_text_part(msg, id, type, streamed)
  local part = {
    id = id,
    messageId = msg.info.id,
    sessionId = self.session_id,
    type = type,
    text = "",
    streamed = streamed,
  }
  put_part(msg, part)
  return part
end

local function ended(info)
  return info.finish ~= nil or info.error ~= nil
end

--- Replace everything with a session/load result ({ session, messages, compactions, seq }).
--- `compactions` holds every compaction's state in compaction.updated's shape (the history has
--- no statuses); events with a larger seq replace them.
function Transcript:load(result)
  self.session = result.session or self.session
  self.seq = tonumber(result.seq) or 0
  self.messages, self.order = {}, {}
  self.compactions = {}
  self.deleted = false
  for _, data in ipairs(result.compactions or {}) do
    self.compactions[data.markerId] = data
  end
  for _, m in ipairs(result.messages or {}) do
    local msg = { info = m.info, parts = {}, part_ids = {} }
    for _, part in ipairs(m.parts or {}) do
      put_part(msg, part)
    end
    self.messages[m.info.id] = msg
    insert_sorted(self.order, m.info.id)
  end
  return { all = true }
end

local function one(id)
  return { messages = { [id] = true } }
end

--- Apply one session/sync event ({ seq, sessionId, type, data }).
function Transcript:apply_sync(event)
  if event.sessionId ~= self.session_id then
    return nil
  end
  local seq = tonumber(event.seq) or 0
  if seq <= self.seq then
    return nil -- already applied (load results and events can overlap)
  end
  self.seq = seq
  local kind, data = event.type, event.data or {}
  if kind == "session.created" or kind == "session.updated" then
    self.session = data
    return { session = true }
  elseif kind == "session.deleted" then
    self.deleted = true
    return { session = true }
  elseif kind == "message.updated" then
    local msg = self:_message(data.id)
    local was_ended = not msg.placeholder and ended(msg.info)
    msg.info, msg.placeholder = data, nil
    local change = one(data.id)
    if data.role == "assistant" and ended(data) and not was_ended then
      change.finished = true
    end
    return change
  elseif kind == "message.removed" then
    if not self.messages[data.messageId] then
      return nil
    end
    self.messages[data.messageId] = nil
    remove_value(self.order, data.messageId)
    return one(data.messageId)
  elseif kind == "message.part.updated" then
    local msg = self:_message(data.messageId)
    local old = msg.parts[data.id]
    put_part(msg, data)
    -- it holds everything the deltas brought so far, so later ones still extend it
    data.streamed = old and old.streamed or nil
    return one(data.messageId)
  elseif kind == "message.part.removed" then
    local msg = self.messages[data.messageId]
    if not msg or not msg.parts[data.partId] then
      return nil
    end
    msg.parts[data.partId] = nil
    remove_value(msg.part_ids, data.partId)
    return one(data.messageId)
  elseif kind == "message.part.delta" then
    local msg = self:_message(data.messageId)
    local part = msg.parts[data.id]
    local offset = tonumber(data.offset) or 0
    if not part then
      if offset ~= 0 then
        return { reload = true } -- the text before offset never reached us
      end
      part = self:_text_part(msg, data.id, data.type, nil)
    end
    local text = part.text or ""
    local have = M.char_len(text)
    if have < offset then
      return { reload = true }
    end
    -- `have - offset` characters of this delta already arrived as session/delta
    local new = M.char_drop(data.delta or "", have - offset)
    if new == "" then
      return nil
    end
    part.text = text .. new
    return one(data.messageId)
  elseif kind == "compaction.updated" then
    self.compactions[data.markerId] = data
    local change = one(data.markerId)
    change.compaction = data
    return change
  end
  return nil -- session.cancel and types this version does not know
end

--- Apply one session/delta notification (streamed text of this process's own turn). Deltas only
--- extend a part they built from its first one: a part read from the history or the event log
--- holds the text of the last durable write, behind the deltas, so appending to it would leave
--- a hole; its durable events bring the rest.
function Transcript:apply_delta(params)
  if params.sessionId ~= self.session_id or not params.delta or params.delta == "" then
    return nil
  end
  local msg = self:_message(params.messageId)
  local part = msg.parts[params.partId]
  if not part then
    part = self:_text_part(msg, params.partId, params.partType or "text", true)
  elseif not part.streamed then
    return nil
  end
  part.text = part.text .. params.delta
  return one(params.messageId)
end

--- The messages in order, each { info, parts = { part, ... } in id order }.
function Transcript:list()
  local out = {}
  for _, id in ipairs(self.order) do
    out[#out + 1] = self:get(id)
  end
  return out
end

--- One message as { info, parts = { ... } }, or nil.
function Transcript:get(id)
  local msg = self.messages[id]
  if not msg then
    return nil
  end
  local parts = {}
  for _, pid in ipairs(msg.part_ids) do
    parts[#parts + 1] = msg.parts[pid]
  end
  return { info = msg.info, parts = parts }
end

--- The state of a marker's compaction: status ("pending", "running", "completed", "failed") and
--- error ({ code, message }?), as the load result or the last compaction.updated said;
--- "pending" until either has (a marker's event can follow its message.updated).
function Transcript:compaction_state(marker_id)
  local data = self.compactions[marker_id]
  if data then
    return data.status or "pending", data.error
  end
  return "pending", nil
end

return M
