//! # The handshake query kept as socket data
//!
//! The Node.js way: the client connects with `io(url, { path: "/chat", query: { userId } })`, the
//! connection handler copies `socket.handshake.query.userId` into `socket.data`, and the
//! `disconnect` handler, which receives no payload, reads `socket.data.userId` to tell who left.
//! The same program with socketioxide and this crate:
//!
//! | Node.js (socket.io 4) | here |
//! | --- | --- |
//! | `new Server(http, { path: "/chat" })` | `SocketIo::builder().req_path("/chat")` |
//! | `socket.handshake.query.userId` | `socket.req_parts().uri.query()`, decoded by `form_urlencoded` |
//! | `socket.data = { userId }` | [`socketio_cluster::track`]`(&socket, &json!({ "userId": .. }))` |
//! | `socket.data.userId` | [`socketio_cluster::data`]`(&socket)["userId"]` |
//! | `(await io.fetchSockets()).map(s => s.data)` | `cluster.fetch_sockets("/", &Target::all())`, [`RemoteSocket::data`](socketio_cluster::RemoteSocket::data) |
//! | `io.on("connection", socket => { socket.on(..) })` | a connect middleware (`.with(..)`) registers the handlers: see [`on_connection`] |
//! | `socket.on("disconnect", reason => ..)` | `socket.on_disconnect(async \|socket, reason: DisconnectReason\| ..)` |
//! | `socket.broadcast.emit(..)` | `socket.broadcast().emit(..).await` |
//!
//! Data set with `track` is not only a local property: it travels with the socket's description,
//! so every node of the cluster reads it in `fetch_sockets` (the `online` event below).
//!
//! Events: `whoami` (ack: this socket's data), `online` (ack: the `userId` of every socket of
//! the cluster); on a disconnect the others get `user left` with the leaver's `userId` and reason.
//!
//! Run: `PORT=3000 cargo run -p socketio-cluster --example query_to_data` (with
//! `REDIS_URL=redis://127.0.0.1:6379`, several of them form a cluster), then in a page with the
//! socket.io client:
//! `io("http://localhost:3000", { path: "/chat", query: { userId: "김재환" } }).emitWithAck("whoami")`.

#[macro_use]
mod common;

use std::convert::Infallible;

use serde_json::json;
use socketio_cluster::{Cluster, ClusterAdapter, ClusterConfig, Driver, Target};
use socketioxide::{
    SocketIo,
    extract::{AckSender, SocketRef, State},
    handler::ConnectHandler,
    socket::DisconnectReason,
};

type A<D> = ClusterAdapter<D>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    on_each_node!(serve, common::port("PORT", 3000)?);
    Ok(())
}

async fn serve<D: Driver>(driver: D, port: u16) -> anyhow::Result<()> {
    let cluster = Cluster::new(driver, ClusterConfig::default());
    let (svc, io) = SocketIo::builder()
        .req_path("/chat")
        .with_adapter::<A<D>>(cluster.clone())
        .with_state(cluster.clone())
        .build_svc();
    cluster.bind(&io);
    io.ns("/", connected::<D>.with(on_connection::<D>)).await?;

    // Clients ask for `/chat/?EIO=4&…`: the Socket.IO service answers under that path only.
    let app = axum::Router::new().route_service("/chat/", svc);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!("listening on {port}");
    axum::serve(listener, app).await?;
    Ok(())
}

/// `io.on("connection")`'s work, done in a connect middleware: socketioxide sends the connect
/// packet after the middlewares but runs the connect handler in a task of its own, so a client
/// emitting as soon as it is connected could beat handlers registered there.
async fn on_connection<D: Driver>(socket: SocketRef<A<D>>) -> Result<(), Infallible> {
    // `uri.query()` is still percent-encoded (`userId=%EA%B9%80…`): decode it as a form would.
    let query = socket.req_parts().uri.query().unwrap_or_default();
    let user_id = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "userId")
        .map_or_else(|| "anonymous".to_string(), |(_, value)| value.into_owned());
    // `socket.data = { userId }`, and the socket's own room, so other nodes can reach it.
    if let Err(err) = socketio_cluster::track(&socket, &json!({ "userId": user_id })) {
        eprintln!("cannot track {}: {err}", socket.id);
    }
    socket.on("whoami", whoami::<D>);
    socket.on("online", online::<D>);
    socket.on_disconnect(on_disconnect::<D>);
    Ok(())
}

async fn connected<D: Driver>(socket: SocketRef<A<D>>) {
    let user_id = &socketio_cluster::data(&socket)["userId"];
    println!("{} connected as {user_id}", socket.id);
}

async fn whoami<D: Driver>(socket: SocketRef<A<D>>, ack: AckSender<A<D>>) {
    ack.send(&socketio_cluster::data(&socket)).ok();
}

/// Every user online, whichever node holds their socket.
async fn online<D: Driver>(
    socket: SocketRef<A<D>>,
    State(cluster): State<Cluster<D>>,
    ack: AckSender<A<D>>,
) {
    let reply = match cluster.fetch_sockets(socket.ns(), &Target::all()).await {
        Ok(sockets) => sockets.iter().map(|s| s.data()["userId"].clone()).collect(),
        Err(err) => json!({ "error": err.to_string() }),
    };
    ack.send(&reply).ok();
}

/// The disconnect carries no payload: the data stored at connect tells who this was.
async fn on_disconnect<D: Driver>(socket: SocketRef<A<D>>, reason: DisconnectReason) {
    let user_id = socketio_cluster::data(&socket)["userId"].clone();
    println!("{} ({user_id}) disconnected: {reason}", socket.id);
    let notice = json!({ "userId": user_id, "reason": format!("{reason:?}") });
    if let Err(err) = socket.broadcast().emit("user left", &notice).await {
        eprintln!("cannot announce {user_id} leaving: {err}");
    }
}
