//! Browser safety on every route, whatever the auth. A request must name this server in its
//! `Host`: a page on a name its attacker points at this server's address (DNS rebinding) names
//! that name, and gets `421`. A browser request made by a page of another origin gets `403`,
//! unless it can neither change nor learn anything: a `GET` of a static asset, or a link to a
//! page followed from elsewhere. [`guard`] is the middleware the route table puts around every
//! route; what it decides, it decides in the small pure functions below.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::http::{Method, Version};
use actix_web::middleware::Next;
use actix_web::web;

use super::error::{ApiError, ErrorCode};
use crate::services::Services;

/// The middleware: a request that [`check`] refuses is answered here and reaches no handler.
pub async fn guard(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match check(&request) {
        Ok(()) => Ok(next.call(request).await?.map_into_left_body()),
        Err(error) => Ok(request.error_response(error).map_into_right_body()),
    }
}

/// The host first (a rebinding page's requests are same-origin to its browser, so only the
/// `Host` gives them away), then where the request comes from.
fn check(request: &ServiceRequest) -> Result<(), ApiError> {
    let services = request.app_data::<web::Data<Services>>().ok_or_else(|| {
        ApiError::new(ErrorCode::Internal, "the app has no services to read the allowed hosts and origins from")
    })?;
    let config = &services.config;
    // The address this listener is bound to, with its real port (the setting may say 0).
    let hosts = Hosts::new(request.app_config().local_addr(), &config.allowed_hosts);
    let named: Vec<&[u8]> = request.headers().get_all(header::HOST).map(|value| value.as_bytes()).collect();
    check_host(&named, request.uri().authority().map(|a| a.as_str()), request.version(), &hosts)?;
    let from = Provenance::of(request.headers());
    if let Some(from) = from.foreign(&hosts, &config.allowed_origins)
        && !harmless(request.method(), request.path(), &Fetch::of(request.headers()))
    {
        return Err(Refusal::CrossOrigin {
            from,
            method: request.method().to_string(),
            path: request.path().to_owned(),
        }
        .into());
    }
    Ok(())
}

/// Why the guard refused a request; `error.rs` gives each its code and status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("an HTTP/1.1 request must name the server it is for in a Host header; this one has none")]
    NoHost,
    #[error("the request has several Host headers; send one")]
    SeveralHosts,
    #[error("the Host {0:?} is not host[:port]")]
    BadHost(String),
    // Not the names it does answer to: a rebinding page can read this answer.
    #[error(
        "this server does not answer to the host {0:?}; if that is a name of this server, add it to \
         TRACEBOX_ALLOWED_HOSTS"
    )]
    NotOurHost(String),
    #[error(
        "{method} {path:?} from {from} is refused: a page of another origin may only follow links to this \
         server's pages and load its static files; if that origin is yours, add it to TRACEBOX_ALLOWED_ORIGINS"
    )]
    CrossOrigin { from: String, method: String, path: String },
}

/// Check the names a request gives for the server it is for: its `Host` (which HTTP/1.0 may
/// leave out, and a request may give only once) and, when the request target is absolute
/// (`GET http://host/path`), that target's authority, which HTTP lets override it. Each must be
/// one of `hosts`. (actix itself answers a bare `400` to an HTTP/1.1 request without a `Host`
/// or with two; the checks here hold whatever it does.)
pub fn check_host(named: &[&[u8]], target: Option<&str>, version: Version, hosts: &Hosts) -> Result<(), Refusal> {
    match named {
        [] if target.is_none() && version >= Version::HTTP_11 => return Err(Refusal::NoHost),
        [_, _, ..] => return Err(Refusal::SeveralHosts),
        _ => {}
    }
    for name in named.iter().map(|name| String::from_utf8_lossy(name)).chain(target.map(Cow::from)) {
        let authority = Authority::parse(&name).ok_or_else(|| Refusal::BadHost(name.to_string()))?;
        if !hosts.contains(&authority) {
            return Err(Refusal::NotOurHost(name.into_owned()));
        }
    }
    Ok(())
}

/// A host and port as a `Host` header, an origin or a setting writes them, in one form: a name
/// in lower case without its trailing dot (`LocalHost.` is `localhost`), an IP address as Rust
/// writes it (`[0:0::1]` is `[::1]`). No port means the scheme's default; ports are compared as
/// written, so `localhost` and `localhost:80` are two hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    host: String,
    port: Option<u16>,
}

impl Authority {
    /// `host[:port]`: a DNS name, an IPv4 address or a bracketed IPv6 address, and a port of
    /// digits only. None for anything else (a scheme, a path, an IPv6 address without brackets,
    /// a zone id, a character no host name has).
    pub fn parse(text: &str) -> Option<Authority> {
        // The port is after the last colon that follows the IPv6 address, if there is one.
        let tail = text.rfind(']').map_or(0, |end| end + 1);
        let (host, port) = match text[tail..].rfind(':') {
            Some(colon) => (&text[..tail + colon], Some(port(&text[tail + colon + 1..])?)),
            None => (text, None),
        };
        let host = match host.strip_prefix('[') {
            Some(bracketed) => format!("[{}]", bracketed.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?),
            None => name(host)?,
        };
        Some(Authority { host, port })
    }

    fn of_ip(ip: IpAddr, port: u16) -> Authority {
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        Authority { host, port: Some(port) }
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// A port: one to five digits (no sign, no space) that fit in 16 bits.
fn port(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// A DNS name or IPv4 address in lower case without its trailing dot: labels of ASCII letters,
/// digits, `-` and `_` (browsers send other names in punycode).
fn name(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let label =
        |label: &str| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    text.split('.').all(label).then_some(text)
}

/// A web origin as `Origin` sends it and TRACEBOX_ALLOWED_ORIGINS lists it: `http` or `https`,
/// `://`, `host[:port]` and nothing more, without the scheme's default port
/// (`https://a.example:443` is `https://a.example`). Browsers send `null` for pages that have no
/// origin to show (sandboxed frames, files, redirects across origins): none is parsed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrigin {
    scheme: &'static str,
    authority: Authority,
}

impl WebOrigin {
    pub fn parse(text: &str) -> Option<WebOrigin> {
        let (scheme, rest) = text.split_once("://")?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => ("http", 80),
            "https" => ("https", 443),
            _ => return None,
        };
        let mut authority = Authority::parse(rest)?;
        if authority.port == Some(default_port) {
            authority.port = None;
        }
        Some(WebOrigin { scheme, authority })
    }
}

/// The hosts this server answers to: the address it listens on, and `localhost`, `127.0.0.1`
/// and `[::1]`, each at its port; then those of TRACEBOX_ALLOWED_HOSTS. A page on any of them is
/// one of this server's own, over `http` or `https`.
#[derive(Debug, Clone)]
pub struct Hosts(Vec<Authority>);

impl Hosts {
    /// `allowed` was checked at start-up; an entry that does not parse matches nothing.
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Hosts {
        let port = listen.port();
        let mut hosts = vec![
            Authority::of_ip(listen.ip(), port),
            Authority { host: "localhost".to_owned(), port: Some(port) },
            Authority::of_ip(Ipv4Addr::LOCALHOST.into(), port),
            Authority::of_ip(Ipv6Addr::LOCALHOST.into(), port),
        ];
        hosts.extend(allowed.iter().filter_map(|entry| Authority::parse(entry)));
        Hosts(hosts)
    }

    pub fn contains(&self, authority: &Authority) -> bool {
        self.0.contains(authority)
    }
}

/// Where a browser says a request comes from: its `Origin` headers (a browser sends at most
/// one) and `Sec-Fetch-Site`. Programs (curl, SDKs) send neither.
#[derive(Debug, Default)]
pub struct Provenance<'a> {
    origins: Vec<&'a [u8]>,
    site: Option<&'a [u8]>,
}

impl<'a> Provenance<'a> {
    fn of(headers: &'a HeaderMap) -> Provenance<'a> {
        let sec_fetch_site = HeaderName::from_static("sec-fetch-site");
        Provenance {
            origins: headers.get_all(header::ORIGIN).map(|value| value.as_bytes()).collect(),
            site: headers.get(sec_fetch_site).map(|value| value.as_bytes()),
        }
    }

    /// Who a foreign request comes from, said for its refusal; None when it is not foreign.
    ///
    /// `Origin`, when there is one, decides: a page on one of `hosts` or listed in `allowed` is
    /// let in, any other (`null` included) is foreign. It decides even when `Sec-Fetch-Site`
    /// says `cross-site`, since a page of `localhost:5000` calling `127.0.0.1:5000` is
    /// cross-site and still this server's own, and a listed origin is another site by nature.
    /// Without `Origin` (a browser leaves it off `GET`s), `Sec-Fetch-Site` decides: `cross-site`
    /// is foreign, and so is `same-site`, which is blind to ports (a page on another port of
    /// `localhost` is same-site) and so cannot tell this server's pages from another's.
    pub fn foreign(&self, hosts: &Hosts, allowed: &[String]) -> Option<String> {
        let origin = match self.origins.as_slice() {
            [] => {
                let site = self.site?;
                let elsewhere = site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site");
                return elsewhere.then(|| format!("a page of another origin (Sec-Fetch-Site: {})", lossy(site)));
            }
            [origin] => lossy(origin),
            _ => return Some("a request with several Origin headers".to_owned()),
        };
        let ours = WebOrigin::parse(&origin).is_some_and(|parsed| {
            hosts.contains(&parsed.authority)
                || allowed.iter().any(|entry| WebOrigin::parse(entry).as_ref() == Some(&parsed))
        });
        (!ours).then(|| format!("a page of {origin:?}"))
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the browser says the request is for: `Sec-Fetch-Mode` and `Sec-Fetch-Dest`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fetch<'a> {
    mode: Option<&'a [u8]>,
    dest: Option<&'a [u8]>,
}

impl<'a> Fetch<'a> {
    fn of(headers: &'a HeaderMap) -> Fetch<'a> {
        let get = |name: &'static str| headers.get(HeaderName::from_static(name)).map(|value| value.as_bytes());
        Fetch { mode: get("sec-fetch-mode"), dest: get("sec-fetch-dest") }
    }

    /// A top-level navigation: a link followed, a URL typed, a bookmark opened (a frame's
    /// navigation has another `Sec-Fetch-Dest`, and frames are refused anyway by the CSP).
    fn is_navigation(&self) -> bool {
        let is = |value: Option<&[u8]>, wanted: &str| {
            value.is_some_and(|value| value.eq_ignore_ascii_case(wanted.as_bytes()))
        };
        is(self.mode, "navigate") && is(self.dest, "document")
    }
}

/// What a page of another origin may ask for, since it changes nothing and learns nothing by
/// it: a `GET` or `HEAD` of a static asset (public, the same for everyone), and a top-level
/// navigation to a page (`GET /`, `/traces`, `/trace/{id}`): a link to a trace followed from a
/// chat or an issue. The page is then shown to the person who followed the link, never to the
/// page that linked it, and a `GET` changes nothing. Everything else (a form's `POST`, a
/// `fetch` in `no-cors` mode, an image or script pointed at an API route, a WebSocket) is
/// refused, since it would run code, spend the Anthropic key, store files, or read what a
/// response gives away.
pub fn harmless(method: &Method, path: &str, fetch: &Fetch) -> bool {
    let asset = (method == Method::GET || method == Method::HEAD) && path.starts_with("/static/");
    asset || (method == Method::GET && is_page(path) && fetch.is_navigation())
}

/// The pages of the route table (`src/api/mod.rs`): `/`, `/traces`, `/trace/{id}`, `/login`.
fn is_page(path: &str) -> bool {
    match path.strip_prefix("/trace/") {
        Some(id) => !id.is_empty() && !id.contains('/'),
        None => path == "/" || path == "/traces" || path == "/login",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(text: &str) -> Authority {
        Authority::parse(text).unwrap_or_else(|| panic!("{text:?} parses"))
    }

    #[test]
    fn hosts_are_compared_in_one_form() {
        assert_eq!(authority("LocalHost.:5000"), authority("localhost:5000"));
        assert_eq!(authority("Tracebox.Example.com"), authority("tracebox.example.com"));
        assert_eq!(authority("[0:0:0:0:0:0:0:1]:5000"), authority("[::1]:5000"));
        assert_eq!(authority("[::FFFF:7f00:1]").to_string(), "[::ffff:127.0.0.1]");
        assert_eq!(authority("127.0.0.1:05000").to_string(), "127.0.0.1:5000");
        assert_ne!(authority("localhost"), authority("localhost:80"), "ports are compared as written");
        assert_ne!(authority("localhost:5000"), authority("localhost:5001"));
    }

    #[test]
    fn what_is_not_host_and_port_does_not_parse() {
        for text in [
            "",
            ":5000",
            "localhost:",
            "localhost:+80",
            "localhost:65536",
            "localhost:5000:1",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[fe80::1%25eth0]",
            "[evil.example]",
            "http://localhost:5000",
            "localhost/x",
            "a..b",
            ".",
            "évil.example",
            "evil.example ",
            "user@localhost",
        ] {
            assert_eq!(Authority::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn origins_drop_their_default_port_and_nothing_else_parses() {
        let origin = |text: &str| WebOrigin::parse(text).unwrap_or_else(|| panic!("{text:?} parses"));
        assert_eq!(origin("https://a.example:443"), origin("HTTPS://A.example"));
        assert_eq!(origin("http://localhost:80").authority, authority("localhost"));
        assert_eq!(origin("http://localhost:443").authority, authority("localhost:443"));
        assert_ne!(origin("http://a.example"), origin("https://a.example"));
        for text in ["null", "a.example", "https://a.example/", "https://a.example/path", "file://", "ftp://a.example"]
        {
            assert_eq!(WebOrigin::parse(text), None, "{text:?}");
        }
    }

    fn hosts() -> Hosts {
        Hosts::new("127.0.0.1:5000".parse().unwrap(), &["tracebox.example".to_owned(), "lab:8080".to_owned()])
    }

    #[test]
    fn the_server_answers_to_its_address_and_loopback_names_at_its_port_and_the_listed_ones() {
        let hosts = hosts();
        for ours in
            ["127.0.0.1:5000", "localhost:5000", "LOCALHOST.:5000", "[::1]:5000", "tracebox.example", "lab:8080"]
        {
            assert!(hosts.contains(&authority(ours)), "{ours}");
        }
        for theirs in ["evil.example:5000", "localhost", "localhost:5001", "127.0.0.1", "tracebox.example:5000"] {
            assert!(!hosts.contains(&authority(theirs)), "{theirs}");
        }
        let everywhere = Hosts::new("[::]:7000".parse().unwrap(), &[]);
        assert!(everywhere.contains(&authority("[::]:7000")) && everywhere.contains(&authority("localhost:7000")));
        assert!(!everywhere.contains(&authority("192.168.1.5:7000")), "names clients use must be listed");
    }

    #[test]
    fn a_host_is_required_once_and_must_be_ours() {
        let hosts = hosts();
        let check = |named: &[&str], target: Option<&str>, version| {
            let named: Vec<&[u8]> = named.iter().map(|n| n.as_bytes()).collect();
            check_host(&named, target, version, &hosts)
        };
        assert_eq!(check(&["localhost:5000"], None, Version::HTTP_11), Ok(()));
        assert_eq!(check(&[], None, Version::HTTP_11), Err(Refusal::NoHost));
        assert_eq!(check(&[], None, Version::HTTP_10), Ok(()), "HTTP/1.0 may leave the Host out");
        assert_eq!(check(&[], Some("localhost:5000"), Version::HTTP_2), Ok(()), "HTTP/2 names it in :authority");
        assert_eq!(check(&["localhost:5000", "localhost:5000"], None, Version::HTTP_11), Err(Refusal::SeveralHosts));
        assert_eq!(check(&["a b"], None, Version::HTTP_11), Err(Refusal::BadHost("a b".into())));
        let rebound = check(&["evil.example:5000"], None, Version::HTTP_11);
        assert_eq!(rebound, Err(Refusal::NotOurHost("evil.example:5000".into())));
        let overridden = check(&["localhost:5000"], Some("evil.example"), Version::HTTP_11);
        assert_eq!(overridden, Err(Refusal::NotOurHost("evil.example".into())), "an absolute target is checked too");
        let message = Refusal::NotOurHost("evil.example:5000".into()).to_string();
        assert!(message.contains("\"evil.example:5000\"") && message.contains("TRACEBOX_ALLOWED_HOSTS"), "{message}");
        assert!(!message.contains("localhost"), "the names the server answers to are not told to a rebinding page");
    }

    fn from<'a>(origins: &[&'a str], site: Option<&'a str>) -> Provenance<'a> {
        Provenance { origins: origins.iter().map(|o| o.as_bytes()).collect(), site: site.map(str::as_bytes) }
    }

    #[test]
    fn an_origin_decides_when_there_is_one() {
        let (hosts, allowed) = (hosts(), ["https://ide.example.com".to_owned()]);
        let foreign = |origins: &[&str], site| from(origins, site).foreign(&hosts, &allowed);
        for ours in [
            "http://127.0.0.1:5000",
            "http://localhost:5000",
            "https://localhost:5000",
            "http://[::1]:5000",
            "https://tracebox.example",
            "https://tracebox.example:443",
            "https://IDE.example.com",
        ] {
            assert_eq!(foreign(&[ours], Some("cross-site")), None, "{ours}");
        }
        for theirs in [
            "http://evil.example",
            "http://127.0.0.1:5001",
            "http://localhost:3000",
            "http://localhost",
            "null",
            "https://ide.example.com.evil.example",
            "garbage",
        ] {
            let refused = foreign(&[theirs], Some("same-origin"));
            assert!(refused.is_some_and(|who| who.contains(theirs)), "{theirs}");
        }
        assert!(foreign(&["http://localhost:5000", "http://localhost:5000"], None).is_some());
    }

    #[test]
    fn without_an_origin_only_a_page_of_another_site_or_port_is_foreign() {
        let hosts = hosts();
        let foreign = |site| from(&[], site).foreign(&hosts, &[]);
        assert_eq!(foreign(None), None, "programs send neither header");
        assert_eq!(foreign(Some("same-origin")), None);
        assert_eq!(foreign(Some("none")), None, "a URL typed or a bookmark opened");
        assert!(foreign(Some("cross-site")).is_some());
        assert!(foreign(Some("Same-Site")).is_some(), "same-site is blind to ports");
    }

    #[test]
    fn a_foreign_page_may_load_static_assets_and_follow_links_to_pages_and_nothing_else() {
        let navigation = Fetch { mode: Some(b"navigate"), dest: Some(b"document") };
        let framed = Fetch { mode: Some(b"navigate"), dest: Some(b"iframe") };
        let fetched = Fetch { mode: Some(b"no-cors"), dest: Some(b"empty") };
        let none = Fetch::default();
        assert!(harmless(&Method::GET, "/static/style.css", &none));
        assert!(harmless(&Method::HEAD, "/static/vendor/highlight/core.min.js", &fetched));
        for page in ["/", "/traces", "/trace/0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000"] {
            assert!(harmless(&Method::GET, page, &navigation), "{page}");
            assert!(!harmless(&Method::GET, page, &fetched), "{page} fetched");
            assert!(!harmless(&Method::GET, page, &framed), "{page} framed");
            assert!(!harmless(&Method::POST, page, &navigation), "{page} posted by a form");
        }
        for (method, path) in [
            (Method::POST, "/execute"),
            (Method::POST, "/static/x"),
            (Method::GET, "/ws"),
            (Method::GET, "/health"),
            (Method::GET, "/traces/export"),
            (Method::GET, "/trace/x/output/stdout"),
            (Method::GET, "/download/a.txt"),
            (Method::DELETE, "/files/a.txt"),
        ] {
            assert!(!harmless(&method, path, &navigation), "{method} {path}");
        }
    }
}
