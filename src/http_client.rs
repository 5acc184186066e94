//! Where every HTTP client of the project is built: the Claude client, `tracebox batch
//! --server`, the benchmark programs and the tests.
//!
//! reqwest is built with rustls and no crypto provider of its own (ring builds without cmake
//! and is small), so a client made before a provider is installed panics at its first request.
//! [`builder`] installs ring first; clippy's `disallowed-methods` (clippy.toml) refuses every
//! other way to make a client, so a new one cannot forget it.

/// A reqwest client builder whose TLS works.
pub fn builder() -> reqwest::ClientBuilder {
    // Fails only when a provider is installed already, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
    #[allow(clippy::disallowed_methods)] // the one place
    reqwest::Client::builder()
}
