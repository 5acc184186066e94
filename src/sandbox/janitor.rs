//! The sweeper: removes containers that runs left behind. A crashed or killed tracebox cannot
//! remove its own containers (`--rm` never fires when the client dies), so every container
//! carries its data directory's instance id and its tracebox's boot id, and sweeps find them.
//! A stateful sandbox's container outlives its boot: boot sweeps spare it, and it goes only
//! when no sandbox of the store owns it.

use std::time::Duration;

use super::SandboxError;
use super::docker::{Engine, Labelled};
use super::limits::{ContainerSettings, LABEL_BOOT, LABEL_INSTANCE, LABEL_NODE, LABEL_SANDBOX};

/// Which of this data directory's containers a sweep removes.
#[derive(Debug, Clone, Copy)]
pub enum Sweep<'a> {
    /// Containers of boots that are no longer alive: their tracebox is gone.
    DeadBoots {
        /// Boots still alive (their lock is held).
        live: &'a [String],
    },
    /// Containers of `boot` older than any run can last: leaked.
    Stale { boot: &'a str, older_than: Duration },
    /// Every container of `boot` (at its shutdown).
    Boot { boot: &'a str },
    /// Sandbox containers no sandbox of the store owns (`owned`: their container ids), made
    /// longer than `older_than` ago (a sandbox being made or resumed owns its container only
    /// once it is ready).
    Unowned { owned: &'a [String], older_than: Duration },
}

impl Sweep<'_> {
    fn selects(&self, container: &Labelled, now_secs: i64) -> bool {
        let boot = container.labels.get(LABEL_BOOT).map(String::as_str).unwrap_or_default();
        if container.labels.contains_key(LABEL_SANDBOX) {
            return match *self {
                Sweep::Unowned { owned, older_than } => {
                    !owned.contains(&container.id) && now_secs - container.created >= older_than.as_secs() as i64
                }
                Sweep::DeadBoots { .. } | Sweep::Stale { .. } | Sweep::Boot { .. } => false,
            };
        }
        match *self {
            Sweep::Unowned { .. } => false,
            Sweep::DeadBoots { live } => !live.iter().any(|alive| alive == boot),
            Sweep::Stale { boot: wanted, older_than } => {
                boot == wanted && now_secs - container.created > older_than.as_secs() as i64
            }
            Sweep::Boot { boot: wanted } => boot == wanted,
        }
    }
}

/// Is `container` this node's to sweep? Its own, or made before nodes had labels, or by a node
/// no longer configured; never another configured node's (one engine may be two nodes).
fn is_nodes(container: &Labelled, node: &str, other_nodes: &[String]) -> bool {
    match container.labels.get(LABEL_NODE) {
        Some(label) => label == node || !other_nodes.contains(label),
        None => true,
    }
}

/// Remove the containers of this data directory and node that `sweep` selects; returns how many
/// were removed. One container that cannot be removed does not stop the others.
pub async fn sweep(engine: &Engine, settings: &ContainerSettings, sweep: Sweep<'_>) -> Result<usize, SandboxError> {
    let containers = engine.list_labelled(&[format!("{LABEL_INSTANCE}={}", settings.instance_id)]).await?;
    let now_secs = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut removed = 0;
    let ours = |c: &&Labelled| is_nodes(c, &settings.node, &settings.other_nodes);
    for container in containers.iter().filter(ours).filter(|c| sweep.selects(c, now_secs)) {
        match engine.remove(&container.id).await {
            Ok(()) => removed += 1,
            Err(error) => tracing::warn!(container = %container.id, %error, "could not sweep a container"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, ?sweep, "swept leftover sandbox containers");
    }
    Ok(removed)
}

/// The stateful sandboxes' containers of `instance_id`: (sandbox id, container id, running?).
pub async fn sandbox_containers(
    engine: &Engine,
    instance_id: &str,
) -> Result<Vec<(String, String, bool)>, SandboxError> {
    let labels = [format!("{LABEL_INSTANCE}={instance_id}"), LABEL_SANDBOX.to_owned()];
    let containers = engine.list_labelled(&labels).await?;
    Ok(containers.into_iter().filter_map(|c| Some((c.labels.get(LABEL_SANDBOX)?.clone(), c.id, c.running))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn container(boot: &str, created: i64) -> Labelled {
        Labelled {
            id: "c".into(),
            labels: HashMap::from([(LABEL_BOOT.to_owned(), boot.to_owned())]),
            created,
            running: true,
        }
    }

    #[test]
    fn containers_of_dead_boots_are_swept_and_live_ones_spared() {
        let live = ["now".to_owned(), "cli-run".to_owned()];
        let sweep = Sweep::DeadBoots { live: &live };
        assert!(sweep.selects(&container("crashed", 0), 100));
        assert!(!sweep.selects(&container("now", 0), 100));
        assert!(!sweep.selects(&container("cli-run", 0), 100));
        let unlabelled = Labelled { labels: HashMap::new(), ..container("x", 0) };
        assert!(sweep.selects(&unlabelled, 100));
    }

    #[test]
    fn the_stale_sweep_spares_young_containers() {
        let sweep = Sweep::Stale { boot: "now", older_than: Duration::from_secs(90) };
        assert!(sweep.selects(&container("now", 0), 91));
        assert!(!sweep.selects(&container("now", 0), 90));
        assert!(!sweep.selects(&container("other", 0), 1000), "other boots are the dead-boot sweep's");
    }

    #[test]
    fn a_node_sweeps_its_own_containers_and_those_no_configured_node_claims() {
        let others = ["local".to_owned()];
        let of = |node: Option<&str>| {
            let mut container = container("b", 0);
            if let Some(node) = node {
                container.labels.insert(LABEL_NODE.to_owned(), node.to_owned());
            }
            is_nodes(&container, "small", &others)
        };
        assert!(of(Some("small")));
        assert!(!of(Some("local")), "one engine configured as two nodes: the other node's are not ours");
        assert!(of(Some("renamed-away")), "a node no longer configured claims nothing");
        assert!(of(None), "made before nodes were labelled");
    }

    #[test]
    fn sandbox_containers_outlive_their_boot_and_go_only_when_unowned() {
        let mut sandbox = container("crashed", 0);
        sandbox.labels.insert(LABEL_SANDBOX.to_owned(), "sbx-1".to_owned());
        assert!(!Sweep::DeadBoots { live: &[] }.selects(&sandbox, 100));
        assert!(!Sweep::Boot { boot: "crashed" }.selects(&sandbox, 100));
        assert!(!Sweep::Stale { boot: "crashed", older_than: Duration::from_secs(1) }.selects(&sandbox, 100));
        let now = Duration::ZERO;
        assert!(
            !Sweep::Unowned { owned: &["c".to_owned()], older_than: now }.selects(&sandbox, 100),
            "owned by its container's id"
        );
        assert!(Sweep::Unowned { owned: &["other".to_owned()], older_than: now }.selects(&sandbox, 100));
        let grace = Duration::from_secs(60);
        assert!(!Sweep::Unowned { owned: &[], older_than: grace }.selects(&sandbox, 59), "one being made is spared");
        assert!(Sweep::Unowned { owned: &[], older_than: grace }.selects(&sandbox, 60));
        assert!(
            !Sweep::Unowned { owned: &[], older_than: now }.selects(&container("crashed", 0), 100),
            "runs are the boots' sweeps'"
        );
    }

    #[test]
    fn the_shutdown_sweep_takes_every_container_of_its_boot() {
        let sweep = Sweep::Boot { boot: "now" };
        assert!(sweep.selects(&container("now", 1_000_000), 0));
        assert!(!sweep.selects(&container("other", 0), 0));
    }
}
