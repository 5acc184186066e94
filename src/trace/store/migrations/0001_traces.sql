-- Traces, their events, and what identifies this data directory to the container sweeper.

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

-- One row per server start: containers are labelled with the boot id, so a later start can
-- tell the containers a crashed boot left behind.
CREATE TABLE boots (
  boot_id       TEXT PRIMARY KEY,
  started_at_us INTEGER NOT NULL,
  pid           INTEGER NOT NULL,
  version       TEXT NOT NULL
) STRICT;

CREATE TABLE traces (
  id            TEXT PRIMARY KEY,              -- UUIDv7: sorts by creation time
  parent_id     TEXT REFERENCES traces(id) ON DELETE CASCADE,
  kind          TEXT NOT NULL,                 -- execution, …
  status        TEXT NOT NULL,                 -- running, success, error, timeout, oom, blocked, output_limit, internal_error
  source        TEXT NOT NULL,                 -- http, cli, …
  language      TEXT,
  boot_id       TEXT,                          -- the tracebox start that ran it
  started_at_us INTEGER NOT NULL,              -- Unix microseconds
  ended_at_us   INTEGER,                       -- NULL while running
  exit_code     INTEGER,
  input         TEXT NOT NULL DEFAULT '{}',    -- JSON: code, stdin, env, limits, policy hits
  output        TEXT NOT NULL DEFAULT '{}'     -- JSON: stdout, stderr, flags, redactions, message
) STRICT;

CREATE INDEX traces_by_parent   ON traces(parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX traces_by_status   ON traces(status, id);
CREATE INDEX traces_by_kind     ON traces(kind, id);
CREATE INDEX traces_by_language ON traces(language, id);
CREATE INDEX traces_by_start    ON traces(started_at_us);

CREATE TABLE trace_events (
  trace_id TEXT NOT NULL REFERENCES traces(id) ON DELETE CASCADE,
  seq      INTEGER NOT NULL,
  at_us    INTEGER NOT NULL,
  name     TEXT NOT NULL,
  detail   TEXT,                               -- JSON or NULL
  PRIMARY KEY (trace_id, seq)
) STRICT, WITHOUT ROWID;

-- Full-text search over code and output. The trigram tokenizer finds any substring of three
-- characters or more, in any script (no word splitting to get wrong for CJK or code).
CREATE VIRTUAL TABLE trace_search USING fts5(
  trace_id UNINDEXED,
  code,
  output,
  tokenize = 'trigram'
);
