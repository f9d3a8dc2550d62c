-- How a transcript looks as markdown lines. Pure: builds "segments", each { key, lines, fold },
-- which the renderer diffs against what the buffer holds.
--
-- Every segment after the first starts with an empty line, so that text streaming into a part
-- only ever extends the segment's last line(s): old lines stay a prefix of the new ones.
-- `fold` is "start" for a compaction marker's header segment (its fold starts on the segment's
-- second line) and "in" for segments inside that fold (the marker's parts and the summaries,
-- continuation and replay that belong to it).
local M = {}

local function split_lines(text)
  local lines = {}
  for line in ((text or "") .. "\n"):gmatch("(.-)\n") do
    lines[#lines + 1] = line
  end
  return lines
end
M.split_lines = split_lines

local function one_line(text)
  return ((text or ""):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

--- "failed: Name: message" for an assistant error.
local function error_words(err)
  if err.name == "Cancelled" then
    return "cancelled"
  end
  local message = one_line(err.message)
  return "failed: " .. tostring(err.name) .. (message ~= "" and (": " .. message) or "")
end

--- The state shown in an assistant message's header.
local function assistant_state(info)
  if info.error then
    return error_words(info.error)
  elseif info.finish == "length" then
    return "stopped at the output limit"
  elseif info.finish then
    return nil
  end
  return "in progress"
end

local function compaction_part(msg)
  for _, part in ipairs(msg.parts) do
    if part.type == "compaction" then
      return part
    end
  end
  return nil
end

local function header(transcript, msg)
  local info = msg.info
  local kind = info.kind
  if kind == "marker" then
    local part = compaction_part(msg) or {}
    local why = part.overflow and "overflow" or (part.auto and "automatic" or "manual")
    local status, err = transcript:compaction_state(info.id)
    local line = string.format("## Compaction: %s (%s)", status, why)
    if status == "failed" and err then
      line = line .. string.format(" - %s: %s", tostring(err.code), one_line(err.message))
    end
    return line
  elseif kind == "summary" then
    local state = assistant_state(info)
    local how = info.summaryKind and (" (" .. info.summaryKind .. ")") or ""
    return "### Summary" .. how .. (state and (": " .. state) or "")
  elseif kind == "continuation" then
    return "### Continuation (written by sessionlsp)"
  elseif kind == "replay" then
    return "### Prompt replayed after the compaction"
  elseif info.role == "user" then
    return info.model and ("## You (to " .. info.model .. ")") or "## You"
  end
  local state = assistant_state(info)
  local model = info.model and (" (" .. info.model .. ")") or ""
  return "## Assistant" .. model .. (state and (": " .. state) or "")
end

local function tool_line(part)
  local st = part.state or {}
  local line = string.format("- tool `%s`", tostring(part.tool))
  if st.title and st.title ~= "" then
    line = line .. " " .. one_line(st.title)
  end
  line = line .. ": " .. tostring(st.status or "pending")
  if st.status == "error" and st.error then
    line = line .. " (" .. one_line(st.error) .. ")"
  end
  return line
end

--- The lines of one part (without the leading empty line), or nil when it is not shown.
local function part_lines(part)
  local t = part.type
  if t == "text" then
    return split_lines(part.text)
  elseif t == "reasoning" then
    local lines = split_lines(part.text)
    for i, line in ipairs(lines) do
      lines[i] = "> " .. line
    end
    return lines
  elseif t == "tool" then
    return { tool_line(part) }
  elseif t == "file" then
    return { string.format("- file %s (%s)", part.filename or part.url or "?", part.mime or "?") }
  elseif t == "compaction" then
    if part.instructions and part.instructions ~= "" then
      local lines = split_lines(part.instructions)
      lines[1] = "Instructions: " .. lines[1]
      return lines
    end
    return nil
  end
  return nil -- step-finish and types this version does not know
end

local function with_blank(lines)
  table.insert(lines, 1, "")
  return lines
end

--- The segments of one message. `in_fold` is the marker id whose fold it belongs to, if any.
function M.message(transcript, msg)
  local info = msg.info
  local fold_kind
  if info.kind == "marker" then
    fold_kind = "start"
  elseif info.compactionId then
    fold_kind = "in"
  end
  local inner = fold_kind and "in" or nil
  local segments = {
    { key = "msg:" .. info.id, lines = { "", header(transcript, msg) }, fold = fold_kind },
  }
  for _, part in ipairs(msg.parts) do
    local lines = part_lines(part)
    if lines then
      segments[#segments + 1] = { key = "part:" .. part.id, lines = with_blank(lines), fold = inner }
    end
  end
  return segments
end

--- The segments of the session header.
function M.session(transcript)
  local s = transcript.session or {}
  local title = (s.title and s.title ~= "") and s.title or "Session"
  local about = "`" .. transcript.session_id .. "`"
  if s.directory and s.directory ~= "" then
    about = about .. " in " .. s.directory
  end
  local segments = { { key = "session", lines = { "# " .. one_line(title), "", about } } }
  if transcript.deleted then
    segments[2] = { key = "deleted", lines = { "", "**This session was deleted.**" } }
  end
  return segments
end

--- Level of each line for folding, from the segments: ">1" starts a fold, 1 is inside, 0 not.
function M.fold_levels(segments)
  local levels = {}
  for _, seg in ipairs(segments) do
    for i = 1, #seg.lines do
      local level = 0
      if seg.fold == "start" then
        level = i == 1 and 0 or (i == 2 and ">1" or 1)
      elseif seg.fold == "in" then
        level = 1
      end
      levels[#levels + 1] = level
    end
  end
  return levels
end

return M
