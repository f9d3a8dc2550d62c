-- Version 5: permission questions (server/permission_gate.py). One row per question a turn asked
-- before running a tool call; it is settled once: `answered` with the option a client chose
-- (`once`, `always`, `reject`), or `cancelled` (session/cancel, or recovery after the asking
-- process died). `answered_by` says who settled it (a runner id, "cancel" or "interrupted").
-- The outbox carries `permission.asked` and `permission.replied`, so every client following the
-- session sees a question appear and disappear.
CREATE TABLE permission_request (
    id             TEXT PRIMARY KEY,
    session_id     TEXT NOT NULL REFERENCES session (id) ON DELETE CASCADE,
    message_id     TEXT NOT NULL,
    part_id        TEXT NOT NULL,
    call_id        TEXT NOT NULL,
    tool           TEXT NOT NULL,
    title          TEXT NOT NULL,
    input          TEXT NOT NULL,
    diff           TEXT,
    origin         TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'answered', 'cancelled')),
    option_id      TEXT CHECK (option_id IS NULL OR option_id IN ('once', 'always', 'reject')),
    answered_by    TEXT,
    time_created   INTEGER NOT NULL,
    time_answered  INTEGER
);
CREATE INDEX permission_request_open ON permission_request (session_id) WHERE status = 'open';
