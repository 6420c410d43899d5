//! The OpenID provider as seen from the gateway: discovery and a small HTTP client for
//! JSON documents (discovery, JWKS).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Largest discovery or JWKS document accepted.
const MAX_DOCUMENT: usize = 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why talking to the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The request could not be sent or no answer came in time.
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    /// The provider answered with a non-success status.
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    /// The answer was not the JSON document expected.
    #[error("{url} returned an invalid document: {reason}")]
    Document { url: String, reason: String },
    /// Discovery named another issuer than the one configured.
    #[error("discovery says the issuer is {found:?}, but oidc.issuer is {configured:?}")]
    IssuerMismatch { found: String, configured: String },
}

/// The parts of the discovery document the gateway uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// RFC 7662 (RFC 8414 names it in the metadata).
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
}

/// HTTP(S) client for the provider's documents.
#[derive(Clone)]
pub struct ProviderClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ProviderClient {
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .map(|b| {
                b.https_or_http()
                    .enable_http1()
                    .wrap_connector(http.clone())
            })
            .unwrap_or_else(|_| {
                // No system trust store: only plain-HTTP providers can be reached.
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(
                        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                            rustls::crypto::ring::default_provider(),
                        ))
                        .with_safe_default_protocol_versions()
                        .map(|b| {
                            b.with_root_certificates(rustls::RootCertStore::empty())
                                .with_no_client_auth()
                        })
                        .unwrap_or_else(|_| {
                            unreachable!("ring supports the default protocol versions")
                        }),
                    )
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http)
            });
        ProviderClient {
            client: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    /// GETs a JSON document.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, ProviderError> {
        let transport = |reason: String| ProviderError::Transport {
            url: url.to_owned(),
            reason,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| transport(e.to_string()))?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| transport(e.to_string()))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| transport("timed out".into()))?
            .map_err(|e| transport(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(ProviderError::Status {
                url: url.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        let body = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Limited::new(resp.into_body(), MAX_DOCUMENT).collect(),
        )
        .await
        .map_err(|_| transport("timed out reading the body".into()))?
        .map_err(|e| transport(e.to_string()))?
        .to_bytes();
        serde_json::from_slice(&body).map_err(|e| ProviderError::Document {
            url: url.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Sends any request (the token endpoint's POSTs); the interface `openidconnect` uses.
    pub async fn call(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, ProviderError> {
        let url = req.uri().to_string();
        let transport = |reason: String| ProviderError::Transport {
            url: url.clone(),
            reason,
        };
        let (mut parts, body) = req.into_parts();
        parts.headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("portcullis/", env!("CARGO_PKG_VERSION"))),
        );
        let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| transport("timed out".into()))?
            .map_err(|e| transport(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body =
            tokio::time::timeout(REQUEST_TIMEOUT, Limited::new(body, MAX_DOCUMENT).collect())
                .await
                .map_err(|_| transport("timed out reading the body".into()))?
                .map_err(|e| transport(e.to_string()))?
                .to_bytes();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    }

    /// Fetches and checks `issuer/.well-known/openid-configuration`.
    pub async fn discover(&self, issuer: &str) -> Result<ProviderMetadata, ProviderError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let meta: ProviderMetadata = self.get_json(&url).await?;
        if meta.issuer != issuer {
            return Err(ProviderError::IssuerMismatch {
                found: meta.issuer,
                configured: issuer.to_owned(),
            });
        }
        Ok(meta)
    }
}

impl Default for ProviderClient {
    fn default() -> Self {
        Self::new()
    }
}
