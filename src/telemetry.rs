//! Traces: one span per request and one for its upstream call, exported over OTLP/HTTP,
//! with W3C Trace Context (`traceparent`, `tracestate`) sent to the upstream.
//!
//! Only with `[telemetry] otlp_endpoint`: without it the gateway holds no [`Telemetry`],
//! so no exporter, no background task, and no span object on the request path (a request
//! costs one `Option` check).
//!
//! ```text
//! request in   -> Telemetry::request: server span; parent = the incoming traceparent
//!                 from a trusted peer (telemetry.trust_traceparent_from), else a new trace
//! upstream     -> RequestSpan::upstream_call: client span, child of the request's;
//!                 UpstreamSpan::propagate replaces traceparent/tracestate for the upstream
//! response     -> RequestSpan::finish: status, decision, rule, upstream time
//! shutdown     -> Telemetry::shutdown: the batch is flushed to the collector
//! ```
//!
//! Attributes are what the access log already says, and never a header value: no token,
//! cookie, `Authorization` or query string can reach the collector.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};
use ipnet::IpNet;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{span_processor_with_async_runtime, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::{self, OtlpProtocol, TelemetrySettings};
use crate::context::RequestContext;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace pipeline of a gateway whose `[telemetry]` names a collector. Fixed at start:
/// a reload cannot turn it on, off, or point it elsewhere.
pub struct Telemetry {
    /// Owns the batch span processor (a tokio task) and its exporter.
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// `telemetry.trust_traceparent_from`.
    trusted: Vec<IpNet>,
    /// Set once the batch has been flushed; `Drop` flushes otherwise.
    shut_down: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Builds the exporter and starts the batch task. Must run inside the tokio runtime.
    pub fn start(s: &TelemetrySettings) -> Result<Telemetry, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("telemetry: the trace exporter needs the async runtime".to_owned());
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(collector_client(s.timeout)?)
            .with_endpoint(s.traces_url.as_str())
            .with_protocol(match s.protocol {
                OtlpProtocol::Protobuf => Protocol::HttpBinary,
                OtlpProtocol::Json => Protocol::HttpJson,
            })
            .with_timeout(s.timeout)
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
        let batch = span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(s.service_name.clone())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("portcullis");
        Ok(Telemetry {
            provider,
            tracer,
            trusted: s.trust_traceparent_from.clone(),
            shut_down: Default::default(),
        })
    }

    /// Starts the server span of a request from `peer`. Its parent is the request's
    /// `traceparent` when `peer` is trusted and the header is valid and single; otherwise
    /// the span starts a new trace.
    pub fn request(
        &self,
        peer: IpAddr,
        tls: bool,
        method: &Method,
        version: Version,
        headers: &HeaderMap,
    ) -> RequestSpan {
        let parent = if config::peer_in(&self.trusted, peer)
            && headers.get_all(&TRACEPARENT).iter().count() == 1
        {
            TraceContextPropagator::new().extract(&HeaderExtractor(headers))
        } else {
            Context::new()
        };
        let method = method_attribute(method);
        let span = self
            .tracer
            .span_builder(span_name(method))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.scheme", if tls { "https" } else { "http" }),
                KeyValue::new("network.protocol.version", protocol_version(version)),
                KeyValue::new("network.peer.address", peer.to_string()),
            ])
            .start_with_context(&self.tracer, &parent);
        RequestSpan(Box::new(Request {
            span,
            tracer: self.tracer.clone(),
            method,
        }))
    }

    /// Exports the spans still batched (waits for the collector, at most its timeout).
    pub async fn shutdown(&self) {
        if self
            .shut_down
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        // The SDK's shutdown blocks until the batch task (on this runtime) has exported,
        // so it waits on a blocking thread, never on a runtime thread.
        let provider = self.provider.clone();
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => tracing::debug!("trace exporter flushed and stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the trace exporter did not stop cleanly"),
            Err(e) => tracing::warn!(error = %e, "the trace exporter shutdown failed"),
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if !self.shut_down.load(std::sync::atomic::Ordering::Acquire) {
            // Dropping the SDK's provider flushes and blocks for it; on a runtime thread
            // that could wait for a task the same thread has to run. A thread of its own
            // waits instead (and ends at once if the runtime is gone).
            let provider = self.provider.clone();
            let _ = std::thread::Builder::new()
                .name("portcullis-trace-flush".into())
                .spawn(move || drop(provider.shutdown()));
        }
    }
}

/// The server span of one request, from its arrival to its response. Boxed: the request's
/// future holds an `Option<RequestSpan>`, which is then one word when there is no span.
pub struct RequestSpan(Box<Request>);

struct Request {
    span: opentelemetry_sdk::trace::Span,
    tracer: SdkTracer,
    method: &'static str,
}

impl RequestSpan {
    /// Starts the client span of the call to `upstream` (the request's upstream URI, whose
    /// path is recorded and its query never), a child of this request's span.
    pub fn upstream_call(&self, upstream: &http::Uri) -> UpstreamSpan {
        let this = &self.0;
        let parent = Context::new().with_remote_span_context(this.span.span_context().clone());
        let mut attributes = vec![
            KeyValue::new("http.request.method", this.method),
            KeyValue::new("url.path", upstream.path().to_owned()),
        ];
        if let Some(host) = upstream.host() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = upstream.port_u16().or(match upstream.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        }) {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let span = this
            .tracer
            .span_builder(span_name(this.method))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&this.tracer, &parent);
        UpstreamSpan { span }
    }

    /// Records what the request came to, and ends the span.
    pub fn finish(self, ctx: &RequestContext, status: u16, facts: Finished<'_>) {
        let mut this = self.0;
        let method = this.method;
        let s = &mut this.span;
        if let Some(route) = facts.route {
            s.update_name(format!("{} {route}", span_name(method)));
            s.set_attribute(KeyValue::new("http.route", route.to_owned()));
        }
        if let Some(path) = &ctx.path {
            s.set_attribute(KeyValue::new("url.path", path.clone()));
        }
        s.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        s.set_attribute(KeyValue::new("portcullis.decision", ctx.reason));
        if let Some(rule) = ctx.rule {
            s.set_attribute(KeyValue::new("portcullis.rule", rule as i64));
        }
        if let Some(fault) = ctx.fault {
            s.set_attribute(KeyValue::new("portcullis.fault", fault));
        }
        if let Some(upstream) = facts.upstream {
            s.set_attribute(KeyValue::new("portcullis.upstream", upstream.to_owned()));
        }
        if let Some(took) = ctx.upstream_time {
            s.set_attribute(KeyValue::new("portcullis.upstream_ms", millis(took)));
        }
        // Server spans: a 4xx is the client's doing, only a 5xx is an error.
        if status >= 500 {
            s.set_attribute(KeyValue::new("error.type", status.to_string()));
            s.set_status(Status::error(ctx.reason));
        }
        s.end();
    }
}

/// What the pipeline knows about a finished request beyond its context.
#[derive(Debug, Default, Clone, Copy)]
pub struct Finished<'a> {
    /// The matched rule's `path` as written (`/admin/**`), the span's route.
    pub route: Option<&'a str>,
    /// The named upstream that received it (`None`: the default or none).
    pub upstream: Option<&'a str>,
}

/// The client span of one upstream call.
pub struct UpstreamSpan {
    span: opentelemetry_sdk::trace::Span,
}

impl UpstreamSpan {
    /// Replaces every `traceparent` and `tracestate` of the request to the upstream with
    /// this span's context (the trusted caller's `tracestate` is carried on).
    pub fn propagate(&self, headers: &mut HeaderMap) {
        headers.remove(&TRACEPARENT);
        headers.remove(&TRACESTATE);
        let cx = Context::new().with_remote_span_context(self.span.span_context().clone());
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }

    /// Ends the span with the upstream's status, or the class of its failure.
    pub fn finish(mut self, outcome: Result<u16, &'static str>) {
        match outcome {
            Ok(status) => {
                self.span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                if status >= 400 {
                    self.span
                        .set_attribute(KeyValue::new("error.type", status.to_string()));
                    self.span.set_status(Status::error(""));
                }
            }
            Err(kind) => {
                self.span.set_attribute(KeyValue::new("error.type", kind));
                self.span.set_status(Status::error(kind));
            }
        }
        self.span.end();
    }

    /// This span's context (for tests and logs).
    pub fn span_context(&self) -> &SpanContext {
        self.span.span_context()
    }
}

/// The method as the HTTP semantic conventions name it: one of the RFC 9110 methods and
/// PATCH, else `_OTHER` (a client cannot fill the collector with invented names).
fn method_attribute(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

fn span_name(method: &'static str) -> &'static str {
    if method == "_OTHER" {
        "HTTP"
    } else {
        method
    }
}

fn protocol_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The client that carries spans to the collector: hyper with rustls (the gateway's own
/// TLS stack, the system's roots), so `https://` collectors work without another stack.
fn collector_client(
    timeout: Duration,
) -> Result<
    opentelemetry_http::hyper::HyperClient<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    >,
    String,
> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("telemetry: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(opentelemetry_http::hyper::HyperClient::new(
        https, timeout, None,
    ))
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is not sent (W3C Trace Context §3.3).
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests;
