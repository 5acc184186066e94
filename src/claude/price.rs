//! The cost estimate of a Claude call, from a price table (`prices.toml`, compiled in; replace
//! it with TRACEBOX_CLAUDE_PRICES). An estimate: the table says where its figures come from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use tracebox_model::Usage;

const BUILT_IN: &str = include_str!("../../prices.toml");

/// US dollars per million tokens of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_write: f64,
    pub cache_read: f64,
}

/// Prices by model-name prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    models: BTreeMap<String, Price>,
    /// Where the table came from, for messages.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    models: BTreeMap<String, Price>,
}

/// A price table that cannot be used, named with its file.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("cannot read the price table {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the price table {source_name} is invalid: {message} (see prices.toml for the format)")]
    Invalid { source_name: String, message: String },
}

impl PriceTable {
    /// The table in `path`, or the built-in one.
    pub fn load(path: Option<&Path>) -> Result<PriceTable, PriceError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| PriceError::Read { path: path.to_owned(), source })?;
                PriceTable::parse(&text, &path.display().to_string())
            }
            None => PriceTable::parse(BUILT_IN, "built-in prices.toml"),
        }
    }

    fn parse(text: &str, source: &str) -> Result<PriceTable, PriceError> {
        let invalid = |message: String| PriceError::Invalid { source_name: source.to_owned(), message };
        let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (model, price) in &file.models {
            let all = [price.input, price.output, price.cache_write, price.cache_read];
            if all.iter().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(invalid(format!("the prices of {model:?} must be numbers of dollars, 0 or more")));
            }
        }
        Ok(PriceTable { models: file.models, source: source.to_owned() })
    }

    /// The price of `model`: the longest key it starts with.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.models
            .iter()
            .filter(|(key, _)| model.starts_with(key.as_str()))
            .max_by_key(|(key, _)| key.len())
            .map(|(_, p)| *p)
    }

    /// What `usage` of `model` costs, in US dollars; None for a model the table has no price for.
    pub fn estimate(&self, model: &str, usage: &Usage) -> Option<f64> {
        let price = self.price(model)?;
        let dollars = usage.input_tokens as f64 * price.input
            + usage.output_tokens as f64 * price.output
            + usage.cache_creation_input_tokens as f64 * price.cache_write
            + usage.cache_read_input_tokens as f64 * price.cache_read;
        Some(dollars / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_matching_key_prices_a_model() {
        let table = PriceTable::load(None).unwrap();
        assert_eq!(table.price("claude-opus-4-1-20250805").unwrap().input, 15.0);
        assert_eq!(table.price("claude-opus-4-5").unwrap().input, 5.0);
        assert_eq!(table.price("claude-sonnet-4-5-20250929").unwrap().output, 15.0);
        assert_eq!(table.price("gpt-4"), None);
    }

    #[test]
    fn every_kind_of_token_is_counted_at_its_own_price() {
        let table =
            PriceTable::parse("[models.m]\ninput = 1.0\noutput = 2.0\ncache_write = 3.0\ncache_read = 4.0\n", "test")
                .unwrap();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_creation_input_tokens: 1_000_000,
            cache_read_input_tokens: 500_000,
        };
        assert_eq!(table.estimate("m-1", &usage), Some(8.0));
        assert_eq!(table.estimate("other", &usage), None);
    }

    #[test]
    fn a_bad_table_is_refused_naming_the_problem() {
        let error = PriceTable::parse(
            "[models.m]\ninput = -1.0\noutput = 1.0\ncache_write = 1.0\ncache_read = 1.0\n",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("p.toml") && error.contains("\"m\""), "{error}");
        let error = PriceTable::parse("[models.m]\ninput = 1.0\n", "p.toml").unwrap_err().to_string();
        assert!(error.contains("missing field"), "{error}");
    }
}
