//! Where a node keeps what it shares with the others: Redis (a cluster), or memory (a single
//! node). Each is a type, and the chat is generic over it, so every call of the cluster and the
//! presence store reaches the real driver and store: no wrapper can forget to forward a method
//! (an enum wrapper once dropped the Redis driver's pipelined count-then-publish).

use std::{future::Future, time::Duration};

use socketio_cluster::{
    Driver, MemoryDriver, MemoryHub, RedisDriver, RedisDriverConfig, RedisTls,
    keys::{HistoryKeys, PresenceKeys},
    presence::{MemoryPresence, PresenceStore, RedisPresence},
};

use crate::{
    admin_ui::sessions::Sessions,
    config::Config,
    history::{History, RETRY_WINDOW},
};

/// What a node shares its state through.
pub trait Backend: Send + Sync + Sized + 'static {
    type Driver: Driver;
    type Presence: PresenceStore;

    /// Connects for a node whose presence entries are named `incarnation` (a restarted node
    /// never inherits a dead one's sockets).
    fn connect(
        config: &Config,
        incarnation: String,
    ) -> impl Future<Output = anyhow::Result<Shared<Self>>> + Send;

    /// Whether the shared state answers within `deadline` and the subscriber is connected.
    fn is_ready(driver: &Self::Driver, deadline: Duration) -> impl Future<Output = bool> + Send;
}

/// A node's connections to the shared state.
pub struct Shared<B: Backend> {
    pub driver: B::Driver,
    pub presence: B::Presence,
    pub history: History,
    pub admin_sessions: Sessions,
}

/// A cluster on Redis (`REDIS_URL`).
pub struct Redis;

impl Backend for Redis {
    type Driver = RedisDriver;
    type Presence = RedisPresence;

    async fn connect(config: &Config, incarnation: String) -> anyhow::Result<Shared<Self>> {
        let url = config
            .redis_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("REDIS_URL is not set"))?;
        let driver = RedisDriver::connect(RedisDriverConfig {
            tls: RedisTls {
                ca_file: config.redis_tls_ca_file.clone(),
                cert_file: config.redis_tls_cert_file.clone(),
                key_file: config.redis_tls_key_file.clone(),
            },
            sharded: config.sharded(),
            ..RedisDriverConfig::new(url)
        })
        .await?;
        let client = driver.client().clone();
        let key = &config.redis_key;
        // With sharded pub/sub a room's history lives in the slot of its channel, so the script
        // that stores a message can SPUBLISH it on a Redis Cluster.
        let history_keys = if config.sharded() {
            HistoryKeys::in_slot_of(key, config.subscription_mode)
        } else {
            HistoryKeys::new(key)
        };
        let presence_keys = PresenceKeys::sharded(key, config.presence_shards());
        Ok(Shared {
            presence: RedisPresence::with_keys(client.clone(), presence_keys, incarnation),
            admin_sessions: Sessions::redis(client.clone(), key),
            history: History::redis(
                client,
                history_keys,
                config.history_len,
                config.history_ttl_secs,
                RETRY_WINDOW,
            ),
            driver,
        })
    }

    async fn is_ready(driver: &RedisDriver, deadline: Duration) -> bool {
        driver.answers_within(deadline).await
    }
}

/// A single node, everything in memory (no `REDIS_URL`).
pub struct Memory;

impl Backend for Memory {
    type Driver = MemoryDriver;
    type Presence = MemoryPresence;

    async fn connect(config: &Config, incarnation: String) -> anyhow::Result<Shared<Self>> {
        let hub = MemoryHub::new();
        Ok(Shared {
            driver: hub.driver(),
            presence: MemoryPresence::new(incarnation),
            admin_sessions: Sessions::memory(),
            history: History::memory(
                config.history_len,
                Duration::from_secs(config.history_ttl_secs),
                hub,
            ),
        })
    }

    async fn is_ready(_: &MemoryDriver, _: Duration) -> bool {
        true
    }
}
