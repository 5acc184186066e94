//! tracebox's domain: the types every layer shares — a run's request and result, its limits and
//! isolation, what the policy found, what came back of `/workspace/out/`, traces and the typed
//! record of each kind. It imports nothing else of tracebox and no web, CLI, Docker or database
//! library, so every layer can depend on it and it on none of them.

pub mod access;
mod artifact;
pub mod handler;
mod language;
pub mod placement;
mod policy;
pub mod record;
mod run;
pub mod sandbox;
pub mod text;
pub mod tool;
mod trace;

pub use artifact::{Artifact, Omitted};
pub use handler::{HandlerCall, HandlerError, HandlerOutcome};
pub use language::{LANGUAGE_NAMES, Language, UnknownLanguage};
pub use placement::{NodeAttempt, Placement, Strategy, UnknownStrategy};
pub use policy::{Action, PolicyHit, Redaction};
pub use record::{Record, TraceInput, TraceOutput, Usage};
pub use run::{
    Execution, ExecutionRequest, InputFile, Isolation, OutputStream, RunEvent, RunLimits, Source, Status,
    UnknownIsolation,
};
pub use trace::{EventLog, TraceEvent, TraceId, TraceKind, TraceStatus, UnknownName, format_us, now_us};
