-- Schema version 1. Later versions are forward migrations: store/migration_N.sql, applied in
-- order by store/migrations.py.
-- Columns hold what is queried; the rest of a row's fields live in its JSON `data`.

CREATE TABLE session (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    directory     TEXT,
    time_created  INTEGER NOT NULL,
    time_updated  INTEGER NOT NULL
);
CREATE INDEX session_by_updated ON session (time_updated DESC, id DESC);

-- kind: 'prompt' (typed by the user), 'marker' (a compaction marker), 'continuation' and
-- 'replay' (synthetic user messages written by a compaction), 'reply' (an assistant step),
-- 'summary' (an assistant message holding a compaction summary).
CREATE TABLE message (
    id              TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES session (id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    kind            TEXT NOT NULL CHECK (
        (role = 'user' AND kind IN ('prompt', 'marker', 'continuation', 'replay'))
        OR (role = 'assistant' AND kind IN ('reply', 'summary'))
    ),
    parent_id       TEXT,
    compaction_id   TEXT,          -- the marker a summary, continuation or replay belongs to
    finish          TEXT,
    error           TEXT,          -- JSON {name, message}
    runner          TEXT,          -- owner id of the runner that wrote an assistant message
    time_created    INTEGER NOT NULL,
    time_completed  INTEGER,
    data            TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX message_by_session ON message (session_id, id);
CREATE INDEX message_by_kind ON message (session_id, kind, id);
CREATE INDEX message_by_parent ON message (parent_id);
-- At most one successful summary per marker, and at most one continuation or replay.
CREATE UNIQUE INDEX message_one_good_summary ON message (compaction_id)
    WHERE kind = 'summary' AND finish IS NOT NULL AND error IS NULL;
CREATE UNIQUE INDEX message_one_continuation ON message (compaction_id)
    WHERE kind IN ('continuation', 'replay');

CREATE TABLE part (
    id          TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL REFERENCES message (id) ON DELETE CASCADE,
    session_id  TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX part_by_message ON part (message_id, id);
CREATE INDEX part_by_session ON part (session_id, message_id, id);

-- One row per compaction marker: the state machine's durable state.
CREATE TABLE compaction (
    marker_id      TEXT PRIMARY KEY REFERENCES message (id) ON DELETE CASCADE,
    session_id     TEXT NOT NULL REFERENCES session (id) ON DELETE CASCADE,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    auto           INTEGER NOT NULL,
    overflow       INTEGER NOT NULL,
    instructions   TEXT,
    replay_of      TEXT,           -- overflow: the user message to send again afterwards
    tail_plan      TEXT,           -- NULL: not planned yet; '': no tail; else first tail message id
    tail_set       INTEGER NOT NULL DEFAULT 0,
    summary_id     TEXT,           -- the successful summary message
    error_code     TEXT,
    error_message  TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    time_created   INTEGER NOT NULL,
    time_updated   INTEGER NOT NULL
);
CREATE UNIQUE INDEX compaction_one_active ON compaction (session_id)
    WHERE status IN ('pending', 'running');
CREATE INDEX compaction_by_status ON compaction (session_id, status, marker_id);

-- Who runs a session right now. A lease is live while its process exists and it heartbeats.
CREATE TABLE lease (
    session_id    TEXT PRIMARY KEY REFERENCES session (id) ON DELETE CASCADE,
    owner         TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    acquired_at   INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);

-- The outbox: one row per durable change, written in the change's own transaction.
-- Writers are serialised by BEGIN IMMEDIATE, so seq order is commit order.
CREATE TABLE event (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    time        INTEGER NOT NULL
);
CREATE INDEX event_by_session ON event (session_id, seq);
