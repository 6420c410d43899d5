//! The long-lived state every request shares.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::assertion::{KeyRing, Signer};
use crate::auth::authenticate::{DpopCheck, Introspection, RequestAuth, Sessions};
use crate::auth::bearer::Bearers;
use crate::auth::dpop::ReplayGuard;
use crate::auth::introspection::Introspector;
use crate::auth::jwks::JwksCache;
use crate::auth::oidc::Oidc;
use crate::auth::provider::ProviderClient;
use crate::auth::refresh::{Provider, Refresher};
use crate::auth::session::{Revocations, SessionCodec};
use crate::auth::sessions::LocalSessions;
use crate::auth::store::RedisStore;
use crate::auth::token_cache::{SessionCache, TokenCache};
use crate::config::{Config, RuntimeKind, SessionStoreKind};
use crate::context::ConnInfo;
use crate::forward::headers::HeaderPlan;
use crate::forward::proxy::Route;
use crate::forward::upstream::Upstream;
use crate::metrics::Metrics;
use crate::telemetry::Telemetry;

/// Everything derived from one configuration. Swapped as a whole, so a request sees one
/// consistent configuration from start to end.
pub struct Runtime {
    pub config: Config,
    pub headers: HeaderPlan,
    /// `oidc.issuer`'s validator, then those of `[[tokens.issuers]]`.
    pub bearer: Bearers,
    /// `tokens.introspection`: opaque tokens and their cached answers.
    pub introspector: Option<Introspector>,
    /// `[upstream]`: where a request goes unless its rule names another upstream.
    pub upstream: Upstream,
    /// `[upstreams.NAME]`, in the order of `config.upstreams` (a rule's `upstream` index).
    pub upstreams: Vec<Upstream>,
    /// `None` without `[session]`: then no rule may log a browser in.
    pub session: Option<SessionCodec>,
    pub oidc: Oidc,
    /// Verified bearer tokens of this configuration.
    pub token_cache: TokenCache,
    /// Decrypted session cookies of this configuration.
    pub session_cache: SessionCache,
    /// `server.public_url`'s origin (`https://app.example.com`).
    pub public_origin: String,
    /// `headers.assertion`: this configuration's signing key and signed assertions.
    pub assertion: Option<Signer>,
}

impl Runtime {
    /// Fails only when an upstream client cannot be built; the message names the key.
    /// Without `headers.assertion_key_file`, assertions are signed with `keys`' generated
    /// key.
    pub fn new(
        config: Config,
        revocations: Arc<Revocations>,
        keys: &KeyRing,
    ) -> Result<Runtime, String> {
        let pools = match config.server.runtime {
            RuntimeKind::PerCore => config.server.workers,
            RuntimeKind::Shared => 1,
        };
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                Upstream::new(&u.settings, pools)
                    .map_err(|e| format!("upstreams.{}.url: {e}", u.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cookie_name = config
            .session
            .as_ref()
            .map(|s| s.cookie_name.clone())
            .unwrap_or_else(|| "portcullis".to_owned());
        Ok(Runtime {
            headers: HeaderPlan::new(config.headers.clone(), cookie_name),
            bearer: Bearers::new(&config.oidc, &config.tokens),
            introspector: config.tokens.introspection.then(|| {
                Introspector::new(
                    config.tokens.introspection_cache_size,
                    config.tokens.introspection_ttl,
                    &config.oidc.client_id,
                    config.oidc.client_secret.clone(),
                )
            }),
            upstream: Upstream::new(&config.upstream, pools)
                .map_err(|e| format!("upstream.url: {e}"))?,
            upstreams,
            session: config.session.as_ref().map(|s| {
                SessionCodec::new(s, &config.oidc.issuer, &config.oidc.client_id, revocations)
            }),
            oidc: Oidc::new(&config),
            token_cache: TokenCache::new(config.tokens.cache_size, config.tokens.leeway.as_secs()),
            session_cache: SessionCache::new(config.tokens.cache_size),
            public_origin: config.server.public_url.origin().ascii_serialization(),
            assertion: config.headers.assertion.as_ref().map(|_| {
                let key = match &config.headers.assertion_key {
                    Some(k) => k.clone(),
                    None => keys.generated(),
                };
                let issuer = config.server.public_url.as_str().trim_end_matches('/');
                Signer::new(key, issuer.to_owned())
            }),
            config,
        })
    }

    /// The upstream a rule sends to.
    pub fn upstream_for(&self, rule_upstream: Option<usize>) -> &Upstream {
        rule_upstream
            .and_then(|i| self.upstreams.get(i))
            .unwrap_or(&self.upstream)
    }

    /// How a request of this connection is forwarded to a rule's upstream.
    pub fn route(&self, rule_upstream: Option<usize>, conn: &ConnInfo) -> Route<'_> {
        Route {
            plan: &self.headers,
            assertion: self.assertion.as_ref(),
            upstream: self.upstream_for(rule_upstream),
            trusted_proxies: &self.config.server.trusted_proxies,
            public_origin: &self.public_origin,
            peer: conn.peer.ip(),
            peer_ip: conn.peer_ip,
            tls: conn.tls,
        }
    }
}

/// The gateway: current runtime, provider keys, metrics.
pub struct Gateway {
    /// Replaced atomically by a reload; requests in flight keep the one they started with.
    runtime: ArcSwap<Runtime>,
    /// The issuer's discovery document and keys, refreshed in the background.
    pub jwks: Arc<JwksCache>,
    /// The keys of every issuer whose bearer tokens are accepted: `jwks` first, then one
    /// per `[[tokens.issuers]]` (fixed at start: a reload cannot change the list).
    pub issuer_keys: Vec<Arc<JwksCache>>,
    /// DPoP proofs seen (without the Redis store; with it, Redis remembers them).
    pub dpop_replay: ReplayGuard,
    pub metrics: Arc<Metrics>,
    /// Client for the provider's token endpoint.
    pub provider: ProviderClient,
    /// Logged-out session ids and used login states; survives reloads, and restarts with
    /// `session.state_dir`.
    pub revocations: Arc<Revocations>,
    /// Session refreshes in progress, so concurrent requests of one session share one
    /// refresh (and its result) instead of racing; survives reloads.
    pub refresher: Refresher,
    /// `session.store = "redis"`: where every replica keeps the sessions.
    pub store: Option<Arc<RedisStore>>,
    /// With the cookie store: the sessions logged in through this instance, for
    /// `/sessions` on the admin listener.
    pub local_sessions: LocalSessions,
    /// The assertion keys `<auth_prefix>/jwks` publishes: the serving configuration's,
    /// and one a reload replaced, for one assertion lifetime. Also the generated key,
    /// which stays the same across reloads.
    pub assertion_keys: KeyRing,
    /// `[telemetry]`: the trace exporter, fixed at start. `None`: no spans at all.
    pub telemetry: Option<Telemetry>,
}

impl Gateway {
    pub fn new(config: Config) -> Result<Arc<Gateway>, String> {
        let metrics = Arc::new(Metrics::new());
        let provider = ProviderClient::new();
        let jwks = JwksCache::new(
            config.oidc.issuer.clone(),
            provider.clone(),
            metrics.clone(),
        );
        let mut issuer_keys = vec![jwks.clone()];
        issuer_keys.extend(
            config
                .tokens
                .issuers
                .iter()
                .map(|i| JwksCache::new(i.issuer.clone(), provider.clone(), metrics.clone())),
        );
        // Read once at start: `session.state_dir` holds the logouts of earlier runs.
        let revocations = Arc::new(
            match config.session.as_ref().and_then(|s| s.state_dir.as_deref()) {
                Some(dir) => Revocations::open(dir)
                    .map_err(|e| format!("session.state_dir: {}: {e}", dir.display()))?,
                None => Revocations::default(),
            },
        );
        let store = match config.session.as_ref() {
            Some(s) if s.store == SessionStoreKind::Redis => {
                let store = match &s.redis_url {
                    Some(url) => {
                        RedisStore::new(url.expose(), &s.redis_key_prefix, metrics.clone())?
                    }
                    None => {
                        let urls: Vec<&str> = s.redis_urls.iter().map(|u| u.expose()).collect();
                        RedisStore::cluster(&urls, &s.redis_key_prefix, metrics.clone())?
                    }
                };
                store.watch_health(std::time::Duration::from_secs(1));
                Some(store)
            }
            _ => None,
        };
        let telemetry = config
            .telemetry
            .as_ref()
            .map(Telemetry::start)
            .transpose()?;
        let assertion_keys = KeyRing::default();
        let runtime = Runtime::new(config, revocations.clone(), &assertion_keys)?;
        assertion_keys.publish(runtime.assertion.as_ref().map(Signer::key));
        Ok(Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            jwks,
            issuer_keys,
            dpop_replay: ReplayGuard::default(),
            metrics,
            provider,
            revocations,
            refresher: Refresher::default(),
            store,
            local_sessions: LocalSessions::default(),
            assertion_keys,
            telemetry,
        }))
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Serves `rt` from now on; its assertion key is published before it signs anything.
    pub fn swap_runtime(&self, rt: Runtime) {
        self.assertion_keys
            .publish(rt.assertion.as_ref().map(Signer::key));
        self.runtime.store(Arc::new(rt));
    }

    /// Sets the gauges that are read from state rather than counted, before a scrape.
    pub fn observe_gauges(&self) {
        let rt = self.runtime();
        self.metrics.set_gauges(
            rt.session_cache.len(),
            rt.token_cache.len(),
            self.refresher.in_flight(),
        );
    }

    /// Authentication of a request's own credential, with this runtime's settings.
    pub fn authenticator<'a>(&'a self, rt: &'a Runtime) -> RequestAuth<'a> {
        RequestAuth {
            bearer: &rt.bearer,
            jwks: &self.issuer_keys,
            tokens: &rt.config.tokens,
            introspection: rt.introspector.as_ref().map(|introspector| Introspection {
                introspector,
                client: &self.provider,
            }),
            dpop: DpopCheck {
                public_url: &rt.config.server.public_url,
                allow_path_params: rt.config.server.allow_path_params,
                replay: &self.dpop_replay,
                store: self.store.as_deref(),
            },
            token_cache: &rt.token_cache,
            metrics: &self.metrics,
            sessions: rt.session.as_ref().map(|codec| Sessions {
                codec,
                store: self.store.as_deref(),
                cache: &rt.session_cache,
                refresher: &self.refresher,
                provider: Provider {
                    oidc: &rt.oidc,
                    client: &self.provider,
                    jwks: &self.jwks,
                    metrics: &self.metrics,
                },
            }),
            set_cookies: Vec::new(),
        }
    }

    /// Ready once the keys of every issuer have been fetched and the session store (if
    /// any) answers.
    pub fn is_ready(&self) -> bool {
        self.issuer_keys.iter().all(|k| k.is_ready())
            && self.store.as_ref().is_none_or(|s| s.is_healthy())
    }
}
