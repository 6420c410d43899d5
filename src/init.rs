//! `portcullis init`: a starter `gateway.toml`, written from the provider's discovery
//! document.
//!
//! [`discover`] fetches `<issuer>/.well-known/openid-configuration` with the gateway's own
//! provider client and insists that the document names exactly the issuer given.
//! [`render`] is pure: it turns the answers and the discovery document into a commented
//! configuration that `portcullis check` accepts once the two secret files exist. Secrets
//! are never written into the file, only `*_file` references; [`next_steps`] says how to
//! create those files and how to start the gateway.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::auth::provider::{ProviderClient, ProviderError};

/// The signing algorithms the gateway verifies (`tokens.algorithms` accepts exactly these).
const GATEWAY_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// File names next to the written configuration.
const CLIENT_SECRET_FILE: &str = "client.secret";
const SESSION_SECRET_FILE: &str = "session.secret";
const STATE_DIR: &str = "portcullis-state";

/// What `init` was asked for, checked.
#[derive(Debug, Clone)]
pub struct Starter {
    /// `--issuer`, exactly as given (discovery must name this string).
    pub issuer: String,
    pub client_id: String,
    /// `--upstream` as given (a URL's serialization would add a `/`).
    pub upstream: String,
    pub public_url: Url,
    /// Where the configuration goes; the secret files and state directory go beside it.
    pub output: PathBuf,
}

/// Why `init` stopped. The text is what the user reads.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A command-line value that cannot be used.
    #[error("{flag}: {reason}")]
    Argument { flag: &'static str, reason: String },
    /// The output file exists and `--force` was not given.
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// The discovery document could not be fetched or read.
    #[error("cannot read the provider's discovery document: {0}")]
    Provider(ProviderError),
    /// The discovery document names another issuer.
    #[error(
        "the provider's discovery document says its issuer is {found:?}, not {given:?}; \
         pass --issuer {found:?} (tokens carry that exact string in \"iss\")"
    )]
    IssuerMismatch { found: String, given: String },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The parts of the discovery document the starter file talks about.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    #[serde(default)]
    pub backchannel_logout_supported: Option<bool>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

// === impl Starter ===

impl Starter {
    /// Checks the command line's values; `output` is taken as given.
    pub fn new(
        issuer: &str,
        client_id: &str,
        upstream: &str,
        public_url: &str,
        output: PathBuf,
    ) -> Result<Starter, InitError> {
        for (flag, value) in [
            ("--issuer", issuer),
            ("--upstream", upstream),
            ("--public-url", public_url),
        ] {
            // The URL parser drops tabs and newlines silently; the file must not get them.
            if value.chars().any(char::is_control) {
                return Err(InitError::Argument {
                    flag,
                    reason: format!("{value:?} contains a control character"),
                });
            }
        }
        let issuer_url = web_url("--issuer", issuer)?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(InitError::Argument {
                flag: "--issuer",
                reason: format!("{issuer:?} must not have a query or fragment"),
            });
        }
        if client_id.is_empty() || client_id.chars().any(char::is_control) {
            return Err(InitError::Argument {
                flag: "--client-id",
                reason: format!(
                    "{client_id:?} is not a client id (the id registered at the provider)"
                ),
            });
        }
        web_url("--upstream", upstream)?;
        let public = web_url("--public-url", public_url)?;
        if public.path() != "/" || public.query().is_some() || public.fragment().is_some() {
            return Err(InitError::Argument {
                flag: "--public-url",
                reason: format!(
                    "{public_url:?} must be an origin such as \"https://gateway.example.com\" (no path or query)"
                ),
            });
        }
        if output.to_str().is_none() {
            return Err(InitError::Argument {
                flag: "--output",
                reason: format!("{} is not a UTF-8 path", output.display()),
            });
        }
        Ok(Starter {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            upstream: upstream.to_owned(),
            public_url: public,
            output,
        })
    }

    /// A file or directory beside the output file (as the output path was given: relative
    /// paths are relative to the directory the gateway runs in).
    fn beside(&self, name: &str) -> String {
        let path = match self.output.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
            _ => Path::new(name).to_path_buf(),
        };
        path.to_string_lossy().into_owned()
    }

    pub fn client_secret_file(&self) -> String {
        self.beside(CLIENT_SECRET_FILE)
    }

    pub fn session_secret_file(&self) -> String {
        self.beside(SESSION_SECRET_FILE)
    }

    fn state_dir(&self) -> String {
        self.beside(STATE_DIR)
    }

    /// `public_url` without the trailing `/`.
    fn origin(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }

    /// Loopback `public_url` (a first try on one machine): listen on loopback at its
    /// port. Anything else is reached through the network or a proxy: all interfaces.
    fn listen(&self) -> String {
        let port = self.public_url.port_or_known_default().unwrap_or(8080);
        let loopback = match self.public_url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if loopback {
            format!("127.0.0.1:{port}")
        } else {
            "0.0.0.0:8080".to_owned()
        }
    }
}

fn web_url(flag: &'static str, s: &str) -> Result<Url, InitError> {
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            if !u.username().is_empty() || u.password().is_some() {
                return Err(InitError::Argument {
                    flag,
                    reason: format!("{s:?} must not contain credentials"),
                });
            }
            Ok(u)
        }
        _ => Err(InitError::Argument {
            flag,
            reason: format!("{s:?} is not an http:// or https:// URL"),
        }),
    }
}

/// Fetches the discovery document of `issuer` and checks that it names `issuer` exactly.
pub async fn discover(client: &ProviderClient, issuer: &str) -> Result<Discovery, InitError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Discovery = client.get_json(&url).await.map_err(InitError::Provider)?;
    if doc.issuer != issuer {
        return Err(InitError::IssuerMismatch {
            found: doc.issuer,
            given: issuer.to_owned(),
        });
    }
    Ok(doc)
}

/// A TOML basic string. JSON's string escapes (`\"`, `\\`, `\n`, `\u00XX`) are all valid
/// in TOML basic strings, so serde_json writes it.
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn toml_list(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", items.join(", "))
}

/// The provider's endpoint, or a note that it has none.
fn offered(v: &Option<String>) -> &str {
    v.as_deref()
        .unwrap_or("none (not in the discovery document)")
}

/// Text for a comment: the discovery document comes from the network, and a line break in
/// one of its values must not start a line of configuration.
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

// === impl Discovery ===

impl Discovery {
    /// The same document with every value fit for a comment.
    fn for_comments(&self) -> Discovery {
        let opt = |v: &Option<String>| v.as_deref().map(plain);
        let list = |v: &[String]| v.iter().map(|s| plain(s)).collect();
        Discovery {
            issuer: plain(&self.issuer),
            authorization_endpoint: opt(&self.authorization_endpoint),
            token_endpoint: opt(&self.token_endpoint),
            jwks_uri: opt(&self.jwks_uri),
            end_session_endpoint: opt(&self.end_session_endpoint),
            introspection_endpoint: opt(&self.introspection_endpoint),
            backchannel_logout_supported: self.backchannel_logout_supported,
            id_token_signing_alg_values_supported: list(
                &self.id_token_signing_alg_values_supported,
            ),
            scopes_supported: list(&self.scopes_supported),
            code_challenge_methods_supported: list(&self.code_challenge_methods_supported),
        }
    }
}

/// The starter `gateway.toml`.
pub fn render(s: &Starter, d: &Discovery) -> String {
    let d = &d.for_comments();
    let origin = s.origin();
    let mut out = String::new();
    let w = &mut out;
    // `write!` to a String cannot fail.
    let _ = writeln!(
        w,
        "# gateway.toml for portcullis, written by `portcullis init` from the discovery document of
# {issuer}
#
# Check it offline:  portcullis check --config {output}
# Run the gateway:   portcullis serve --config {output}
#
# Any key can be overridden from the environment as PORTCULLIS_<SECTION>__<KEY>, for
# example PORTCULLIS_SERVER__LISTEN=0.0.0.0:8080. The project's own gateway.toml lists
# every key with a comment; the README explains them.

[server]
# The main listener: browsers and API clients connect here.
listen = {listen}
# How browsers reach the gateway. The login's redirect URI is built from it (never from the
# request's Host), so open the gateway at exactly this origin; a browser that asks for
# another host name (such as 127.0.0.1 instead of localhost) is first sent here.
public_url = {public_url}
# /healthz, /readyz and /metrics; never on the main listener.
admin_listen = \"127.0.0.1:9090\"
# The gateway's own endpoints (login, callback, logout, userinfo, auth) live under this path.
auth_prefix = \"/oauth2\"
# Addresses (CIDRs) of proxies in front of the gateway whose X-Forwarded-* headers are kept.
trusted_proxies = []

[upstream]
# The service the gateway protects; allowed requests are forwarded here.
url = {upstream}
timeout = \"30s\"           # no response head by then: 504
connect_timeout = \"5s\"    # no connection by then: 502
",
        issuer = s.issuer,
        output = plain(&s.output.to_string_lossy()),
        listen = toml_str(&s.listen()),
        public_url = toml_str(&origin),
        upstream = toml_str(&s.upstream),
    );

    let _ = writeln!(
        w,
        "[oidc]
# The provider. Discovery: {issuer_trimmed}/.well-known/openid-configuration
#   authorization_endpoint: {authorize}
#   token_endpoint: {token}
#   jwks_uri: {jwks}
issuer = {issuer}
# A confidential client registered at the provider, with the redirect URI
# {origin}/oauth2/callback and a post-logout redirect URI on {origin}.
client_id = {client_id}
# The client's secret, read from this file (keep it out of version control).
client_secret_file = {client_secret_file}
# Asked for at login.{scopes_note}
scopes = [\"openid\", \"profile\", \"email\"]
",
        issuer_trimmed = s.issuer.trim_end_matches('/'),
        authorize = offered(&d.authorization_endpoint),
        token = offered(&d.token_endpoint),
        jwks = offered(&d.jwks_uri),
        issuer = toml_str(&s.issuer),
        client_id = toml_str(&s.client_id),
        client_secret_file = toml_str(&s.client_secret_file()),
        scopes_note = if d.scopes_supported.is_empty() {
            String::new()
        } else {
            format!(
                " The provider's scopes_supported: {}.",
                d.scopes_supported.join(", ")
            )
        },
    );
    if d.authorization_endpoint.is_none() || d.token_endpoint.is_none() {
        let _ = writeln!(
            w,
            "# NOTE: the provider names no authorization or token endpoint, so browser logins
# cannot work with it; set login = \"deny\" on every rule and use bearer tokens only.
"
        );
    }
    if !d.code_challenge_methods_supported.is_empty()
        && !d
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
    {
        let _ = writeln!(
            w,
            "# NOTE: the provider does not list S256 in code_challenge_methods_supported; the
# gateway always sends a PKCE S256 challenge at login.
"
        );
    }

    let offered_algs: Vec<&str> = d
        .id_token_signing_alg_values_supported
        .iter()
        .map(String::as_str)
        .collect();
    let usable: Vec<&str> = GATEWAY_ALGORITHMS
        .iter()
        .copied()
        .filter(|a| offered_algs.contains(a))
        .collect();
    let ignored: Vec<&str> = offered_algs
        .iter()
        .copied()
        .filter(|a| !GATEWAY_ALGORITHMS.contains(a))
        .collect();
    let algs_note = match (offered_algs.is_empty(), usable.is_empty()) {
        (true, _) => {
            "# The provider lists no id_token_signing_alg_values_supported; RS256 is the usual one."
                .to_owned()
        }
        (false, true) => format!(
            "# The provider signs with {} (id_token_signing_alg_values_supported), none of which
# the gateway verifies; RS256 is set so the file is valid, but its tokens will be refused.",
            offered_algs.join(", ")
        ),
        (false, false) => format!(
            "# The provider signs with {} (id_token_signing_alg_values_supported).{}",
            offered_algs.join(", "),
            if ignored.is_empty() {
                String::new()
            } else {
                format!(
                    "\n# Left out: {} (\"none\" and HS* are never accepted with a JWKS).",
                    ignored.join(", ")
                )
            }
        ),
    };
    let algorithms = if usable.is_empty() {
        vec!["RS256"]
    } else {
        usable
    };
    let _ = writeln!(
        w,
        "[tokens]
# Bearer access tokens (API clients). Accepted \"aud\" values, any one suffices; the provider
# must put one of them into its access tokens (Keycloak: an audience mapper).
audiences = [{client_id}]
# Signature algorithms accepted, an allow-list.
{algs_note}
algorithms = {algorithms}
leeway = \"30s\"            # clock skew allowed for exp / nbf / iat
{introspection}
introspection = false
",
        client_id = toml_str(&s.client_id),
        algorithms = toml_list(&algorithms),
        introspection = match &d.introspection_endpoint {
            Some(url) => format!(
                "# true: opaque (non-JWT) tokens are checked at the provider's introspection_endpoint
# ({url}, RFC 7662) with the client id and secret."
            ),
            None => "# The provider offers no introspection_endpoint, so opaque (non-JWT) tokens cannot be
# checked; keep this false."
                .to_owned(),
        },
    );

    let logout = match &d.end_session_endpoint {
        Some(url) => format!(
            "# Logout ({auth}/logout) also ends the provider's session: the provider offers an
# end_session_endpoint ({url}).",
            auth = "/oauth2"
        ),
        None => "# The provider offers no end_session_endpoint: logout (/oauth2/logout) ends the
# gateway's session only, not the one at the provider."
            .to_owned(),
    };
    let backchannel = match d.backchannel_logout_supported {
        Some(true) => format!(
            "\n# The provider supports back-channel logout: register\n# {origin}/oauth2/backchannel-logout as the client's back-channel logout URL."
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        w,
        "[session]
# Seals the session cookies (AES-256-GCM); at least 32 bytes, read from this file.
secret_file = {session_secret_file}
lifetime = \"8h\"           # a browser logs in again after this
# Where logouts are kept across restarts (created when missing).
state_dir = {state_dir}
{logout}{backchannel}

# Identity headers the upstream receives (every client-sent copy is removed first):
# X-Auth-User, X-Auth-Email, X-Auth-Subject, X-Auth-Roles, X-Auth-Scopes; see [headers].
",
        session_secret_file = toml_str(&s.session_secret_file()),
        state_dir = toml_str(&s.state_dir()),
    );

    let _ = write!(
        w,
        "# Rules. The most specific path wins, never the order in this file; a request no rule
# matches gets 403.

# The upstream's health check: no credential needed.
[[rule]]
path = \"/health\"
access = \"public\"

# An API for machine clients: a bearer token with the scope \"api\" (change it to one your
# provider issues). login = \"deny\": a browser without a credential gets 401, never a login.
[[rule]]
path = \"/api/**\"
scopes = [\"api\"]
login = \"deny\"

# Everything else: any signed-in user. A browser without a session is sent to the provider
# to log in and comes back to the page it asked for.
[[rule]]
path = \"/**\"
access = \"authenticated\"
"
    );
    out
}

/// Quotes a path for a POSIX shell when it needs it.
fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./+:@%=".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The placeholder in the printed command that stands for the provider's client secret.
pub const SECRET_PLACEHOLDER: &str = "PASTE-THE-CLIENT-SECRET";

/// What `init` prints after writing the file: the secret files to create, the redirect URI
/// to register, and the command that starts the gateway.
pub fn next_steps(s: &Starter) -> String {
    let output = s.output.to_string_lossy();
    let origin = s.origin();
    format!(
        "Wrote {output} for {issuer} (client {client:?}).

At the provider, give client {client:?} the redirect URI {origin}/oauth2/callback.

Next, create the two secret files (readable only by you; keep them out of version control):

    (umask 077; head -c 32 /dev/urandom | base64 > {session}; printf '%s' '{placeholder}' > {client_file})

replacing {placeholder} with the client's secret from the provider. Then start the gateway:

    portcullis serve --config {output_sh}

and open {origin}/ (`portcullis check --config {output_sh}` validates the file offline).
",
        issuer = s.issuer,
        client = s.client_id,
        session = sh(&s.session_secret_file()),
        client_file = sh(&s.client_secret_file()),
        placeholder = SECRET_PLACEHOLDER,
        output_sh = sh(&output),
    )
}

/// Writes the file; refuses to replace an existing one unless `force`.
pub fn write(path: &Path, contents: &str, force: bool) -> Result<(), InitError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => InitError::Exists(path.to_path_buf()),
        _ => InitError::Write {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    file.write_all(contents.as_bytes())
        .map_err(|e| InitError::Write {
            path: path.to_path_buf(),
            source: e,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starter(dir: &Path) -> Starter {
        Starter::new(
            "https://id.example.com/realms/my \"org\"",
            "gate\"way",
            "http://127.0.0.1:3000",
            "http://localhost:8080",
            dir.join("gateway.toml"),
        )
        .expect("valid")
    }

    fn keycloak_like() -> Discovery {
        Discovery {
            issuer: "https://id.example.com/realms/my \"org\"".into(),
            authorization_endpoint: Some("https://id.example.com/auth".into()),
            token_endpoint: Some("https://id.example.com/token".into()),
            jwks_uri: Some("https://id.example.com/certs".into()),
            end_session_endpoint: Some("https://id.example.com/logout".into()),
            introspection_endpoint: None,
            backchannel_logout_supported: Some(true),
            id_token_signing_alg_values_supported: vec![
                "PS384".into(),
                "RS256".into(),
                "HS256".into(),
                "none".into(),
            ],
            scopes_supported: vec!["openid".into(), "email".into()],
            code_challenge_methods_supported: vec!["plain".into(), "S256".into()],
        }
    }

    #[test]
    fn the_starter_file_loads_once_the_secret_files_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = starter(dir.path());
        let text = render(&s, &keycloak_like());
        std::fs::write(&s.output, &text).expect("write");
        std::fs::write(
            s.session_secret_file(),
            "0123456789abcdef0123456789abcdef\n",
        )
        .expect("write");
        std::fs::write(s.client_secret_file(), "s3cret").expect("write");
        let cfg = crate::config::load(&s.output, &crate::config::EnvOverrides::default())
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        assert_eq!(cfg.oidc.issuer, "https://id.example.com/realms/my \"org\"");
        assert_eq!(cfg.oidc.client_id, "gate\"way");
        assert_eq!(cfg.rules.rules().len(), 3);
        assert_eq!(
            cfg.tokens
                .algorithms
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>(),
            ["RS256", "PS384"]
        );
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
        assert!(text.contains("end_session_endpoint (https://id.example.com/logout)"));
        assert!(text.contains("Left out: HS256, none"));
        assert!(text.contains("offers no introspection_endpoint"), "{text}");
        assert!(
            text.contains("#   jwks_uri: https://id.example.com/certs\n"),
            "{text}"
        );
        assert!(text.contains("/oauth2/backchannel-logout"));
        assert!(!text.contains("s3cret"));
    }

    #[test]
    fn a_provider_without_logout_or_known_algorithms_is_said_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = starter(dir.path());
        let d = Discovery {
            issuer: s.issuer.clone(),
            id_token_signing_alg_values_supported: vec!["HS512".into()],
            ..Discovery::default()
        };
        let text = render(&s, &d);
        assert!(text.contains("offers no end_session_endpoint"), "{text}");
        assert!(
            text.contains("none of which\n# the gateway verifies"),
            "{text}"
        );
        assert!(text.contains("algorithms = [\"RS256\"]"), "{text}");
        assert!(text.contains("browser logins\n# cannot work"), "{text}");
    }

    #[test]
    fn a_line_break_from_the_provider_stays_in_its_comment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = starter(dir.path());
        let d = Discovery {
            end_session_endpoint: Some("https://x/\n[server]\nlisten = \"0.0.0.0:1\"".into()),
            scopes_supported: vec!["a\r\nadmin_listen = \"0.0.0.0:2\"".into()],
            ..keycloak_like()
        };
        let text = render(&s, &d);
        assert!(
            !text.lines().any(|l| l.starts_with("listen = \"0.0.0.0:1")),
            "{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("admin_listen = \"0.0.0.0:2")),
            "{text}"
        );
        assert!(text.contains("https://x/?[server]?listen"), "{text}");
    }

    #[test]
    fn bad_arguments_name_their_flag() {
        let out = PathBuf::from("gateway.toml");
        let cases = [
            ("ftp://x", "gateway", "http://a", "http://b", "--issuer"),
            ("http://i/?q", "gateway", "http://a", "http://b", "--issuer"),
            ("http://i", "", "http://a", "http://b", "--client-id"),
            ("http://i", "g", "a:3000", "http://b", "--upstream"),
            ("http://i", "g", "http://a", "http://b/path", "--public-url"),
            ("http://i", "g", "http://a", "http://u:p@b", "--public-url"),
            ("http://i\n/x", "g", "http://a", "http://b", "--issuer"),
            ("http://i", "g\n", "http://a", "http://b", "--client-id"),
        ];
        for (issuer, client, upstream, public, flag) in cases {
            match Starter::new(issuer, client, upstream, public, out.clone()) {
                Err(InitError::Argument { flag: f, .. }) => assert_eq!(f, flag, "{issuer}"),
                other => panic!("{issuer} {client} {upstream} {public}: {other:?}"),
            }
        }
    }

    #[test]
    fn files_go_beside_the_output_and_commands_are_quoted() {
        let s = Starter::new(
            "http://i",
            "g",
            "http://a",
            "https://gw.example.com",
            PathBuf::from("my conf/gw.toml"),
        )
        .expect("valid");
        assert_eq!(s.session_secret_file(), "my conf/session.secret");
        assert_eq!(s.listen(), "0.0.0.0:8080");
        let steps = next_steps(&s);
        assert!(steps.contains("> 'my conf/session.secret';"), "{steps}");
        assert!(
            steps.contains("serve --config 'my conf/gw.toml'"),
            "{steps}"
        );
        assert!(
            steps.contains("https://gw.example.com/oauth2/callback"),
            "{steps}"
        );
        let bare = Starter::new(
            "http://i",
            "g",
            "http://a",
            "http://b",
            "gateway.toml".into(),
        )
        .expect("valid");
        assert_eq!(bare.client_secret_file(), "client.secret");
    }
}
