-- Version 2: find, at start-up, the sessions a dead runner may have left unfinished without
-- scanning every message.
CREATE INDEX message_unfinished ON message (session_id)
    WHERE finish IS NULL AND error IS NULL AND kind IN ('reply', 'summary');
