//! A [socketioxide](https://docs.rs/socketioxide) adapter that makes several server nodes act as
//! one Socket.IO server over Redis pub/sub, and that speaks the protocol of Node.js'
//! `@socket.io/redis-adapter` 8.x, so Rust nodes can join an existing Node.js cluster.
//!
//! It also speaks the protocol of `createShardedAdapter` (sharded pub/sub, for Redis Cluster):
//! see [below](#sharded-pubsub-and-redis-cluster).
//!
//! Cluster-wide, in every namespace (dynamic ones included): broadcasts to rooms, with `except`,
//! to everyone, `local` and `volatile`; broadcasts with acks; `socketsJoin` / `socketsLeave`;
//! `disconnectSockets`; all rooms; `fetchSockets`; server count — all through socketioxide's own
//! API. What that API cannot carry is this crate's own: remote sockets with their data,
//! handshake and actions (`emit` with or without ack, `join`, `leave`, `disconnect`, on any node,
//! Node.js ones included: [`Cluster::fetch_sockets`], [`RemoteSocket`], [`track`]), server-side emits with acks
//! ([`Cluster::server_side_emit_with_ack`]), node liveness ([`Cluster::nodes`],
//! [`Cluster::node_events`]) and counters ([`Cluster::stats`]).
//!
//! # How it works
//! * **Channels** — those of the Node.js adapter (see [`channels`](crate#channels)): broadcasts on
//!   `{key}#{nsp}#[room#]` (MessagePack `[uid, packet, opts]`), requests on
//!   `{key}-request#{nsp}#`, responses on `{key}-response#{nsp}#[uid#]`.
//! * **Message flow** — an operation is applied to local sockets and published once; every other
//!   node applies it to its own sockets. Requests (fetch sockets, rooms, acks, server-side emits)
//!   are answered by each node with a response carrying the request id.
//! * **Scripted broadcasts** — a broadcast whose content Redis decides (a room's next sequence
//!   number, assigned in the same atomic step as the publish) is encoded ahead of time with holes
//!   ([`Cluster::broadcast_template`], [`hole`]) for a Lua script to fill and publish. It carries
//!   the uid [`SCRIPT_UID`], so every node delivers it, the one that ran the script included, in
//!   the order Redis published it.
//! * **Liveness** — each node publishes a heartbeat every `heartbeat_interval` (and a goodbye on
//!   [`Cluster::close`]). A request waits for the live nodes of this crate serving the namespace
//!   plus the Node.js nodes counted by `PUBSUB NUMSUB`, so a crashed node never stalls it (a
//!   node that cannot hear its own heartbeat declares nobody dead, so a Redis outage is no false
//!   death); a node
//!   that dies while a request waits is dropped from it; a request that still times out fails
//!   with [`ClusterError::Timeout`] naming the silent nodes instead of returning partial data.
//! * **Resilience** — the Redis driver reconnects forever and restores subscriptions; messages
//!   lost in between, or dropped because they arrived faster than read, are counted
//!   ([`ClusterStats::lost`]) and logged. After a loss of the second kind the node disconnects
//!   its clients, which may have missed broadcasts ([`ClusterConfig::disconnect_on_loss`]).
//! * **Overload** — beyond [`ClusterConfig::max_pending_broadcasts`] broadcasts waiting for the
//!   pub/sub server, a broadcast fails at once with [`ClusterError::Overloaded`]
//!   ([`ClusterStats::rejected`]) instead of queueing without bound.
//! * **Slow clients** — a local client whose packet buffer is full gets no further broadcast and
//!   is disconnected ([`ClusterStats::evicted`]), so a client never misses a message while it
//!   stays connected.
//!
//! # Sharded pub/sub and Redis Cluster
//!
//! With a sharded driver ([`RedisDriverConfig::sharded`], set by a `redis-cluster://` URL, or
//! [`MemoryHub::sharded`]) the nodes speak the protocol of Node.js' `createShardedAdapter`
//! (`@socket.io/redis-adapter` 8.3): `SPUBLISH`/`SSUBSCRIBE`, messages `{type, data, uid, nsp}`,
//! requests and broadcasts on `{key}#{nsp}#`, responses on `{key}#{nsp}#{uid}#`, servers counted
//! by `PUBSUB SHARDNUMSUB`. [`ClusterConfig::subscription_mode`] picks its
//! [`SubscriptionMode`]; every node of a cluster, Rust or Node.js, must use the same one.
//!
//! In the dynamic modes a broadcast to exactly one room goes on the room's channel
//! `{key}#{nsp}#{room}#`, which a node subscribes only while it hosts a socket of that room. What
//! a library user must do:
//!
//! * **Put sockets in rooms with [`Cluster::join`]** (it subscribes the room's channel, then joins),
//!   not with `SocketRef::join`: socketioxide writes that one straight into its room table, and
//!   the adapter cannot see it. `socketsJoin` (`io.to(…).join(…)`, [`Cluster::add_sockets`]) and
//!   joins relayed by other nodes go through the adapter and need nothing.
//! * Nothing else. Once a second the node compares its subscriptions with the rooms of its
//!   sockets: it subscribes rooms joined behind its back — counted in
//!   [`ClusterStats::rooms_reconciled`], as their sockets may have missed broadcasts until then —
//!   and unsubscribes rooms left empty.
//!
//! Other differences: `allRooms` ([`Cluster::rooms`]) is answered by this crate's nodes only, as
//! Node.js' sharded adapter has no such request; in `Dynamic` mode a room named like a socket id
//! (a socketioxide id, or any 20-character name) stays on the namespace channel, as Node.js
//! publishes it; use `DynamicPrivate` for many messages to single sockets.
//!
//! On a Redis Cluster, presence needs [`keys::PresenceKeys::sharded`] (each presence shard in a
//! hash slot of its own, every node claiming the timers of every shard) and keys a script
//! publishes with must share the slot of the channel ([`keys::HistoryKeys::in_slot_of`],
//! [`BroadcastTemplate::publish_command`]).
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use socketio_cluster::{Cluster, ClusterAdapter, ClusterConfig, RedisDriver, RedisDriverConfig, Target};
//! use socketioxide::{SocketIo, extract::SocketRef};
//!
//! type Adapter = ClusterAdapter<RedisDriver>;
//!
//! let driver = RedisDriver::connect(RedisDriverConfig::new("redis://127.0.0.1:6379")).await?;
//! let cluster = Cluster::new(driver, ClusterConfig::default());
//! let (layer, io) = SocketIo::builder().with_adapter::<Adapter>(cluster.clone()).build_layer();
//! cluster.bind(&io);
//! io.ns("/", async |socket: SocketRef<Adapter>| {
//!     socketio_cluster::track(&socket, &serde_json::json!({ "userId": "42" })).ok();
//!     socket.join("lobby");
//! })
//! .await?;
//!
//! // Anywhere: every socket of room "lobby", on every node, with its data.
//! let sockets = cluster.fetch_sockets("/", &Target::rooms(["lobby"])).await?;
//! // And the usual socketioxide operations are cluster-wide:
//! io.to("lobby").emit("hello", &"everyone").await?;
//! # let _ = (layer, sockets);
//! # Ok(()) }
//! ```

mod adapter;
mod cluster;
mod config;
mod delivery;
mod driver;
mod error;
pub mod keys;
mod node;
mod opts;
pub mod presence;
mod protocol;
mod socket;
mod stats;
mod template;
mod value;
mod wire;

pub use adapter::{Cluster, ClusterAckStream, ClusterAdapter, NsInit};
pub use config::{ClusterConfig, SubscriptionMode};
pub use driver::{
    Driver, Incoming, IncomingStream, MemoryDriver, MemoryHub, RedisDriver, RedisDriverConfig,
    RedisTls,
};
pub use error::{ClusterError, DriverError, TrackError, WireError};
pub use node::{
    ANY_NAMESPACE, ServerEvent, ServerEventHandler,
    membership::{NodeEvent, NodeInfo},
};
pub use opts::Target;
pub use socket::{RemoteSocket, data, data_as, handshake, set_data, track};
pub use stats::ClusterStats;
pub use template::{BroadcastTemplate, SCRIPT_UID, hole};
pub use wire::Handshake;
