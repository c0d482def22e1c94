//! The pub/sub transport under the cluster protocol.
//!
//! The protocol ([`crate::Cluster`]) only needs to publish, (un)subscribe, count subscribers and
//! read what arrives. [`RedisDriver`] does it over Redis with `fred`; [`MemoryDriver`] does it in
//! process, so multi-node behaviour can be tested without a server.

use std::{future::Future, pin::Pin};

use bytes::Bytes;
use futures_core::Stream;

use crate::error::DriverError;

mod memory;
mod redis;

pub use memory::{MemoryDriver, MemoryHub};
pub use redis::{RedisDriver, RedisDriverConfig, RedisTls};

/// What the transport hands to the protocol.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A message published on a channel this node subscribed to (directly or by pattern).
    Message { channel: String, payload: Bytes },
    /// The transport had to discard this many messages because they arrived faster than they
    /// were read. Pub/sub cannot replay them; the protocol counts and logs the loss.
    Lost(u64),
    /// The connection was re-established and its subscriptions restored: whatever was published
    /// while it was down never arrived, and from now on everything does. Say it only once the
    /// subscriptions are back: clients told to resync before that could miss more.
    Reconnected,
}

/// The stream of [`Incoming`] events of a driver.
pub type IncomingStream = Pin<Box<dyn Stream<Item = Incoming> + Send>>;

/// A pub/sub transport.
pub trait Driver: Send + Sync + 'static {
    /// Whether it speaks sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`, `PUBSUB SHARDNUMSUB`): the
    /// nodes then speak the protocol of Node.js' `createShardedAdapter`, and subscribe to no
    /// pattern. A Redis Cluster delivers a sharded message only within the shard of its channel,
    /// where classic pub/sub is relayed to every shard.
    fn sharded(&self) -> bool;

    /// Publishes `payload` on `channel`.
    fn publish(
        &self,
        channel: String,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Subscribes to channels and glob patterns (never patterns when sharded). Subscriptions
    /// survive reconnections.
    fn subscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Drops subscriptions.
    fn unsubscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// The number of subscribers of each channel (`PUBSUB NUMSUB`), in order.
    fn num_sub(
        &self,
        channels: Vec<String>,
    ) -> impl Future<Output = Result<Vec<u64>, DriverError>> + Send;

    /// Counts the subscribers of `probe` (as [`Driver::num_sub`]), then publishes `payload` on
    /// `channel`, with no subscription changing in between: a request then waits for exactly the
    /// nodes that receive it. When sharded, that promise holds for `probe[0]`, which is `channel`.
    /// No default: two steps would not keep that promise, and a wrapper that forgot to forward
    /// this method would silently fall back to them.
    fn num_sub_then_publish(
        &self,
        probe: Vec<String>,
        channel: String,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u64>, DriverError>> + Send;

    /// Everything that arrives on this driver's subscriptions. Called once, by the cluster.
    fn incoming(&self) -> IncomingStream;
}
