-- Stateful sandboxes and their snapshots. A sandbox's row is its typed record (JSON), with the
-- columns lists and sweeps filter on beside it.

CREATE TABLE sandboxes (
  id            TEXT PRIMARY KEY,           -- sbx_…
  status        TEXT NOT NULL,              -- running, paused, stopped
  created_at_us INTEGER NOT NULL,
  record        TEXT NOT NULL               -- JSON: tracebox_model::sandbox::SandboxRecord
) STRICT;

CREATE INDEX sandboxes_by_status ON sandboxes(status, created_at_us);

CREATE TABLE snapshots (
  id            TEXT PRIMARY KEY,           -- snap_…
  sandbox_id    TEXT NOT NULL,
  label         TEXT,
  sha256        TEXT NOT NULL,              -- the compressed tar's file name
  bytes         INTEGER NOT NULL,
  created_at_us INTEGER NOT NULL
) STRICT;

CREATE INDEX snapshots_by_sandbox ON snapshots(sandbox_id, created_at_us);
CREATE INDEX snapshots_by_sha256 ON snapshots(sha256);
