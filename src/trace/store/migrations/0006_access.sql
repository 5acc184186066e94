-- Access: API keys, and whose each trace, sandbox and uploaded file is.
--
-- A key is kept as the sha256 of its secret (a key has 256 random bits: no slow hash is needed,
-- nothing to guess from the digest), beside its public id, which a request's key names and the
-- lookup goes by. `tenant` is whose things the key's requests make and see: its name unless
-- given (two keys of one tenant share everything, which is how a key is rotated). A NULL tenant
-- on a trace, sandbox or file is one made while the server was open (no key): admin keys see it.

CREATE TABLE keys (
  id              TEXT PRIMARY KEY,            -- the public part of the key (tbx_<id>_<secret>)
  name            TEXT NOT NULL UNIQUE,
  tenant          TEXT NOT NULL,
  role            TEXT NOT NULL,               -- user, admin
  secret_sha256   BLOB NOT NULL,
  created_at_us   INTEGER NOT NULL,
  revoked_at_us   INTEGER,
  rate_per_sec    REAL,                        -- NULL: no limit
  max_sandboxes   INTEGER,
  max_concurrent_runs INTEGER,
  upload_quota_bytes  INTEGER
) STRICT;

ALTER TABLE traces ADD COLUMN tenant TEXT;
CREATE INDEX traces_by_tenant ON traces(tenant, id);

-- Uploaded files are named within their tenant: two tenants may each have data.csv.
CREATE TABLE files_by_tenant (
  tenant         TEXT NOT NULL DEFAULT '',     -- '' for the files of an open server
  name           TEXT NOT NULL,
  size           INTEGER NOT NULL,
  sha256         TEXT NOT NULL,
  uploaded_at_us INTEGER NOT NULL,
  trace_id       TEXT,
  PRIMARY KEY (tenant, name)
);
INSERT INTO files_by_tenant (name, size, sha256, uploaded_at_us, trace_id)
  SELECT name, size, sha256, uploaded_at_us, trace_id FROM files;
DROP TABLE files;
ALTER TABLE files_by_tenant RENAME TO files;
