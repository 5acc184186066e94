//! Which node a run or sandbox goes to, among those that fit: a pure choice, so that every
//! strategy is tested without an engine.

use std::collections::BTreeMap;

use tracebox_model::Strategy;

/// A node that fits, as placement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Runs and sandboxes on it now.
    pub load: usize,
    /// Runs it takes at once.
    pub capacity: usize,
    /// Whether it can take one more run without waiting.
    pub free: bool,
}

/// The position in `candidates` of the node to use, by `strategy`; None when there is none.
/// Nodes with room come first whatever the strategy; when none has room, the strategy picks
/// among all (the run then waits there). `turn` counts placements (round robin); `random` is
/// any number (random).
pub fn choose(strategy: Strategy, candidates: &[Candidate], turn: usize, random: u64) -> Option<usize> {
    let with_room: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].free).collect();
    let pool: Vec<usize> = if with_room.is_empty() { (0..candidates.len()).collect() } else { with_room };
    if pool.is_empty() {
        return None;
    }
    Some(match strategy {
        // Smallest share of capacity in use; ties go to the node listed first.
        Strategy::LeastLoaded => *pool
            .iter()
            .min_by(|&&a, &&b| {
                let (a, b) = (&candidates[a], &candidates[b]);
                (a.load * b.capacity.max(1)).cmp(&(b.load * a.capacity.max(1)))
            })
            .expect("the pool is not empty"),
        Strategy::RoundRobin => pool[turn % pool.len()],
        Strategy::Random => pool[(random % pool.len() as u64) as usize],
    })
}

/// Does a node carrying `has` satisfy a request for `wants`? Every wanted label, same value.
pub fn labels_fit(wants: &BTreeMap<String, String>, has: &BTreeMap<String, String>) -> bool {
    wants.iter().all(|(key, value)| has.get(key) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(load: usize, capacity: usize) -> Candidate {
        Candidate { load, capacity, free: load < capacity }
    }

    #[test]
    fn least_loaded_takes_the_smallest_share_of_capacity_first_listed_on_ties() {
        let nodes = [node(2, 4), node(1, 4), node(3, 16)];
        assert_eq!(choose(Strategy::LeastLoaded, &nodes, 0, 0), Some(2), "3/16 is less than 1/4");
        let even = [node(1, 4), node(1, 4)];
        assert_eq!(choose(Strategy::LeastLoaded, &even, 7, 9), Some(0));
    }

    #[test]
    fn round_robin_turns_over_the_nodes_with_room() {
        let nodes = [node(0, 2), node(2, 2), node(0, 2)];
        let picks: Vec<_> = (0..4).map(|turn| choose(Strategy::RoundRobin, &nodes, turn, 0)).collect();
        assert_eq!(picks, [Some(0), Some(2), Some(0), Some(2)], "the full node is skipped");
    }

    #[test]
    fn random_stays_within_the_nodes_with_room() {
        let nodes = [node(4, 4), node(0, 4), node(0, 4)];
        for random in 0..50 {
            let pick = choose(Strategy::Random, &nodes, 0, random).unwrap();
            assert!(pick == 1 || pick == 2, "{pick}");
        }
    }

    #[test]
    fn when_every_node_is_full_the_strategy_picks_among_all_and_nothing_is_nothing() {
        let full = [node(4, 4), node(2, 2)];
        assert_eq!(choose(Strategy::LeastLoaded, &full, 0, 0), Some(0));
        assert_eq!(choose(Strategy::RoundRobin, &full, 1, 0), Some(1));
        assert_eq!(choose(Strategy::LeastLoaded, &[], 0, 0), None);
    }

    #[test]
    fn labels_fit_when_the_node_carries_each_one_with_its_value() {
        let has = BTreeMap::from([("zone".to_owned(), "home".to_owned()), ("gpu".to_owned(), "no".to_owned())]);
        assert!(labels_fit(&BTreeMap::new(), &has));
        assert!(labels_fit(&BTreeMap::from([("zone".to_owned(), "home".to_owned())]), &has));
        assert!(!labels_fit(&BTreeMap::from([("zone".to_owned(), "cloud".to_owned())]), &has));
        assert!(!labels_fit(&BTreeMap::from([("ssd".to_owned(), "yes".to_owned())]), &has));
    }
}
