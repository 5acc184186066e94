//! [`FileName`]: the one check every name of an uploaded file passes, on the way in (upload)
//! and on the way out (download, delete). A valid name is a single path component that means
//! the same file on every system, so no name can lead outside `uploads/`.

use std::fmt;

/// Longest name accepted, in bytes (what most file systems allow).
pub const MAX_NAME_BYTES: usize = 255;

/// Names Windows keeps for devices, with or without an extension, in any case.
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// A valid name of a file in `uploads/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(String);

/// Why a name is refused: each rule in words, with what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the file name is empty; name the file, e.g. data.csv")]
    Empty,
    #[error("the file name {name:?} is {len} bytes, over the {MAX_NAME_BYTES} allowed")]
    TooLong { name: String, len: usize },
    #[error("the file name {name:?} is a path; send the base name only, e.g. {base:?}")]
    Path { name: String, base: String },
    #[error("the file name {name:?} contains a control character (NUL, newline, tab…); remove it")]
    Control { name: String },
    #[error("the file name {name:?} is a directory reference; name a file, e.g. data.csv")]
    Dots { name: String },
    #[error("the file name {name:?} starts with a dot; hidden names are not accepted, drop the leading dot")]
    Hidden { name: String },
    #[error("the file name {name:?} is reserved on Windows ({reserved}); choose another name")]
    Reserved { name: String, reserved: &'static str },
    #[error("the file name {name:?} ends with a space or a dot; remove it")]
    Trailing { name: String },
}

impl FileName {
    /// Check `name` against every rule, naming the first one it breaks.
    pub fn parse(name: &str) -> Result<FileName, NameError> {
        let owned = || name.to_owned();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::Control { name: owned() });
        }
        if name.contains(['/', '\\']) {
            let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
            let base = if base.is_empty() { "data.csv" } else { base };
            return Err(NameError::Path { name: owned(), base: base.to_owned() });
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong { name: owned(), len: name.len() });
        }
        if name == "." || name == ".." {
            return Err(NameError::Dots { name: owned() });
        }
        if name.starts_with('.') {
            return Err(NameError::Hidden { name: owned() });
        }
        if name.ends_with([' ', '.']) {
            return Err(NameError::Trailing { name: owned() });
        }
        let stem = name.split('.').next().unwrap_or_default().trim_end();
        if let Some(reserved) = RESERVED.iter().find(|reserved| reserved.eq_ignore_ascii_case(stem)) {
            return Err(NameError::Reserved { name: owned(), reserved });
        }
        Ok(FileName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `n`th alternative to this name when it is taken: `data.csv` → `data-1.csv`,
    /// `README` → `README-1`, the stem shortened when the result would be too long.
    pub fn numbered(&self, n: u64) -> Option<FileName> {
        let (stem, extension) = match self.0.rfind('.') {
            Some(dot) if dot > 0 => self.0.split_at(dot),
            _ => (self.0.as_str(), ""),
        };
        let suffix = format!("-{n}{extension}");
        let mut stem = stem.to_owned();
        while stem.len() + suffix.len() > MAX_NAME_BYTES {
            stem.pop()?;
        }
        FileName::parse(&format!("{}{suffix}", stem.trim_end_matches([' ', '.']))).ok()
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(name: &str) -> NameError {
        FileName::parse(name).expect_err(name)
    }

    #[test]
    fn ordinary_names_are_accepted_as_they_are() {
        for name in
            ["data.csv", "report 2026.pdf", "a", "archive.tar.gz", "naïve — ü.txt", "CONFIG.txt", "COM10", "x..y"]
        {
            assert_eq!(FileName::parse(name).unwrap().as_str(), name);
        }
        assert!(FileName::parse(&"a".repeat(MAX_NAME_BYTES)).is_ok());
    }

    #[test]
    fn paths_are_refused_asking_for_the_base_name() {
        for (name, base) in [
            ("../x", "x"),
            ("/etc/passwd", "passwd"),
            ("a\\b", "b"),
            ("C:\\Users\\a\\data.csv", "data.csv"),
            ("dir/", "data.csv"),
        ] {
            let error = refusal(name);
            assert_eq!(error, NameError::Path { name: name.into(), base: base.into() });
            assert!(error.to_string().contains("send the base name"), "{error}");
        }
    }

    #[test]
    fn each_rule_is_named() {
        assert_eq!(refusal(""), NameError::Empty);
        assert!(matches!(refusal(&"a".repeat(MAX_NAME_BYTES + 1)), NameError::TooLong { len: 256, .. }));
        assert!(matches!(refusal(&"é".repeat(128)), NameError::TooLong { len: 256, .. }));
        for name in ["a\nb", "a\0b", "a\rb", "tab\there", "del\u{7f}"] {
            assert!(matches!(refusal(name), NameError::Control { .. }), "{name:?}");
        }
        assert!(matches!(refusal("."), NameError::Dots { .. }));
        assert!(matches!(refusal(".."), NameError::Dots { .. }));
        assert!(matches!(refusal(".hidden"), NameError::Hidden { .. }));
        assert!(matches!(refusal(".partial-1234"), NameError::Hidden { .. }));
        assert!(matches!(refusal("data.csv "), NameError::Trailing { .. }));
        assert!(matches!(refusal("data."), NameError::Trailing { .. }));
    }

    #[test]
    fn windows_device_names_are_refused_in_any_case_and_with_any_extension() {
        for name in ["CON", "con", "con.txt", "Nul.tar.gz", "aux", "PRN.csv", "com1", "COM9.log", "lpt5", "LPT1 .txt"] {
            assert!(matches!(refusal(name), NameError::Reserved { .. }), "{name:?}");
        }
    }

    #[test]
    fn a_taken_name_is_numbered_before_its_extension() {
        let numbered = |name: &str, n| FileName::parse(name).unwrap().numbered(n).unwrap().to_string();
        assert_eq!(numbered("data.csv", 1), "data-1.csv");
        assert_eq!(numbered("archive.tar.gz", 2), "archive.tar-2.gz");
        assert_eq!(numbered("README", 3), "README-3");
        let long = numbered(&format!("{}.csv", "a".repeat(251)), 12);
        assert_eq!(long.len(), MAX_NAME_BYTES);
        assert!(long.ends_with("a-12.csv"), "{long}");
    }
}
