-- Puts segments (see layout.lua) into a buffer, touching only what changed: a segment whose old
-- lines are a prefix of its new ones (streamed text) is extended with nvim_buf_set_text at its
-- end; other changed segments are replaced on their own lines; new ones are inserted. Lines of
-- unchanged segments are never rewritten, so streaming does not flicker.
--
-- Also the fold expression and fold text of chat windows: folds come from the segments, kept
-- consistent with the buffer before each edit (Neovim may evaluate 'foldexpr' during the edit).
local layout = require("sessionlsp.layout")

local M = {}

--- buffer -> { segments = { ... } as in the buffer, levels = cache for foldexpr }
local states = {}

local function same(a, b)
  if a == b then
    return true
  end
  if #a ~= #b then
    return false
  end
  for i = 1, #a do
    if a[i] ~= b[i] then
      return false
    end
  end
  return true
end

--- Whether `new` only adds text at the end of `old`: every line but the last is unchanged, and the
--- last old line is a prefix of its new version.
local function extends(old, new)
  local n = #old
  if n == 0 or #new < n then
    return false
  end
  for i = 1, n - 1 do
    if old[i] ~= new[i] then
      return false
    end
  end
  return new[n]:sub(1, #old[n]) == old[n]
end

local function concat(a, upto, b, from)
  local out = {}
  for i = 1, upto do
    out[#out + 1] = a[i]
  end
  for i = from, #b do
    out[#out + 1] = b[i]
  end
  return out
end

--- The windows showing `buf` whose cursor is on the last line (they follow the end).
local function followers(buf)
  local list = {}
  local last = vim.api.nvim_buf_line_count(buf)
  for _, win in ipairs(vim.fn.win_findbuf(buf)) do
    if vim.api.nvim_win_get_cursor(win)[1] >= last then
      list[#list + 1] = win
    end
  end
  return list
end

--- Make `buf` show `segments`. Returns the number of buffer edits made.
function M.apply(buf, segments)
  local st = states[buf]
  if not st then
    st = { segments = {}, levels = nil }
    states[buf] = st
  end
  local old = st.segments
  local follow = followers(buf)
  local edits = 0
  vim.bo[buf].modifiable = true

  local function commit(current)
    st.segments, st.levels = current, nil
    edits = edits + 1
  end

  local ok, err = pcall(function()
    if #old == 0 then
      local lines = {}
      for _, seg in ipairs(segments) do
        vim.list_extend(lines, seg.lines)
      end
      commit(segments)
      vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
      return
    end
    local index = {}
    for i, seg in ipairs(old) do
      index[seg.key] = i
    end
    local done = {} -- new segments placed so far, in buffer order
    local row = 0 -- first row of the next segment
    local i = 1 -- next old segment not yet consumed
    for _, seg in ipairs(segments) do
      local j = index[seg.key]
      if j and j >= i then
        -- old segments between i and j are gone
        for k = i, j - 1 do
          local n = #old[k].lines
          commit(concat(done, #done, old, k + 1))
          vim.api.nvim_buf_set_lines(buf, row, row + n, true, {})
        end
        local prev = old[j].lines
        done[#done + 1] = seg
        if not same(prev, seg.lines) then
          local current = concat(done, #done, old, j + 1)
          if extends(prev, seg.lines) then
            local last = row + #prev - 1
            local col = #prev[#prev]
            local chunks = { seg.lines[#prev]:sub(col + 1) }
            for k = #prev + 1, #seg.lines do
              chunks[#chunks + 1] = seg.lines[k]
            end
            commit(current)
            vim.api.nvim_buf_set_text(buf, last, col, last, col, chunks)
          else
            -- rewrite only the lines between the unchanged head and tail of the segment
            local new = seg.lines
            local head = 0
            while head < #prev and head < #new and prev[head + 1] == new[head + 1] do
              head = head + 1
            end
            local tail = 0
            while
              tail < #prev - head
              and tail < #new - head
              and prev[#prev - tail] == new[#new - tail]
            do
              tail = tail + 1
            end
            commit(current)
            vim.api.nvim_buf_set_lines(
              buf,
              row + head,
              row + #prev - tail,
              true,
              vim.list_slice(new, head + 1, #new - tail)
            )
          end
        elseif seg.fold ~= old[j].fold then
          commit(concat(done, #done, old, j + 1))
        end
        i = j + 1
      else
        done[#done + 1] = seg
        commit(concat(done, #done, old, i))
        vim.api.nvim_buf_set_lines(buf, row, row, true, seg.lines)
      end
      row = row + #seg.lines
    end
    for k = i, #old do
      local n = #old[k].lines
      commit(concat(done, #done, old, k + 1))
      vim.api.nvim_buf_set_lines(buf, row, row + n, true, {})
    end
    st.segments = segments
  end)
  vim.bo[buf].modifiable = false
  if not ok then
    -- the buffer no longer matches what we know: draw it again from nothing next time
    st.segments, st.levels = {}, nil
    error(err, 0)
  end
  if edits > 0 then
    local last = vim.api.nvim_buf_line_count(buf)
    for _, win in ipairs(follow) do
      if vim.api.nvim_win_is_valid(win) and vim.api.nvim_win_get_buf(win) == buf then
        vim.api.nvim_win_set_cursor(win, { last, 0 })
      end
    end
  end
  return edits
end

--- Forget what `buf` shows (it was wiped, or must be drawn again from nothing).
function M.forget(buf)
  states[buf] = nil
end

--- 'foldexpr' of chat windows.
function M.foldexpr(lnum)
  local st = states[vim.api.nvim_get_current_buf()]
  if not st then
    return 0
  end
  if not st.levels then
    st.levels = layout.fold_levels(st.segments)
  end
  return st.levels[lnum] or 0
end

--- 'foldtext' of chat windows: the fold's first line (the compaction header with its status)
--- and how many lines it hides.
function M.foldtext()
  local first = vim.fn.getline(vim.v.foldstart)
  local count = vim.v.foldend - vim.v.foldstart + 1
  return string.format("%s [%d lines]", first, count)
end

--- Set the window options of a chat window.
function M.setup_window(win)
  local function set(name, value)
    vim.api.nvim_set_option_value(name, value, { win = win, scope = "local" })
  end
  set("foldmethod", "expr")
  set("foldexpr", "v:lua.require'sessionlsp.render'.foldexpr(v:lnum)")
  set("foldtext", "v:lua.require'sessionlsp.render'.foldtext()")
  set("foldlevel", 0)
  set("foldenable", true)
  set("wrap", true)
  set("linebreak", true)
end

return M
