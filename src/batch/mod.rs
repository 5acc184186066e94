//! Prompt sets run as one batch: the format and its checks (`set`), the run through the same
//! pipelines as any request (`run`), what comes back of each item (`item`), and the summary
//! (`summary`). `tracebox batch` and `POST /batch` are its doors.

mod item;
mod run;
mod set;
mod summary;

pub use item::{BatchReport, ItemResult};
pub use run::{BatchOptions, MAX_CONCURRENCY, run_batch};
pub use set::{CheckedItem, Defaults, Expect, Item, Job, MAX_ITEMS, SetError, asks_claude, check, parse, position};
pub use summary::{SummaryTable, summarize};
