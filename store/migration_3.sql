-- Version 3: find tool calls left pending or running (a turn that failed, or a runner that died,
-- while running tools) without scanning every part. Such a call can sit under a message that
-- finished ("tool_calls"), which the message_unfinished index does not see. Queries must repeat
-- this WHERE clause word for word, or SQLite will not use the index.
CREATE INDEX part_tool_open ON part (session_id, message_id, id)
    WHERE type = 'tool' AND json_extract(data, '$.state.status') IN ('pending', 'running');
