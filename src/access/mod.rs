//! Who is calling, and what they may do (docs/access.md). With no API key in the store a server on
//! a loopback address is open, as it always was; once a key exists (or the server listens beyond
//! loopback) every request but `/health`, the static files and the sign-in page carries a key or a
//! token made from one. A key is a tenant: [`Caller`] says whose things a request may see and
//! whose the things it makes are; the doors ask it, the store filters by it.

pub mod key;
pub mod token;
mod usage;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracebox_model::access::{KeyLimits, KeyRecord, Role};

use crate::trace::{StoreError, TraceStore};
use key::PresentedKey;
pub use token::{Claims, Signer, TOKEN_PREFIX, TokenError};
pub use usage::{KeyUsage, RunPermit};

/// What the access settings say (cut from `Config` by `config/settings.rs`).
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// A token's life when its request names none.
    pub token_ttl: Duration,
    /// The longest life a token may ask for.
    pub token_max_ttl: Duration,
    /// The life of a browser's sign-in.
    pub session_ttl: Duration,
    /// Keys are needed even while none exists (a server listening beyond loopback).
    pub always_required: bool,
    /// The operator started a server beyond loopback without keys on purpose.
    pub insecure_no_auth: bool,
}

/// Why a request may not go on.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "this server needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY` (an admin makes \
         one with `tracebox keys create --name NAME`)"
    )]
    Missing,
    #[error("the API key is not valid: unknown, malformed or revoked; check it, or ask for a new one")]
    BadKey,
    #[error("{0}")]
    BadToken(#[from] TokenError),
    #[error("{0}")]
    Forbidden(String),
    /// A token request's field out of bounds (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// A `tenant` in a query that names no tenant.
    #[error("`tenant`: {0:?} is not a tenant; a tenant is 1 to 64 letters, digits, '-' or '_'")]
    BadTenant(String),
    #[error("key {key:?} is over its rate of {rate} requests a second; retry after {retry_after:?}")]
    RateLimited { key: String, rate: f64, retry_after: Duration },
    #[error("key {key:?} has {limit} runs going, as many as it may (its max concurrent runs); wait for one to end")]
    TooManyRuns { key: String, limit: u64 },
    #[error(
        "tenant {tenant:?} holds {limit} sandboxes, as many as its key allows; delete one (DELETE /sandboxes/{{id}})"
    )]
    TooManySandboxes { tenant: String, limit: u64 },
    #[error("reading the API keys failed: {0}")]
    Store(#[from] StoreError),
    #[error("the token secret {path}: {source}")]
    Secret { path: String, source: std::io::Error },
}

/// Who a request is from. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// None: the server is open (no key needed), and the caller sees everything.
    grant: Option<Arc<Grant>>,
}

/// A key's rights, as a request presents them (itself, or a token made from it).
#[derive(Debug)]
pub struct Grant {
    pub key_id: String,
    pub key_name: String,
    pub tenant: String,
    pub role: Role,
    /// The one sandbox a token is limited to.
    pub sandbox: Option<String>,
    /// A token that may only read.
    pub read_only: bool,
    /// When the token presented ends (Unix seconds); None for a key.
    pub expires_at: Option<i64>,
    usage: Arc<KeyUsage>,
}

impl std::fmt::Debug for KeyUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyUsage({})", self.name)
    }
}

impl Caller {
    /// A caller of an open server (and of in-process work: the CLI's `run`, a batch without a server).
    pub fn open() -> Caller {
        Caller::default()
    }

    /// The key's rights; None on an open server.
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_deref()
    }

    /// Whose the things this request makes are: its key's tenant (None on an open server).
    pub fn owner(&self) -> Option<&str> {
        self.grant.as_ref().map(|grant| grant.tenant.as_str())
    }

    /// May this caller see a thing of `owner`? On an open server and for admins, anything.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match &self.grant {
            None => true,
            Some(grant) => grant.role == Role::Admin || owner == Some(grant.tenant.as_str()),
        }
    }

    /// The tenant a list is confined to: a user's own; an admin's choice (`asked`), all when none.
    pub fn list_tenant(&self, asked: Option<&str>) -> Result<Option<String>, AccessError> {
        match &self.grant {
            None => Ok(None),
            Some(grant) if grant.role == Role::Admin => asked.map(tenant_name).transpose(),
            Some(grant) => Ok(Some(grant.tenant.clone())),
        }
    }

    /// Whose uploads this caller's file requests reach: its tenant's; an admin may name another
    /// (`asked`). None: the open server's own.
    pub fn space(&self, asked: Option<&str>) -> Result<Option<String>, AccessError> {
        let Some(grant) = &self.grant else { return Ok(None) };
        match asked {
            Some(tenant) if grant.role == Role::Admin => tenant_name(tenant).map(Some),
            _ => Ok(Some(grant.tenant.clone())),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.grant.as_ref().is_none_or(|grant| grant.role == Role::Admin)
    }

    /// The key's limits (none on an open server).
    pub fn limits(&self) -> KeyLimits {
        self.grant.as_ref().map(|grant| grant.usage.limits).unwrap_or_default()
    }

    /// A slot for one more run of this key, held until the run ends.
    pub fn run_permit(&self) -> Result<Option<RunPermit>, AccessError> {
        self.run_permits(1)
    }

    /// How many of `wanted` runs at once the key allows (a batch's concurrency is cut to it).
    pub fn runs_allowed(&self, wanted: usize) -> usize {
        let limit = self.limits().max_concurrent_runs.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        wanted.min(limit).max(1)
    }

    /// Slots for `count` runs at once (a batch's items), all or none, held until they end.
    pub fn run_permits(&self, count: usize) -> Result<Option<RunPermit>, AccessError> {
        let Some(grant) = &self.grant else { return Ok(None) };
        match grant.usage.runs(u32::try_from(count).unwrap_or(u32::MAX)) {
            Some(permit) => Ok(Some(permit)),
            None => Err(AccessError::TooManyRuns {
                key: grant.key_name.clone(),
                limit: grant.usage.limits.max_concurrent_runs.unwrap_or_default(),
            }),
        }
    }

    /// May this caller's credential be used for `method` on `path`? A token limited to one sandbox
    /// reaches only that sandbox's routes; a read-only one only reads. Neither opens a WebSocket
    /// or an MCP session (both run code).
    ///
    /// `path` must be the path as the router matches it (percent-decoded): `/%77s` is `/ws`.
    pub fn may(&self, method: &actix_web::http::Method, path: &str) -> Result<(), AccessError> {
        let Some(grant) = &self.grant else { return Ok(()) };
        let live = path == "/ws" || path == "/mcp";
        if grant.read_only && (live || !matches!(method.as_str(), "GET" | "HEAD")) {
            return Err(AccessError::Forbidden(format!(
                "this token is read-only: it may GET and HEAD, not {method} {path}; use the key (or a token that is not read-only)"
            )));
        }
        if let Some(sandbox) = &grant.sandbox {
            let own = path.strip_prefix("/sandboxes/").and_then(|rest| rest.strip_prefix(sandbox.as_str()));
            if !matches!(own, Some(rest) if rest.is_empty() || rest.starts_with('/')) {
                return Err(AccessError::Forbidden(format!(
                    "this token is limited to sandbox {sandbox}: it reaches /sandboxes/{sandbox} and its routes only"
                )));
            }
        }
        Ok(())
    }
}

/// Whether keys are needed, as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No key is needed (no key exists, and the server listens on loopback or was told to be open).
    Open,
    /// Every request but the public ones needs a key.
    Keys,
}

/// Keys, tokens and each key's usage. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

struct Inner {
    store: TraceStore,
    signer: Signer,
    settings: AccessSettings,
    /// Each key's usage, by key id.
    usage: Mutex<HashMap<String, Arc<KeyUsage>>>,
    /// Held while a tenant's sandbox count is checked and its new sandbox made.
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// A key was seen in the store: keys are never deleted, so from then on every request needs
    /// one, and the store need not be asked again.
    closed: AtomicBool,
}

/// A token made for a caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Issued {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    pub expires_in: u64,
    pub tenant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    pub read_only: bool,
}

/// What a token is asked to be.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Seconds it lives.
    pub expires_in: Option<u64>,
    /// The one sandbox it may act on.
    pub sandbox: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

impl Access {
    pub fn new(store: TraceStore, signer: Signer, settings: AccessSettings) -> Access {
        Access {
            inner: Arc::new(Inner {
                store,
                signer,
                settings,
                usage: Mutex::default(),
                creating: Mutex::default(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub fn settings(&self) -> &AccessSettings {
        &self.inner.settings
    }

    /// Whether a request needs a key now: the next request after the first key is made sees it.
    /// Revoking keys never opens a server again (a revoked key still counts as made).
    pub fn mode(&self) -> Result<AuthMode, AccessError> {
        let inner = &self.inner;
        if inner.settings.always_required || inner.closed.load(Ordering::Acquire) {
            return Ok(AuthMode::Keys);
        }
        if inner.store.any_key()? {
            inner.closed.store(true, Ordering::Release);
            return Ok(AuthMode::Keys);
        }
        Ok(AuthMode::Open)
    }

    /// Who presents `credential` (a key or a token; None when the request carries none), counted
    /// against the key's rate. On an open server whatever is presented is ignored.
    pub fn authenticate(&self, credential: Option<&str>) -> Result<Caller, AccessError> {
        if self.mode()? == AuthMode::Open {
            return Ok(Caller::open());
        }
        let credential = credential.ok_or(AccessError::Missing)?;
        let (record, claims) = if credential.starts_with(TOKEN_PREFIX) {
            let claims = self.inner.signer.verify(credential, now_secs())?;
            if !claims.jti.is_empty() && self.inner.store.token_revoked(&claims.jti)? {
                return Err(TokenError::Ended.into());
            }
            let record = self.inner.store.key(&claims.kid)?.ok_or(AccessError::BadKey)?;
            (record, Some(claims))
        } else {
            let presented = PresentedKey::parse(credential).ok_or(AccessError::BadKey)?;
            let record = self.inner.store.key(&presented.id)?.filter(|record| presented.matches(&record.secret_sha256));
            (record.ok_or(AccessError::BadKey)?, None)
        };
        if record.revoked_at_us.is_some() {
            return Err(AccessError::BadKey);
        }
        let usage = self.usage_of(&record);
        usage.request().map_err(|retry_after| AccessError::RateLimited {
            key: record.name.clone(),
            rate: record.limits.rate_per_sec.unwrap_or_default(),
            retry_after,
        })?;
        let grant = Grant {
            key_id: record.id,
            key_name: record.name,
            tenant: record.tenant,
            role: record.role,
            sandbox: claims.as_ref().and_then(|claims| claims.sbx.clone()),
            read_only: claims.as_ref().is_some_and(|claims| claims.ro),
            expires_at: claims.as_ref().map(|claims| claims.exp),
            usage,
        };
        Ok(Caller { grant: Some(Arc::new(grant)) })
    }

    /// Is `caller`'s key still good (not revoked, its token not expired)? For a long-lived
    /// connection (a WebSocket) that started with it; counts against the key's rate like a request.
    pub fn recheck(&self, caller: &Caller) -> Result<(), AccessError> {
        let Some(grant) = caller.grant() else { return Ok(()) };
        if grant.expires_at.is_some_and(|exp| exp <= now_secs()) {
            return Err(TokenError::Expired.into());
        }
        let record = self.inner.store.key(&grant.key_id)?.ok_or(AccessError::BadKey)?;
        if record.revoked_at_us.is_some() {
            return Err(AccessError::BadKey);
        }
        grant.usage.request().map_err(|retry_after| AccessError::RateLimited {
            key: record.name,
            rate: record.limits.rate_per_sec.unwrap_or_default(),
            retry_after,
        })
    }

    fn usage_of(&self, record: &KeyRecord) -> Arc<KeyUsage> {
        let mut usage = self.inner.usage.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            usage.entry(record.id.clone()).or_insert_with(|| Arc::new(KeyUsage::new(&record.name, record.limits))),
        )
    }

    /// Every key's usage since the start, for `/metrics`.
    pub fn usage(&self) -> Vec<Arc<KeyUsage>> {
        let usage = self.inner.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = usage.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// A token for `caller`, which must have presented a key (a token makes no tokens): never
    /// longer-lived than the settings allow, never more than the key (it is checked against the
    /// key at every use).
    pub fn issue(&self, caller: &Caller, request: &TokenRequest) -> Result<Issued, AccessError> {
        let Some(grant) = caller.grant() else {
            return Err(AccessError::Forbidden(
                "this server is open (no API key exists), so it has no tokens to give; make a key with \
                 `tracebox keys create --name NAME` first"
                    .into(),
            ));
        };
        if grant.expires_at.is_some() {
            return Err(AccessError::Forbidden(
                "a token cannot make tokens; exchange the key itself at POST /auth/token".into(),
            ));
        }
        let settings = &self.inner.settings;
        let ttl = request.expires_in.map_or(settings.token_ttl, Duration::from_secs);
        if ttl.is_zero() || ttl > settings.token_max_ttl {
            return Err(AccessError::Invalid(format!(
                "`expires_in` must be 1 to {} seconds (TRACEBOX_TOKEN_MAX_TTL_SECS)",
                settings.token_max_ttl.as_secs()
            )));
        }
        Ok(self.sign(grant, ttl, request.sandbox.clone(), request.read_only))
    }

    /// A browser's sign-in with a key: a token of the session's life, held in its cookie.
    pub fn session(&self, key: &str) -> Result<Issued, AccessError> {
        if !key.starts_with(key::KEY_PREFIX) {
            return Err(AccessError::BadKey);
        }
        let caller = self.authenticate(Some(key))?;
        let grant = caller.grant().ok_or_else(|| {
            AccessError::Forbidden("this server is open (no API key exists): there is nothing to sign in to".into())
        })?;
        Ok(self.sign(grant, self.inner.settings.session_ttl, None, false))
    }

    fn sign(&self, grant: &Grant, ttl: Duration, sandbox: Option<String>, read_only: bool) -> Issued {
        let exp = now_secs().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let mut jti = [0u8; 12];
        // Without randomness a token still works; it only cannot be ended before its time.
        let jti = match getrandom::fill(&mut jti) {
            Ok(()) => jti.iter().map(|b| format!("{b:02x}")).collect(),
            Err(_) => String::new(),
        };
        let claims = Claims { kid: grant.key_id.clone(), exp, sbx: sandbox.clone(), ro: read_only, jti };
        Issued {
            token: self.inner.signer.sign(&claims),
            expires_at: tracebox_model::format_us(exp.saturating_mul(1_000_000)),
            expires_in: ttl.as_secs(),
            tenant: grant.tenant.clone(),
            sandbox,
            read_only,
        }
    }

    /// End the token `token` now, if it is one of ours (a browser signing out); anything else is
    /// let be.
    pub fn end(&self, token: &str) -> Result<(), AccessError> {
        match self.inner.signer.verify(token, now_secs()) {
            Ok(claims) if !claims.jti.is_empty() => Ok(self.inner.store.revoke_token(&claims.jti, claims.exp)?),
            _ => Ok(()),
        }
    }

    /// Hold the tenant's sandbox count still while a sandbox is made: `count` says how many it
    /// holds; over the key's limit, the make is refused. The guard is held until the new sandbox
    /// is recorded.
    pub async fn sandbox_slot<F, Fut>(&self, caller: &Caller, count: F) -> Result<Option<SlotGuard>, AccessError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<u64, StoreError>>,
    {
        let Some(grant) = caller.grant() else { return Ok(None) };
        let Some(limit) = grant.usage.limits.max_sandboxes else { return Ok(None) };
        let lock = {
            let mut creating = self.inner.creating.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(creating.entry(grant.tenant.clone()).or_default())
        };
        let guard = lock.lock_owned().await;
        if count(grant.tenant.clone()).await? >= limit {
            return Err(AccessError::TooManySandboxes { tenant: grant.tenant.clone(), limit });
        }
        Ok(Some(SlotGuard { _guard: guard }))
    }
}

/// Held while a tenant's new sandbox is made (see [`Access::sandbox_slot`]).
pub struct SlotGuard {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// `asked` as a tenant, when it is a tenant's name: it names a directory of the uploads, so
/// nothing else (`../..`) may pass.
fn tenant_name(asked: &str) -> Result<String, AccessError> {
    if tracebox_model::access::is_valid_name(asked) {
        return Ok(asked.to_owned());
    }
    Err(AccessError::BadTenant(asked.to_owned()))
}

fn now_secs() -> i64 {
    tracebox_model::now_us() / 1_000_000
}

/// The secret tokens are signed with: `configured` (TRACEBOX_TOKEN_SECRET) when set, or else the
/// file `data_dir/token-secret`, made with 32 random bytes (mode 0600) on first use. Replacing it
/// ends every token at once; keys are untouched.
pub fn load_signer(data_dir: &Path, configured: Option<&str>) -> Result<Signer, AccessError> {
    if let Some(secret) = configured {
        return Ok(Signer::new(secret.as_bytes().to_vec()));
    }
    let path = data_dir.join("token-secret");
    let failed = |source| AccessError::Secret { path: path.display().to_string(), source };
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 32 => return Ok(Signer::new(secret)),
        Ok(_) => {
            return Err(failed(std::io::Error::other("is shorter than 32 bytes; remove it and a new one is made")));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(error)),
    }
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| failed(std::io::Error::other(e.to_string())))?;
    std::fs::create_dir_all(data_dir).map_err(failed)?;
    write_private(&path, &secret).map_err(failed)?;
    Ok(Signer::new(secret))
}

/// Write a new file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A new key named `name` for `tenant` (its name when None): the key's text, shown once, and
/// what the store keeps of it.
pub fn new_key(name: &str, tenant: Option<&str>, role: Role, limits: KeyLimits) -> Result<(String, KeyRecord), String> {
    let tenant = tenant.unwrap_or(name);
    for (what, value) in [("name", name), ("tenant", tenant)] {
        if !tracebox_model::access::is_valid_name(value) {
            return Err(format!(
                "the key's {what} {value:?} must be 1 to {} ASCII letters, digits, '-' or '_'",
                tracebox_model::access::MAX_NAME_CHARS
            ));
        }
    }
    let made = key::generate().map_err(|e| format!("the system's random source failed: {e}"))?;
    let record = KeyRecord {
        id: made.id,
        name: name.to_owned(),
        tenant: tenant.to_owned(),
        role,
        secret_sha256: made.digest,
        created_at_us: tracebox_model::now_us(),
        revoked_at_us: None,
        limits,
    };
    Ok((made.text, record))
}
