//! Logs: the subscriber `serve` installs, and the access log's own line writer.
//!
//! Every line goes through one [`Sink`]: request threads append finished lines to a buffer
//! under a short lock, and a background thread writes the buffer to stderr in batches. A
//! request never waits for stderr, and lines keep their order. When stderr cannot keep up
//! and the buffer holds 8 MiB, further lines are dropped and counted, and the count is
//! written once stderr drains (a blocked log pipe must not stop the gateway). The buffer
//! is flushed when [`LogGuard`] drops, at the end of `serve`.
//!
//! The access log (target [`ACCESS_TARGET`], one line per request) is written by
//! [`AccessLayer`], which formats the line directly into bytes: the same layout as the
//! `tracing-subscriber` line of every other event (text: `timestamp LEVEL target: k=v ...`,
//! strings quoted and escaped; JSON: one flat object per line), without going through
//! `core::fmt` for each field. Durations are written in milliseconds with microsecond
//! precision.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};
pub use crate::context::ACCESS_TARGET;

/// The most the buffer holds before lines are dropped.
const CAP: usize = 8 << 20;
/// How long the writer thread gathers lines after the first of a batch arrives.
const BATCH: Duration = Duration::from_millis(5);

#[cfg(test)]
mod tests;

/// Installs the global subscriber for `serve`: the level and format from `[log]` (or
/// `RUST_LOG`), colour only on a terminal, every line through one buffered sink.
pub fn init(cfg: &Config) -> LogGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let (sink, writer) = Sink::start(std::io::stderr());
    let json = cfg.log.format == LogFormat::Json;
    let not_access = tracing_subscriber::filter::filter_fn(|m| m.target() != ACCESS_TARGET);
    let access = AccessLayer::new(sink.clone(), json);
    let base = tracing_subscriber::registry().with(filter).with(access);
    let events = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(SinkWriter(sink.clone()));
    let installed = if json {
        base.with(events.json().flatten_event(true).with_filter(not_access))
            .try_init()
    } else {
        base.with(events.with_filter(not_access)).try_init()
    };
    if installed.is_ok() {
        let _ = DIRECT.set(AccessLayer::new(sink.clone(), json));
    }
    LogGuard { sink, writer }
}

/// Text logs are coloured only on a terminal, and never when `NO_COLOR` is set to a
/// non-empty value (<https://no-color.org>): a file or a log collector gets plain text.
/// (The access log is never coloured.)
pub fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

// === the sink ===

/// Finished lines waiting for the writer thread, and the output they go to.
pub struct Sink {
    state: Mutex<State>,
    wake: Condvar,
    /// Taken before `state` is released whenever a batch leaves the buffer, so batches
    /// reach the output in the order they left.
    out: Mutex<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// The writer thread waits for a line (and must be woken).
    idle: bool,
    /// No writer thread (stopped, or it could not start): lines are written at once.
    closed: bool,
    dropped: u64,
}

impl Sink {
    /// A sink and the thread that writes it to `out`.
    pub fn start<W: Write + Send + 'static>(out: W) -> (Arc<Sink>, Option<JoinHandle<()>>) {
        let sink = Arc::new(Sink {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            out: Mutex::new(Box::new(out)),
        });
        let s = sink.clone();
        let writer = std::thread::Builder::new()
            .name("portcullis-log".into())
            .spawn(move || s.write_out())
            .ok();
        if writer.is_none() {
            sink.lock().closed = true;
        }
        (sink, writer)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one or more whole lines. Never waits for the output while a writer thread
    /// runs.
    pub fn push(&self, line: &[u8]) {
        let mut s = self.lock();
        if s.closed {
            let pending = std::mem::take(&mut s.buf);
            let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
            drop(s);
            let _ = out.write_all(&pending);
            let _ = out.write_all(line);
            let _ = out.flush();
            return;
        }
        if s.buf.len() + line.len() > CAP {
            s.dropped += 1;
            return;
        }
        s.buf.extend_from_slice(line);
        if s.idle {
            s.idle = false;
            drop(s);
            self.wake.notify_one();
        }
    }

    /// The writer thread: waits for a line, gathers a batch, writes it.
    fn write_out(&self) {
        let mut batch = Vec::new();
        loop {
            let mut s = self.lock();
            while s.buf.is_empty() && !s.closed {
                s.idle = true;
                s = self.wake.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            s.idle = false;
            if s.closed {
                return; // the guard writes out the rest
            }
            drop(s);
            std::thread::sleep(BATCH);
            s = self.lock();
            std::mem::swap(&mut s.buf, &mut batch);
            let dropped = std::mem::take(&mut s.dropped);
            let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
            drop(s);
            write_batch(&mut **out, &batch, dropped);
            drop(out);
            batch.clear();
            if batch.capacity() > 1 << 20 {
                batch = Vec::new();
            }
        }
    }

    /// Writes what is buffered from the calling thread, after any batch being written.
    pub fn write_now(&self) {
        let mut s = self.lock();
        let batch = std::mem::take(&mut s.buf);
        let dropped = std::mem::take(&mut s.dropped);
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        drop(s);
        write_batch(&mut **out, &batch, dropped);
    }

    /// Stops the writer thread; later lines are written at once.
    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

fn write_batch(out: &mut dyn Write, batch: &[u8], dropped: u64) {
    let _ = out.write_all(batch);
    if dropped > 0 {
        let _ = writeln!(
            out,
            "portcullis: {dropped} log line(s) dropped: the log output could not keep up"
        );
    }
    let _ = out.flush();
}

/// Writes out what is buffered when it drops (the end of `serve`).
pub struct LogGuard {
    sink: Arc<Sink>,
    writer: Option<JoinHandle<()>>,
}

impl LogGuard {
    /// Writes out every line logged so far, before a message printed straight to stderr.
    pub fn flush(&self) {
        self.sink.write_now();
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.sink.close();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.sink.write_now();
    }
}

/// `tracing-subscriber`'s writer for every other event: it formats a whole event and
/// writes it with one call, which appends it to the sink.
#[derive(Clone)]
pub struct SinkWriter(pub Arc<Sink>);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SinkWriter {
    type Writer = SinkWriter;
    fn make_writer(&'a self) -> SinkWriter {
        self.clone()
    }
}

// === the access log line ===

/// Writes the access-log events, in the layout of the configured format.
pub struct AccessLayer {
    sink: Arc<Sink>,
    json: bool,
}

impl AccessLayer {
    pub fn new(sink: Arc<Sink>, json: bool) -> Self {
        AccessLayer { sink, json }
    }
}

thread_local! {
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The access layer of the subscriber [`init`] installed, for [`access`] to write to
/// without going through `tracing`'s dispatch.
static DIRECT: std::sync::OnceLock<AccessLayer> = std::sync::OnceLock::new();

/// One request's access-log fields, in the order they are written.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub decision: &'a str,
    pub fault: &'a str,
    pub rule: i64,
    pub host: &'a str,
    pub upstream: &'a str,
    pub subject: &'a str,
    pub client: &'a str,
    pub upstream_ms: f64,
    pub duration_ms: f64,
}

/// Logs one request. Whether the line is written is decided by the subscriber's filter,
/// as for any `tracing` event at INFO on [`ACCESS_TARGET`]. Under the subscriber of
/// [`init`] the line is formatted straight from the record (the layout of
/// [`format_line`], byte for byte); under any other subscriber it is an ordinary event.
pub fn access(rec: &AccessRecord<'_>) {
    if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
        return;
    }
    match DIRECT.get() {
        Some(layer) => layer.write_record(rec),
        None => access_event(rec),
    }
}

/// The record as a `tracing` event (the fallback of [`access`], and the reference its
/// direct line is tested against).
fn access_event(rec: &AccessRecord<'_>) {
    tracing::info!(
        target: ACCESS_TARGET,
        method = %rec.method,
        path = rec.path,
        status = rec.status,
        decision = rec.decision,
        fault = rec.fault,
        rule = rec.rule,
        host = rec.host,
        upstream = rec.upstream,
        subject = rec.subject,
        client = %rec.client,
        upstream_ms = rec.upstream_ms,
        duration_ms = rec.duration_ms,
    );
}

impl AccessLayer {
    fn write_record(&self, rec: &AccessRecord<'_>) {
        self.write_line(|line| record_line(line, SystemTime::now(), self.json, rec));
    }

    /// Builds one line in this thread's buffer and hands it to the sink.
    fn write_line(&self, build: impl FnOnce(&mut Vec<u8>)) {
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            build(&mut line);
            self.sink.push(&line);
        });
    }
}

/// An access record as [`format_line`] writes the event of [`access_event`]: `method`
/// and `client` as `Display` values (unquoted in text), the other strings quoted.
fn record_line(out: &mut Vec<u8>, now: SystemTime, json: bool, rec: &AccessRecord<'_>) {
    if json {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\"");
    } else {
        timestamp(out, now);
        // INFO right-aligned in five columns, then the target.
        out.extend_from_slice(b"  INFO ");
        out.extend_from_slice(ACCESS_TARGET.as_bytes());
        out.push(b':');
    }
    let mut l = RecordLine { out, json };
    l.display(KEYS[0], rec.method);
    l.quoted(KEYS[1], rec.path);
    l.int(KEYS[2], i64::from(rec.status));
    l.quoted(KEYS[3], rec.decision);
    l.quoted(KEYS[4], rec.fault);
    l.int(KEYS[5], rec.rule);
    l.quoted(KEYS[6], rec.host);
    l.quoted(KEYS[7], rec.upstream);
    l.quoted(KEYS[8], rec.subject);
    l.display(KEYS[9], rec.client);
    l.millis(KEYS[10], rec.upstream_ms);
    l.millis(KEYS[11], rec.duration_ms);
    if json {
        out.extend_from_slice(b",\"target\":");
        json_str(out, ACCESS_TARGET);
        out.extend_from_slice(b"}\n");
    } else {
        out.push(b'\n');
    }
}

/// Each field's name as text (` name=`) and as JSON (`,"name":`), written with one copy.
const KEYS: [Key; 12] = [
    (b" method=", b",\"method\":"),
    (b" path=", b",\"path\":"),
    (b" status=", b",\"status\":"),
    (b" decision=", b",\"decision\":"),
    (b" fault=", b",\"fault\":"),
    (b" rule=", b",\"rule\":"),
    (b" host=", b",\"host\":"),
    (b" upstream=", b",\"upstream\":"),
    (b" subject=", b",\"subject\":"),
    (b" client=", b",\"client\":"),
    (b" upstream_ms=", b",\"upstream_ms\":"),
    (b" duration_ms=", b",\"duration_ms\":"),
];

/// Writes the fields of [`record_line`] as [`TextFields`] or [`JsonFields`] would.
struct RecordLine<'a> {
    out: &'a mut Vec<u8>,
    json: bool,
}

type Key = (&'static [u8], &'static [u8]);

impl RecordLine<'_> {
    fn key(&mut self, (text, json): Key) {
        self.out
            .extend_from_slice(if self.json { json } else { text });
    }
    /// A string field (`record_str`): quoted in text.
    fn quoted(&mut self, name: Key, value: &str) {
        self.string(name, value, true);
    }
    /// A `Display` field (`record_debug`): unquoted in text.
    fn display(&mut self, name: Key, value: &str) {
        self.string(name, value, false);
    }
    fn string(&mut self, name: Key, value: &str, quote: bool) {
        self.key(name);
        if self.json {
            json_str(self.out, value);
        } else if quote {
            self.out.push(b'"');
            text_escaped(self.out, value);
            self.out.push(b'"');
        } else {
            unquoted(self.out, value);
        }
    }
    fn int(&mut self, name: Key, value: i64) {
        self.key(name);
        signed(self.out, value);
    }
    fn millis(&mut self, name: Key, ms: f64) {
        self.key(name);
        if self.json && !ms.is_finite() {
            self.out.extend_from_slice(b"null");
        } else {
            millis(self.out, ms);
        }
    }
}

/// A `Display` value in a text line, as [`TextFields`] writes one: as it is, unless it
/// holds a control character.
fn unquoted(out: &mut Vec<u8>, value: &str) {
    if value.bytes().any(|b| b < 0x20 || b == 0x7f) {
        text_escaped(out, value);
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

impl<S: Subscriber> Layer<S> for AccessLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != ACCESS_TARGET {
            return;
        }
        self.write_line(|line| {
            let now = SystemTime::now();
            format_line(line, now, meta.level(), meta.target(), self.json, event);
        });
    }
}

/// One event as a line (newline included).
pub fn format_line(
    out: &mut Vec<u8>,
    now: SystemTime,
    level: &tracing::Level,
    target: &str,
    json: bool,
    event: &Event<'_>,
) {
    if json {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(level.as_str().as_bytes());
        out.push(b'"');
        event.record(&mut JsonFields { out });
        out.extend_from_slice(b",\"target\":");
        json_str(out, target);
        out.extend_from_slice(b"}\n");
    } else {
        timestamp(out, now);
        // Right-aligned in five columns, as tracing-subscriber pads levels.
        let l = level.as_str();
        out.extend(std::iter::repeat_n(b' ', 6 - l.len()));
        out.extend_from_slice(l.as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b": ");
        event.record(&mut TextFields { out, first: true });
        out.push(b'\n');
    }
}

struct TextFields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl TextFields<'_> {
    fn name(&mut self, field: &Field) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
        let name = field.name();
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(b'=');
        }
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        if field.name() == "message" {
            text_escaped(self.out, value);
        } else {
            self.out.push(b'"');
            text_escaped(self.out, value);
            self.out.push(b'"');
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        decimal(self.out, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        signed(self.out, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        millis(self.out, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.out.extend_from_slice(boolean(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.name(field);
        let start = self.out.len();
        let _ = write!(self.out, "{value:?}");
        // A Debug value is written as it formats, but never with a control character.
        if self.out[start..].iter().any(|b| *b < 0x20 || *b == 0x7f) {
            let written = String::from_utf8_lossy(&self.out[start..]).into_owned();
            self.out.truncate(start);
            text_escaped(self.out, &written);
        }
    }
}

struct JsonFields<'a> {
    out: &'a mut Vec<u8>,
}

impl JsonFields<'_> {
    fn name(&mut self, field: &Field) {
        self.out.push(b',');
        let name = field.name();
        json_str(self.out, name.strip_prefix("r#").unwrap_or(name));
        self.out.push(b':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        json_str(self.out, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        decimal(self.out, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        signed(self.out, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        if value.is_finite() {
            millis(self.out, value);
        } else {
            self.out.extend_from_slice(b"null");
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.out.extend_from_slice(boolean(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.name(field);
        json_str(self.out, &format!("{value:?}"));
    }
}

/// `value` as Rust's `Debug` escapes a string inside its quotes: `"` and `\` escaped,
/// `\t` `\r` `\n` `\0`, and every other control character (C0, DEL, C1, line and
/// paragraph separators) as `\u{..}`. A line can never be split or forged.
fn text_escaped(out: &mut Vec<u8>, value: &str) {
    if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\0' => out.extend_from_slice(b"\\0"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// A JSON string (quotes included), escaped as `serde_json` escapes it.
fn json_str(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn signed(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    decimal(out, v.unsigned_abs());
}

fn boolean(v: bool) -> &'static [u8] {
    if v {
        b"true"
    } else {
        b"false"
    }
}

/// A non-negative duration in milliseconds to the microsecond: `12.5`, `0.043`, `3.0`.
fn millis(out: &mut Vec<u8>, ms: f64) {
    if !ms.is_finite() || ms < 0.0 {
        let _ = write!(out, "{ms:?}");
        return;
    }
    let micros = (ms * 1000.0).round() as u64;
    decimal(out, micros / 1000);
    out.push(b'.');
    let mut frac = micros % 1000;
    if frac == 0 {
        out.push(b'0');
        return;
    }
    let mut width = 3;
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    let mut digits = [b'0'; 3];
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

thread_local! {
    /// The last second formatted on this thread, as `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber writes it:
/// `2026-12-02T19:41:14.123456Z`.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        text = civil(secs);
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    out.push(b'.');
    let micros = since.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut v = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the epoch (proleptic Gregorian, UTC).
fn civil(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to a civil date (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut t = [0u8; 19];
    let two = |t: &mut [u8], v: u64| {
        t[0] = b'0' + (v / 10 % 10) as u8;
        t[1] = b'0' + (v % 10) as u8;
    };
    let y = year.clamp(0, 9999) as u64;
    two(&mut t[0..2], y / 100);
    two(&mut t[2..4], y % 100);
    t[4] = b'-';
    two(&mut t[5..7], month as u64);
    t[7] = b'-';
    two(&mut t[8..10], day as u64);
    t[10] = b'T';
    two(&mut t[11..13], rem / 3600);
    t[13] = b':';
    two(&mut t[14..16], rem / 60 % 60);
    t[16] = b':';
    two(&mut t[17..19], rem % 60);
    t
}
