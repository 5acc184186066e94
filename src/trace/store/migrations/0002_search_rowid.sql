-- Each search row takes the rowid of its trace, so a search can be confined to a range of
-- traces (the newest first) instead of collecting every match before sorting: a common word
-- no longer costs a pass over all its matches. Rows written before keep their text; only
-- their rowid changes.

CREATE TEMP TABLE search_rows AS SELECT trace_id, code, output FROM trace_search;
DELETE FROM trace_search;
INSERT INTO trace_search (rowid, trace_id, code, output)
  SELECT traces.rowid, search_rows.trace_id, search_rows.code, search_rows.output
  FROM search_rows JOIN traces ON traces.id = search_rows.trace_id;
DROP TABLE search_rows;
