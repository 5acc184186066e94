-- A trace's children in order, a page at a time: a sandbox may have a hundred thousand steps and
-- its page shows a few hundred. The index on parent_id alone gave them in rowid order, so every
-- page sorted them all; with the id beside it a page is a walk of the index, and a count of
-- them (or of those before one) reads the index alone.

DROP INDEX traces_by_parent;
CREATE INDEX traces_by_parent ON traces(parent_id, id) WHERE parent_id IS NOT NULL;
