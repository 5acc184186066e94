//! An artifact's name: the path a program gave a file under `/workspace/out/`. It goes into the
//! reply, the trace, the stored file's path and its URL, so every secret in it is redacted first
//! (as `REDACTED-<rule>`, which a file name may hold), and then the name is checked like any
//! other: `out/` and valid file names, within a depth and a length.

use std::path::PathBuf;

use tracebox_model::Redaction;

use super::super::FileName;
use crate::policy::Policy;

/// The one directory of `/workspace` whose files come back.
const OUT: &str = "out";

/// Deepest path under `out/` kept, and longest path in bytes (what a ustar header holds).
pub(super) const MAX_DEPTH: usize = 16;
pub(super) const MAX_PATH_BYTES: usize = 256;

/// What `redactions` of artifact names are counted under, beside `stdout` and `stderr`.
pub(super) const ARTIFACT_NAMES: &str = "artifacts";

/// Most numbered alternatives tried for a redacted name that is taken.
const MAX_NUMBERED: u64 = 1000;

/// A path from the archive, as it is kept.
#[derive(Debug, PartialEq)]
pub(super) struct Screened {
    /// `out/…` with its secrets replaced; what the reply, the trace and the URL show.
    pub name: String,
    /// The secrets replaced in it.
    pub redactions: Vec<Redaction>,
}

impl Screened {
    /// `raw`, as the archive names it, with every secret the `policy` finds in it replaced.
    pub fn new(raw: &str, policy: &Policy) -> Screened {
        let filtered = policy.redact_name(raw, ARTIFACT_NAMES);
        Screened { name: filtered.text, redactions: filtered.redactions }
    }

    /// The name is one tracebox made, not the program: tracebox keeps it unique (two keys, or a
    /// key and a file of the program's own, may redact to the same name).
    pub fn is_redacted(&self) -> bool {
        !self.redactions.is_empty()
    }
}

/// `name` as a path under the run's artifact directory, when it is one a run may return:
/// `out/` then one or more valid file names.
pub(super) fn artifact_path(name: &str) -> Result<PathBuf, String> {
    let name = name.strip_suffix('/').unwrap_or(name);
    if name.len() > MAX_PATH_BYTES {
        return Err(format!("the path is over {MAX_PATH_BYTES} bytes"));
    }
    let mut parts = name.split('/');
    if parts.next() != Some(OUT) {
        return Err("not under out/".to_owned());
    }
    let mut path = PathBuf::from(OUT);
    for (depth, part) in parts.enumerate() {
        if depth >= MAX_DEPTH {
            return Err(format!("more than {MAX_DEPTH} directories deep"));
        }
        path.push(FileName::parse(part).map_err(|e| e.to_string())?.as_str());
    }
    if path.as_os_str() == OUT {
        return Err("not a file under out/".to_owned());
    }
    Ok(path)
}

/// The alternatives of artifact `name` when it is taken, with their paths: `out/…/x.txt` →
/// `out/…/x-1.txt`, `x-2.txt`… (those that are valid names).
pub(super) fn numbered(name: &str) -> impl Iterator<Item = (String, PathBuf)> + '_ {
    let split = name.rsplit_once('/').and_then(|(dir, last)| Some((dir, FileName::parse(last).ok()?)));
    (1..=MAX_NUMBERED).filter_map(move |n| {
        let (dir, last) = split.as_ref()?;
        let name = format!("{dir}/{}", last.numbered(n)?);
        let path = artifact_path(&name).ok()?;
        Some((name, path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_the_same_way_for_downloads() {
        assert!(artifact_path("out/a/b.txt").is_ok());
        for bad in ["out", "out/", "x/a", "out/../a", "out//a", "/out/a", "out/a\nb"] {
            assert!(artifact_path(bad).is_err(), "{bad:?}");
        }
        let deep = |depth: usize| format!("out/{}f", "d/".repeat(depth - 1));
        assert!(artifact_path(&deep(MAX_DEPTH)).is_ok(), "exactly {MAX_DEPTH} deep");
        assert!(artifact_path(&deep(MAX_DEPTH + 1)).is_err());
        let long = |len: usize| format!("out/{}", "x".repeat(len - 4));
        assert!(artifact_path(&long(MAX_PATH_BYTES)).is_ok(), "exactly {MAX_PATH_BYTES} bytes");
        assert!(artifact_path(&long(MAX_PATH_BYTES + 1)).is_err());
    }

    #[test]
    fn a_secret_in_a_name_becomes_a_valid_name() {
        let policy = Policy::builtin().unwrap();
        for (raw, kept) in [
            ("out/AKIAIOSFODNN7EXAMPLE.txt", "out/REDACTED-aws_access_key_id.txt"),
            ("out/AKIA\u{200b}IOSFODNN7EXAMPLE", "out/REDACTED-aws_access_key_id"),
            ("out/AKIAIOSFODNN7EXAMPLE/data.csv", "out/REDACTED-aws_access_key_id/data.csv"),
            ("out/key=sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA.log", "out/key=REDACTED-anthropic_api_key.log"),
            ("out/plot.png", "out/plot.png"),
        ] {
            let screened = Screened::new(raw, &policy);
            assert_eq!(screened.name, kept);
            assert_eq!(screened.is_redacted(), raw != kept);
            assert!(artifact_path(&screened.name).is_ok(), "{kept}");
        }
        let spanning = Screened::new("out/aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &policy);
        assert_eq!(spanning.name, "out/aws_secret_access_key=REDACTED-aws_secret_access_key", "a secret across a /");
        assert_eq!(spanning.redactions[0].stream, ARTIFACT_NAMES);
    }

    #[test]
    fn a_taken_name_is_numbered_in_its_last_part() {
        let names: Vec<String> = numbered("out/d/REDACTED-x.txt").take(2).map(|(name, _)| name).collect();
        assert_eq!(names, ["out/d/REDACTED-x-1.txt", "out/d/REDACTED-x-2.txt"]);
        let (_, path) = numbered("out/REDACTED-x").next().unwrap();
        assert_eq!(path, PathBuf::from("out/REDACTED-x-1"));
        let at_limit = format!("out/{}", "x".repeat(MAX_PATH_BYTES - 4));
        assert_eq!(numbered(&at_limit).next(), None, "no alternative longer than a path may be");
    }
}
