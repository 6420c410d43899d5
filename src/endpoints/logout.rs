//! `GET|POST /oauth2/logout?rd=URL`: ends the session here and at the provider.
//!
//! A cross-site request (by `Sec-Fetch-Site`, else `Origin`/`Referer` against
//! `public_url`) ends nothing: it gets a page whose button POSTs from the gateway's own
//! origin, so another site cannot log users out behind their backs.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use url::Url;

use super::redirect::{query_param, validate};
use crate::auth::session::SessionLookup;
use crate::auth::session::{SealedSession, SessionCodec};
use crate::auth::store::RedisStore;
use crate::context::RequestContext;
use crate::forward::headers::SEC_FETCH_SITE;
use crate::gateway::{Gateway, Runtime};
use crate::response::{escape_html, full, html_page, redirect, Body, Denial};

fn cross_site(headers: &HeaderMap, public: &Url) -> bool {
    let get = |h: &http::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get(&SEC_FETCH_SITE) {
        return !matches!(site, "same-origin" | "none");
    }
    let origin = public.origin().ascii_serialization();
    if let Some(o) = get(&header::ORIGIN) {
        return o != origin;
    }
    if let Some(r) = get(&header::REFERER) {
        return Url::parse(r)
            .map(|u| u.origin() != public.origin())
            .unwrap_or(true);
    }
    false
}

pub async fn handle(
    gw: &Gateway,
    rt: &Runtime,
    ctx: &mut RequestContext,
    req: Request<Incoming>,
) -> Result<Response<Body>, Denial> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(Denial::MethodNotAllowed);
    }
    let public = &rt.config.server.public_url;
    let rd = validate(query_param(req.uri().query(), "rd").as_deref(), public);
    if cross_site(req.headers(), public) {
        ctx.reason = "logout_confirm";
        return Ok(confirmation(&rt.config.server.auth_prefix, &rd));
    }

    let mut id_token = None;
    if let (Some(codec), Some(store)) = (&rt.session, &gw.store) {
        id_token = end_stored(gw, codec, store, ctx, req.headers()).await?;
    } else if let Some(codec) = &rt.session {
        match codec.open(req.headers()) {
            SessionLookup::Valid { data, chunks, .. } => {
                ctx.set_cookies.extend(codec.clear(chunks));
                // On disk (with `session.state_dir`) before the answer; if that failed, the
                // user is told the logout did not stick (503) instead of a redirect that
                // says it did. The session stays revoked on this instance until a restart.
                codec
                    .revoke(&data.sid, data.exp)
                    .map_err(|_| Denial::LogoutNotRecorded)?;
                gw.metrics.session_ended("logout");
                id_token = Some(data.id_token);
            }
            SessionLookup::Invalid { chunks } => ctx.set_cookies.extend(codec.clear(chunks)),
            SessionLookup::None => {}
        }
    }
    ctx.reason = "logout";
    let back = format!("{}{}", public.as_str().trim_end_matches('/'), rd);
    let end_session = gw
        .jwks
        .metadata()
        .and_then(|m| m.end_session_endpoint.clone());
    match end_session.and_then(|e| Url::parse(&e).ok()) {
        Some(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(t) = &id_token {
                    q.append_pair("id_token_hint", t);
                }
                q.append_pair("client_id", rt.oidc.client_id());
                q.append_pair("post_logout_redirect_uri", &back);
            }
            Ok(redirect(url.as_str()))
        }
        None => Ok(redirect(&rd)),
    }
}

/// A page that asks before logging out: a cross-site request may not end the session by
/// itself.
fn confirmation(auth_prefix: &str, rd: &str) -> Response<Body> {
    let action = format!(
        "{}/logout?rd={}",
        auth_prefix,
        url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
    );
    let form = format!(
        "<form method=\"post\" action=\"{}\"><button type=\"submit\">Log out</button></form>",
        escape_html(&action)
    );
    let mut resp = Response::new(full(html_page(
        StatusCode::OK,
        "Do you want to log out?",
        Some(&form),
    )));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Logout with the Redis store: the session is deleted from the store (so no replica
/// serves it again) before the answer is sent. Returns its ID token for the provider.
async fn end_stored(
    gw: &Gateway,
    codec: &SessionCodec,
    store: &RedisStore,
    ctx: &mut RequestContext,
    headers: &HeaderMap,
) -> Result<Option<String>, Denial> {
    let (sealed, chunks) = match codec.read(headers) {
        SealedSession::None => return Ok(None),
        SealedSession::Malformed { chunks } => {
            ctx.set_cookies.extend(codec.clear(chunks));
            return Ok(None);
        }
        SealedSession::Sealed { sealed, chunks } => (sealed, chunks),
    };
    ctx.set_cookies.extend(codec.clear(chunks));
    let Some((r, _)) = codec.open_ref(&sealed) else {
        return Ok(None);
    };
    let unavailable = |_| Denial::StoreUnavailable;
    let stored = store.get(&r.sid).await.map_err(unavailable)?;
    if store.delete(&r.sid).await.map_err(unavailable)? {
        gw.metrics.session_ended("logout");
    }
    Ok(stored
        .and_then(|v| codec.open_stored(&r.sid, &v))
        .map(|d| d.id_token))
}
