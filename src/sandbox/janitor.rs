//! The sweeper: removes containers that runs left behind. A crashed or killed server cannot
//! remove its own containers (`--rm` never fires when the client dies), so every container
//! carries its data directory's instance id and its server's boot id, and sweeps find them.

use std::time::Duration;

use super::SandboxError;
use super::docker::{Engine, Labelled};
use super::limits::{LABEL_BOOT, LABEL_INSTANCE};

/// Which of this instance's containers a sweep removes.
#[derive(Debug, Clone, Copy)]
pub enum Sweep<'a> {
    /// Containers of earlier boots: their server is gone (run at start).
    EarlierBoots { current_boot: &'a str },
    /// Containers of this boot older than any run can last: leaked (run periodically).
    Stale {
        current_boot: &'a str,
        older_than: Duration,
    },
    /// Every container of this boot (run at shutdown).
    Boot { boot: &'a str },
}

impl Sweep<'_> {
    fn selects(&self, container: &Labelled, now_secs: i64) -> bool {
        let boot = container.labels.get(LABEL_BOOT).map(String::as_str);
        match *self {
            Sweep::EarlierBoots { current_boot } => boot != Some(current_boot),
            Sweep::Stale {
                current_boot,
                older_than,
            } => {
                boot == Some(current_boot)
                    && now_secs - container.created > older_than.as_secs() as i64
            }
            Sweep::Boot { boot: wanted } => boot == Some(wanted),
        }
    }
}

/// Remove the containers of `instance_id` that `sweep` selects; returns how many.
pub async fn sweep(
    engine: &Engine,
    instance_id: &str,
    sweep: Sweep<'_>,
) -> Result<usize, SandboxError> {
    let containers = engine
        .list_labelled(&[format!("{LABEL_INSTANCE}={instance_id}")])
        .await?;
    let now_secs = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut removed = 0;
    for container in containers.iter().filter(|c| sweep.selects(c, now_secs)) {
        engine.remove(&container.id).await?;
        removed += 1;
    }
    if removed > 0 {
        tracing::info!(removed, ?sweep, "swept leftover sandbox containers");
    }
    Ok(removed)
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
        }
    }

    #[test]
    fn a_start_sweeps_only_earlier_boots() {
        let sweep = Sweep::EarlierBoots {
            current_boot: "now",
        };
        assert!(sweep.selects(&container("before", 0), 100));
        assert!(!sweep.selects(&container("now", 0), 100));
    }

    #[test]
    fn the_periodic_sweep_spares_young_containers_of_this_boot() {
        let sweep = Sweep::Stale {
            current_boot: "now",
            older_than: Duration::from_secs(90),
        };
        assert!(sweep.selects(&container("now", 0), 91));
        assert!(!sweep.selects(&container("now", 0), 90));
        assert!(
            !sweep.selects(&container("before", 0), 1000),
            "earlier boots are the start sweep's"
        );
    }

    #[test]
    fn the_shutdown_sweep_takes_every_container_of_this_boot() {
        let sweep = Sweep::Boot { boot: "now" };
        assert!(sweep.selects(&container("now", 1_000_000), 0));
        assert!(!sweep.selects(&container("other", 0), 0));
    }
}
