//! Cluster nodes for tests. Each node runs on its own thread and Tokio runtime, serving
//! Socket.IO on a loopback port, so a test can crash one: dropping its runtime ends every task it
//! owns (server, heartbeats, Redis connections) without any goodbye, as a killed process would.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use serde_json::{Value, json};
use socketio_cluster::{Cluster, ClusterAdapter, ClusterConfig, Driver, ServerEvent};
use socketioxide::{
    SocketIo,
    extract::{Data, SocketRef},
};
use tokio::sync::oneshot;

/// Liveness timings short enough for tests.
pub fn test_config(name: &str, key: &str) -> ClusterConfig {
    ClusterConfig {
        key: key.to_string(),
        node_name: name.to_string(),
        request_timeout: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(200),
        node_timeout: Duration::from_millis(1000),
        specific_response_channel: true,
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
    stop: Mutex<Option<oneshot::Sender<Stop>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

enum Stop {
    Graceful,
    Crash,
}

impl<D: Driver> TestNode<D> {
    /// Starts a node whose driver `make_driver` connects.
    pub async fn start<F, Fut>(config: ClusterConfig, make_driver: F) -> anyhow::Result<Self>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<D>>,
    {
        let name = config.node_name.clone();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<Stop>();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let started = rt.block_on(async move {
                    let driver = make_driver().await?;
                    serve(config, driver).await
                });
                let io = match started {
                    Ok((port, io, cluster, events)) => {
                        let _ = ready_tx.send(Ok((port, io.clone(), cluster.clone(), events)));
                        (io, cluster)
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                let stop = rt.block_on(async { stop_rx.await.unwrap_or(Stop::Crash) });
                if let Stop::Graceful = stop {
                    let (io, cluster) = io;
                    rt.block_on(async move {
                        io.close().await;
                        cluster.close().await;
                    });
                }
                rt.shutdown_background();
            })?;
        let (port, io, cluster, server_events) = ready_rx.await.context("node thread died")??;
        Ok(Self {
            name,
            port,
            io,
            cluster,
            server_events,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Kills the node: no goodbye, no socket closed cleanly.
    pub fn crash(&self) {
        self.halt(Stop::Crash);
    }

    /// Stops the node the way a graceful shutdown does.
    pub fn stop(&self) {
        self.halt(Stop::Graceful);
    }

    fn halt(&self, how: Stop) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(how);
        }
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

impl<D: Driver> Drop for TestNode<D> {
    fn drop(&mut self) {
        self.halt(Stop::Crash);
    }
}

type Started<D> = (
    u16,
    SocketIo<ClusterAdapter<D>>,
    Cluster<D>,
    Arc<Mutex<Vec<ServerEvent>>>,
);

/// The test application: sockets are tracked with `auth.data` as their data and join the rooms
/// listed in `auth.rooms`; a socket emitting `shout` broadcasts `news` to everyone but itself.
/// Server-side events are recorded and acknowledged with the node name.
async fn serve<D: Driver>(config: ClusterConfig, driver: D) -> anyhow::Result<Started<D>> {
    let name = config.node_name.clone();
    let cluster = Cluster::new(driver, config);
    let (layer, io) = SocketIo::builder()
        .with_adapter::<ClusterAdapter<D>>(cluster.clone())
        .build_layer();
    cluster.bind(&io);
    io.ns("/", on_connect::<D>).await?;
    io.dyn_ns("/{name}", on_connect::<D>)?;
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

async fn on_connect<D: Driver>(socket: SocketRef<ClusterAdapter<D>>, Data(auth): Data<Value>) {
    let _ = socketio_cluster::track(&socket, &auth["data"]);
    if let Some(rooms) = auth["rooms"].as_array() {
        for room in rooms.iter().filter_map(Value::as_str) {
            socket.join(room.to_string());
        }
    }
    socket.on(
        "shout",
        async |socket: SocketRef<ClusterAdapter<D>>, Data(v): Data<Value>| {
            let _ = socket.broadcast().emit("news", &v).await;
        },
    );
}
