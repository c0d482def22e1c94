//! Cluster nodes for tests: a small app on the adapter, serving Socket.IO on a loopback port, each
//! node [`Isolated`] so a test can crash it.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::isolated::Isolated;
use serde_json::{Value, json};
use socketio_cluster::{Cluster, ClusterAdapter, ClusterConfig, Driver, ServerEvent};
use socketioxide::{
    SocketIo,
    extract::{Data, SocketRef, State},
    handler::ConnectHandler,
};

/// Liveness timings short enough for tests.
pub fn test_config(name: &str, key: &str) -> ClusterConfig {
    ClusterConfig {
        key: key.to_string(),
        node_name: name.to_string(),
        request_timeout: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(200),
        node_timeout: Duration::from_millis(1000),
        specific_response_channel: true,
        ..ClusterConfig::default()
    }
}

/// A running node.
pub struct TestNode<D: Driver> {
    pub name: String,
    pub port: u16,
    pub io: SocketIo<ClusterAdapter<D>>,
    pub cluster: Cluster<D>,
    /// Server-side events this node received.
    pub server_events: Arc<Mutex<Vec<ServerEvent>>>,
    runner: Isolated,
}

impl<D: Driver> TestNode<D> {
    /// Starts a node whose driver `make_driver` connects.
    pub async fn start<F, Fut>(config: ClusterConfig, make_driver: F) -> anyhow::Result<Self>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<D>>,
    {
        let name = config.node_name.clone();
        let (runner, (port, io, cluster, server_events)) =
            Isolated::spawn(&name, move || async move {
                let started = serve(config, make_driver().await?).await?;
                let (io, cluster) = (started.1.clone(), started.2.clone());
                Ok((started, move || async move {
                    io.close().await;
                    cluster.close().await;
                }))
            })
            .await?;
        Ok(Self {
            name,
            port,
            io,
            cluster,
            server_events,
            runner,
        })
    }

    /// Kills the node: no goodbye, no socket closed cleanly.
    pub fn crash(&self) {
        self.runner.crash();
    }

    /// Stops the node the way a graceful shutdown does.
    pub fn stop(&self) {
        self.runner.stop();
    }
}

type Started<D> = (
    u16,
    SocketIo<ClusterAdapter<D>>,
    Cluster<D>,
    Arc<Mutex<Vec<ServerEvent>>>,
);

/// The test application: sockets are tracked with `auth.data` as their data and join the rooms
/// listed in `auth.rooms` (through [`Cluster::join`], as sharded pub/sub requires); a socket emitting `shout` broadcasts `news` to everyone but itself.
/// Server-side events are recorded and acknowledged with the node name.
async fn serve<D: Driver>(config: ClusterConfig, driver: D) -> anyhow::Result<Started<D>> {
    let name = config.node_name.clone();
    let cluster = Cluster::new(driver, config);
    let (layer, io) = SocketIo::builder()
        .with_adapter::<ClusterAdapter<D>>(cluster.clone())
        .with_state(cluster.clone())
        .build_layer();
    cluster.bind(&io);
    io.ns("/", connected::<D>.with(set_up::<D>)).await?;
    io.dyn_ns("/{name}", connected::<D>.with(set_up::<D>))?;
    let events = Arc::new(Mutex::new(Vec::new()));
    for nsp in ["/", "/dyn-a"] {
        let (events, name) = (events.clone(), name.clone());
        cluster.on_server_event(nsp, move |ev| {
            events.lock().unwrap().push(ev);
            let name = name.clone();
            async move { Some(json!({ "node": name })) }
        });
    }
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, service).await;
    });
    Ok((port, io, cluster, events))
}

/// Connect middleware: socketioxide runs it before it sends the connect packet (the connect
/// handler runs later, in a task of its own), so the rooms are joined by the time a test's client
/// is connected.
async fn set_up<D: Driver>(
    socket: SocketRef<ClusterAdapter<D>>,
    Data(auth): Data<Value>,
    State(cluster): State<Cluster<D>>,
) -> Result<(), socketio_cluster::ClusterError> {
    let _ = socketio_cluster::track(&socket, &auth["data"]);
    if let Some(rooms) = auth["rooms"].as_array() {
        let rooms: Vec<String> = rooms
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        cluster.join(&socket, rooms).await?;
    }
    socket.on(
        "shout",
        async |socket: SocketRef<ClusterAdapter<D>>, Data(v): Data<Value>| {
            let _ = socket.broadcast().emit("news", &v).await;
        },
    );
    Ok(())
}

async fn connected<D: Driver>(socket: SocketRef<ClusterAdapter<D>>) {
    tracing::debug!(socket = %socket.id, "connected");
}
