//! The long-lived state every request shares.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::bearer::BearerValidator;
use crate::auth::jwks::JwksCache;
use crate::auth::provider::ProviderClient;
use crate::config::Config;
use crate::forward::headers::HeaderPlan;
use crate::forward::upstream::Upstream;
use crate::metrics::Metrics;

/// Everything derived from one configuration. Swapped as a whole, so a request sees one
/// consistent configuration from start to end.
pub struct Runtime {
    pub config: Config,
    pub headers: HeaderPlan,
    pub bearer: BearerValidator,
    pub upstream: Upstream,
}

impl Runtime {
    pub fn new(config: Config) -> Result<Runtime, String> {
        let cookie_name = config
            .session
            .as_ref()
            .map(|s| s.cookie_name.clone())
            .unwrap_or_else(|| "portcullis".to_owned());
        Ok(Runtime {
            headers: HeaderPlan::new(config.headers.clone(), cookie_name),
            bearer: BearerValidator::new(&config.oidc, &config.tokens),
            upstream: Upstream::new(&config.upstream)?,
            config,
        })
    }
}

/// The gateway: current runtime, provider keys, metrics.
pub struct Gateway {
    /// Replaced atomically by a reload; requests in flight keep the one they started with.
    runtime: ArcSwap<Runtime>,
    /// The issuer's discovery document and keys, refreshed in the background.
    pub jwks: Arc<JwksCache>,
    pub metrics: Arc<Metrics>,
}

impl Gateway {
    pub fn new(config: Config) -> Result<Arc<Gateway>, String> {
        let metrics = Arc::new(Metrics::new());
        let jwks = JwksCache::new(
            config.oidc.issuer.clone(),
            ProviderClient::new(),
            metrics.clone(),
        );
        let runtime = Runtime::new(config)?;
        Ok(Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            jwks,
            metrics,
        }))
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    pub fn swap_runtime(&self, rt: Runtime) {
        self.runtime.store(Arc::new(rt));
    }

    /// Ready once the provider's keys have been fetched.
    pub fn is_ready(&self) -> bool {
        self.jwks.is_ready()
    }
}
