//! Prompt sets run as one batch: the format and its checks (`set`), the run through the same
//! pipelines as any request (`run`), and the summary (`summary`). `tracebox batch` and
//! `POST /batch` are its doors.

mod run;
mod set;
mod summary;

pub use run::{BatchOptions, BatchReport, ItemResult, MAX_CONCURRENCY, Outcome, run_batch};
pub use set::{CheckedItem, Defaults, Expect, Item, Job, MAX_ITEMS, SetError, asks_claude, check, parse, position};
pub use summary::Summary;
