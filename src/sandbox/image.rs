//! The sandbox image: built from `Dockerfile.sandbox` and the runners, which are compiled into
//! the binary so that the image always matches the tracebox that uses it; and the base image it
//! builds on, chosen by one rule so that every command finds the same base without being told.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::SandboxError;
use super::docker::Engine;

/// The build context: every file `Dockerfile.sandbox` uses, at its path in the repository.
const CONTEXT: &[(&str, &[u8])] = &[
    ("Dockerfile.sandbox", include_bytes!("../../Dockerfile.sandbox")),
    ("sandbox/runner.py", include_bytes!("../../sandbox/runner.py")),
    ("sandbox/runner.js", include_bytes!("../../sandbox/runner.js")),
    ("sandbox/kernel.py", include_bytes!("../../sandbox/kernel.py")),
    ("sandbox/kernel.js", include_bytes!("../../sandbox/kernel.js")),
    ("sandbox/supervise.py", include_bytes!("../../sandbox/supervise.py")),
    ("sandbox/sandboxd.py", include_bytes!("../../sandbox/sandboxd.py")),
];

/// The image label holding the hash of the context and base it was built from.
pub(super) const CONTEXT_LABEL: &str = "tracebox.context";
/// The image label naming the base it was built on: a later rebuild, by any command, with or
/// without the setting, builds on it again.
const BASE_LABEL: &str = "tracebox.base";

/// The base when nothing says otherwise: Debian's slim image, from a registry.
pub const DEFAULT_BASE: &str = "debian:bookworm-slim";
/// The base `scripts/build-base-image.sh` builds from Debian's packages, where no registry is
/// reachable.
pub const OFFLINE_BASE: &str = "tracebox-base:bookworm";

/// [`choose_base`] in words, for the error that says no base could be had.
pub const BASE_RULE: &str = "the sandbox image builds on TRACEBOX_BASE_IMAGE (or base_image in the config file, \
     or --base-image) when set; else on the base it was last built on (its tracebox.base label); else on \
     debian:bookworm-slim if the engine has it, else on tracebox-base:bookworm if the engine has it, else it \
     pulls debian:bookworm-slim. Without registry access, build tracebox-base:bookworm from Debian's \
     packages with scripts/build-base-image.sh and leave TRACEBOX_BASE_IMAGE unset: every tracebox command \
     then finds it";

/// What `ensure` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStatus {
    /// The image existed and was built from this very context.
    UpToDate,
    /// The image was (re)built.
    Built,
}

/// The sandbox image is there, current, on this base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReady {
    pub status: ImageStatus,
    pub base: Base,
}

/// The base the sandbox image is (to be) built on, and why that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub image: String,
    pub reason: BaseReason,
}

/// Why [`choose_base`] chose a base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseReason {
    /// `TRACEBOX_BASE_IMAGE`, `base_image` in the config file, or `--base-image`.
    Configured,
    /// The sandbox image was built on it, and is current or the base is still there.
    BuiltOn,
    /// The default, which the engine has.
    Default,
    /// The offline base, which the engine has while it lacks the default.
    Offline,
    /// The engine has neither: the build pulls the default.
    Pull,
}

impl fmt::Display for BaseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BaseReason::Configured => "set by TRACEBOX_BASE_IMAGE, base_image or --base-image",
            BaseReason::BuiltOn => "what the sandbox image was built on",
            BaseReason::Default => "the default",
            BaseReason::Offline => "the offline base, as the engine lacks debian:bookworm-slim",
            BaseReason::Pull => "the default, to be pulled: the engine has no base image",
        })
    }
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.image, self.reason)
    }
}

/// What the engine holds that the choice of a base depends on.
#[derive(Debug, Default)]
pub struct Found {
    /// What the existing sandbox image says it was built on.
    pub built_on: Option<BuiltOn>,
    /// Which of the bases the rule asks about the engine has.
    pub present: Vec<String>,
}

impl Found {
    fn has(&self, image: &str) -> bool {
        self.present.iter().any(|present| present == image)
    }
}

/// The base an existing sandbox image was built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltOn {
    pub base: String,
    /// Built from this very context on that base: nothing to rebuild.
    pub current: bool,
}

/// The base to build on: the configured one; else the one the sandbox image was built on (unless
/// a rebuild is due and that base is gone); else the default or the offline base, whichever the
/// engine has, the default first; else the default, which the build pulls. An explicit setting
/// always wins; without one, the base an image was once built on (by `scripts/serve.sh`, or with
/// the setting) is found again by every command, and a machine that only ever had the offline
/// base uses it. An empty setting
/// (`TRACEBOX_BASE_IMAGE=`) is no setting, as in the scripts.
pub fn choose_base(configured: Option<&str>, found: &Found) -> Base {
    let base = |image: &str, reason| Base { image: image.to_owned(), reason };
    if let Some(image) = configured.filter(|image| !image.trim().is_empty()) {
        return base(image, BaseReason::Configured);
    }
    match &found.built_on {
        Some(built) if built.current || found.has(&built.base) => base(&built.base, BaseReason::BuiltOn),
        _ if found.has(DEFAULT_BASE) => base(DEFAULT_BASE, BaseReason::Default),
        _ if found.has(OFFLINE_BASE) => base(OFFLINE_BASE, BaseReason::Offline),
        _ => base(DEFAULT_BASE, BaseReason::Pull),
    }
}

/// The base a sandbox image's labels say it was built on: its `tracebox.base` label, or for an
/// image built before that label, the known base whose context hash it carries.
fn built_on(labels: &HashMap<String, String>) -> Option<BuiltOn> {
    let context = labels.get(CONTEXT_LABEL);
    let base = match labels.get(BASE_LABEL) {
        Some(base) => base.clone(),
        None => {
            [DEFAULT_BASE, OFFLINE_BASE].into_iter().find(|known| context == Some(&context_hash(known)))?.to_owned()
        }
    };
    let current = context == Some(&context_hash(&base));
    Some(BuiltOn { base, current })
}

/// Ask the engine what [`choose_base`] needs: the sandbox image's labels, and which bases it has.
async fn find(engine: &Engine, labels: Option<&HashMap<String, String>>) -> Result<Found, SandboxError> {
    let built_on = labels.and_then(built_on);
    let mut asked = vec![DEFAULT_BASE.to_owned(), OFFLINE_BASE.to_owned()];
    asked.extend(built_on.as_ref().map(|built| built.base.clone()));
    let mut present = Vec::new();
    for image in asked {
        if engine.image_labels(&image).await?.is_some() {
            present.push(image);
        }
    }
    Ok(Found { built_on, present })
}

/// A short hash of the build context and base image: equal hashes, equal images.
pub fn context_hash(base_image: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(base_image.as_bytes());
    for (path, bytes) in CONTEXT {
        hasher.update(path.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let digest = hasher.finalize();
    digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect()
}

fn context_tar() -> Result<Vec<u8>, SandboxError> {
    let mut archive = tar::Builder::new(Vec::new());
    for (path, bytes) in CONTEXT {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(&mut header, path, *bytes)
            .map_err(|e| SandboxError::Build(format!("cannot pack the build context: {e}")))?;
    }
    archive.into_inner().map_err(|e| SandboxError::Build(format!("cannot pack the build context: {e}")))
}

/// Make sure `image` exists and was built from this binary's context on the base
/// [`choose_base`] picks (`configured`, when set); build it otherwise (or always, with
/// `force`). Build output goes to `progress`.
pub async fn ensure(
    engine: &Engine,
    image: &str,
    configured: Option<&str>,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageReady, SandboxError> {
    let labels = engine.image_labels(image).await?;
    let base = choose_base(configured, &find(engine, labels.as_ref()).await?);
    let hash = context_hash(&base.image);
    if !force && labels.as_ref().and_then(|labels| labels.get(CONTEXT_LABEL)) == Some(&hash) {
        return Ok(ImageReady { status: ImageStatus::UpToDate, base });
    }
    progress(&format!("building {image} on {base} (context {hash})"));
    let build_args = HashMap::from([("BASE_IMAGE".to_owned(), base.image.clone())]);
    let labels = HashMap::from([(CONTEXT_LABEL.to_owned(), hash), (BASE_LABEL.to_owned(), base.image.clone())]);
    let built = engine.build_image(context_tar()?, "Dockerfile.sandbox", image, &build_args, &labels, progress).await;
    match built {
        Ok(()) => Ok(ImageReady { status: ImageStatus::Built, base }),
        // A build that fails while its base is absent failed to pull the base.
        Err(SandboxError::Build(message)) if engine.image_labels(&base.image).await?.is_none() => {
            Err(SandboxError::BaseImageUnavailable { base, message })
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(built_on: Option<(&str, bool)>, present: &[&str]) -> Found {
        Found {
            built_on: built_on.map(|(base, current)| BuiltOn { base: base.to_owned(), current }),
            present: present.iter().map(|image| image.to_string()).collect(),
        }
    }

    fn chosen(configured: Option<&str>, found: &Found) -> (String, BaseReason) {
        let base = choose_base(configured, found);
        (base.image, base.reason)
    }

    #[test]
    fn an_explicit_base_wins_over_everything_the_engine_holds() {
        let everything = found(Some((OFFLINE_BASE, true)), &[DEFAULT_BASE, OFFLINE_BASE]);
        assert_eq!(chosen(Some("my/base:1"), &everything), ("my/base:1".into(), BaseReason::Configured));
        let nothing = found(None, &[]);
        assert_eq!(chosen(Some(DEFAULT_BASE), &nothing), (DEFAULT_BASE.into(), BaseReason::Configured));
        assert_eq!(chosen(Some(""), &nothing), (DEFAULT_BASE.into(), BaseReason::Pull), "empty is unset");
    }

    #[test]
    fn without_a_setting_the_base_the_image_was_built_on_is_kept() {
        let offline_built = found(Some((OFFLINE_BASE, true)), &[DEFAULT_BASE]);
        assert_eq!(chosen(None, &offline_built), (OFFLINE_BASE.into(), BaseReason::BuiltOn), "current: no rebuild");
        let stale_but_there = found(Some(("my/base:1", false)), &["my/base:1", DEFAULT_BASE]);
        assert_eq!(chosen(None, &stale_but_there), ("my/base:1".into(), BaseReason::BuiltOn));
    }

    #[test]
    fn a_stale_image_whose_base_is_gone_falls_back_to_what_the_engine_has() {
        let gone = found(Some(("my/base:1", false)), &[OFFLINE_BASE]);
        assert_eq!(chosen(None, &gone), (OFFLINE_BASE.into(), BaseReason::Offline));
    }

    #[test]
    fn without_an_image_the_default_comes_first_then_the_offline_base_then_a_pull() {
        let both = found(None, &[OFFLINE_BASE, DEFAULT_BASE]);
        assert_eq!(chosen(None, &both), (DEFAULT_BASE.into(), BaseReason::Default));
        let offline = found(None, &[OFFLINE_BASE]);
        assert_eq!(chosen(None, &offline), (OFFLINE_BASE.into(), BaseReason::Offline));
        assert_eq!(chosen(None, &found(None, &[])), (DEFAULT_BASE.into(), BaseReason::Pull));
    }

    #[test]
    fn an_image_says_what_it_was_built_on_by_label_or_by_its_hash() {
        let labels = |pairs: &[(&str, String)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
        };
        let labelled = labels(&[(BASE_LABEL, "my/base:1".into()), (CONTEXT_LABEL, context_hash("my/base:1"))]);
        assert_eq!(built_on(&labelled), Some(BuiltOn { base: "my/base:1".into(), current: true }));
        let stale = labels(&[(BASE_LABEL, "my/base:1".into()), (CONTEXT_LABEL, "0123456789abcdef".into())]);
        assert_eq!(built_on(&stale), Some(BuiltOn { base: "my/base:1".into(), current: false }));
        let before_the_label = labels(&[(CONTEXT_LABEL, context_hash(OFFLINE_BASE))]);
        assert_eq!(built_on(&before_the_label), Some(BuiltOn { base: OFFLINE_BASE.into(), current: true }));
        let unknown = labels(&[(CONTEXT_LABEL, "0123456789abcdef".into())]);
        assert_eq!(built_on(&unknown), None);
        assert_eq!(built_on(&HashMap::new()), None);
    }

    #[test]
    fn the_hash_changes_with_the_base_image() {
        assert_eq!(context_hash("debian:bookworm-slim"), context_hash("debian:bookworm-slim"));
        assert_ne!(context_hash("debian:bookworm-slim"), context_hash("tracebox-base:bookworm"));
        assert_eq!(context_hash("x").len(), 16);
    }

    #[test]
    fn the_context_holds_the_dockerfile_both_runners_both_kernels_and_the_supervisors() {
        let tar = context_tar().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let paths: Vec<String> =
            archive.entries().unwrap().map(|entry| entry.unwrap().path().unwrap().display().to_string()).collect();
        let expected = [
            "Dockerfile.sandbox",
            "sandbox/runner.py",
            "sandbox/runner.js",
            "sandbox/kernel.py",
            "sandbox/kernel.js",
            "sandbox/supervise.py",
            "sandbox/sandboxd.py",
        ];
        assert_eq!(paths, expected);
    }
}
