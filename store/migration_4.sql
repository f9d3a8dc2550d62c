-- Version 4: a session's "always" answers to permission questions (server/permissions.py), so
-- an approval outlives the process that asked. Only allow rules are remembered: a denial is
-- configuration, not memory. `key` is 'read', 'edit' or 'bash'; `pattern` is a wildcard
-- pattern as in the permission setting. One row per (session, key, pattern): answering
-- "always" twice remembers once. The unique index leads with session_id, so it also serves
-- "this session's rules" without a second index.
CREATE TABLE permission_rule (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES session (id) ON DELETE CASCADE,
    key           TEXT NOT NULL CHECK (key <> ''),
    pattern       TEXT NOT NULL CHECK (pattern <> ''),
    action        TEXT NOT NULL DEFAULT 'allow' CHECK (action = 'allow'),
    time_created  INTEGER NOT NULL
);
CREATE UNIQUE INDEX permission_rule_by_session ON permission_rule (session_id, key, pattern);
