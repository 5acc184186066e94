//! The sandbox image: built from `Dockerfile.sandbox` and the runners, which are compiled into
//! the binary so that the image always matches the tracebox that uses it.

use std::collections::HashMap;

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
];

/// The image label holding the hash of the context and base it was built from.
const CONTEXT_LABEL: &str = "tracebox.context";

/// What `ensure` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStatus {
    /// The image existed and was built from this very context.
    UpToDate,
    /// The image was (re)built.
    Built,
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

/// Make sure `image` exists and was built from this binary's context on `base_image`;
/// build it otherwise (or always, with `force`). Build output goes to `progress`.
pub async fn ensure(
    engine: &Engine,
    image: &str,
    base_image: &str,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageStatus, SandboxError> {
    let hash = context_hash(base_image);
    let current = engine.image_labels(image).await?;
    if !force && current.as_ref().and_then(|labels| labels.get(CONTEXT_LABEL)) == Some(&hash) {
        return Ok(ImageStatus::UpToDate);
    }
    progress(&format!("building {image} on {base_image} (context {hash})"));
    let build_args = HashMap::from([("BASE_IMAGE".to_owned(), base_image.to_owned())]);
    let labels = HashMap::from([(CONTEXT_LABEL.to_owned(), hash)]);
    let built = engine.build_image(context_tar()?, "Dockerfile.sandbox", image, &build_args, &labels, progress).await;
    match built {
        Ok(()) => Ok(ImageStatus::Built),
        // A build that fails while its base is absent failed to pull the base.
        Err(SandboxError::Build(message)) if engine.image_labels(base_image).await?.is_none() => {
            Err(SandboxError::BaseImageUnavailable { base: base_image.to_owned(), message })
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_changes_with_the_base_image() {
        assert_eq!(context_hash("debian:bookworm-slim"), context_hash("debian:bookworm-slim"));
        assert_ne!(context_hash("debian:bookworm-slim"), context_hash("tracebox-base:bookworm"));
        assert_eq!(context_hash("x").len(), 16);
    }

    #[test]
    fn the_context_holds_the_dockerfile_both_runners_both_kernels_and_the_supervisor() {
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
        ];
        assert_eq!(paths, expected);
    }
}
