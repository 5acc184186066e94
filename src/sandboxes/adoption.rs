//! Finding sandboxes' containers again: at a start of tracebox, when a node comes back, and every
//! minute (a session lost, a node back whose event was missed); what is left of a sandbox whose
//! container is gone; and the sweep of sandbox containers nobody owns, on each node its own.

use std::sync::Arc;
use std::time::Duration;

use tracebox_model::Status;
use tracebox_model::sandbox::{SandboxRecord, SandboxStatus};

use super::{Live, Sandboxes, SandboxesError};
use crate::sandbox::Sweep;

/// How old an unowned sandbox container must be before a sweep while the server runs removes
/// it: a sandbox being made or resumed owns its container only once it is ready (a repository
/// clone takes up to TRACEBOX_REPO_CLONE_TIMEOUT_SECS, 120 s by default).
const UNOWNED_GRACE: Duration = Duration::from_secs(600);

/// Running sandboxes whose node is not configured (any more).
fn nodes_gone(records: &[SandboxRecord], nodes: &crate::nodes::Nodes) -> Vec<SandboxRecord> {
    records
        .iter()
        .filter(|record| record.status == SandboxStatus::Running && nodes.get(&record.node).is_err())
        .cloned()
        .collect()
}

impl Sandboxes {
    /// After a start of tracebox: on every node that is up, find its sandboxes again
    /// ([`Sandboxes::adopt_on`]). Those on a node that is down wait for it to come back.
    pub async fn adopt(&self) {
        self.adopt_everywhere(Duration::ZERO).await;
    }

    /// Every few minutes: on each node that is up, attach again to the sandboxes that lost
    /// their session (a node back whose event was missed, an adoption that failed), and remove
    /// the sandbox containers no sandbox owns (one deleted while its node was down) once older
    /// than [`UNOWNED_GRACE`].
    pub async fn readopt(&self) {
        self.adopt_everywhere(UNOWNED_GRACE).await;
    }

    async fn adopt_everywhere(&self, grace: Duration) {
        let nodes = &self.inner.nodes;
        let up: Vec<String> = nodes
            .all()
            .iter()
            .filter(|node| nodes.reachable(node.name()).is_ok())
            .map(|node| node.name().to_owned())
            .collect();
        // First the records of a node no longer configured: their containers may be on an
        // engine that is now another node's (a node renamed); found there, they are that node's
        // from now on, and its sweep below spares them.
        let records = nodes_gone(&self.inner.store.sandboxes(None).await.unwrap_or_default(), nodes);
        for record in records {
            self.adopt_elsewhere(&record).await;
        }
        for node in up {
            if let Err(error) = self.adopt_on(&node, grace).await {
                tracing::warn!(%node, %error, "could not find the node's sandboxes again; tried again in a few minutes");
            }
        }
    }

    /// On `node` (at a start, or back up after it was down): attach to the sandboxes whose
    /// containers kept running, settle those whose containers are gone (paused when a snapshot
    /// kept their files, else removed), and remove every sandbox container no sandbox owns.
    pub async fn adopt_on(&self, node: &str, grace: Duration) -> Result<(), SandboxesError> {
        let engine = self.inner.nodes.reachable(node)?.sandbox().clone();
        let containers = engine.sandbox_containers().await?;
        let records = self.inner.store.sandboxes(None).await?;
        let mine = records.iter().filter(|record| record.node == node && record.status == SandboxStatus::Running);
        let mut attached = 0;
        for record in mine {
            let talking = self.live().get(&record.id).is_some_and(|live| !live.session.is_gone());
            if talking {
                continue;
            }
            let running = containers
                .iter()
                .find(|(_, container, running)| record.container.as_ref() == Some(container) && *running);
            let session = match running {
                Some((_, container, _)) => engine.attach_session(container).await.ok(),
                None => None,
            };
            match session {
                Some(session) => {
                    self.go_live(record, session)?;
                    attached += 1;
                }
                None => self.lost(record).await,
            }
        }
        let owned = self.owned(node).await?;
        engine.sweep(Sweep::Unowned { owned: &owned, older_than: grace }).await?;
        tracing::info!(node, attached, "sandboxes found again");
        Ok(())
    }

    /// The sandbox containers on `node` that something holds: a live session, a record (its
    /// session lost, or its node just back), a warm shelf. A sweep of the unowned spares them.
    pub(super) async fn owned(&self, node: &str) -> Result<Vec<String>, SandboxesError> {
        let mut owned: Vec<String> = self
            .live()
            .values()
            .filter(|live| live.node.name() == node)
            .map(|live| live.session.container().to_owned())
            .collect();
        let records = self.inner.store.sandboxes(None).await?;
        owned.extend(records.into_iter().filter(|record| record.node == node).filter_map(|record| record.container));
        owned.extend(self.inner.warm.get(node).map(|warm| warm.containers()).unwrap_or_default());
        Ok(owned)
    }

    /// A running sandbox whose record names a node no longer configured: attached on the node
    /// whose engine holds its container, else settled as lost.
    async fn adopt_elsewhere(&self, record: &SandboxRecord) {
        let Some(container) = record.container.clone() else { return self.lost(record).await };
        for node in self.inner.nodes.all() {
            let Ok(found) = node.sandbox().sandbox_containers().await else { continue };
            if !found.iter().any(|(_, id, running)| *id == container && *running) {
                continue;
            }
            let moved = self.update(&record.id, |record| record.node = node.name().to_owned()).await;
            let attached = node.sandbox().attach_session(&container).await;
            if let (Ok(moved), Ok(session)) = (moved, attached)
                && self.go_live(&moved, session).is_ok()
            {
                tracing::info!(sandbox = %record.id, from = %record.node, to = %node.name(), "a sandbox of a node no longer configured was found on another");
                return;
            }
        }
        self.lost(record).await;
    }

    /// `node` went down: its sandboxes' sessions are dropped (they answer 503 `node_down`
    /// until it is back, then [`Sandboxes::adopt_on`] finds them again).
    pub fn node_down(&self, node: &str) {
        let dropped: Vec<Arc<Live>> = {
            let mut live = self.live();
            let ids: Vec<String> =
                live.iter().filter(|(_, live)| live.node.name() == node).map(|(id, _)| id.clone()).collect();
            ids.iter().filter_map(|id| live.remove(id)).collect()
        };
        tracing::warn!(node, sandboxes = dropped.len(), "a node went down; its sandboxes wait for it");
    }

    /// A running sandbox whose container is gone (its engine restarted, or it was removed from
    /// outside): its latest snapshot, if any, is what is left of it.
    async fn lost(&self, record: &SandboxRecord) {
        let latest = self.inner.store.snapshots(&record.id).await.ok().and_then(|s| s.last().map(|s| s.id.clone()));
        let kept = match latest {
            Some(snapshot) => self
                .update(&record.id, |record| {
                    record.status = SandboxStatus::Paused;
                    record.paused_snapshot = Some(snapshot);
                    record.container = None;
                })
                .await
                .is_ok(),
            None => false,
        };
        if !kept && let Err(error) = self.remove(record, "its container was lost", Status::Error).await {
            tracing::warn!(sandbox = %record.id, %error, "could not remove a lost sandbox");
        }
        tracing::warn!(sandbox = %record.id, kept, "a sandbox's container was gone");
    }
}
