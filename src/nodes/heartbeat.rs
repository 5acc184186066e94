//! Heartbeats: each node's engine is asked every `heartbeat` whether it is there (ping and
//! info). Three missed in a row and the node is `down`: no new work, its pool stops starting
//! containers, its sandboxes wait. The first answer after that brings it back, once it holds
//! the sandbox image again (copied from a node that is up, should its engine have lost it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{MISSES_TO_DOWN, Node, NodeEvent, Nodes};
use crate::sandbox::{EngineInfo, SandboxError};

/// The least time an engine gets to answer a heartbeat, however short the interval.
const LEAST_PATIENCE: Duration = Duration::from_secs(1);
/// The longest the sandbox image may take to copy to an engine coming back.
const COPY_PATIENCE: Duration = Duration::from_secs(600);
/// After a return that failed (the image could not be copied), the wait before the next try,
/// doubled each time up to the most.
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MOST_RETRY: Duration = Duration::from_secs(300);

/// Ask `node`'s engine whether it is there, within the heartbeat's patience.
pub(super) async fn probe(node: &Node, heartbeat: Duration) -> Result<EngineInfo, SandboxError> {
    let patience = heartbeat.max(LEAST_PATIENCE);
    match tokio::time::timeout(patience, node.sandbox.engine_info()).await {
        Ok(answer) => answer,
        Err(_) => Err(SandboxError::Unreachable {
            host: node.sandbox.docker_host().to_owned(),
            source: format!("no answer within {patience:?}").into(),
        }),
    }
}

/// Beat `node` every `heartbeat` until aborted.
pub(super) fn spawn(nodes: Nodes, node: Arc<Node>, runtime: &tokio::runtime::Handle) -> tokio::task::JoinHandle<()> {
    let every = nodes.inner.heartbeat;
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match probe(&node, every).await {
                Ok(info) => {
                    let was_up = node.beat().up;
                    if was_up {
                        answered(&node, info);
                    } else {
                        come_back(&nodes, &node, info).await;
                    }
                }
                Err(error) => missed(&nodes, &node, error.to_string()),
            }
        }
    })
}

/// The engine answered: note when, and what it said.
pub(super) fn answered(node: &Node, info: EngineInfo) {
    let mut beat = node.beat();
    beat.up = true;
    beat.misses = 0;
    beat.last_answer = Some(SystemTime::now());
    beat.info = Some(info);
    beat.error = None;
}

/// The engine did not answer: the third time in a row, the node goes down.
pub(super) fn missed(nodes: &Nodes, node: &Node, error: String) {
    let went_down = {
        let mut beat = node.beat();
        beat.misses += 1;
        beat.error = Some(error.clone());
        let down = beat.up && beat.misses >= MISSES_TO_DOWN;
        if down {
            beat.up = false;
        }
        down
    };
    if went_down {
        tracing::warn!(node = %node.name, %error, misses = MISSES_TO_DOWN, "node is down: no new work goes there");
        node.sandbox.suspend_pool(true);
        nodes.tell(NodeEvent::Down(node.name.clone()));
    }
}

/// A node that was down answers: make sure it holds the sandbox image (an engine that lost
/// its data root has none), then take it back, refill its pool and tell the sandboxes.
async fn come_back(nodes: &Nodes, node: &Arc<Node>, info: EngineInfo) {
    {
        let mut beat = node.beat();
        let too_soon = beat.retry_at.is_some_and(|at| tokio::time::Instant::now() < at);
        if beat.returning || too_soon {
            return;
        }
        beat.returning = true;
        beat.misses = 0;
    }
    let source = nodes.all().iter().find(|other| other.name != node.name && other.beat().up);
    let ready = match node.sandbox.check_runtime().await {
        Err(error) => Err(error),
        Ok(()) => image_for(node, source).await,
    };
    node.beat().returning = false;
    if let Err(error) = ready {
        let mut beat = node.beat();
        let wait = beat.retry_wait.map_or(FIRST_RETRY, |wait| (wait * 2).min(MOST_RETRY));
        beat.retry_wait = Some(wait);
        beat.retry_at = Some(tokio::time::Instant::now() + wait);
        beat.error = Some(format!("it answers, but cannot run sandboxes yet: {error}"));
        tracing::warn!(node = %node.name, %error, retry_in = ?wait, "node answers again but cannot run sandboxes (runtime or image); it stays down");
        return;
    }
    {
        let mut beat = node.beat();
        beat.retry_wait = None;
        beat.retry_at = None;
    }
    answered(node, info);
    node.sandbox.suspend_pool(false);
    tracing::info!(node = %node.name, "node is up again");
    nodes.tell(NodeEvent::Up(node.name.clone()));
}

/// Give `node` the sandbox image from `source` (a node that is up) unless it holds it; with no
/// node up, it must hold it already (it was built there, or copied before).
async fn image_for(node: &Node, source: Option<&Arc<Node>>) -> Result<(), SandboxError> {
    let Some(source) = source else {
        let error = node.sandbox.health().await.error;
        return error.map_or(Ok(()), |error| Err(SandboxError::NotReady { why: error }));
    };
    let progress = |line: &str| tracing::info!(target: "tracebox::image", node = %node.name, "{line}");
    let copy = node.sandbox.copy_image_from(&source.sandbox, &progress);
    match tokio::time::timeout(COPY_PATIENCE, copy).await {
        Ok(copied) => copied.map(|_| ()),
        Err(_) => Err(SandboxError::NotReady { why: format!("the copy took over {COPY_PATIENCE:?}") }),
    }
}
