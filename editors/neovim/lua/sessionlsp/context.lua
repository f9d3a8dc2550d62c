-- :SessionContext: what session/context returns (exactly what the model would see next, with
-- token estimates), as markdown in a read-only scratch buffer.
local layout = require("sessionlsp.layout")

local M = {}

--- The lines of a session/context result.
function M.lines(result)
  local lines = {
    "# Context of " .. tostring(result.sessionId),
    "",
    string.format(
      "%s tokens of %s usable (context limit %s, output limit %s)",
      tostring(result.tokens),
      tostring(result.usable),
      tostring(result.contextLimit),
      tostring(result.outputLimit)
    ),
  }
  if result.markerId then
    lines[#lines + 1] = string.format(
      "Starts from compaction %s (summary %s)",
      tostring(result.markerId),
      tostring(result.summaryMessageId)
    )
  end
  for _, message in ipairs(result.messages or {}) do
    lines[#lines + 1] = ""
    lines[#lines + 1] = string.format(
      "## %s %s (%s tokens)",
      tostring(message.role),
      tostring(message.messageId),
      tostring(message.tokens)
    )
    for _, part in ipairs(message.parts or {}) do
      lines[#lines + 1] = ""
      if part.type == "text" then
        vim.list_extend(lines, layout.split_lines(part.text))
      elseif part.type == "tool" then
        local st = part.state or {}
        local input = vim.json.encode(st.input or vim.empty_dict())
        lines[#lines + 1] = string.format("- tool `%s` %s: %s", tostring(part.tool), input, tostring(st.status))
        local out = st.output or st.error
        if out then
          for _, line in ipairs(layout.split_lines(out)) do
            lines[#lines + 1] = "    " .. line
          end
        end
      elseif part.type == "file" then
        local name = tostring(part.filename or part.url)
        lines[#lines + 1] = string.format("- file %s (%s)", name, tostring(part.mime))
      end
    end
  end
  return lines
end

--- Show `result` in the session's context buffer (sessionlsp://<id>/context), replacing what it
--- showed before. Returns the buffer.
function M.show(result)
  local name = "sessionlsp://" .. tostring(result.sessionId) .. "/context"
  local buf = vim.fn.bufnr(name)
  if buf == -1 then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, name)
    vim.bo[buf].bufhidden = "wipe"
    vim.bo[buf].filetype = "markdown"
  end
  vim.bo[buf].readonly = false
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, M.lines(result))
  vim.bo[buf].modifiable = false
  vim.bo[buf].readonly = true
  vim.bo[buf].modified = false
  local wins = vim.fn.win_findbuf(buf)
  if #wins > 0 then
    vim.api.nvim_set_current_win(wins[1])
  else
    vim.api.nvim_open_win(buf, true, { split = "below", win = 0 })
  end
  return buf
end

return M
