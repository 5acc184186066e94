//! A program as a door received it ([`Submission`]), checked against the server's
//! [`RequestLimits`] into the [`ExecutionRequest`] every door hands to the pipeline; each
//! refusal names its field.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tracebox_model::handler::{MAX_NAME_CHARS, is_handler_name};
use tracebox_model::{
    ExecutionRequest, HandlerCall, Isolation, Language, Placement, RunLimits, Source, Strategy, UnknownLanguage,
};

const MIB: u64 = 1024 * 1024;

/// Below this the interpreters cannot start, so a smaller limit is a mistake, not a choice.
pub const MIN_MEMORY_MB: u64 = 32;
/// The shortest timeout accepted: below it, no interpreter even starts.
pub const MIN_TIMEOUT_SECS: f64 = 0.1;

/// Most environment variables a run may be given.
pub const MAX_ENV_VARS: usize = 100;
/// Most bytes of environment (names and values) a run may be given: well inside what the
/// kernel lets a process start with (128 KiB per variable).
pub const MAX_ENV_BYTES: usize = 64 * 1024;

/// A program as a door received it, before it is checked against the server's limits.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub code: String,
    /// `None`: Python.
    pub language: Option<String>,
    pub stdin: String,
    pub env: BTreeMap<String, String>,
    pub timeout_secs: Option<f64>,
    pub memory_mb: Option<u64>,
    /// `None`: the server's default.
    pub isolation: Option<Isolation>,
    /// Whose recycled containers the run may use.
    pub tenant: Option<String>,
    /// Whose the run is (the caller's tenant when keys are on): see `ExecutionRequest::owner`.
    pub owner: Option<String>,
    /// Handler mode: the function to call (an identifier)…
    pub handler: Option<String>,
    /// …and what to call it with (`None`: null).
    pub event: Option<Value>,
    /// Labels the node it runs on must carry.
    pub labels: BTreeMap<String, String>,
    /// How its node is picked (`None`: the server's TRACEBOX_PLACEMENT).
    pub strategy: Option<String>,
}

/// Most labels a request may ask its node to carry.
pub const MAX_LABELS: usize = 16;
/// Longest label key or value.
const MAX_LABEL_CHARS: usize = 128;

/// Longest tenant name: a tenant of recycled containers is named as an API key's tenant is.
pub const MAX_TENANT_CHARS: usize = tracebox_model::access::MAX_NAME_CHARS;

/// What a request may ask of this server, and what it gets when it asks nothing: the limits
/// every door checks a program against (from the configuration, whose loading checked that the
/// defaults lie within the maxima).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLimits {
    /// Largest `code`, in bytes.
    pub max_code_bytes: usize,
    /// Largest `stdin`, in bytes; a live run's later stdin counts too.
    pub max_stdin_bytes: usize,
    /// The `timeout` of a request that names none, and the most one may name, in seconds.
    pub default_timeout_secs: f64,
    pub max_timeout_secs: f64,
    /// The `memory_mb` of a request that names none, and the most one may name, in MiB.
    pub default_memory_mb: u64,
    pub max_memory_mb: u64,
    /// CPU quota of every run, in CPUs.
    pub cpus: f64,
    /// Processes and threads every run may have at once.
    pub pids_limit: i64,
    /// stdout + stderr bytes after which every run is stopped.
    pub output_limit_bytes: u64,
    /// The isolation of a request that asks for none.
    pub isolation: Isolation,
    /// May a request ask for recycle when `isolation` is fresh?
    pub recycle_allowed: bool,
    /// The most bytes of JSON a handler's result may be.
    pub max_result_bytes: u64,
}

/// A request's limit that the server refuses, named by its request field.
#[derive(Debug, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct LimitError {
    pub field: &'static str,
    pub message: String,
}

impl RequestLimits {
    /// The limits of one run: the request's own `timeout` and `memory_mb` within the server's
    /// bounds, the server's settings for the rest.
    pub fn run_limits(&self, timeout_secs: Option<f64>, memory_mb: Option<u64>) -> Result<RunLimits, LimitError> {
        let timeout_secs = timeout_secs.unwrap_or(self.default_timeout_secs);
        if !(timeout_secs.is_finite() && timeout_secs >= MIN_TIMEOUT_SECS) {
            return Err(LimitError {
                field: "timeout",
                message: format!("must be at least {MIN_TIMEOUT_SECS} seconds, got {timeout_secs}"),
            });
        }
        if timeout_secs > self.max_timeout_secs {
            return Err(LimitError {
                field: "timeout",
                message: format!(
                    "{timeout_secs} s is above this server's maximum of {} s (TRACEBOX_MAX_TIMEOUT_SECS)",
                    self.max_timeout_secs
                ),
            });
        }
        let memory_mb = memory_mb.unwrap_or(self.default_memory_mb);
        if !(MIN_MEMORY_MB..=self.max_memory_mb).contains(&memory_mb) {
            return Err(LimitError {
                field: "memory_mb",
                message: format!(
                    "{memory_mb} MiB is outside {MIN_MEMORY_MB}..={} MiB (TRACEBOX_MAX_MEMORY_MB)",
                    self.max_memory_mb
                ),
            });
        }
        Ok(self.limits(timeout_secs, memory_mb))
    }

    /// The limits a run gets when it asks for nothing (the defaults were checked when the
    /// configuration was loaded): what the warm pool's containers are made for.
    pub fn default_limits(&self) -> RunLimits {
        self.limits(self.default_timeout_secs, self.default_memory_mb)
    }

    fn limits(&self, timeout_secs: f64, memory_mb: u64) -> RunLimits {
        RunLimits {
            timeout: Duration::from_secs_f64(timeout_secs),
            memory_bytes: memory_mb * MIB,
            cpus: self.cpus,
            pids: self.pids_limit,
            output_bytes: self.output_limit_bytes,
        }
    }
}

#[cfg(test)]
impl RequestLimits {
    /// The shipped defaults, spelled out for the tests of modules that do not know the
    /// configuration (a test in config.rs checks they are `Config::defaults()`'s).
    pub fn defaults() -> RequestLimits {
        RequestLimits {
            max_code_bytes: 256 * 1024,
            max_stdin_bytes: MIB as usize,
            default_timeout_secs: 10.0,
            max_timeout_secs: 60.0,
            default_memory_mb: 256,
            max_memory_mb: 1024,
            cpus: 1.0,
            pids_limit: 128,
            output_limit_bytes: MIB,
            isolation: Isolation::Fresh,
            recycle_allowed: false,
            max_result_bytes: MIB,
        }
    }
}

/// A submission that cannot run as it is; each names its field and the limit or fix.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("`code` is {size} bytes; the limit is {limit} bytes (TRACEBOX_MAX_CODE_BYTES)")]
    CodeTooLarge { size: usize, limit: usize },
    #[error("`stdin` is {size} bytes; the limit is {limit} bytes (TRACEBOX_MAX_STDIN_BYTES)")]
    StdinTooLarge { size: usize, limit: usize },
    #[error("`language`: {0}")]
    Language(#[from] UnknownLanguage),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("`env`: {0}")]
    Env(String),
    #[error("`env` holds {size} bytes; the limit is {MAX_ENV_BYTES} bytes of names and values")]
    EnvTooLarge { size: usize },
    #[error("{0}")]
    Isolation(String),
    #[error("{0}")]
    Handler(String),
    #[error("`event` is {size} bytes of JSON; the limit is {limit} bytes (TRACEBOX_MAX_STDIN_BYTES, as for `stdin`)")]
    EventTooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Placement(String),
}

impl Submission {
    /// Check every field against `allowed`, naming the first that does not fit.
    pub fn check(self, allowed: &RequestLimits, source: Source) -> Result<ExecutionRequest, RequestError> {
        let Submission {
            code,
            language,
            stdin,
            env,
            timeout_secs,
            memory_mb,
            isolation,
            tenant,
            owner,
            handler,
            event,
            labels,
            strategy,
        } = self;
        if code.len() > allowed.max_code_bytes {
            return Err(RequestError::CodeTooLarge { size: code.len(), limit: allowed.max_code_bytes });
        }
        if stdin.len() > allowed.max_stdin_bytes {
            return Err(RequestError::StdinTooLarge { size: stdin.len(), limit: allowed.max_stdin_bytes });
        }
        let language = language.as_deref().map(str::parse).transpose()?.unwrap_or(Language::Python);
        let limits = allowed.run_limits(timeout_secs, memory_mb)?;
        check_env(&env)?;
        let isolation = check_isolation(isolation, tenant.as_deref(), allowed)?;
        if let (Some(owner), Some(asked)) = (&owner, &tenant)
            && owner != asked
        {
            return Err(RequestError::Isolation(format!(
                "`tenant`: your API key's tenant is {owner:?}, and recycled containers serve only its runs; leave `tenant` out"
            )));
        }
        let handler = check_handler(handler, event, allowed)?;
        let placement = check_placement(labels, strategy.as_deref())?;
        Ok(ExecutionRequest {
            language,
            code,
            stdin,
            env,
            limits,
            source,
            files: Vec::new(),
            parent: None,
            isolation,
            tenant,
            owner,
            handler,
            placement,
        })
    }
}

/// `labels` (a few short words) and `strategy` (one of the strategies' names).
pub fn check_placement(labels: BTreeMap<String, String>, strategy: Option<&str>) -> Result<Placement, RequestError> {
    if labels.len() > MAX_LABELS {
        return Err(RequestError::Placement(format!("`labels`: {} given; at most {MAX_LABELS}", labels.len())));
    }
    if let Some((key, value)) = labels
        .iter()
        .find(|(k, v)| k.is_empty() || k.chars().count() > MAX_LABEL_CHARS || v.chars().count() > MAX_LABEL_CHARS)
    {
        return Err(RequestError::Placement(format!(
            "`labels`: {key:?}={value:?}: keys must be 1 to {MAX_LABEL_CHARS} characters, values at most {MAX_LABEL_CHARS}"
        )));
    }
    let strategy = strategy
        .map(str::parse::<Strategy>)
        .transpose()
        .map_err(|e| RequestError::Placement(format!("`strategy`: {e}")))?;
    Ok(Placement { strategy, labels })
}

/// Handler mode's fields: a name that is an identifier, an event within the size of a stdin
/// (none: null), and no event without a handler to take it.
fn check_handler(
    name: Option<String>,
    event: Option<Value>,
    allowed: &RequestLimits,
) -> Result<Option<HandlerCall>, RequestError> {
    let Some(name) = name else {
        return match event {
            Some(_) => Err(RequestError::Handler(
                "`event` is for handler mode: name the function to call with `handler` (e.g. \"handler\": \"handler\")"
                    .into(),
            )),
            None => Ok(None),
        };
    };
    if !is_handler_name(&name) {
        return Err(RequestError::Handler(format!(
            "`handler` {name:?} is not a function's name: use 1 to {MAX_NAME_CHARS} ASCII letters, digits, '_' or \
             '$', not starting with a digit (a name only: the code is always main.py or main.js)"
        )));
    }
    let event = event.unwrap_or(Value::Null);
    let size = event.to_string().len();
    if size > allowed.max_stdin_bytes {
        return Err(RequestError::EventTooLarge { size, limit: allowed.max_stdin_bytes });
    }
    Ok(Some(HandlerCall { name, event, result_limit: allowed.max_result_bytes }))
}

/// The isolation a run may have: fresh always; recycle when the server's default is recycle
/// or it allows asking for it. A tenant names only whose recycled containers a run may use.
fn check_isolation(
    asked: Option<Isolation>,
    tenant: Option<&str>,
    allowed: &RequestLimits,
) -> Result<Isolation, RequestError> {
    let isolation = asked.unwrap_or(allowed.isolation);
    if isolation == Isolation::Recycle && allowed.isolation != Isolation::Recycle && !allowed.recycle_allowed {
        return Err(RequestError::Isolation(
            "`isolation`: this server runs every program in a fresh container; recycle is allowed with TRACEBOX_RECYCLE_ALLOWED=true"
                .into(),
        ));
    }
    if let Some(tenant) = tenant {
        let well_formed = tracebox_model::access::is_valid_name(tenant);
        if !well_formed {
            return Err(RequestError::Isolation(format!(
                "`tenant` must be 1 to {MAX_TENANT_CHARS} letters, digits, '-' or '_'"
            )));
        }
        if isolation != Isolation::Recycle {
            return Err(RequestError::Isolation(
                "`tenant` is for recycled containers; ask for \"isolation\": \"recycle\" too".into(),
            ));
        }
    }
    Ok(isolation)
}

/// An environment a program may be given: names that are variable names, values without NUL,
/// within the count and size limits.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<(), RequestError> {
    if env.len() > MAX_ENV_VARS {
        return Err(RequestError::Env(format!("{} variables; at most {MAX_ENV_VARS} are allowed", env.len())));
    }
    let size: usize = env.iter().map(|(name, value)| name.len() + value.len()).sum();
    if size > MAX_ENV_BYTES {
        return Err(RequestError::EnvTooLarge { size });
    }
    for (name, value) in env {
        let mut chars = name.chars();
        let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(RequestError::Env(format!(
                "{name:?} is not a variable name; use letters, digits and '_', not starting with a digit"
            )));
        }
        if value.contains('\0') {
            return Err(RequestError::Env(format!("the value of {name} contains a NUL byte")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(code: &str) -> Submission {
        Submission { code: code.into(), ..Submission::default() }
    }

    fn refusal(submission: Submission) -> String {
        submission.check(&RequestLimits::defaults(), Source::Http).unwrap_err().to_string()
    }

    #[test]
    fn only_code_is_needed_and_python_is_the_default() {
        let request = submission("print(1)").check(&RequestLimits::defaults(), Source::Http).unwrap();
        assert_eq!(request.language, Language::Python);
        assert_eq!(request.limits.timeout.as_secs_f64(), RequestLimits::defaults().default_timeout_secs);
    }

    #[test]
    fn each_refusal_names_its_field() {
        assert!(refusal(Submission { language: Some("ruby".into()), ..submission("") }).contains("`language`"));
        assert!(refusal(Submission { timeout_secs: Some(0.0), ..submission("") }).contains("`timeout`"));
        assert!(refusal(Submission { memory_mb: Some(999_999), ..submission("") }).contains("`memory_mb`"));
        let env = |name: &str, value: &str| BTreeMap::from([(name.to_owned(), value.to_owned())]);
        assert!(refusal(Submission { env: env("1X", "a"), ..submission("") }).contains("`env`"));
        assert!(refusal(Submission { env: env("A", "a\0"), ..submission("") }).contains("NUL"));
    }

    #[test]
    fn code_stdin_and_env_at_their_limits_pass_and_one_byte_more_does_not() {
        let config = RequestLimits::defaults();
        let check = |submission: Submission| submission.check(&config, Source::Http);
        assert!(check(submission(&"x".repeat(config.max_code_bytes))).is_ok());
        let over = check(submission(&"x".repeat(config.max_code_bytes + 1))).unwrap_err();
        assert!(over.to_string().contains("TRACEBOX_MAX_CODE_BYTES"));
        assert!(check(Submission { stdin: "x".repeat(config.max_stdin_bytes), ..submission("") }).is_ok());
        let over = check(Submission { stdin: "x".repeat(config.max_stdin_bytes + 1), ..submission("") }).unwrap_err();
        assert!(over.to_string().contains("TRACEBOX_MAX_STDIN_BYTES"));
        let env = |len: usize| BTreeMap::from([("K".to_owned(), "v".repeat(len))]);
        assert!(check(Submission { env: env(MAX_ENV_BYTES - 1), ..submission("") }).is_ok());
        assert!(matches!(
            check(Submission { env: env(MAX_ENV_BYTES), ..submission("") }),
            Err(RequestError::EnvTooLarge { .. })
        ));
    }

    #[test]
    fn a_handler_is_a_name_with_an_event_of_at_most_a_stdin_and_an_event_needs_one() {
        let allowed = RequestLimits { max_stdin_bytes: 12, ..RequestLimits::defaults() };
        let ask = |handler: Option<&str>, event: Option<Value>| {
            Submission { handler: handler.map(str::to_owned), event, ..submission("x") }.check(&allowed, Source::Http)
        };
        let call = ask(Some("handler"), None).unwrap().handler.unwrap();
        assert_eq!((call.name.as_str(), call.event), ("handler", Value::Null), "no event: null");
        assert_eq!(call.result_limit, allowed.max_result_bytes);
        assert!(ask(None, None).unwrap().handler.is_none());
        let refused = ask(None, Some(serde_json::json!({}))).unwrap_err().to_string();
        assert!(refused.contains("`handler`"), "{refused}");
        for bad in ["", "main.handler", "1h", "h h"] {
            assert!(ask(Some(bad), None).unwrap_err().to_string().contains("`handler`"), "{bad:?}");
        }
        // `["é","x"]` is 10 bytes: at the limit of 12 with 2 more, over it with 3.
        assert!(ask(Some("h"), Some(serde_json::json!(["é", "x", 1]))).is_ok());
        let over = ask(Some("h"), Some(serde_json::json!(["é", "x", 12]))).unwrap_err().to_string();
        assert!(over.contains("`event` is 13 bytes") && over.contains("TRACEBOX_MAX_STDIN_BYTES"), "{over}");
    }

    #[test]
    fn recycle_is_asked_for_only_where_allowed_and_tenants_are_names() {
        let config = RequestLimits::defaults();
        let ask = |isolation: Option<Isolation>, tenant: Option<&str>, config: &RequestLimits| {
            Submission { isolation, tenant: tenant.map(str::to_owned), ..submission("x") }.check(config, Source::Http)
        };
        assert_eq!(ask(None, None, &config).unwrap().isolation, Isolation::Fresh);
        assert!(
            ask(Some(Isolation::Recycle), None, &config).unwrap_err().to_string().contains("TRACEBOX_RECYCLE_ALLOWED")
        );
        let allowing = RequestLimits { recycle_allowed: true, ..RequestLimits::defaults() };
        assert_eq!(ask(Some(Isolation::Recycle), Some("acme-1"), &allowing).unwrap().isolation, Isolation::Recycle);
        assert!(ask(Some(Isolation::Recycle), Some("a b"), &allowing).is_err());
        assert!(ask(Some(Isolation::Recycle), Some(&"t".repeat(MAX_TENANT_CHARS + 1)), &allowing).is_err());
        assert!(ask(Some(Isolation::Recycle), Some(&"t".repeat(MAX_TENANT_CHARS)), &allowing).is_ok());
        assert!(ask(None, Some("acme"), &allowing).unwrap_err().to_string().contains("recycle"));
        let recycling = RequestLimits { isolation: Isolation::Recycle, ..RequestLimits::defaults() };
        assert_eq!(ask(None, None, &recycling).unwrap().isolation, Isolation::Recycle);
        assert_eq!(ask(Some(Isolation::Fresh), None, &recycling).unwrap().isolation, Isolation::Fresh);
    }
}
