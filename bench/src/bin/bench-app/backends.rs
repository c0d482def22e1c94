//! The two Rust adapters under test, each set up the way its documentation shows, with the
//! buffer sizes left at their defaults unless a flag sets them.

use std::collections::BTreeMap;

use axum::Router;
use fred::{
    prelude::{Builder, Config},
    types::RespVersion,
};
use serde_json::{Value, json};
use socketio_cluster::{
    Cluster, ClusterAdapter, ClusterConfig, ClusterError, RedisDriver, RedisDriverConfig,
    SubscriptionMode, Target,
};
use socketioxide::{
    SocketIo, SocketIoBuilder,
    adapter::{Adapter, Emitter},
    extract::SocketRef,
    handler::ConnectHandler,
};
use socketioxide_redis::{FredAdapter, RedisAdapterConfig, RedisAdapterCtr};

use crate::{
    app::{self, Backend, Shared},
    warnings::WarningCounter,
};

pub struct Settings {
    pub redis_url: String,
    pub node_name: String,
    pub key: String,
    pub max_buffer: Option<usize>,
    pub ws_read_buffer: Option<usize>,
    pub receive_buffer: Option<usize>,
    pub stream_buffer: Option<usize>,
    pub sharded: Option<bool>,
    pub subscription_mode: Option<SubscriptionMode>,
}

impl Settings {
    /// socketioxide's buffers, where the run sets them.
    fn tune<A: Adapter>(&self, mut builder: SocketIoBuilder<A>) -> SocketIoBuilder<A> {
        if let Some(n) = self.max_buffer {
            builder = builder.max_buffer_size(n);
        }
        if let Some(n) = self.ws_read_buffer {
            builder = builder.ws_read_buffer_size(n);
        }
        builder
    }
}

/// Our adapter.
#[derive(Clone)]
struct ClusterBackend(Cluster<RedisDriver>);

impl Backend for ClusterBackend {
    type A = ClusterAdapter<RedisDriver>;

    async fn count(&self, _io: SocketIo<Self::A>) -> Result<usize, String> {
        // Reading the data (which arrives encoded and is decoded on first read) counts too.
        let sockets = self.0.fetch_sockets("/", &Target::all()).await;
        sockets
            .map(|s| s.iter().filter(|s| s.data().is_object()).count())
            .map_err(|e| e.to_string())
    }

    async fn rooms(&self, _io: SocketIo<Self::A>) -> Result<usize, String> {
        self.0
            .rooms("/")
            .await
            .map(|r| r.len())
            .map_err(|e| e.to_string())
    }

    /// In sharded dynamic modes the room's channel is subscribed before the socket is in it.
    async fn join(&self, socket: &SocketRef<Self::A>, rooms: Vec<String>) {
        if let Err(err) = self.0.join(socket, rooms).await {
            tracing::warn!(%err, "cannot join rooms");
        }
    }

    fn connected(&self, socket: &SocketRef<Self::A>, auth: &Value) {
        // Node.js apps set socket.data; fetchSockets ships it, so the comparison carries it too.
        if let Err(err) = socketio_cluster::track(socket, &json!({ "i": auth["i"] })) {
            tracing::warn!(%err, "cannot track socket");
        }
    }

    fn counters(&self) -> Value {
        let s = self.0.stats();
        json!({
            "published": s.published,
            "received": s.received,
            "lost": s.lost,
            "malformed": s.malformed,
            "undelivered": s.undelivered,
            "evicted": s.evicted,
            "rejected": s.rejected,
            "request_timeouts": s.request_timeouts,
            "reconnects": s.reconnects,
            "requests": s.requests,
            "rooms_reconciled": s.rooms_reconciled,
        })
    }

    /// Redis messages lost before they were read, packets local sockets could not take (failed
    /// local broadcasts are among them), and broadcasts refused because too many were pending.
    fn dropped(&self, _emit_errors: u64, _warnings: &BTreeMap<String, u64>) -> u64 {
        let s = self.0.stats();
        s.lost + s.undelivered + s.rejected
    }

    /// A broadcast refused as overloaded is neither published nor delivered locally.
    fn reached_nobody(&self, err: &socketioxide::BroadcastError) -> bool {
        matches!(
            ClusterError::cause_of(err),
            Some(ClusterError::Overloaded { .. })
        )
    }
}

pub async fn cluster(settings: &Settings, warnings: WarningCounter) -> anyhow::Result<Router> {
    let mut driver_config = RedisDriverConfig::new(&settings.redis_url);
    if let Some(n) = settings.receive_buffer {
        driver_config.receive_buffer = n;
    }
    if let Some(sharded) = settings.sharded {
        driver_config.sharded = sharded;
    }
    let driver = RedisDriver::connect(driver_config).await?;
    let cluster = Cluster::new(
        driver,
        ClusterConfig {
            key: settings.key.clone(),
            node_name: settings.node_name.clone(),
            subscription_mode: settings.subscription_mode.unwrap_or_default(),
            ..ClusterConfig::default()
        },
    );
    let backend = ClusterBackend(cluster.clone());
    let builder =
        settings.tune(SocketIo::builder().with_adapter::<ClusterAdapter<RedisDriver>>(cluster));
    let (layer, io) = builder
        .with_state(backend.clone())
        .with_state(Shared::new(warnings))
        .build_layer();
    backend.0.bind(&io);
    io.ns("/", app::connected.with(app::listen::<ClusterBackend>))
        .await?;
    Ok(Router::new().layer(layer))
}

/// socketioxide-redis (fred driver, sharded pub/sub).
#[derive(Clone)]
struct SocketioxideRedisBackend;

impl Backend for SocketioxideRedisBackend {
    type A = FredAdapter<Emitter>;

    async fn count(&self, io: SocketIo<Self::A>) -> Result<usize, String> {
        let sockets = io.fetch_sockets().await;
        sockets.map(|s| s.len()).map_err(|e| e.to_string())
    }

    async fn rooms(&self, io: SocketIo<Self::A>) -> Result<usize, String> {
        io.rooms().await.map(|r| r.len()).map_err(|e| e.to_string())
    }

    async fn join(&self, socket: &SocketRef<Self::A>, rooms: Vec<String>) {
        socket.join(rooms);
    }

    fn connected(&self, _socket: &SocketRef<Self::A>, _auth: &Value) {}

    fn counters(&self) -> Value {
        Value::Null
    }

    /// Failed local broadcasts, and the adapter's warnings: each is a message it dropped or a
    /// lag of its receive channel (one or more messages lost), so a lower bound.
    fn dropped(&self, emit_errors: u64, warnings: &BTreeMap<String, u64>) -> u64 {
        emit_errors + warnings.get("socketioxide_redis").copied().unwrap_or(0)
    }

    /// A failed broadcast may have reached some sockets: never claim it reached nobody.
    fn reached_nobody(&self, _err: &socketioxide::BroadcastError) -> bool {
        false
    }
}

pub async fn socketioxide_redis(
    settings: &Settings,
    warnings: WarningCounter,
) -> anyhow::Result<Router> {
    let mut config = Config::from_url(&settings.redis_url)?;
    // Its drivers speak RESP3; fred does not read the protocol from the URL.
    config.version = RespVersion::RESP3;
    let mut builder = Builder::from_config(config);
    if let Some(n) = settings.receive_buffer {
        builder.with_performance_config(|perf| perf.broadcast_channel_capacity = n);
    }
    let client = builder.build_subscriber_client()?;
    let mut adapter_config = RedisAdapterConfig::new().with_prefix(settings.key.clone());
    if let Some(n) = settings.stream_buffer {
        adapter_config = adapter_config.with_stream_buffer(n);
    }
    let adapter = RedisAdapterCtr::new_with_fred_config(client, adapter_config).await?;
    let builder = settings.tune(SocketIo::builder().with_adapter::<FredAdapter<Emitter>>(adapter));
    let (layer, io) = builder
        .with_state(SocketioxideRedisBackend)
        .with_state(Shared::new(warnings))
        .build_layer();
    io.ns(
        "/",
        app::connected.with(app::listen::<SocketioxideRedisBackend>),
    )
    .await?;
    tracing::debug!(node = %settings.node_name, "socketioxide-redis node ready");
    Ok(Router::new().layer(layer))
}
