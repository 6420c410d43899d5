use std::net::{IpAddr, Ipv4Addr};

use super::*;

/// A pipeline whose collector is never reached (spans are dropped on export).
fn telemetry(trusted: &[&str]) -> Telemetry {
    Telemetry::start(&TelemetrySettings {
        traces_url: url::Url::parse("http://127.0.0.1:9/v1/traces").unwrap(),
        protocol: OtlpProtocol::Protobuf,
        timeout: Duration::from_millis(200),
        service_name: "portcullis-test".into(),
        trust_traceparent_from: trusted.iter().map(|n| n.parse().unwrap()).collect(),
    })
    .unwrap()
}

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// The upstream's `traceparent` and `tracestate` for a request with these headers.
fn upstream_sees(t: &Telemetry, peer: IpAddr, incoming: &HeaderMap) -> HeaderMap {
    let span = t.request(peer, false, &Method::GET, Version::HTTP_11, incoming);
    let call = span.upstream_call(&"http://127.0.0.1:3000/x?q=secret".parse().unwrap());
    let mut out = incoming.clone();
    call.propagate(&mut out);
    assert_eq!(
        call.span_context().trace_id(),
        span.0.span.span_context().trace_id(),
        "the upstream call is in the request's trace"
    );
    out
}

fn trace_id(h: &HeaderMap) -> &str {
    let tp = h.get(&TRACEPARENT).unwrap().to_str().unwrap();
    tp.split('-').nth(1).unwrap()
}

#[tokio::test]
async fn a_trusted_peer_continues_its_trace_and_tracestate() {
    let t = telemetry(&["10.0.0.0/8"]);
    let h = headers(&[("traceparent", PARENT), ("tracestate", "vendor=abc")]);
    let out = upstream_sees(&t, PEER, &h);
    assert_eq!(out.get_all(&TRACEPARENT).iter().count(), 1);
    assert_eq!(trace_id(&out), "0af7651916cd43dd8448eb211c80319c");
    assert_ne!(
        out[&TRACEPARENT], PARENT,
        "the upstream's parent is the gateway's span"
    );
    assert_eq!(out[&TRACESTATE], "vendor=abc");
    t.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_peer_gets_a_new_trace_and_loses_its_tracestate() {
    let t = telemetry(&["192.168.0.0/16"]);
    let h = headers(&[("traceparent", PARENT), ("tracestate", "vendor=abc")]);
    let out = upstream_sees(&t, PEER, &h);
    assert_eq!(out.get_all(&TRACEPARENT).iter().count(), 1);
    assert_ne!(trace_id(&out), "0af7651916cd43dd8448eb211c80319c");
    assert!(out.get(&TRACESTATE).is_none());
    t.shutdown().await;
}

#[tokio::test]
async fn two_traceparents_or_a_malformed_one_start_a_new_trace() {
    let t = telemetry(&["10.0.0.0/8"]);
    for h in [
        headers(&[("traceparent", PARENT), ("traceparent", PARENT)]),
        headers(&[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-zzzz-01")]),
        headers(&[(
            "traceparent",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        )]),
    ] {
        let out = upstream_sees(&t, PEER, &h);
        assert_eq!(out.get_all(&TRACEPARENT).iter().count(), 1);
        assert_ne!(trace_id(&out), "0af7651916cd43dd8448eb211c80319c");
        assert_ne!(trace_id(&out), "00000000000000000000000000000000");
    }
    t.shutdown().await;
}

#[tokio::test]
async fn without_any_incoming_context_a_trace_starts_here() {
    let t = telemetry(&[]);
    let out = upstream_sees(&t, PEER, &HeaderMap::new());
    let tp = out[&TRACEPARENT].to_str().unwrap().to_owned();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "01", "sampled");
    t.shutdown().await;
}

#[test]
fn methods_outside_the_standard_set_are_other() {
    assert_eq!(method_attribute(&Method::GET), "GET");
    assert_eq!(method_attribute(&Method::PATCH), "PATCH");
    let odd = Method::from_bytes(b"SECRETTOKEN123").unwrap();
    assert_eq!(method_attribute(&odd), "_OTHER");
    assert_eq!(span_name(method_attribute(&odd)), "HTTP");
}

#[test]
fn outside_the_runtime_the_exporter_is_refused() {
    let err = Telemetry::start(&TelemetrySettings {
        traces_url: url::Url::parse("http://127.0.0.1:9/v1/traces").unwrap(),
        protocol: OtlpProtocol::Json,
        timeout: Duration::from_secs(1),
        service_name: "x".into(),
        trust_traceparent_from: vec![],
    })
    .unwrap_err();
    assert!(err.contains("async runtime"), "{err}");
}

fn settings(server: &str, telemetry: &str) -> Option<TelemetrySettings> {
    use figment::providers::{Format, Toml};
    let toml = format!(
        "[server]\n{server}\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n[oidc]\nissuer = \"http://127.0.0.1:1/realms/x\"\nclient_id = \"gateway\"\n[telemetry]\n{telemetry}\n[[rule]]\npath = \"/**\"\naccess = \"public\"\n"
    );
    crate::config::load_figment(figment::Figment::from(Toml::string(&toml)))
        .unwrap()
        .telemetry
}

#[test]
fn traces_go_to_the_endpoint_plus_v1_traces() {
    for (endpoint, url) in [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        (
            "https://otel.example/otlp/",
            "https://otel.example/otlp/v1/traces",
        ),
        (
            "https://otel.example/otlp",
            "https://otel.example/otlp/v1/traces",
        ),
    ] {
        let s = settings("", &format!("otlp_endpoint = \"{endpoint}\"")).unwrap();
        assert_eq!(s.traces_url.as_str(), url);
        assert_eq!(s.protocol, OtlpProtocol::Protobuf);
        assert_eq!(s.service_name, "portcullis");
        assert_eq!(s.timeout, Duration::from_secs(10));
    }
    assert!(settings("", "").is_none(), "no endpoint, no telemetry");
}

#[test]
fn traceparents_are_trusted_from_the_trusted_proxies_unless_told_otherwise() {
    let proxies = "trusted_proxies = [\"10.0.0.0/8\"]";
    let endpoint = "otlp_endpoint = \"http://127.0.0.1:4318\"";
    let s = settings(proxies, endpoint).unwrap();
    assert_eq!(
        s.trust_traceparent_from,
        vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
    );
    let s = settings(proxies, &format!("{endpoint}\ntrust_traceparent_from = []")).unwrap();
    assert!(s.trust_traceparent_from.is_empty());
    let s = settings(
        proxies,
        &format!("{endpoint}\ntrust_traceparent_from = [\"192.168.1.7\"]"),
    )
    .unwrap();
    assert_eq!(
        s.trust_traceparent_from,
        vec!["192.168.1.7/32".parse::<IpNet>().unwrap()]
    );
}
