use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::prelude::*;

use super::*;

/// A writer that keeps what it is given.
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<u8>>>);

impl Write for Kept {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Kept {
    type Writer = Kept;
    fn make_writer(&'a self) -> Kept {
        self.clone()
    }
}

impl Kept {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A fixed clock for tracing-subscriber's line, at the access layer's second.
struct At;
impl FormatTime for At {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str("T")
    }
}

/// An access event with awkward values, as the pipeline logs one.
fn access_event(subject: &str, path: &str) {
    tracing::info!(
        target: ACCESS_TARGET,
        method = "GET",
        path,
        status = 200u64,
        decision = "authorized",
        rule = -1i64,
        subject,
        client = "127.0.0.1",
        upstream_ms = 1.5,
        duration_ms = 12.125,
        ok = true,
    );
}

/// The access layer's line and tracing-subscriber's line for the same event, with the
/// timestamp cut off both.
fn both(json: bool, subject: &str, path: &str) -> (String, String) {
    let reference = Kept::default();
    let ours = Kept::default();
    let (sink, writer) = Sink::start(ours.clone());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_timer(At)
        .with_writer(reference.clone());
    let registry = tracing_subscriber::registry().with(AccessLayer::new(sink.clone(), json));
    if json {
        let s = registry.with(fmt.json().flatten_event(true));
        tracing::subscriber::with_default(s, || access_event(subject, path));
    } else {
        let s = registry.with(fmt);
        tracing::subscriber::with_default(s, || access_event(subject, path));
    }
    drop(LogGuard { sink, writer });
    let ours = ours.text();
    let reference = reference.text();
    let cut = |s: &str, json: bool| {
        if json {
            let v: serde_json::Value = serde_json::from_str(s.trim_end()).unwrap();
            let mut v = v.as_object().unwrap().clone();
            v.remove("timestamp");
            serde_json::to_string(&v).unwrap()
        } else {
            s.split_once(' ').unwrap().1.to_owned()
        }
    };
    (cut(&ours, json), cut(&reference, json))
}

#[test]
fn the_text_line_is_tracing_subscribers_line() {
    let (ours, reference) = both(false, "alice", "/api/x");
    assert_eq!(ours, reference);
    assert!(ours.starts_with(" INFO portcullis::access: method=\"GET\" path=\"/api/x\""));
    assert!(ours.ends_with("duration_ms=12.125 ok=true\n"), "{ours}");
}

#[test]
fn the_json_line_is_tracing_subscribers_line() {
    let (ours, reference) = both(true, "alice", "/api/x");
    assert_eq!(ours, reference);
}

/// Values that could split, forge or garble a line if written as they are.
const HOSTILE: [&str; 9] = [
    "a\"b",
    "back\\slash",
    "new\nline status=500",
    "cr\rtab\t",
    "nul\0bell\u{7}del\u{7f}",
    "c1\u{85}\u{9b}",
    "sep\u{2028}\u{2029}",
    "ünïcödé ☃",
    "",
];

#[test]
fn hostile_values_are_escaped_as_tracing_subscriber_escapes_them() {
    for h in HOSTILE {
        for json in [false, true] {
            let (ours, reference) = both(json, h, "/p");
            assert_eq!(ours, reference, "json={json} value={h:?}");
            assert_eq!(ours.matches('\n').count(), usize::from(!json));
        }
    }
}

#[test]
fn timestamps_are_rfc3339_in_utc_with_microseconds() {
    let at = |secs: u64, micros: u64| {
        let mut out = Vec::new();
        timestamp(
            &mut out,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
        );
        String::from_utf8(out).unwrap()
    };
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
    assert_eq!(at(1_796_240_474, 123_456), "2026-12-02T19:41:14.123456Z");
    assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
    // The same second again, from this thread's cache.
    assert_eq!(at(1_796_240_474, 1), "2026-12-02T19:41:14.000001Z");
}

#[test]
fn durations_are_milliseconds_to_the_microsecond() {
    let f = |v: f64| {
        let mut out = Vec::new();
        millis(&mut out, v);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(f(0.0), "0.0");
    assert_eq!(f(3.0), "3.0");
    assert_eq!(f(12.5), "12.5");
    assert_eq!(f(0.0434), "0.043");
    assert_eq!(f(0.0435001), "0.044");
    assert_eq!(f(1.000_4), "1.0");
    assert_eq!(f(1_234.567_89), "1234.568");
}

#[test]
fn lines_keep_their_order_and_the_guard_writes_out_the_rest() {
    let out = Kept::default();
    let (sink, writer) = Sink::start(out.clone());
    let guard = LogGuard { sink, writer };
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let sink = guard.sink.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    sink.push(format!("{t} {i}\n").as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(guard);
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2000);
    for t in 0..4 {
        let mine: Vec<usize> = lines
            .iter()
            .filter_map(|l| l.split_once(' '))
            .filter(|(who, _)| *who == t.to_string())
            .map(|(_, i)| i.parse().unwrap())
            .collect();
        assert_eq!(mine, (0..500).collect::<Vec<_>>());
    }
}

/// An output that blocks until the test lets it go.
struct Stuck(Arc<(Mutex<bool>, std::sync::Condvar)>, Kept);

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (open, cv) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        self.1.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stuck_output_never_blocks_a_request_and_drops_are_counted() {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let out = Kept::default();
    let (sink, writer) = Sink::start(Stuck(gate.clone(), out.clone()));
    let line = vec![b'x'; 1023]
        .into_iter()
        .chain([b'\n'])
        .collect::<Vec<u8>>();
    // The first batch is taken by the writer thread, which then blocks on the output;
    // pushes go on returning, and past the cap they are dropped.
    let pushed = 3 * CAP / line.len();
    for _ in 0..pushed {
        sink.push(&line);
    }
    {
        let (open, cv) = &*gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    drop(LogGuard { sink, writer });
    let text = out.text();
    let kept = text.lines().filter(|l| l.starts_with('x')).count();
    let note = text
        .lines()
        .find(|l| l.contains("log line(s) dropped"))
        .expect("the drop is reported");
    let dropped: usize = note
        .trim_start_matches("portcullis: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kept < pushed);
    assert_eq!(kept + dropped, pushed);
}

#[test]
fn other_targets_are_left_to_the_fmt_layer() {
    let out = Kept::default();
    let (sink, writer) = Sink::start(out.clone());
    let s = tracing_subscriber::registry().with(AccessLayer::new(sink.clone(), false));
    tracing::subscriber::with_default(s, || tracing::info!(x = 1, "not an access line"));
    drop(LogGuard { sink, writer });
    assert_eq!(out.text(), "");
}

#[test]
fn logs_are_coloured_only_on_a_terminal_without_no_color() {
    use std::ffi::OsStr;
    assert!(colour(true, None));
    assert!(colour(true, Some(OsStr::new(""))));
    assert!(!colour(true, Some(OsStr::new("1"))));
    assert!(!colour(false, None));
    assert!(!colour(false, Some(OsStr::new(""))));
}

/// `format_line` at a fixed time, for every event it sees.
struct Formatted {
    json: bool,
    now: SystemTime,
    out: Arc<Mutex<Vec<u8>>>,
}

impl<S: Subscriber> Layer<S> for Formatted {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut out = self.out.lock().unwrap();
        format_line(
            &mut out,
            self.now,
            meta.level(),
            meta.target(),
            self.json,
            event,
        );
    }
}

fn record(text: &'static str, ms: f64) -> AccessRecord<'static> {
    AccessRecord {
        method: "PROPFIND",
        path: text,
        status: 403,
        decision: "forbidden",
        fault: "client",
        rule: -1,
        host: text,
        upstream: "default",
        subject: text,
        client: "2001:db8::1",
        upstream_ms: ms,
        duration_ms: 12.125,
    }
}

#[test]
fn a_record_is_written_byte_for_byte_as_its_event_would_be() {
    let now = UNIX_EPOCH + Duration::from_micros(1_796_414_474_123_456);
    let mut cases: Vec<AccessRecord<'static>> = Vec::new();
    for h in std::iter::once("/api/x").chain(HOSTILE) {
        cases.push(record(h, 0.0));
    }
    for ms in [0.043, 3.0, 1e12, f64::NAN, f64::INFINITY, -1.0] {
        cases.push(record("/p", ms));
    }
    let mut odd = record("/p", 1.5);
    odd.method = "GET\u{1}";
    odd.client = "in\"valid";
    odd.rule = i64::MAX;
    odd.status = 0;
    cases.push(odd);
    for json in [false, true] {
        for rec in &cases {
            let out = Arc::new(Mutex::new(Vec::new()));
            let layer = Formatted {
                json,
                now,
                out: out.clone(),
            };
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                super::access_event(rec)
            });
            let reference = String::from_utf8(out.lock().unwrap().clone()).unwrap();
            let mut ours = Vec::new();
            record_line(&mut ours, now, json, rec);
            let ours = String::from_utf8(ours).unwrap();
            assert_eq!(ours, reference, "json={json} record={rec:?}");
            assert_eq!(ours.matches('\n').count(), 1);
        }
    }
}

#[test]
fn access_follows_the_filter_of_the_subscriber() {
    let rec = record("/api/x", 1.0);
    for (directive, lines) in [("info", 1), ("warn", 0), ("info,portcullis::access=off", 0)] {
        let ours = Kept::default();
        let (sink, writer) = Sink::start(ours.clone());
        let s = tracing_subscriber::registry()
            .with(EnvFilter::new(directive))
            .with(AccessLayer::new(sink.clone(), false));
        tracing::subscriber::with_default(s, || access(&rec));
        drop(LogGuard { sink, writer });
        let text = ours.text();
        assert_eq!(text.matches('\n').count(), lines, "{directive}: {text}");
        if lines == 1 {
            assert!(text.contains(" INFO portcullis::access: method=PROPFIND path=\"/api/x\""));
        }
    }
}
