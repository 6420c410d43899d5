//! The one place where a refusal becomes an HTTP response: status, `WWW-Authenticate`,
//! and a JSON body (or a small HTML page for browsers). Descriptions sent to clients are
//! fixed strings; causes go to the log.
//!
//! Every domain error converts into [`Denial`] by `From` (path, authority, `_method`,
//! authentication, rule denials, upstream failures), and the same value gives the
//! status, the metrics and log reason ([`Denial::reason`]) and whose fault it was
//! ([`Denial::fault`]). Redirects are not refusals: the endpoints answer them with
//! [`redirect`].

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::auth::bearer::TokenError;
use crate::auth::logout_token::LogoutTokenError;
use crate::auth::{AuthError, DpopRefusal};
use crate::authority::AuthorityError;
use crate::authz::{AllowReason, DenyReason};
use crate::decision::{Refusal, SelectError, Verdict};
use crate::forward::proxy::ForwardError;
use crate::forward::upstream::UpstreamError;
use crate::header_names::X_PORTCULLIS_LOGIN;
use crate::path::PathRejection;
use crate::rules::StepUp;

/// Every response body: streamed from the upstream, or made by the gateway.
pub type Body = Either<Incoming, Full<Bytes>>;

/// A body the gateway made.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(bytes.into()))
}

pub fn empty() -> Body {
    Either::Right(Full::new(Bytes::new()))
}

/// Whose fault a failure was, for the access log and the `upstream_errors` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself, or its credential: the client can fix it.
    Client,
    /// The upstream service did not answer as it should.
    Upstream,
    /// The identity provider is not reachable (yet).
    Provider,
    /// The session store (Redis) is not reachable, or `session.state_dir` cannot be
    /// written.
    Store,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Upstream => "upstream",
            Fault::Provider => "provider",
            Fault::Store => "store",
        }
    }
}

/// Why the gateway answers instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// A path refused by normalization.
    BadPath(PathRejection),
    /// Two `Authorization` headers.
    AmbiguousCredentials,
    /// Some other malformed request (bad `_method`, bad forward-auth headers).
    BadRequest(&'static str),
    /// No rule matches the request.
    NoRule,
    /// No credential where one is needed.
    Unauthenticated,
    /// No credential on a browser request that may log in, answered without a redirect
    /// (forward-auth for nginx): a 401 like `Unauthenticated` whose `X-Portcullis-Login`
    /// header names the gateway's login URL that returns to the request.
    LoginRequired {
        login: String,
    },
    /// A bearer token that failed validation.
    InvalidToken(TokenError),
    /// A DPoP token or proof that failed validation, or a DPoP-bound token sent as
    /// Bearer: 401 with a `DPoP` challenge (RFC 9449 §7.1).
    InvalidDpop(DpopRefusal),
    /// The introspection endpoint cannot be reached.
    IntrospectionUnavailable,
    /// Valid token without the rule's scopes.
    InsufficientScope {
        required: Vec<String>,
    },
    /// Valid credential whose authentication is weaker or older than the rule's step-up
    /// (RFC 9470): 401 with `error="insufficient_user_authentication"`, `acr_values`,
    /// `max_age`. Browsers with a session that may log in are sent to log in instead.
    InsufficientAuthentication(StepUp),
    /// A step-up login came back from the provider still below what it asked for: the
    /// new session stands, the page is refused (not a loop of logins).
    StepUpRefused,
    /// Valid credential without a role or claim the rule needs.
    Forbidden(&'static str),
    /// A caller the endpoint does not serve (forward-auth outside `trusted_proxies`).
    UntrustedCaller,
    /// The provider's keys were never fetched.
    ProviderUnavailable,
    /// The session store (Redis) does not answer.
    StoreUnavailable,
    /// A logout (or back-channel logout) could not be written to `session.state_dir`: it
    /// would not survive a restart, so it is not reported as done.
    LogoutNotRecorded,
    /// No upstream connection (refused, unreachable, connect timeout).
    UpstreamConnect,
    /// The upstream did not answer within `upstream.timeout`.
    UpstreamTimeout,
    /// The upstream connection failed after it was made.
    UpstreamBroken,
    NotFound,
    MethodNotAllowed,
    /// A body the gateway must read to judge the request (a `POST` form or JSON body that
    /// may carry `_method`) is larger than it reads.
    PayloadTooLarge,
    /// The login could not be completed (bad state, provider error); no session.
    LoginFailed(&'static str),
    /// The callback found no login attempt, and it arrived on another host than
    /// `public_url`'s, whose cookies the browser keeps apart: the page names `public_url`.
    LoginElsewhere {
        public_url: String,
    },
    /// A back-channel logout request whose form or logout token was refused.
    InvalidLogoutToken(LogoutTokenError),
}

impl From<crate::method_override::OverrideError> for Denial {
    fn from(e: crate::method_override::OverrideError) -> Denial {
        use crate::method_override::OverrideError as E;
        match e {
            E::InvalidValue => Denial::BadRequest("invalid _method value"),
            E::Multipart => Denial::BadRequest("malformed multipart body"),
            E::TooLarge => Denial::PayloadTooLarge,
            E::Unreadable => Denial::BadRequest("the request body could not be read"),
        }
    }
}

impl From<SelectError> for Denial {
    fn from(e: SelectError) -> Denial {
        match e {
            SelectError::NoRule => Denial::NoRule,
            SelectError::Override(e) => e.into(),
        }
    }
}

impl From<PathRejection> for Denial {
    fn from(e: PathRejection) -> Denial {
        Denial::BadPath(e)
    }
}

impl From<AuthorityError> for Denial {
    fn from(e: AuthorityError) -> Denial {
        Denial::BadRequest(e.describe())
    }
}

impl From<AuthError> for Denial {
    fn from(e: AuthError) -> Denial {
        match e {
            AuthError::Ambiguous => Denial::AmbiguousCredentials,
            AuthError::InvalidToken(e) => Denial::InvalidToken(e),
            AuthError::Dpop(e) => Denial::InvalidDpop(e),
            AuthError::IntrospectionUnavailable => Denial::IntrospectionUnavailable,
            AuthError::KeysUnavailable => Denial::ProviderUnavailable,
            AuthError::StoreUnavailable => Denial::StoreUnavailable,
        }
    }
}

impl From<DenyReason> for Denial {
    fn from(reason: DenyReason) -> Denial {
        match reason {
            DenyReason::Unauthenticated => Denial::Unauthenticated,
            DenyReason::InsufficientScope { required } => Denial::InsufficientScope { required },
            DenyReason::InsufficientAuthentication(s) => Denial::InsufficientAuthentication(s),
            other => Denial::Forbidden(other.code()),
        }
    }
}

impl From<Refusal> for Denial {
    fn from(r: Refusal) -> Denial {
        match r {
            Refusal::Select(e) => e.into(),
            Refusal::Credential(e) => e.into(),
            Refusal::Rule(denied) => denied.reason.into(),
        }
    }
}

impl From<UpstreamError> for Denial {
    fn from(e: UpstreamError) -> Denial {
        match e {
            UpstreamError::Connect => Denial::UpstreamConnect,
            UpstreamError::Timeout => Denial::UpstreamTimeout,
            UpstreamError::Io => Denial::UpstreamBroken,
        }
    }
}

impl From<ForwardError> for Denial {
    fn from(e: ForwardError) -> Denial {
        match e {
            ForwardError::WebSocketOrigin => Denial::Forbidden("websocket_origin"),
            ForwardError::Target => Denial::BadRequest("the request target cannot be forwarded"),
            ForwardError::UnaskedSwitch => Denial::UpstreamBroken,
            ForwardError::Upstream(e) => e.into(),
        }
    }
}

/// A verdict's status and reason, read from the same table as every response.
impl Verdict<'_> {
    /// The status a client without a browser gets (a browser that may log in gets a 302
    /// to the provider instead of the 401).
    pub fn status(&self) -> StatusCode {
        match &self.outcome {
            Ok(_) => StatusCode::OK,
            Err(r) => Denial::from(r.clone()).status(),
        }
    }

    /// The reason in the access log and metrics: `public`, `authorized`,
    /// `cors_preflight`, or the denial's.
    pub fn reason(&self) -> &'static str {
        match &self.outcome {
            Ok(AllowReason::Public) => "public",
            Ok(AllowReason::Authorized) => "authorized",
            Ok(AllowReason::CorsPreflight) => "cors_preflight",
            Err(r) => Denial::from(r.clone()).reason(),
        }
    }
}

impl Denial {
    /// The machine-readable reason used in logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::BadPath(_) => "bad_path",
            Denial::AmbiguousCredentials => "ambiguous_credentials",
            Denial::BadRequest(_) => "bad_request",
            Denial::NoRule => "no_rule",
            Denial::Unauthenticated | Denial::LoginRequired { .. } => "unauthenticated",
            Denial::InvalidToken(_) => "invalid_token",
            Denial::InvalidDpop(DpopRefusal::Proof(_)) => "invalid_dpop_proof",
            Denial::InvalidDpop(DpopRefusal::Token(_)) => "invalid_dpop_token",
            Denial::IntrospectionUnavailable => "introspection_unavailable",
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::InsufficientAuthentication(_) => "insufficient_user_authentication",
            Denial::StepUpRefused => "step_up_refused",
            Denial::Forbidden(code) => code,
            Denial::UntrustedCaller => "untrusted_caller",
            Denial::ProviderUnavailable => "provider_unavailable",
            Denial::StoreUnavailable => "session_store_unavailable",
            Denial::LogoutNotRecorded => "logout_not_recorded",
            Denial::UpstreamConnect => "upstream_connect",
            Denial::UpstreamTimeout => "upstream_timeout",
            Denial::UpstreamBroken => "upstream_io",
            Denial::NotFound => "not_found",
            Denial::MethodNotAllowed => "method_not_allowed",
            Denial::PayloadTooLarge => "payload_too_large",
            Denial::LoginFailed(_) | Denial::LoginElsewhere { .. } => "login_failed",
            Denial::InvalidLogoutToken(_) => "invalid_logout_token",
        }
    }

    /// The `kind` label of `upstream_errors_total`, for the upstream's failures.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            Denial::UpstreamConnect => Some("connect"),
            Denial::UpstreamTimeout => Some("timeout"),
            Denial::UpstreamBroken => Some("io"),
            _ => None,
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            Denial::UpstreamConnect | Denial::UpstreamTimeout | Denial::UpstreamBroken => {
                Fault::Upstream
            }
            Denial::ProviderUnavailable | Denial::IntrospectionUnavailable => Fault::Provider,
            Denial::StoreUnavailable | Denial::LogoutNotRecorded => Fault::Store,
            _ => Fault::Client,
        }
    }

    /// Status, OAuth-style error code, public description, `WWW-Authenticate`.
    fn parts(&self) -> (StatusCode, &'static str, String, Option<String>) {
        const REALM: &str = "Bearer realm=\"portcullis\"";
        match self {
            Denial::BadPath(why) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("malformed path: {why}"),
                None,
            ),
            Denial::AmbiguousCredentials => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one Authorization header".into(),
                None,
            ),
            Denial::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                (*why).into(),
                None,
            ),
            Denial::NoRule => (
                StatusCode::FORBIDDEN,
                "access_denied",
                "no rule allows this request".into(),
                None,
            ),
            Denial::Unauthenticated | Denial::LoginRequired { .. } => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "authentication required".into(),
                Some(REALM.into()),
            ),
            Denial::InvalidToken(e) => {
                let desc = e.to_string();
                (
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    desc.clone(),
                    Some(format!(
                        "{REALM}, error=\"invalid_token\", error_description=\"{desc}\""
                    )),
                )
            }
            Denial::InvalidDpop(refusal) => {
                let (code, desc) = match refusal {
                    DpopRefusal::Proof(e) => ("invalid_dpop_proof", e.to_string()),
                    DpopRefusal::Token(e) => ("invalid_token", e.to_string()),
                };
                (
                    StatusCode::UNAUTHORIZED,
                    code,
                    desc.clone(),
                    Some(format!(
                        "DPoP realm=\"portcullis\", error=\"{code}\", error_description=\"{desc}\", algs=\"{}\"",
                        crate::auth::dpop::ALGS
                    )),
                )
            }
            Denial::InsufficientScope { required } => {
                let scope = required.join(" ");
                (
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    format!("the token lacks a required scope ({scope})"),
                    Some(format!(
                        "{REALM}, error=\"insufficient_scope\", scope=\"{scope}\""
                    )),
                )
            }
            Denial::InsufficientAuthentication(s) => {
                let desc = match (s.acr.is_empty(), s.max_age.is_some()) {
                    (false, false) => "a stronger authentication is required",
                    (true, true) => "a more recent authentication is required",
                    _ => "a stronger or more recent authentication is required",
                };
                let mut www = format!(
                    "{REALM}, error=\"insufficient_user_authentication\", error_description=\"{desc}\""
                );
                if !s.acr.is_empty() {
                    www.push_str(&format!(", acr_values=\"{}\"", s.acr_values()));
                }
                if let Some(max) = s.max_age {
                    www.push_str(&format!(", max_age=\"{max}\""));
                }
                (
                    StatusCode::UNAUTHORIZED,
                    "insufficient_user_authentication",
                    desc.into(),
                    Some(www),
                )
            }
            Denial::StepUpRefused => (
                StatusCode::FORBIDDEN,
                "insufficient_user_authentication",
                "the identity provider did not confirm the sign-in this page needs (a second factor, or a recent sign-in); you are signed in, but not for this page".into(),
                None,
            ),
            Denial::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                "access_denied",
                "you are not allowed to access this resource".into(),
                None,
            ),
            Denial::UntrustedCaller => (
                StatusCode::FORBIDDEN,
                "access_denied",
                "this endpoint only serves trusted proxies".into(),
                None,
            ),
            Denial::ProviderUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the identity provider cannot be reached yet; try again shortly".into(),
                None,
            ),
            Denial::IntrospectionUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the identity provider cannot check this token now; try again shortly".into(),
                None,
            ),
            Denial::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the session store cannot be reached; try again shortly".into(),
                None,
            ),
            Denial::LogoutNotRecorded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the logout could not be recorded, so the session may still be usable; try logging out again".into(),
                None,
            ),
            Denial::UpstreamConnect => (
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream service is unavailable".into(),
                None,
            ),
            Denial::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "the upstream service did not answer in time".into(),
                None,
            ),
            Denial::UpstreamBroken => (
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream connection failed".into(),
                None,
            ),
            Denial::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
                None,
            ),
            Denial::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the body is too large to be judged for a method override".into(),
                None,
            ),
            Denial::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here".into(),
                None,
            ),
            Denial::LoginFailed(why) => (
                StatusCode::BAD_REQUEST,
                "login_failed",
                format!("the login could not be completed: {why}"),
                None,
            ),
            Denial::LoginElsewhere { public_url } => (
                StatusCode::BAD_REQUEST,
                "login_failed",
                format!(
                    "the login could not be completed: the login attempt is unknown or expired, \
                     and this page is not on the gateway's address {public_url}: a browser keeps \
                     cookies apart by host name, so a login must start and end there. \
                     Open {public_url} and start again"
                ),
                None,
            ),
            Denial::InvalidLogoutToken(why) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                why.to_string(),
                None,
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The response for this refusal. `browser` selects the HTML page over JSON; a signed-in
    /// browser user who is refused sees who they are and can log out.
    pub fn render(
        &self,
        browser: bool,
        signed_in: Option<&str>,
        auth_prefix: &str,
    ) -> Response<Body> {
        let (status, code, desc, www) = self.parts();
        let (content_type, body) = if browser {
            let extra = match (self, status, signed_in) {
                (_, StatusCode::FORBIDDEN, Some(user)) => Some(format!(
                    "<p>You are signed in as <strong>{}</strong>.</p><form method=\"post\" action=\"{}/logout\"><button type=\"submit\">Log out</button></form>",
                    escape_html(user),
                    escape_html(auth_prefix)
                )),
                (Denial::LoginRequired { login }, _, _) => Some(format!(
                    "<p><a href=\"{}\">Sign in</a></p>",
                    escape_html(login)
                )),
                (Denial::LoginElsewhere { public_url }, _, _) => Some(format!(
                    "<p><a href=\"{}\">Open {}</a></p>",
                    escape_html(public_url),
                    escape_html(public_url)
                )),
                _ => None,
            };
            (
                "text/html; charset=utf-8",
                html_page(status, &desc, extra.as_deref()),
            )
        } else {
            ("application/json", json_error(code, &desc))
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        if let Some(w) = www.and_then(|w| HeaderValue::from_str(&w).ok()) {
            h.insert(header::WWW_AUTHENTICATE, w);
        }
        if let Denial::LoginRequired { login } = self {
            if let Ok(v) = HeaderValue::from_str(login) {
                h.insert(X_PORTCULLIS_LOGIN, v);
            }
        }
        resp
    }
}

/// A 302 to `location`, never cached.
pub fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `{"error": ..., "error_description": ...}`.
pub fn json_error(code: &str, desc: &str) -> String {
    serde_json::json!({ "error": code, "error_description": desc }).to_string()
}

/// Escapes text for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small self-contained page. `extra_html` must already be escaped.
pub fn html_page(status: StatusCode, message: &str, extra_html: Option<&str>) -> String {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.4rem}}button{{font-size:1rem;padding:.4rem 1rem}}</style></head>\
<body><h1>{t}</h1><p>{m}</p>{x}</body></html>\n",
        t = escape_html(&title),
        m = escape_html(message),
        x = extra_html.unwrap_or("")
    )
}

/// Is this a browser navigation (GET/HEAD, `Accept` with `text/html`, no `Authorization`)?
pub fn is_browser(method: &http::Method, headers: &http::HeaderMap) -> bool {
    (method == http::Method::GET || method == http::Method::HEAD)
        && !headers.contains_key(header::AUTHORIZATION)
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .filter(|v| v.to_str().is_ok())
            .any(|v| contains_ignoring_case(v.as_bytes(), b"text/html"))
}

/// Does `hay` contain `needle` (lower case), in any case? Without a lower-cased copy.
fn contains_ignoring_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};

    fn accept(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn a_browser_asks_for_html_in_any_case_without_authorization() {
        let nav = accept(&[b"TEXT/Html,application/xhtml+xml;q=0.9"]);
        assert!(is_browser(&Method::GET, &nav));
        assert!(is_browser(&Method::HEAD, &nav));
        assert!(!is_browser(&Method::POST, &nav));
        assert!(is_browser(&Method::GET, &accept(&[b"*/*", b"text/html"])));
        for not in [
            &b"*/*"[..],
            b"application/json",
            b"text/htm",
            b"text/html\xff",
        ] {
            assert!(!is_browser(&Method::GET, &accept(&[not])), "{not:?}");
        }
        assert!(!is_browser(&Method::GET, &HeaderMap::new()));
        let mut bearer = nav.clone();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(!is_browser(&Method::GET, &bearer));
    }
}
