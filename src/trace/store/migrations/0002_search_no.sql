-- Each trace gets a search number, fixed for its life, and its search row is stored under it,
-- so a search can be confined to a range of traces (the newest first) instead of collecting
-- every match before sorting: a common word no longer costs a pass over all its matches.
-- Not the rowid: VACUUM may renumber the rowids of a table without an INTEGER PRIMARY KEY.
-- New traces take the next number (see writer.rs); existing ones take their rowid, which is
-- their order of insertion. (Searches stay exact whatever the numbering; it only makes them
-- fast when it follows the ids.)

ALTER TABLE traces ADD COLUMN search_no INTEGER;
UPDATE traces SET search_no = rowid;
CREATE UNIQUE INDEX traces_by_search_no ON traces(search_no);

CREATE TEMP TABLE search_rows AS SELECT trace_id, code, output FROM trace_search;
DELETE FROM trace_search;
INSERT INTO trace_search (rowid, trace_id, code, output)
  SELECT traces.search_no, search_rows.trace_id, search_rows.code, search_rows.output
  FROM search_rows JOIN traces ON traces.id = search_rows.trace_id;
DROP TABLE search_rows;
