//! What one request carries through the phases: the connection it came on, and the facts
//! the phases gather for the access log and the response (rule, reason, subject, cookies).

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Per-request facts gathered by the phases, for the access log.
#[derive(Debug)]
pub struct RequestContext {
    pub conn: ConnInfo,
    pub method: Method,
    pub browser: bool,
    pub path: Option<String>,
    pub rule: Option<usize>,
    /// The request's host (lower-case, no port), looked at only when some rule has a `host`.
    pub host: Option<String>,
    /// The matched rule's named upstream; `None` = `[upstream]`.
    pub upstream: Option<usize>,
    pub reason: &'static str,
    /// Whose fault a refusal was (`client`, `upstream`, `provider`), for the log.
    pub fault: Option<&'static str>,
    pub subject: Option<String>,
    pub upstream_time: Option<Duration>,
    /// `Set-Cookie` values for the response (session refreshed, cleared, login started).
    pub set_cookies: Vec<String>,
    /// The signed-in user of a browser session, for the 403 page.
    pub signed_in: Option<String>,
    /// What a browser without a credential that may log in gets.
    /// Forward-auth changes it; everything else keeps the default redirect.
    pub login: LoginStart,
}

impl RequestContext {
    pub fn new(conn: ConnInfo, method: Method, browser: bool) -> RequestContext {
        RequestContext {
            conn,
            method,
            browser,
            path: None,
            rule: None,
            host: None,
            upstream: None,
            reason: "forwarded",
            fault: None,
            subject: None,
            upstream_time: None,
            set_cookies: Vec::new(),
            signed_in: None,
            login: LoginStart::Redirect,
        }
    }
}

/// How a browser request without a credential is answered on rules that allow a login
/// (`login` not `"deny"`, sessions configured).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoginStart {
    /// 302 to the provider; the login returns to the request's own path and query.
    #[default]
    Redirect,
    /// 302 to the provider; the login returns to this `rd` (already validated).
    RedirectTo(String),
    /// No redirect and no login attempt: 401 that names this URL of the gateway's login
    /// endpoint (`Denial::LoginRequired`), for proxies that can only pass a 401 on.
    Offer(String),
}
