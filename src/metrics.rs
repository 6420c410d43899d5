//! Prometheus metrics, served on the admin listener.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    decision: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

type IntGauge = prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>;

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
    upstream_latency: Histogram,
    upstream_errors: Family<KindLabel, Counter>,
    jwks_fetches: Family<ResultLabel, Counter>,
    /// `token_cache{result="hit"}` and `{result="miss"}`, taken out of their family once
    /// (the same counters): no label hash or lock per bearer request.
    token_hits: Counter,
    token_misses: Counter,
    introspections: Family<ResultLabel, Counter>,
    dpop_proofs: Family<ResultLabel, Counter>,
    step_ups: Family<ResultLabel, Counter>,
    websockets_closed: Counter,
    session_refreshes: Family<ResultLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    config_hash: IntGauge,
    sessions_started: Counter,
    sessions_ended: Family<ReasonLabel, Counter>,
    sessions_cached: IntGauge,
    tokens_cached: IntGauge,
    refreshes_in_flight: IntGauge,
    connections_open: IntGauge,
    connections_at_limit: Counter,
    idle_closed: Family<KindLabel, Counter>,
    parked: Counter,
    store_latency: Family<OpLabel, Histogram>,
    store_errors: Family<OpLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

fn buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by decision and response status",
            requests.clone(),
        );
        let latency = Histogram::new(buckets());
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            latency.clone(),
        );
        let upstream_latency = Histogram::new(buckets());
        registry.register(
            "upstream_duration_seconds",
            "Time the upstream took to answer",
            upstream_latency.clone(),
        );
        let upstream_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by kind (connect, timeout, io)",
            upstream_errors.clone(),
        );
        let jwks_fetches = Family::<ResultLabel, Counter>::default();
        registry.register(
            "jwks_fetches",
            "Fetches of the provider's JWKS by result",
            jwks_fetches.clone(),
        );
        let token_cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "token_cache",
            "Verified-token cache look-ups by result (hit, miss)",
            token_cache.clone(),
        );
        let token_hits = token_cache
            .get_or_create(&ResultLabel { result: "hit" })
            .clone();
        let token_misses = token_cache
            .get_or_create(&ResultLabel { result: "miss" })
            .clone();
        let introspections = Family::<ResultLabel, Counter>::default();
        registry.register(
            "introspections",
            "Opaque-token introspections by result (hit = answered from the cache; active, inactive, refused, error, unavailable = calls)",
            introspections.clone(),
        );
        let dpop_proofs = Family::<ResultLabel, Counter>::default();
        registry.register(
            "dpop_proofs",
            "DPoP proofs by result (ok, invalid, replayed)",
            dpop_proofs.clone(),
        );
        let step_ups = Family::<ResultLabel, Counter>::default();
        registry.register(
            "step_ups",
            "Step-up logins by result (started; completed and refused at the callback)",
            step_ups.clone(),
        );
        let websockets_closed = Counter::default();
        registry.register(
            "websockets_closed_by_session_end",
            "WebSockets the gateway closed because the session they were opened on ended",
            websockets_closed.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        let config_hash = IntGauge::default();
        registry.register(
            "config_hash",
            "Hash of the loaded configuration file and overrides (changes when they change)",
            config_hash.clone(),
        );
        let session_refreshes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "session_refreshes",
            "Session token refreshes by result",
            session_refreshes.clone(),
        );
        let sessions_started = Counter::default();
        registry.register(
            "sessions_started",
            "Browser sessions started (completed logins)",
            sessions_started.clone(),
        );
        let sessions_ended = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "sessions_ended",
            "Browser sessions ended by logout, by a refresh the provider refused, or by a back-channel logout token",
            sessions_ended.clone(),
        );
        let sessions_cached = IntGauge::default();
        registry.register(
            "sessions_cached",
            "Decrypted session cookies held in memory (sessions recently active on this instance, up to tokens.cache_size)",
            sessions_cached.clone(),
        );
        let tokens_cached = IntGauge::default();
        registry.register(
            "tokens_cached",
            "Verified bearer tokens held in memory",
            tokens_cached.clone(),
        );
        let connections_open = IntGauge::default();
        registry.register(
            "connections_open",
            "Client connections open on the main listener",
            connections_open.clone(),
        );
        let connections_at_limit = Counter::default();
        registry.register(
            "connections_at_limit",
            "Times the main listener stopped accepting because server.max_connections were open",
            connections_at_limit.clone(),
        );
        let idle_closed = Family::<KindLabel, Counter>::default();
        registry.register(
            "connections_idle_closed",
            "Connections closed for sending no complete request within header_read_timeout",
            idle_closed.clone(),
        );
        let parked = Counter::default();
        registry.register(
            "connections_parked",
            "Times an idle plain HTTP/1.1 connection gave its buffers back while it waits",
            parked.clone(),
        );
        let refreshes_in_flight = IntGauge::default();
        registry.register(
            "session_refreshes_in_flight",
            "Session token refreshes waiting for the provider",
            refreshes_in_flight.clone(),
        );
        let store_latency =
            Family::<OpLabel, Histogram>::new_with_constructor(|| Histogram::new(buckets()));
        registry.register(
            "session_store_seconds",
            "Time of session store (Redis) operations, by operation",
            store_latency.clone(),
        );
        let store_errors = Family::<OpLabel, Counter>::default();
        registry.register(
            "session_store_errors",
            "Session store (Redis) operations that failed or timed out, by operation",
            store_errors.clone(),
        );
        Metrics {
            store_latency,
            store_errors,
            registry,
            requests,
            latency,
            upstream_latency,
            upstream_errors,
            jwks_fetches,
            token_hits,
            token_misses,
            introspections,
            dpop_proofs,
            step_ups,
            websockets_closed,
            session_refreshes,
            reloads,
            config_hash,
            sessions_started,
            sessions_ended,
            sessions_cached,
            tokens_cached,
            refreshes_in_flight,
            connections_open,
            connections_at_limit,
            idle_closed,
            parked,
        }
    }

    pub fn store_op(&self, op: &'static str, took: Duration) {
        self.store_latency
            .get_or_create(&OpLabel { op })
            .observe(took.as_secs_f64());
    }

    pub fn store_error(&self, op: &'static str) {
        self.store_errors.get_or_create(&OpLabel { op }).inc();
    }

    /// A connection was accepted (`+1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        self.connections_open.inc_by(delta);
    }

    pub fn connections_at_limit(&self) {
        self.connections_at_limit.inc();
    }

    pub fn idle_closed(&self, kind: &'static str) {
        self.idle_closed.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn connection_parked(&self) {
        self.parked.inc();
    }

    pub fn session_started(&self) {
        self.sessions_started.inc();
    }

    /// `result`: `"started"`, `"completed"` or `"refused"` (the provider's answer was still
    /// below the rule's level).
    pub fn step_up(&self, result: &'static str) {
        self.step_ups.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn websocket_closed(&self) {
        self.websockets_closed.inc();
    }

    /// `reason`: `"logout"`, `"refresh_failed"`, `"backchannel"`, `"admin"` or `"replaced"`
    /// (a new login of the same browser).
    pub fn session_ended(&self, reason: &'static str) {
        self.sessions_ended
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Gauges read from the caches, set just before a scrape.
    pub fn set_gauges(&self, sessions_cached: usize, tokens_cached: usize, refreshing: usize) {
        let g = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.sessions_cached.set(g(sessions_cached));
        self.tokens_cached.set(g(tokens_cached));
        self.refreshes_in_flight.set(g(refreshing));
    }

    pub fn request(&self, decision: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { decision, status })
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    pub fn upstream(&self, took: Duration) {
        self.upstream_latency.observe(took.as_secs_f64());
    }

    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    pub fn jwks_fetch(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.jwks_fetches
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn token_cache(&self, hit: bool) {
        if hit {
            &self.token_hits
        } else {
            &self.token_misses
        }
        .inc();
    }

    /// An opaque token's introspection: `hit` from the cache, else the call's result.
    pub fn introspection(&self, result: &'static str) {
        self.introspections
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn dpop_proof(&self, result: &'static str) {
        self.dpop_proofs
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// A reload attempt; `hash` is the loaded configuration's when it succeeded.
    pub fn reload(&self, hash: Option<u64>) {
        let result = if hash.is_some() { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
        if let Some(h) = hash {
            self.set_config_hash(h);
        }
    }

    pub fn set_config_hash(&self, hash: u64) {
        // The gauge is signed; keep 52 bits so the value survives float-based scrapers.
        self.config_hash.set((hash & ((1 << 52) - 1)) as i64);
    }

    pub fn session_refresh(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.session_refreshes
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_cache_counters_are_the_exported_ones() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(
            text.contains("portcullis_token_cache_total{result=\"hit\"} 0"),
            "{text}"
        );
        m.token_cache(true);
        m.token_cache(true);
        m.token_cache(false);
        let text = m.encode();
        assert!(
            text.contains("portcullis_token_cache_total{result=\"hit\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_token_cache_total{result=\"miss\"} 1"),
            "{text}"
        );
    }
}
