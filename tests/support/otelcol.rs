//! A real OpenTelemetry Collector (built by `tests/support/otelcol.sh` from Go modules) on
//! a free port of 127.0.0.1: the OTLP/HTTP receiver, and the file exporter writing every
//! span it receives as OTLP JSON lines to a temporary directory. Stopped by its PID when
//! dropped. Without the binary the tests that use it fail; they never pass silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Collector {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// `PORTCULLIS_OTELCOL`, else the collector `otelcol.sh` has already built and cached.
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTCULLIS_OTELCOL") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "PORTCULLIS_OTELCOL names {}, which does not exist",
            bin.display()
        );
        return bin;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/otelcol.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--cached")
        .output()
        .expect("bash runs tests/support/otelcol.sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && !path.is_empty(),
        "these tests send traces to a real OpenTelemetry Collector, but none is built. \
         Run `bash tests/support/otelcol.sh` once (it builds one from Go modules in a few \
         minutes and caches it under ~/.cache/portcullis/otelcol), or set \
         PORTCULLIS_OTELCOL to an otelcol binary with the otlp receiver and file exporter."
    );
    PathBuf::from(path)
}

impl Collector {
    /// Starts the collector and waits until its OTLP/HTTP receiver accepts connections.
    pub fn start() -> Collector {
        let port = super::free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  file:
    path: {spans}
    flush_interval: 50ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#,
            spans = dir.path().join("spans.jsonl").display()
        );
        let config_path = dir.path().join("otelcol.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("otelcol.log")).unwrap();
        let child = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the collector starts");
        let mut c = Collector { child, port, dir };
        c.wait_listening();
        c
    }

    /// `[telemetry]` for a gateway that sends its spans here.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("otelcol.log")).unwrap_or_default()
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the collector exited ({status}):\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the collector did not listen on {} within 20 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the file exporter has written so far, as received.
    pub fn exported_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("spans.jsonl")).unwrap_or_default()
    }

    /// Every span exported so far.
    pub fn spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        for line in self
            .exported_text()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("the file exporter wrote no JSON ({e}): {line}"));
            for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                let resource = attributes(&rs["resource"]["attributes"]);
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        out.push(Span {
                            service: resource
                                .get("service.name")
                                .and_then(|v| v.as_str())
                                .unwrap_or_default()
                                .to_owned(),
                            trace_id: text(&s["traceId"]),
                            span_id: text(&s["spanId"]),
                            parent_span_id: text(&s["parentSpanId"]),
                            name: text(&s["name"]),
                            kind: s["kind"].as_i64().unwrap_or(0),
                            status_code: s["status"]["code"].as_i64().unwrap_or(0),
                            attributes: attributes(&s["attributes"]),
                        });
                    }
                }
            }
        }
        out
    }

    /// Polls the exported spans until `enough` says they are all there (at most 20 s).
    pub async fn wait_for(&self, enough: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if enough(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the collector did not receive the expected spans within 20 s; it has:\n{spans:#?}\nits log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One exported span, as OTLP JSON spells it (ids in hex; kind 2 = server, 3 = client;
/// status code 2 = error).
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub kind: i64,
    pub status_code: i64,
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl Span {
    pub const SERVER: i64 = 2;
    pub const CLIENT: i64 = 3;

    pub fn str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(|v| v.as_str())
    }

    /// An integer attribute (OTLP JSON writes int64 values as strings).
    pub fn int(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(|v| match v {
            serde_json::Value::String(s) => s.parse().ok(),
            v => v.as_i64(),
        })
    }

    pub fn double(&self, key: &str) -> Option<f64> {
        self.attributes.get(key).and_then(|v| v.as_f64())
    }
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// OTLP's `[{key, value: {stringValue | intValue | doubleValue | boolValue}}]` as a map.
fn attributes(list: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for kv in list.as_array().into_iter().flatten() {
        let key = text(&kv["key"]);
        let value = kv["value"]
            .as_object()
            .and_then(|o| o.values().next().cloned())
            .unwrap_or(serde_json::Value::Null);
        out.insert(key, value);
    }
    out
}
