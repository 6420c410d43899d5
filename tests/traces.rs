//! Traces (`[telemetry]`) received by a real OpenTelemetry Collector: the span of each
//! request and of its upstream call, the `traceparent` the upstream receives, which
//! incoming `traceparent` is continued, and that no credential reaches the collector.
//!
//! The collector is built by `tests/support/otelcol.sh` (`.ci/run` does it before the
//! tests); see `support::otelcol`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::otelcol::{Collector, Span};
use support::{Harness, TUTORIAL_RULES};

/// A client's W3C trace context: trace `0af7…319c`, parent span `b7ad…3331`, sampled.
const PARENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN: &str = "b7ad6b7169203331";
const TRACESTATE: &str = "congo=t61rcWkgMzE";
const COOKIE_VALUE: &str = "c00kie-value-that-must-not-leak";
const QUERY_SECRET: &str = "query-secret-that-must-not-leak";

fn traceparent() -> String {
    format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01")
}

/// A gateway with the tutorial rules whose spans go to `collector`.
async fn gateway(collector: &Collector, telemetry: &str) -> Harness {
    Harness::with(&format!(
        "[telemetry]\notlp_endpoint = \"{}\"\n{telemetry}\n{TUTORIAL_RULES}",
        collector.endpoint()
    ))
    .await
}

/// `00-<trace>-<span>-<flags>` split into trace id and parent span id.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "not a traceparent: {traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

fn server_span<'a>(spans: &'a [Span], trace: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.kind == Span::SERVER)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one server span in trace {trace}: {spans:#?}"
    );
    found[0]
}

fn client_spans<'a>(spans: &'a [Span], trace: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace && s.kind == Span::CLIENT)
        .collect()
}

#[tokio::test]
async fn requests_become_spans_and_the_upstream_continues_their_trace() {
    let collector = Collector::start();
    let h = gateway(&collector, "service_name = \"portcullis-under-test\"").await;
    let token = h.token("alice", "openid");
    let auth = format!("Bearer {token}");
    let cookie = format!("portcullis={COOKIE_VALUE}; theme=dark");

    // Allowed: a bearer request (with a cookie and a query the span must not record).
    let r = h
        .get(
            &format!("/api/private?access_token={QUERY_SECRET}"),
            &[("Authorization", &auth), ("Cookie", &cookie)],
        )
        .await;
    let seen = r.seen();
    let upstream_tp = seen.header_all("traceparent");
    assert_eq!(upstream_tp.len(), 1, "{seen:?}");
    assert!(seen.header("tracestate").is_none(), "{seen:?}");
    let (allowed_trace, allowed_parent) = ids(upstream_tp[0]);

    // Denied by a rule: no upstream call, but a span with the reason.
    let before = h.upstream.count();
    let denied = h.get("/admin/users", &[("Authorization", &auth)]).await;
    assert_eq!(denied.status, 403);
    assert_eq!(h.upstream.count(), before, "a denial is never forwarded");

    // A client's own traceparent (127.0.0.1 is not trusted here): replaced, new trace.
    let tp = traceparent();
    let public = h
        .get(
            "/api/public",
            &[("traceparent", &tp), ("tracestate", TRACESTATE)],
        )
        .await;
    let seen_public = public.seen();
    assert_eq!(seen_public.header_all("traceparent").len(), 1);
    let (public_trace, public_parent) = ids(seen_public.header("traceparent").unwrap());
    assert_ne!(
        public_trace, PARENT_TRACE,
        "an untrusted trace is not continued"
    );
    assert!(
        seen_public.header("tracestate").is_none(),
        "{seen_public:?}"
    );

    // Graceful shutdown flushes the batch.
    h.gw.shutdown().await;
    let spans = collector
        .wait_for(|s| {
            s.iter()
                .filter(|s| s.service == "portcullis-under-test")
                .count()
                >= 5
        })
        .await;

    // The allowed request: a server span, and the upstream call as its child, whose id
    // is the parent the upstream was told.
    let server = server_span(&spans, &allowed_trace);
    assert_eq!(
        server.parent_span_id, "",
        "a new trace starts at the gateway"
    );
    assert_eq!(server.name, "GET /api/private");
    assert_eq!(server.str("http.request.method"), Some("GET"));
    assert_eq!(server.str("url.path"), Some("/api/private"));
    assert_eq!(server.str("http.route"), Some("/api/private"));
    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_eq!(server.str("portcullis.decision"), Some("authorized"));
    assert_eq!(server.int("portcullis.rule"), Some(1));
    assert!(server
        .double("portcullis.upstream_ms")
        .is_some_and(|ms| ms >= 0.0));
    assert_eq!(server.status_code, 0, "unset: not an error");
    let clients = client_spans(&spans, &allowed_trace);
    assert_eq!(clients.len(), 1, "{spans:#?}");
    let client = clients[0];
    assert_eq!(
        client.span_id, allowed_parent,
        "the upstream's parent is the client span"
    );
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(client.name, "GET");
    assert_eq!(client.int("http.response.status_code"), Some(200));
    assert_eq!(client.str("url.path"), Some("/api/private"), "no query");
    assert_eq!(client.str("server.address"), Some("127.0.0.1"));
    assert_eq!(
        client.int("server.port"),
        Some(i64::from(h.upstream.addr.port()))
    );

    // The denied request: its own trace, no upstream call.
    let denied_span = spans
        .iter()
        .find(|s| s.kind == Span::SERVER && s.str("url.path") == Some("/admin/users"))
        .expect("a span for the denied request");
    assert_eq!(denied_span.int("http.response.status_code"), Some(403));
    assert_eq!(denied_span.str("portcullis.decision"), Some("missing_role"));
    assert_eq!(denied_span.int("portcullis.rule"), Some(4));
    assert_eq!(denied_span.str("http.route"), Some("/admin/**"));
    assert!(!denied_span
        .attributes
        .contains_key("portcullis.upstream_ms"));
    assert!(client_spans(&spans, &denied_span.trace_id).is_empty());

    // The untrusted traceparent: a root span in a trace of the gateway's own.
    let public_server = server_span(&spans, &public_trace);
    assert_eq!(public_server.parent_span_id, "");
    assert_eq!(public_server.str("portcullis.decision"), Some("public"));
    assert_eq!(
        client_spans(&spans, &public_trace)[0].span_id,
        public_parent
    );
    assert!(spans.iter().all(|s| s.trace_id != PARENT_TRACE));

    // Nothing the client sent as a credential reached the collector, in any field.
    let exported = collector.exported_text();
    for secret in [
        token.as_str(),
        COOKIE_VALUE,
        QUERY_SECRET,
        "access_token",
        "Bearer",
    ] {
        assert!(
            !exported.contains(secret),
            "the collector received {secret:?}:\n{exported}"
        );
    }
    assert!(spans.iter().all(|s| s.service == "portcullis-under-test"));
}

#[tokio::test]
async fn a_trusted_peer_traceparent_is_continued_over_otlp_json() {
    let collector = Collector::start();
    let h = gateway(
        &collector,
        "otlp_protocol = \"http/json\"\ntrust_traceparent_from = [\"127.0.0.1/32\"]",
    )
    .await;
    let tp = traceparent();
    let r = h
        .get(
            "/api/public?x=1",
            &[
                ("traceparent", &tp),
                ("tracestate", TRACESTATE),
                // `Connection` cannot remove the header the gateway sets.
                ("Connection", "close, traceparent"),
            ],
        )
        .await;
    let seen = r.seen();
    assert_eq!(seen.header_all("traceparent").len(), 1, "{seen:?}");
    let (trace, parent) = ids(seen.header("traceparent").unwrap());
    assert_eq!(trace, PARENT_TRACE, "the trusted caller's trace goes on");
    assert_ne!(
        parent, PARENT_SPAN,
        "the upstream's parent is the gateway's span"
    );
    assert_eq!(seen.header("tracestate"), Some(TRACESTATE));

    h.gw.shutdown().await;
    let spans = collector.wait_for(|s| s.len() >= 2).await;
    let server = server_span(&spans, PARENT_TRACE);
    assert_eq!(
        server.parent_span_id, PARENT_SPAN,
        "a child of the caller's span"
    );
    assert_eq!(server.service, "portcullis", "the default service name");
    assert_eq!(server.str("url.path"), Some("/api/public"));
    let clients = client_spans(&spans, PARENT_TRACE);
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].parent_span_id, server.span_id);
    assert_eq!(clients[0].span_id, parent);
}

#[tokio::test]
async fn an_unreachable_upstream_is_an_error_on_both_spans() {
    let collector = Collector::start();
    let h = Harness::with_edit(
        &format!(
            "[telemetry]\notlp_endpoint = \"{}\"\n{TUTORIAL_RULES}",
            collector.endpoint()
        ),
        |toml| {
            // An upstream that refuses connections.
            let dead = format!("http://127.0.0.1:{}", support::free_port());
            let mut out = String::new();
            for line in toml.lines() {
                if line.starts_with("url = ") {
                    out.push_str(&format!("url = \"{dead}\"\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out
        },
    )
    .await;
    let r = h.get("/api/public", &[]).await;
    assert_eq!(r.status, 502);
    h.gw.shutdown().await;
    let spans = collector.wait_for(|s| s.len() >= 2).await;
    let server = spans.iter().find(|s| s.kind == Span::SERVER).unwrap();
    assert_eq!(server.int("http.response.status_code"), Some(502));
    assert_eq!(server.str("portcullis.fault"), Some("upstream"));
    assert_eq!(server.status_code, 2, "a 5xx is an error");
    let client = &client_spans(&spans, &server.trace_id)[0];
    assert_eq!(client.str("error.type"), Some("connect"));
    assert_eq!(client.status_code, 2);
}
