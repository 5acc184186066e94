//! Where a run or sandbox may go when the server drives several Docker engines (nodes): the
//! strategy that picks among the nodes that fit, the labels a node must carry, and each attempt
//! that failed before the program started.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a node is picked among those that fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The node with the smallest share of its capacity in use (ties: the first configured).
    #[default]
    LeastLoaded,
    /// Each node in turn.
    RoundRobin,
    /// Any node, uniformly.
    Random,
}

impl Strategy {
    pub const NAMES: &'static str = "least_loaded, round_robin or random";

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LeastLoaded => "least_loaded",
            Strategy::RoundRobin => "round_robin",
            Strategy::Random => "random",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no strategy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown placement strategy {0:?}; use {names}", names = Strategy::NAMES)]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(name: &str) -> Result<Strategy, UnknownStrategy> {
        match name {
            "least_loaded" => Ok(Strategy::LeastLoaded),
            "round_robin" => Ok(Strategy::RoundRobin),
            "random" => Ok(Strategy::Random),
            other => Err(UnknownStrategy(other.to_owned())),
        }
    }
}

/// What a request says of where it may run: nothing (any node, the server's strategy), or labels
/// every node it goes to must carry, and a strategy of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub strategy: Option<Strategy>,
    pub labels: BTreeMap<String, String>,
}

/// One placement that failed before the program started: the run went on to another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAttempt {
    pub node: String,
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_read_as_they_are_written() {
        for strategy in [Strategy::LeastLoaded, Strategy::RoundRobin, Strategy::Random] {
            assert_eq!(strategy.as_str().parse::<Strategy>(), Ok(strategy));
            assert_eq!(serde_json::to_value(strategy).unwrap(), serde_json::json!(strategy.as_str()));
        }
        let unknown = "fastest".parse::<Strategy>().unwrap_err();
        assert!(unknown.to_string().contains("least_loaded, round_robin or random"), "{unknown}");
    }
}
