//! The Redis session store (`session.store = "redis"`): sessions shared by every replica.
//!
//! Keys, all under `session.redis_key_prefix`:
//!
//! | key | value | TTL |
//! | --- | --- | --- |
//! | `s:<sid>` | the session, sealed with the session key (AES-256-GCM, bound to the key's name) | the session's remaining lifetime |
//! | `lock:<sid>` | a refresh in progress on some replica | a few seconds |
//! | `sub:<sub>` | a set of the subject's session ids (for administration and back-channel logout) | the longest of them |
//! | `psid:<sid>` | a set of the session ids made in the provider's session `sid` (back-channel logout) | the longest of them |
//!
//! Redis never holds a token in clear. One connection manager serves every request and
//! reconnects by itself; a background check keeps [`RedisStore::is_healthy`] current for
//! `/readyz`. A failed operation is a [`StoreError`]: the request that needed the session
//! gets a 503, never a silent "no session".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Cmd, Pipeline, RedisFuture, Value};

use crate::metrics::Metrics;

/// How long one Redis operation may take before the request gets its 503.
const OP_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a replica may hold the refresh lock of a session.
pub const REFRESH_LOCK: Duration = Duration::from_secs(10);

/// Redis did not answer, or answered with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session store is unavailable")]
pub struct StoreError;

/// One Redis, or a Redis Cluster (`session.redis_urls`).
enum Backend {
    Single(ConnectionManager),
    /// Connected on first use (and again after a failed attempt); the connection then
    /// follows the cluster's topology by itself.
    Cluster(Box<Cluster>),
}

struct Cluster {
    client: ClusterClient,
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

/// A connection of either kind, for the commands.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct RedisStore {
    backend: Backend,
    prefix: String,
    healthy: AtomicBool,
    metrics: Arc<Metrics>,
}

impl RedisStore {
    /// A Redis Cluster from its seed nodes; connected on first use.
    pub fn cluster(
        urls: &[&str],
        prefix: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<RedisStore>, String> {
        let client = ClusterClient::builder(urls.iter().map(|u| (*u).to_owned()))
            .connection_timeout(OP_TIMEOUT)
            .response_timeout(OP_TIMEOUT)
            .build()
            .map_err(|e| format!("session.redis_urls: {:?}", e.kind()))?;
        Ok(Arc::new(RedisStore {
            backend: Backend::Cluster(Box::new(Cluster {
                client,
                conn: tokio::sync::OnceCell::new(),
            })),
            prefix: prefix.to_owned(),
            healthy: AtomicBool::new(false),
            metrics,
        }))
    }

    /// Prepares the connection (made on first use, remade after failures). Fails only on
    /// a URL the client cannot use.
    pub fn new(url: &str, prefix: &str, metrics: Arc<Metrics>) -> Result<Arc<RedisStore>, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("session.redis_url: {:?}", e.kind()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("session.redis_url: {:?}", e.kind()))?;
        Ok(Arc::new(RedisStore {
            backend: Backend::Single(conn),
            prefix: prefix.to_owned(),
            healthy: AtomicBool::new(false),
            metrics,
        }))
    }

    /// Did the last health check (a `PING` every `every`) get an answer?
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Pings Redis until the store is dropped; the first answer makes the gateway ready.
    pub fn watch_health(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(store) = weak.upgrade() else { return };
                let ok = store
                    .run("ping", |mut c| async move {
                        redis::cmd("PING").query_async::<String>(&mut c).await
                    })
                    .await
                    .is_ok();
                if store.healthy.swap(ok, Ordering::Relaxed) != ok {
                    if ok {
                        tracing::info!("the session store answers");
                    } else {
                        tracing::warn!("the session store does not answer");
                    }
                }
                drop(store);
                tokio::time::sleep(every).await;
            }
        });
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// A connection for one operation.
    async fn conn(&self) -> redis::RedisResult<Conn> {
        match &self.backend {
            Backend::Single(c) => Ok(Conn::Single(c.clone())),
            Backend::Cluster(c) => c
                .conn
                .get_or_try_init(|| c.client.get_async_connection())
                .await
                .map(|c| Conn::Cluster(c.clone())),
        }
    }

    /// Is it a Redis Cluster? Then a multi-key transaction cannot span slots.
    fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    /// One operation, timed and counted.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let start = Instant::now();
        let result = tokio::time::timeout(OP_TIMEOUT, async {
            let c = self.conn().await?;
            f(c).await
        })
        .await;
        self.metrics.store_op(op, start.elapsed());
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::debug!(op, error = ?e.kind(), "session store error");
                self.metrics.store_error(op);
                Err(StoreError)
            }
            Err(_) => {
                tracing::debug!(op, "session store timeout");
                self.metrics.store_error(op);
                Err(StoreError)
            }
        }
    }

    /// The sealed session `sid`, if it exists.
    pub async fn get(&self, sid: &str) -> Result<Option<String>, StoreError> {
        let key = self.key("s", sid);
        self.run("get", |mut c| async move { c.get(key).await })
            .await
    }

    /// Stores the sealed session for `ttl` and records it under its subject and under the
    /// provider's session id (the ID token's `sid`).
    pub async fn put(
        &self,
        sid: &str,
        sub: &str,
        provider_sid: Option<&str>,
        sealed: String,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key("s", sid);
        let mut indexes = vec![self.key("sub", sub)];
        indexes.extend(provider_sid.map(|p| self.key("psid", p)));
        let secs = ttl.as_secs().max(1);
        let sid = sid.to_owned();
        let cluster = self.is_cluster();
        self.run("put", |mut c| async move {
            // One transaction on one Redis. On a cluster the keys live in different slots,
            // so each command goes on its own (the index first: a session is never
            // stored without it).
            let mut pipes = Vec::new();
            for index in &indexes {
                let mut p = redis::pipe();
                // The index lives as long as its longest session.
                p.sadd(index, &sid).ignore();
                for cond in ["GT", "NX"] {
                    p.cmd("EXPIRE").arg(index).arg(secs).arg(cond).ignore();
                }
                pipes.push(p);
            }
            let mut set = redis::pipe();
            set.set_ex(&key, sealed, secs).ignore();
            pipes.push(set);
            if cluster {
                for p in pipes {
                    // Same slot within each: one key per pipeline.
                    p.query_async::<()>(&mut c).await?;
                }
                return Ok(());
            }
            let mut all = redis::pipe();
            all.atomic();
            for p in &pipes {
                for cmd in p.cmd_iter() {
                    all.add_command(cmd.clone()).ignore();
                }
            }
            all.query_async::<()>(&mut c).await
        })
        .await
    }

    /// Replaces a session's value, keeping its TTL; false when it no longer exists (ended
    /// meanwhile), in which case nothing is written.
    pub async fn replace(&self, sid: &str, sealed: String) -> Result<bool, StoreError> {
        let key = self.key("s", sid);
        self.run("replace", |mut c| async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(sealed)
                .arg("XX")
                .arg("KEEPTTL")
                .query_async(&mut c)
                .await?;
            Ok(set.is_some())
        })
        .await
    }

    /// Ends session `sid` on every replica.
    pub async fn delete(&self, sid: &str) -> Result<bool, StoreError> {
        let key = self.key("s", sid);
        self.run("delete", |mut c| async move {
            let n: u64 = c.del(key).await?;
            Ok(n > 0)
        })
        .await
    }

    /// The session ids recorded for a subject (`by` = `"sub"`) or a provider session
    /// (`"psid"`); some may have ended already.
    pub async fn sessions_of(&self, by: &str, id: &str) -> Result<Vec<String>, StoreError> {
        let index = self.key(by, id);
        self.run("members", |mut c| async move { c.smembers(index).await })
            .await
    }

    /// Takes the refresh lock of `sid` for [`REFRESH_LOCK`]; false if another replica holds it.
    pub async fn lock_refresh(&self, sid: &str) -> Result<bool, StoreError> {
        let key = self.key("lock", sid);
        self.run("lock", |mut c| async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(REFRESH_LOCK.as_millis()).unwrap_or(10_000))
                .query_async(&mut c)
                .await?;
            Ok(set.is_some())
        })
        .await
    }

    /// Records a one-time value (`kind:id`) for `ttl`; false if it was recorded before and
    /// has not expired. One `SET NX PX`, so of concurrent callers on any replicas exactly
    /// one gets true.
    pub async fn first_use(&self, kind: &str, id: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.key(kind, id);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run("first_use", |mut c| async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async(&mut c)
                .await?;
            Ok(set.is_some())
        })
        .await
    }

    pub async fn unlock_refresh(&self, sid: &str) {
        let key = self.key("lock", sid);
        let _ = self
            .run("unlock", |mut c| async move { c.del::<_, u64>(key).await })
            .await;
    }
}
