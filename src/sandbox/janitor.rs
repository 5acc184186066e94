//! The sweeper: removes containers that runs left behind. A crashed or killed tracebox cannot
//! remove its own containers (`--rm` never fires when the client dies), so every container
//! carries its data directory's instance id and its tracebox's boot id, and sweeps find them.
//! A stateful sandbox's container outlives its boot: boot sweeps spare it, and it goes only
//! when no sandbox of the store owns it.

use std::time::Duration;

use super::SandboxError;
use super::docker::{Engine, Labelled};
use super::limits::{LABEL_BOOT, LABEL_INSTANCE, LABEL_SANDBOX};

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
    /// Sandbox containers no sandbox of the store owns (`owned`: their container ids).
    Unowned { owned: &'a [String] },
}

impl Sweep<'_> {
    fn selects(&self, container: &Labelled, now_secs: i64) -> bool {
        let boot = container.labels.get(LABEL_BOOT).map(String::as_str).unwrap_or_default();
        if container.labels.contains_key(LABEL_SANDBOX) {
            return match *self {
                Sweep::Unowned { owned } => !owned.contains(&container.id),
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

/// Remove the containers of `instance_id` that `sweep` selects; returns how many were removed.
/// One container that cannot be removed does not stop the others.
pub async fn sweep(engine: &Engine, instance_id: &str, sweep: Sweep<'_>) -> Result<usize, SandboxError> {
    let containers = engine.list_labelled(&[format!("{LABEL_INSTANCE}={instance_id}")]).await?;
    let now_secs = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut removed = 0;
    for container in containers.iter().filter(|c| sweep.selects(c, now_secs)) {
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
    fn sandbox_containers_outlive_their_boot_and_go_only_when_unowned() {
        let mut sandbox = container("crashed", 0);
        sandbox.labels.insert(LABEL_SANDBOX.to_owned(), "sbx-1".to_owned());
        assert!(!Sweep::DeadBoots { live: &[] }.selects(&sandbox, 100));
        assert!(!Sweep::Boot { boot: "crashed" }.selects(&sandbox, 100));
        assert!(!Sweep::Stale { boot: "crashed", older_than: Duration::from_secs(1) }.selects(&sandbox, 100));
        assert!(!Sweep::Unowned { owned: &["c".to_owned()] }.selects(&sandbox, 100), "owned by its container's id");
        assert!(Sweep::Unowned { owned: &["other".to_owned()] }.selects(&sandbox, 100));
        assert!(!Sweep::Unowned { owned: &[] }.selects(&container("crashed", 0), 100), "runs are the boots' sweeps'");
    }

    #[test]
    fn the_shutdown_sweep_takes_every_container_of_its_boot() {
        let sweep = Sweep::Boot { boot: "now" };
        assert!(sweep.selects(&container("now", 1_000_000), 0));
        assert!(!sweep.selects(&container("other", 0), 0));
    }
}
