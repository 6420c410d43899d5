//! The admin listener: `/healthz`, `/readyz`, `/metrics`, and with `server.admin_token`
//! the session administration under `/sessions` ([`crate::auth::sessions`]). Never on the
//! main listener.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use http::Method;

use crate::auth::sessions::Admin;
use crate::config::Secret;
use crate::endpoints::redirect::query_param;
use crate::gateway::Gateway;

/// Why `/readyz` is 503: every issuer whose keys are missing, and the session store.
fn not_ready(gw: &Gateway) -> String {
    let mut why = Vec::new();
    for k in gw.issuer_keys.iter().filter(|k| !k.is_ready()) {
        why.push(format!(
            "the keys of {} have not been fetched yet",
            k.issuer()
        ));
    }
    if gw.store.as_ref().is_some_and(|s| !s.is_healthy()) {
        why.push("the session store does not answer".to_owned());
    }
    format!("not ready: {}\n", why.join("; "))
}

async fn answer(gw: &Gateway, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/sessions" || path.starts_with("/sessions/") {
        return sessions(gw, req).await;
    }
    let (status, content_type, body) = match path {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if gw.is_ready() => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", not_ready(gw)),
        "/metrics" => {
            gw.observe_gauges();
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                gw.metrics.encode(),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn error(status: StatusCode, code: &str, desc: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({"error": code, "error_description": desc}),
    )
}

/// Does the request carry `Authorization: Bearer <admin_token>` (compared in constant
/// time)?
fn is_admin(req: &Request<Incoming>, token: &Secret) -> bool {
    use subtle::ConstantTimeEq;
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(given) = v
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    else {
        return false;
    };
    bool::from(given.as_bytes().ct_eq(token.expose().as_bytes()))
}

/// `GET /sessions?sub=SUB`, `DELETE /sessions?sub=SUB`, `DELETE /sessions/<sid>`.
async fn sessions(gw: &Gateway, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let rt = gw.runtime();
    let Some(token) = &rt.config.server.admin_token else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "set server.admin_token to enable /sessions",
        );
    };
    if !is_admin(req, token) {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin token is required",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
        );
        return resp;
    }
    let Some(codec) = &rt.session else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no [session] is configured",
        );
    };
    let admin = Admin {
        codec,
        store: gw.store.as_deref(),
        local: &gw.local_sessions,
        revocations: &gw.revocations,
    };
    let sub = query_param(req.uri().query(), "sub").filter(|s| !s.is_empty());
    let one = req.uri().path().strip_prefix("/sessions/");
    let result = match (req.method(), one, sub.as_deref()) {
        (&Method::GET, None, Some(sub)) => admin
            .list(sub)
            .await
            .map(|list| json(StatusCode::OK, serde_json::json!(list))),
        (&Method::DELETE, None, Some(sub)) => admin.end_subject(sub).await.map(|n| ended(gw, n)),
        (&Method::DELETE, Some(sid), _) if !sid.is_empty() && !sid.contains('/') => {
            admin.end_one(sid).await.map(|n| ended(gw, n))
        }
        (&Method::GET | &Method::DELETE, None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the query needs sub=SUBJECT",
            );
        }
        (&Method::GET | &Method::DELETE, _, _) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such session resource",
            );
        }
        _ => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "GET or DELETE",
            )
        }
    };
    result.unwrap_or_else(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the session store cannot be reached; try again shortly",
        )
    })
}

fn ended(gw: &Gateway, n: usize) -> Response<Full<Bytes>> {
    for _ in 0..n {
        gw.metrics.session_ended("admin");
    }
    json(StatusCode::OK, serde_json::json!({ "ended": n }))
}

pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&gw, &req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
