//! # The server-side socket
//!
//! What a Node.js `Socket` offers, and where it is with socketioxide and this crate:
//!
//! | Node.js (socket.io 4) | here |
//! | --- | --- |
//! | `socket.id`, `socket.nsp.name` | `socket.id`, `socket.ns()` |
//! | `socket.handshake` (headers, query, address, time, …) | the request itself: `socket.req_parts()`; in Node's shape: [`RemoteSocket::handshake`](socketio_cluster::RemoteSocket::handshake) from `cluster.fetch_sockets` |
//! | `socket.rooms` (a `Set` with the socket's own id) | `socket.rooms()`; [`socketio_cluster::track`] puts the socket in the room of its id, as Node does |
//! | `socket.data`, `socket.user = …` | [`socketio_cluster::track`] / [`set_data`](socketio_cluster::set_data) / [`data`](socketio_cluster::data) (seen by every node), or `socket.extensions` (this node only) |
//! | `socket.conn.transport.name` | `socket.transport_type()` (the `upgrade`/`packet` events of `conn` have no counterpart) |
//! | `io.use((socket, next) => …)` | a connect middleware: `io.ns("/", handler.with(middleware))`; its `Err` is the client's `connect_error` |
//! | `io.on("connection", socket => { socket.on(…) })` | handlers registered in a connect middleware (`listen` below): socketioxide runs the connect handler itself in a separate task, after the client was told it is connected |
//! | `socket.use(([event, ...args], next) => …)` | no per-socket packet hook: an extractor ([`Checked`] below) that every handler takes first; its `Err` keeps the handler from running, as `next(err)` does |
//! | `socket.on("disconnecting", reason => socket.rooms …)` | `socket.on_disconnect`: socketioxide calls it while the socket is still in its rooms |
//! | `socket.on("disconnect", reason)` | the same handler, with a [`DisconnectReason`]: `"transport close"` is `TransportClose`, `"client namespace disconnect"` `ClientNSDisconnect`, `"server namespace disconnect"` `ServerNSDisconnect`, `"ping timeout"` `HeartbeatTimeout`, … |
//!
//! Events: connect with `auth: { name }` (refused without one); `info` (ack: id, namespace,
//! rooms, data, transport, handshake); `join` a room (ack: the rooms); any `admin:…` event is
//! refused by the packet middleware, which answers `refused`; other unknown events get `unknown`.
//! When a socket disconnects, each of its rooms hears `user has left` with its id, name, the
//! rooms it was still in, and the reason.
//!
//! Run: `PORT=3000 cargo run -p socketio-cluster --example socket_api` (`REDIS_URL` optional).

#[macro_use]
mod common;

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use serde_json::{Value, json};
use socketio_cluster::{Cluster, ClusterAdapter, ClusterConfig, Driver, Target};
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{AckSender, Data, Event, SocketRef, State},
    handler::{ConnectHandler, FromMessageParts},
    socket::{DisconnectReason, Socket},
};

type A<D> = ClusterAdapter<D>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    on_each_node!(serve, common::port("PORT", 3000)?);
    Ok(())
}

async fn serve<D: Driver>(driver: D, port: u16) -> anyhow::Result<()> {
    let cluster = Cluster::new(driver, ClusterConfig::default());
    let (layer, io) = SocketIo::builder()
        .with_adapter::<A<D>>(cluster.clone())
        .with_state(cluster.clone())
        .build_layer();
    cluster.bind(&io);
    // `with` wraps: `authenticate` runs first, then `listen`, then `connected`.
    let handler = connected::<D>.with(listen::<D>).with(authenticate::<D>);
    io.ns("/", handler).await?;

    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!("listening on {port}");
    // With the peer address in the request, `handshake.address` is filled in.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}

/// `io.use`: runs once per connection, before the connect handler.
async fn authenticate<D: Driver>(
    socket: SocketRef<A<D>>,
    Data(auth): Data<Value>,
) -> Result<(), &'static str> {
    let name = auth["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("unknown user")?;
    // `socket.data.name = …`, readable by every node.
    socketio_cluster::track(&socket, &json!({ "name": name })).map_err(|_| "bad data")
}

/// Handlers are registered in a connect middleware, not in the connect handler: socketioxide
/// sends the connect packet after the middlewares but runs the connect handler in a task of its
/// own, so a client emitting at once could beat registrations made there.
async fn listen<D: Driver>(socket: SocketRef<A<D>>) -> Result<(), Infallible> {
    socket.on("info", info::<D>);
    socket.on(
        "join",
        async |_: Checked, s: SocketRef<A<D>>, Data(room): Data<String>, ack: AckSender<A<D>>| {
            s.join(room);
            ack.send(&s.rooms()).ok();
        },
    );
    socket.on("admin:shutdown", async |_: Checked, s: SocketRef<A<D>>| {
        println!("{} may shut us down", s.id); // never: `Checked` refuses `admin:` events
    });
    socket.on_fallback(
        async |_: Checked, s: SocketRef<A<D>>, Event(event): Event| {
            s.emit("unknown", &event).ok();
        },
    );
    socket.on_disconnect(disconnecting::<D>);
    Ok(())
}

async fn connected<D: Driver>(socket: SocketRef<A<D>>) {
    println!(
        "{} connected as {}",
        socket.id,
        socketio_cluster::data(&socket)["name"]
    );
}

/// `socket.use`: an extractor runs before the handler that asks for it, and its error keeps the
/// handler from running, so a check taken by every handler (and by the fallback, for events
/// without one) sees every packet, like a per-socket packet middleware.
struct Checked;

impl<Ad: Adapter> FromMessageParts<Ad> for Checked {
    type Error = std::io::Error;

    fn from_message_parts(
        socket: &Arc<Socket<Ad>>,
        value: &mut socketioxide::handler::Value,
        ack: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let Event(event) = Event::from_message_parts(socket, value, ack).map_err(io_error)?;
        println!("{} sent {event}", socket.id); // logging, rate limiting, … go here
        if event.starts_with("admin:") {
            // `next(new Error(..))`: the handler does not run. Node leaves the client unaware;
            // telling it is friendlier.
            let refusal = json!({ "event": event, "reason": "unauthorized event" });
            socket.emit("refused", &refusal).ok();
            return Err(io_error(format!("unauthorized event {event}")));
        }
        Ok(Checked)
    }
}

fn io_error(err: impl ToString) -> std::io::Error {
    std::io::Error::other(err.to_string())
}

async fn info<D: Driver>(
    _: Checked,
    socket: SocketRef<A<D>>,
    State(cluster): State<Cluster<D>>,
    ack: AckSender<A<D>>,
) {
    // This socket as any node sees it: the handshake in Node's shape comes with it.
    let me = cluster
        .fetch_sockets(socket.ns(), &Target::rooms([socket.id.to_string()]))
        .await;
    let handshake = match me.as_deref() {
        Ok([me]) => json!(me.handshake()),
        _ => Value::Null,
    };
    ack.send(&json!({
        "id": socket.id.to_string(),
        "nsp": socket.ns(),
        "rooms": socket.rooms(),
        "data": socketio_cluster::data(&socket),
        "transport": format!("{:?}", socket.transport_type()),
        "handshake": handshake,
    }))
    .ok();
}

/// Node's `disconnecting` and `disconnect` in one: the socket is still in its rooms here.
async fn disconnecting<D: Driver>(socket: SocketRef<A<D>>, reason: DisconnectReason) {
    let own = socket.id.to_string();
    let rooms: Vec<String> = socket.rooms().into_iter().map(|r| r.to_string()).collect();
    let notice = json!({
        "id": own,
        "name": socketio_cluster::data(&socket)["name"],
        "rooms": rooms,
        "reason": format!("{reason:?}"),
    });
    for room in rooms.iter().filter(|r| **r != own) {
        socket
            .to(room.clone())
            .emit("user has left", &notice)
            .await
            .ok();
    }
}
