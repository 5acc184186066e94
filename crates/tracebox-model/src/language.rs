//! The languages a sandbox runs, and their accepted spellings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A language the sandbox image can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Node,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Python, Language::Node];

    /// The canonical name, as stored in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Node => "node",
        }
    }

    /// Guess the language of a file from its extension (for `tracebox run FILE`).
    pub fn from_path(path: &std::path::Path) -> Option<Language> {
        match path.extension()?.to_str()? {
            "py" => Some(Language::Python),
            "js" | "mjs" | "cjs" => Some(Language::Node),
            _ => None,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accepted spellings, as listed in error messages.
pub const LANGUAGE_NAMES: &str = "python (or py, python3), node (or javascript, js, nodejs)";

impl FromStr for Language {
    type Err = UnknownLanguage;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "python" | "py" | "python3" => Ok(Language::Python),
            "node" | "javascript" | "js" | "nodejs" => Ok(Language::Node),
            _ => Err(UnknownLanguage(name.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown language `{0}`; use one of: {LANGUAGE_NAMES}")]
pub struct UnknownLanguage(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_alias_names_a_language() {
        for alias in ["python", "py", "python3", "PYTHON", " Py "] {
            assert_eq!(alias.parse::<Language>().unwrap(), Language::Python, "{alias}");
        }
        for alias in ["node", "javascript", "js", "nodejs", "JS"] {
            assert_eq!(alias.parse::<Language>().unwrap(), Language::Node, "{alias}");
        }
    }

    #[test]
    fn an_unknown_language_error_lists_the_accepted_names() {
        let error = "ruby".parse::<Language>().unwrap_err().to_string();
        assert!(error.contains("`ruby`") && error.contains("python") && error.contains("node"));
    }

    #[test]
    fn file_extensions_pick_the_language() {
        use std::path::Path;
        assert_eq!(Language::from_path(Path::new("a/b.py")), Some(Language::Python));
        assert_eq!(Language::from_path(Path::new("x.mjs")), Some(Language::Node));
        assert_eq!(Language::from_path(Path::new("x.rb")), None);
        assert_eq!(Language::from_path(Path::new("Makefile")), None);
    }
}
