//! The request the upstream receives, and the answer streamed back.
//!
//! ```text
//! strip hop-by-hop -> strip owned headers (client copies) -> strip gateway cookies
//!   -> Host = the authority the rules saw -> X-Forwarded-* -> identity headers
//!   (and the signed assertion, `aud` = this upstream's origin)
//!   -> upstream URI (normalized path + query) -> send -> 101? tunnel : strip hop-by-hop
//! ```

use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use ipnet::IpNet;

use super::headers::{self as hdr, HeaderPlan};
use super::upstream::{Upstream, UpstreamBody, UpstreamError};
use super::websocket::Watch;
use super::{forwarded, websocket};
use crate::assertion::Signer;
use crate::auth::Identity;
use crate::context::IpText;
use crate::path::NormalizedPath;
use crate::telemetry::RequestSpan;

/// Why a request was not forwarded, or its answer not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// A cookie-authenticated WebSocket upgrade from another origin: 403.
    #[error("a websocket upgrade from another origin")]
    WebSocketOrigin,
    /// The normalized path and query make no valid upstream URI: 400.
    #[error("the request target cannot be forwarded")]
    Target,
    /// The upstream switched protocols though the client did not ask for it: 502.
    #[error("the upstream switched protocols unasked")]
    UnaskedSwitch,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Where and how a request is forwarded.
pub struct Route<'a> {
    pub plan: &'a HeaderPlan,
    /// `headers.assertion`: signs the identity assertion for this upstream.
    pub assertion: Option<&'a Signer>,
    pub upstream: &'a Upstream,
    pub trusted_proxies: &'a [IpNet],
    /// `public_url`'s origin, for WebSocket upgrades.
    pub public_origin: &'a str,
    pub peer: IpAddr,
    /// `peer` as text.
    pub peer_ip: IpText,
    pub tls: bool,
}

/// Rewrites the request for the upstream and sends it; returns its answer (streaming) and
/// how long the upstream took to answer. With a `trace`, the call is its child span and
/// the upstream receives that span's `traceparent`.
/// `watch` is asked only when the upstream switched to a WebSocket: how the tunnel keeps
/// checking the session it was opened on.
pub async fn forward(
    route: &Route<'_>,
    mut req: Request<UpstreamBody>,
    path: &NormalizedPath,
    identity: Option<&Identity>,
    trace: Option<&RequestSpan>,
    watch: impl FnOnce() -> Option<Watch>,
) -> Result<(Response<Incoming>, Duration), ForwardError> {
    let upgrade = hdr::is_websocket_upgrade(req.headers());
    if upgrade
        && identity.is_some_and(|id| !id.from_bearer)
        && !websocket::origin_allowed(req.headers(), route.public_origin)
    {
        return Err(ForwardError::WebSocketOrigin);
    }
    let client_upgrade = upgrade.then(|| websocket::ClientUpgrade::take(&mut req));
    let query = req.uri().query().map(str::to_owned);
    let authority = req.uri().authority().cloned();
    let (mut parts, body) = req.into_parts();

    let h = &mut parts.headers;
    hdr::strip_hop_by_hop(h);
    let trusted = forwarded::is_trusted(route.trusted_proxies, route.peer);
    let stripped = route.plan.strip_owned(h, trusted);
    if !stripped.is_empty() {
        tracing::debug!(headers = ?stripped, "removed client-supplied headers the gateway owns");
    }
    route.plan.strip_gateway_cookies(h);
    // The host the rules saw is the host the upstream gets: the URI's authority wins.
    if let Some(v) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
        h.insert(header::HOST, v);
    }
    let scheme = if route.tls { "https" } else { "http" };
    forwarded::apply(h, route.peer_ip.as_str(), trusted, scheme, None);
    if let Some(id) = identity {
        route.plan.set_identity(h, id);
        if let Some(signer) = route.assertion {
            route
                .plan
                .set_assertion(h, id, signer, &route.upstream.origin);
        }
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    parts.uri = route
        .upstream
        .uri_for(path.as_str(), query.as_deref())
        .ok_or(ForwardError::Target)?;
    parts.version = route.upstream.version;
    if parts.version == Version::HTTP_2 {
        // Over HTTP/2 the upstream's address is the `:authority`; the client's host
        // travels in X-Forwarded-Host.
        parts.headers.remove(header::HOST);
    }
    // After the hop-by-hop pass, so `Connection: traceparent` cannot remove it.
    let call = trace.map(|t| t.upstream_call(&parts.uri));
    if let Some(c) = &call {
        c.propagate(&mut parts.headers);
    }

    let sent = route.upstream.send(Request::from_parts(parts, body)).await;
    if let Some(c) = call {
        c.finish(match &sent {
            Ok((resp, _)) => Ok(resp.status().as_u16()),
            Err(e) => Err(e.kind()),
        });
    }
    let (mut resp, took) = sent?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // An upstream may not switch protocols the client did not ask for.
        let client_upgrade = client_upgrade.ok_or(ForwardError::UnaskedSwitch)?;
        websocket::tunnel(client_upgrade, hyper::upgrade::on(&mut resp), watch());
    } else {
        hdr::strip_hop_by_hop(resp.headers_mut());
    }
    Ok((resp, took))
}
