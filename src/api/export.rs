//! The JSON Lines export as a stream: the store is read one page at a time through its
//! cursor, and each trace becomes one line as it is read, so an export of any size starts at
//! once and holds at most one page of ids in memory.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

use tracebox_model::TraceId;

use super::error::{ApiError, ErrorCode};
use crate::services::Services;
use crate::trace::{TraceDetail, TraceFilter};

/// Where an export stands between two lines.
struct Cursor {
    services: Arc<Services>,
    /// The next page's filter (its `before` moves down the list as pages are read).
    filter: TraceFilter,
    /// Ids of the page read last, not yet written.
    pending: VecDeque<TraceId>,
    /// No page is left after `pending`.
    last_page: bool,
}

/// One line per trace `filter` matches, newest first. A failure midway ends the stream with an
/// error, which cuts the response short: a client sees an incomplete body, never a silently
/// shorter export that looks whole.
pub fn lines(services: Arc<Services>, filter: TraceFilter) -> impl Stream<Item = Result<Bytes, ApiError>> {
    let cursor = Cursor { services, filter, pending: VecDeque::new(), last_page: false };
    futures_util::stream::try_unfold(cursor, |mut cursor| async move {
        let line = next_line(&mut cursor).await.inspect_err(|e| tracing::error!(error = %e, "export failed"))?;
        Ok(line.map(|line| (line, cursor)))
    })
}

/// The next trace's line, or `None` at the end of the list.
async fn next_line(cursor: &mut Cursor) -> Result<Option<Bytes>, ApiError> {
    loop {
        if let Some(id) = cursor.pending.pop_front() {
            // A trace may vanish between the page and its read (retention); it is simply not exported.
            if let Some(trace) = cursor.services.store.get(id).await? {
                return line(&trace).map(Some);
            }
            continue;
        }
        if cursor.last_page {
            return Ok(None);
        }
        let page = cursor.services.store.list(cursor.filter.clone()).await?;
        cursor.pending.extend(page.traces.iter().map(|t| t.id));
        match page.next_cursor {
            Some(before) => cursor.filter.before = Some(before),
            None => cursor.last_page = true,
        }
    }
}

fn line(trace: &TraceDetail) -> Result<Bytes, ApiError> {
    let mut line = serde_json::to_vec(trace)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("a trace could not be written as JSON: {e}")))?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}
