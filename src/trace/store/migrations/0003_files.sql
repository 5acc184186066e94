-- What tracebox knows about each uploaded file in uploads/: its size and sha256 when stored, and
-- when. The bytes stay on disk; a file copied in by hand has no row (and shows no sha256).

CREATE TABLE files (
    name           TEXT PRIMARY KEY,
    size           INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    uploaded_at_us INTEGER NOT NULL,
    trace_id       TEXT
);
