//! The two ways a node reaches its peers and keeps shared state: Redis, or (single node) memory.

use std::time::Duration;

use fred::clients::Client;
use socketio_cluster::{
    Driver, DriverError, IncomingStream, MemoryDriver, MemoryHub, RedisDriver, RedisDriverConfig,
    presence::{
        Departure, Joined, Left, Member, MemoryPresence, PresenceError, PresenceStore, Reap,
        RedisPresence,
    },
};

/// The pub/sub transport of the node.
pub enum Transport {
    Redis(RedisDriver),
    Memory(MemoryDriver),
}

impl Transport {
    pub async fn connect(redis_url: Option<&str>) -> Result<Self, DriverError> {
        Ok(match redis_url {
            Some(url) => Self::Redis(RedisDriver::connect(RedisDriverConfig::new(url)).await?),
            None => Self::Memory(MemoryHub::new().driver()),
        })
    }

    /// The Redis client, in Redis mode.
    pub fn redis(&self) -> Option<&Client> {
        match self {
            Self::Redis(driver) => Some(driver.client()),
            Self::Memory(_) => None,
        }
    }

    /// Whether the shared state answers within `deadline` and the subscriber is connected.
    pub async fn is_ready(&self, deadline: Duration) -> bool {
        match self {
            Self::Redis(driver) => driver.answers_within(deadline).await,
            Self::Memory(_) => true,
        }
    }
}

impl Driver for Transport {
    async fn publish(&self, channel: String, payload: Vec<u8>) -> Result<(), DriverError> {
        match self {
            Self::Redis(d) => d.publish(channel, payload).await,
            Self::Memory(d) => d.publish(channel, payload).await,
        }
    }

    async fn subscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> Result<(), DriverError> {
        match self {
            Self::Redis(d) => d.subscribe(channels, patterns).await,
            Self::Memory(d) => d.subscribe(channels, patterns).await,
        }
    }

    async fn unsubscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> Result<(), DriverError> {
        match self {
            Self::Redis(d) => d.unsubscribe(channels, patterns).await,
            Self::Memory(d) => d.unsubscribe(channels, patterns).await,
        }
    }

    async fn num_sub(&self, channels: Vec<String>) -> Result<Vec<u64>, DriverError> {
        match self {
            Self::Redis(d) => d.num_sub(channels).await,
            Self::Memory(d) => d.num_sub(channels).await,
        }
    }

    async fn num_sub_then_publish(
        &self,
        channels: Vec<String>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<Vec<u64>, DriverError> {
        match self {
            Self::Redis(d) => d.num_sub_then_publish(channels, channel, payload).await,
            Self::Memory(d) => d.num_sub_then_publish(channels, channel, payload).await,
        }
    }

    fn incoming(&self) -> IncomingStream {
        match self {
            Self::Redis(d) => d.incoming(),
            Self::Memory(d) => d.incoming(),
        }
    }
}

/// Presence in Redis or in memory.
pub enum Presence {
    Redis(RedisPresence),
    Memory(MemoryPresence),
}

impl PresenceStore for Presence {
    async fn join(
        &self,
        nsp: &str,
        room: &str,
        user: &Member,
        socket: &str,
    ) -> Result<Joined, PresenceError> {
        match self {
            Self::Redis(p) => p.join(nsp, room, user, socket).await,
            Self::Memory(p) => p.join(nsp, room, user, socket).await,
        }
    }

    async fn leave(
        &self,
        nsp: &str,
        room: &str,
        socket: &str,
        grace: Option<Duration>,
    ) -> Result<Left, PresenceError> {
        match self {
            Self::Redis(p) => p.leave(nsp, room, socket, grace).await,
            Self::Memory(p) => p.leave(nsp, room, socket, grace).await,
        }
    }

    async fn online(&self, nsp: &str, room: &str) -> Result<Vec<Member>, PresenceError> {
        match self {
            Self::Redis(p) => p.online(nsp, room).await,
            Self::Memory(p) => p.online(nsp, room).await,
        }
    }

    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Departure>, PresenceError> {
        match self {
            Self::Redis(p) => p.claim_due(limit, lease).await,
            Self::Memory(p) => p.claim_due(limit, lease).await,
        }
    }

    async fn settle(&self, departure: &Departure) -> Result<(), PresenceError> {
        match self {
            Self::Redis(p) => p.settle(departure).await,
            Self::Memory(p) => p.settle(departure).await,
        }
    }

    async fn reap(&self, node_timeout: Duration, grace: Duration) -> Result<Reap, PresenceError> {
        match self {
            Self::Redis(p) => p.reap(node_timeout, grace).await,
            Self::Memory(p) => p.reap(node_timeout, grace).await,
        }
    }

    async fn retire(&self, grace: Duration) -> Result<(), PresenceError> {
        match self {
            Self::Redis(p) => p.retire(grace).await,
            Self::Memory(p) => p.retire(grace).await,
        }
    }
}
