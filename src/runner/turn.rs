//! A run's turn: a node and its slot first (at once, else in the server's bounded queue), then
//! the server's slot, both within the run's queue deadline; and a run in a container tried on
//! its node, placed again the same way on another when the node failed it before its program
//! started.

use serde_json::json;
use tokio::sync::SemaphorePermit;

use tracebox_model::EventLog;

use super::{ExecutionRequest, Runner};
use crate::nodes::{Attempted, NodesError, Placed, Reservation};
use crate::sandbox::{RawOutcome, RunIo, RunSpec};

impl Runner {
    /// Run a program in a container on the node `first` reserved for it (or say why none
    /// takes it), holding the server's `slot`. An attempt that failed before the program
    /// started gives the slot back while the run is placed again, excluding the nodes tried.
    pub(super) async fn run_placed<'a>(
        &'a self,
        first: Result<Reservation, NodesError>,
        slot: &mut Option<SemaphorePermit<'a>>,
        spec: &RunSpec<'_>,
        request: &ExecutionRequest,
        mut io: RunIo,
        log: &mut EventLog,
    ) -> (Result<RawOutcome, NodesError>, Placed) {
        let (mut node, mut placed) = (first, Placed::default());
        loop {
            let reservation = match node {
                Ok(reservation) => reservation,
                // No node takes it: it ends here, saying why.
                Err(unplaced) => return (Err(unplaced), placed),
            };
            match self.inner.nodes.attempt(reservation, spec, &request.placement, io, &mut placed, log).await {
                Attempted::Over(outcome) => return (outcome, placed),
                Attempted::Again(unsent) => io = unsent,
            }
            // Its server slot goes back while it waits for another node.
            drop(slot.take());
            let turn = tokio::select! {
                biased;
                () = io.kill.cancelled() => {
                    log.record("killed", json!({ "by": "client", "while": "queued" }));
                    return (Ok(RawOutcome { killed: true, ..RawOutcome::default() }), placed);
                }
                turn = self.place(request, spec.wait_until, &placed, log) => turn,
            };
            (node, *slot) = turn.unwrap_or_else(|busy| (Err(NodesError::Busy(busy)), None));
        }
    }

    /// The turn of a run in a container (its next attempt, once `placed` ones failed): a node
    /// and its slot first, then the server's slot, so that a run waiting for a full node holds
    /// none of the server's. One no node takes is not admitted. `Err` (busy) when the queue is
    /// full or the wait lasted until `until`.
    pub(super) async fn place(
        &self,
        request: &ExecutionRequest,
        until: tokio::time::Instant,
        placed: &Placed,
        log: &mut EventLog,
    ) -> Result<(Result<Reservation, NodesError>, Option<SemaphorePermit<'_>>), String> {
        let node = match self.reserve(request, until, placed, log).await? {
            Ok(reservation) => reservation,
            Err(unplaced) => return Ok((Err(unplaced), None)),
        };
        let slot = self.admit(until, log).await?;
        Ok((Ok(node), Some(slot)))
    }

    /// A node for a run in a container and a slot there: at once when one is free, else after
    /// waiting in the bounded queue, as for the server's slots. `Err` when the queue is full.
    async fn reserve(
        &self,
        request: &ExecutionRequest,
        until: tokio::time::Instant,
        placed: &Placed,
        log: &mut EventLog,
    ) -> Result<Result<Reservation, NodesError>, String> {
        let inner = &*self.inner;
        let (placement, with_files) = (&request.placement, !request.files.is_empty());
        match inner.nodes.try_reserve(placement, with_files, placed, log) {
            Ok(Some(reservation)) => return Ok(Ok(reservation)),
            Ok(None) => {}
            Err(unplaced) => return Ok(Err(unplaced)),
        }
        let Ok(_waiting) = inner.waiting.try_acquire() else {
            let settings = &inner.settings;
            return Err(format!(
                "{} runs are waiting, the most this server takes (TRACEBOX_MAX_QUEUED_RUNS); the nodes that fit are full",
                settings.max_queued_runs
            ));
        };
        Ok(inner.nodes.reserve(placement, with_files, until, placed, log).await)
    }

    /// A run slot: at once when one is free, else after waiting in a bounded queue, at most
    /// `until` (the run's queue deadline, counted from its arrival).
    pub(super) async fn admit(
        &self,
        until: tokio::time::Instant,
        log: &mut EventLog,
    ) -> Result<SemaphorePermit<'_>, String> {
        let inner = &*self.inner;
        if let Ok(slot) = inner.slots.try_acquire() {
            return Ok(slot);
        }
        let settings = &inner.settings;
        let Ok(_waiting) = inner.waiting.try_acquire() else {
            return Err(format!(
                "{} runs are executing and {} waiting, the most this server takes (TRACEBOX_MAX_CONCURRENT_RUNS, TRACEBOX_MAX_QUEUED_RUNS)",
                settings.max_concurrent_runs, settings.max_queued_runs
            ));
        };
        let queued = tokio::time::Instant::now();
        match tokio::time::timeout_at(until, inner.slots.acquire()).await {
            Ok(Ok(slot)) => {
                log.record("queue.waited", json!({ "ms": queued.elapsed().as_millis() as u64 }));
                Ok(slot)
            }
            _ => Err(format!(
                "all {} run slots stayed busy until the run's {} s queue timeout (TRACEBOX_MAX_CONCURRENT_RUNS, TRACEBOX_QUEUE_TIMEOUT_SECS)",
                settings.max_concurrent_runs,
                settings.queue_timeout.as_secs_f64()
            )),
        }
    }
}
