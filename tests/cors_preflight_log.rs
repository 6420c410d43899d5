//! The access log names an allowed CORS preflight (`decision = "cors_preflight"`). Its
//! own test binary: it installs a thread-local subscriber, which other tests running in
//! parallel in the same process would race with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::Capture;

#[tokio::test]
async fn the_access_log_and_metrics_name_the_preflight() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = support::Harness::with_edit(
        "[[rule]]\npath = \"/api/**\"\ncors_preflight = \"allow\"\n",
        support::shared_runtime,
    )
    .await;
    assert_eq!(
        support::raw(h.addr(), format!("OPTIONS /api/x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nOrigin: https://spa.example\r\nAccess-Control-Request-Method: DELETE\r\n\r\n", h.addr()).as_bytes())
            .await
            .status,
        200
    );
    // The line is written once the response is on its way: wait for it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (logs, line) = loop {
        let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let line = logs
            .lines()
            .find(|l| l.contains("portcullis::access") && l.contains("/api/x"))
            .map(str::to_owned);
        match line {
            Some(line) => break (logs, line),
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            None => panic!("no access-log line:\n{logs}"),
        }
    };
    let _ = logs;
    let line = line.as_str();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fields"]["decision"], "cors_preflight", "{line}");
    assert_eq!(v["fields"]["method"], "OPTIONS", "{line}");
    let metrics = support::get(h.gw.admin_addr, "/metrics", &[]).await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portcullis_requests_total")
                && l.contains("decision=\"cors_preflight\"")),
        "{metrics}"
    );
    h.gw.shutdown().await;
}
