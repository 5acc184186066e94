//! Retention: which traces have been kept long enough, and their removal with everything that
//! hangs off them (events, search rows).
//!
//! A trace goes with its whole tree: a batch or a Claude call is removed with its children, and
//! a tree is judged by its root (the top trace's start). A tree with a trace still running is
//! kept whole. Work is cut into batches chosen on the reader connection, each removed by the
//! writer in one short transaction (children first, so no trace ever points at a removed
//! parent), so a sweep of many old traces lets other writes through between its batches.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};

use tracebox_model::TraceId;

use super::StoreError;
use super::queries::parse_id;

/// Most traces one batch removes: each is a few rows and an index entry per search trigram.
pub(super) const BATCH_TRACES: usize = 256;

/// Most bytes of records (input and output) one batch removes: a trace's search row holds its
/// code and output, and removing it costs in proportion, so a batch of large traces is smaller.
const BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// Which traces may go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Trees whose root started before this (Unix microseconds) go; None: none for its age.
    pub started_before_us: Option<i64>,
    /// Then this many more traces go, the oldest trees first (how many the store holds past its
    /// cap; a tree goes whole, so the store may end up to one tree under the cap).
    pub excess: u64,
}

/// One batch of traces to remove, children before their parents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doomed {
    pub ids: Vec<TraceId>,
    /// The batch was cut at its size: more traces may go.
    pub more: bool,
    /// What is left of the retention's `excess` after this batch (the rest of a tree the batch
    /// cut included, so a tree begun is removed whole).
    pub excess: u64,
}

/// What a removal took away.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removed {
    /// The traces removed (their artifacts are the uploads directory's to remove).
    pub ids: Vec<TraceId>,
    pub events: u64,
    pub search_rows: u64,
}

/// What one sweep removed in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub traces: u64,
    pub events: u64,
    pub search_rows: u64,
    /// Runs whose artifacts were removed with their traces.
    pub artifact_runs: u64,
    /// Writer transactions it took.
    pub batches: u64,
}

impl Swept {
    pub(super) fn add(&mut self, removed: &Removed) {
        self.traces += removed.ids.len() as u64;
        self.events += removed.events;
        self.search_rows += removed.search_rows;
        self.batches += 1;
    }
}

/// The roots of trees with a trace still running: they stay, whatever their age.
const KEPT_ROOTS: &str = "WITH RECURSIVE up(id, parent_id) AS (
       SELECT id, parent_id FROM traces WHERE status = 'running'
       UNION SELECT traces.id, traces.parent_id FROM traces JOIN up ON traces.id = up.parent_id)
     SELECT id FROM up WHERE parent_id IS NULL";

/// The next batch of traces that `retention` lets go, oldest trees first.
pub(super) fn doomed(db: &Connection, retention: &Retention) -> Result<Doomed, StoreError> {
    let kept: HashSet<String> =
        db.prepare_cached(KEPT_ROOTS)?.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
    let mut roots = db.prepare_cached(
        "SELECT id, started_at_us FROM traces WHERE parent_id IS NULL ORDER BY started_at_us LIMIT ?1",
    )?;
    let scanned = (BATCH_TRACES + kept.len()) as i64;
    let roots: Vec<(String, i64)> =
        roots.query_map(params![scanned], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut batch = Batch { excess: retention.excess, ..Batch::default() };
    for (root, started_at_us) in roots.iter().filter(|(root, _)| !kept.contains(root)) {
        let old = retention.started_before_us.is_some_and(|before| *started_at_us < before);
        if !old && batch.excess == 0 {
            return Ok(batch.done(false));
        }
        if !batch.take(&tree(db, root)?)? {
            return Ok(batch.done(true));
        }
    }
    // Every root looked at was taken: there may be more past them.
    let more = roots.len() as i64 == scanned;
    Ok(batch.done(more))
}

/// A batch being filled.
#[derive(Default)]
struct Batch {
    ids: Vec<TraceId>,
    bytes: u64,
    excess: u64,
}

impl Batch {
    /// Add `tree` (deepest traces first), as much of it as the batch has room for, and at
    /// least one trace; false when the batch is full.
    fn take(&mut self, tree: &[(String, u64)]) -> Result<bool, StoreError> {
        for (taken, (id, bytes)) in tree.iter().enumerate() {
            if !self.ids.is_empty() && (self.ids.len() >= BATCH_TRACES || self.bytes + bytes > BATCH_BYTES) {
                // The rest of this tree goes in the next batch, whatever the excess.
                self.excess = self.excess.max((tree.len() - taken) as u64);
                return Ok(false);
            }
            self.ids.push(parse_id(id)?);
            self.bytes += bytes;
            self.excess = self.excess.saturating_sub(1);
        }
        Ok(true)
    }

    fn done(self, more: bool) -> Doomed {
        Doomed { more: more && !self.ids.is_empty(), ids: self.ids, excess: self.excess }
    }
}

/// The traces of the tree under `root`, deepest first (a child before its parent), with the
/// bytes of their records.
fn tree(db: &Connection, root: &str) -> Result<Vec<(String, u64)>, StoreError> {
    let mut query = db.prepare_cached(
        "WITH RECURSIVE tree(id, depth, bytes) AS (
           SELECT id, 0, octet_length(input) + coalesce(octet_length(output), 0) FROM traces WHERE id = ?1
           UNION ALL
           SELECT traces.id, tree.depth + 1, octet_length(traces.input) + coalesce(octet_length(traces.output), 0)
           FROM tree JOIN traces ON traces.parent_id = tree.id)
         SELECT id, bytes FROM tree
         ORDER BY depth DESC",
    )?;
    let rows = query.query_map(params![root], |row| Ok((row.get(0)?, row.get::<_, i64>(1)?.max(0) as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Remove `ids`, in order, with their events and search rows. A trace that is running, still
/// has children, or is gone already is left as it is: nothing is removed by a cascade that
/// would leave a search row behind.
pub(super) fn remove(tx: &Connection, ids: &[TraceId]) -> rusqlite::Result<Removed> {
    let mut removed = Removed::default();
    let mut search = tx.prepare_cached("DELETE FROM trace_search WHERE rowid = ?1")?;
    let mut events = tx.prepare_cached("DELETE FROM trace_events WHERE trace_id = ?1")?;
    let mut trace = tx.prepare_cached("DELETE FROM traces WHERE id = ?1")?;
    let mut removable = tx.prepare_cached(
        "SELECT search_no FROM traces
         WHERE id = ?1 AND status != 'running' AND NOT EXISTS (SELECT 1 FROM traces AS child WHERE child.parent_id = ?1)",
    )?;
    for id in ids {
        let text = id.to_string();
        let found: Option<Option<i64>> = removable.query_row(params![text], |row| row.get(0)).optional()?;
        let Some(search_no) = found else { continue };
        if let Some(search_no) = search_no {
            removed.search_rows += search.execute(params![search_no])? as u64;
        }
        removed.events += events.execute(params![text])? as u64;
        trace.execute(params![text])?;
        removed.ids.push(*id);
    }
    Ok(removed)
}
