//! Tunables of a cluster node.

use std::time::Duration;

/// How a node talks to the others. The defaults match `@socket.io/redis-adapter`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Prefix of every channel (the Node.js adapter's `key` option).
    pub key: String,
    /// A human-readable node name, shown in logs, heartbeats and remote socket descriptions.
    pub node_name: String,
    /// How long a cluster request waits for the other nodes.
    pub request_timeout: Duration,
    /// How often this node announces it is alive.
    pub heartbeat_interval: Duration,
    /// After this long without a heartbeat, a node is dead and nobody waits for it.
    pub node_timeout: Duration,
    /// Answer requests on the requester's own channel (`{key}-response#{nsp}#{uid}#`) rather
    /// than on the namespace's shared response channel. Node.js adapters from 8.1 listen on both;
    /// turn it off only for older ones.
    pub specific_response_channel: bool,
    /// When this node loses messages from the others (it read them too slowly, see
    /// `ClusterStats::lost`, or its subscriber connection dropped and came back, see
    /// `ClusterStats::reconnects`), disconnect its clients: any of them may have missed a broadcast,
    /// and a reconnect is how a Socket.IO client learns that it must resync. Off, they stay
    /// connected with the gap, which is only counted and logged.
    pub disconnect_on_loss: bool,
    /// Broadcasts this node may have handed to the pub/sub server without its confirmation.
    /// Beyond that a broadcast fails at once with `ClusterError::Overloaded` (counted in
    /// `ClusterStats::rejected`): under a sustained overload the queue would otherwise grow
    /// without bound, in memory and in latency (230,000 queued, 5 GB and 11 s, in a 20 s
    /// overload of the benchmark).
    pub max_pending_broadcasts: usize,
    /// Namespaces this node may serve in the cluster at once (subscribed to their channels and
    /// listed in its heartbeats). Beyond it, [`Cluster::admit`](crate::Cluster::admit) fails with
    /// `ClusterError::TooManyNamespaces`: a client that names a new dynamic namespace at every
    /// connect cannot grow this node's subscriptions and heartbeats without bound.
    pub max_namespaces: usize,
    /// When true, a namespace created by socketioxide joins the cluster (subscribes to its
    /// channels, appears in heartbeats) only when the application admits its first socket with
    /// [`Cluster::admit`](crate::Cluster::admit), typically in a connect middleware once the
    /// namespace name and the client's credentials were checked: a connect packet from anyone
    /// then costs this node no Redis subscription. When false, a namespace joins the cluster as
    /// soon as it is created, and sockets connected during its first subscription round trip may
    /// miss broadcasts from other nodes.
    pub lazy_namespaces: bool,
    /// Largest message from another node this node decodes; a bigger one is dropped, counted as
    /// malformed and logged. Any publisher on the key's channels (a Node.js node, an emitter, a
    /// stray script) could otherwise make every node decode a message as large as Redis takes
    /// (512 MB). Set it above the largest legitimate one: a `fetchSockets` answer holds every
    /// matching socket of a node, each with its data and handshake.
    pub max_inbound_bytes: usize,
    /// Which channels carry broadcasts when the driver speaks sharded pub/sub (see
    /// [`Driver::sharded`](crate::Driver::sharded)); ignored otherwise.
    pub subscription_mode: SubscriptionMode,
}

/// The subscription modes of Node.js' `createShardedAdapter`, with its names. Every node of a
/// cluster, Rust or Node.js, must use the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SubscriptionMode {
    /// One channel per namespace: every node receives every broadcast of the namespaces it
    /// serves. For few namespaces whose broadcasts go to everyone.
    Static,
    /// A broadcast to exactly one room goes on that room's channel, which a node subscribes only
    /// while it hosts a socket of the room. Rooms named like socket ids stay on the namespace's
    /// channel. For rooms that live on few nodes.
    #[default]
    Dynamic,
    /// As `Dynamic`, and a socket's own room (its id) has its channel too: one subscription per
    /// connected socket, for many private messages.
    DynamicPrivate,
}

impl std::str::FromStr for SubscriptionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "static" => Ok(Self::Static),
            "dynamic" => Ok(Self::Dynamic),
            "dynamic-private" => Ok(Self::DynamicPrivate),
            other => Err(format!(
                "unknown subscription mode {other:?} (static, dynamic or dynamic-private)"
            )),
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            key: "socket.io".into(),
            node_name: format!("node-{:08x}", rand::random::<u32>()),
            request_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_millis(2500),
            node_timeout: Duration::from_secs(10),
            specific_response_channel: true,
            disconnect_on_loss: true,
            max_pending_broadcasts: 8192,
            max_namespaces: 1000,
            lazy_namespaces: false,
            max_inbound_bytes: 64 << 20,
            subscription_mode: SubscriptionMode::default(),
        }
    }
}
