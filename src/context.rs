//! What one request carries through the phases: the connection it came on, and the facts
//! the phases gather for the access log and the response (rule, reason, subject, cookies).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::Method;

/// The target of the access log's events (one per request).
pub const ACCESS_TARGET: &str = "portcullis::access";

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The peer's address as text, written once per connection (for `X-Forwarded-For`
    /// and the access log of every request on it).
    pub peer_ip: IpText,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, tls: bool) -> ConnInfo {
        ConnInfo {
            peer,
            tls,
            peer_ip: IpText::new(peer.ip()),
        }
    }
}

/// An IP address as text, without an allocation (the longest IPv6 text is 45 bytes).
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; 48],
    len: u8,
}

impl IpText {
    pub fn new(ip: IpAddr) -> IpText {
        use std::io::Write;
        let mut buf = [0u8; 48];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cursor, "{ip}");
        let len = cursor.position() as u8;
        IpText { buf, len }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("-")
    }
}

impl std::fmt::Display for IpText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for IpText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
