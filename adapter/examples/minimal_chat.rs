//! # A minimal chat, served by two nodes
//!
//! The classic first Socket.IO app: an Express server sends `room.html`, the page loads
//! `/socket.io/socket.io.js`, and three events do the rest: `join`, `chat`, `leave`, each
//! re-emitted to the room. Here two nodes in one process share Redis (`REDIS_URL`) or, without
//! it, an in-process hub, so a page on one port chats with a page on the other.
//!
//! | Node.js (Express + socket.io 4) | here |
//! | --- | --- |
//! | `app.get("/room.html", (req, res) => res.sendFile(..))` | an axum route (the page is inline) |
//! | `/socket.io/socket.io.js`, served by socket.io itself | tower-http `ServeFile` on the `socket.io-client` package's `dist/socket.io.js` |
//! | `new Server(http, { cors: { origin } })` | tower-http `CorsLayer` on the router |
//! | `socket.on("join", name => io.emit("join", name))` | `socket.on("join", …)` then `socket.within(room).emit(…).await`, cluster-wide through the adapter |
//! | `socket.name = name` | [`socketio_cluster::set_data`] / [`data_as`](socketio_cluster::data_as) |
//! | `new Server(http, { adapter: createAdapter(pub, sub) })` | `.with_adapter::<ClusterAdapter<_>>(cluster)` |
//!
//! Events: `join` `{ name, room }` → the room gets `join` with the name; `chat` with a message
//! (a string, or `{ msg }`) → the room gets `chat` `{ name, msg }`; `leave` (or a disconnect) →
//! the room gets `leave` with the name.
//!
//! Environment: `PORT` and `PORT2` (default `PORT + 1`), `REDIS_URL`, `CORS_ORIGIN` (comma-separated,
//! default `http://localhost:8080`), `SOCKETIO_CLIENT_JS` (default: the web client's
//! `web/node_modules/socket.io-client/dist/socket.io.js`; run `npm ci` in `web/`).
//!
//! Run: `PORT=3000 cargo run -p socketio-cluster --example minimal_chat`, then open
//! `http://localhost:3000/room.html` and `http://localhost:3001/room.html`.

#[macro_use]
mod common;

use std::convert::Infallible;

use axum::{
    Router,
    http::{HeaderValue, Method, header},
    response::Html,
    routing::get,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketio_cluster::{Cluster, ClusterAdapter, ClusterConfig, Driver};
use socketioxide::{
    SocketIo,
    extract::{Data, SocketRef},
    handler::ConnectHandler,
};
use tower_http::{cors::CorsLayer, services::ServeFile};

type A<D> = ClusterAdapter<D>;

const ROOM_HTML: &str = r#"<!doctype html>
<meta charset="utf-8"><title>room</title>
<input id="name" placeholder="name"> <input id="room" value="lobby">
<button id="join">join</button> <button id="leave">leave</button>
<ul id="log"></ul>
<form id="form"><input id="msg" autocomplete="off"><button>send</button></form>
<script src="/socket.io/socket.io.js"></script>
<script>
  const socket = io();
  const $ = (id) => document.getElementById(id);
  const log = (text) => $("log").appendChild(document.createElement("li")).textContent = text;
  $("join").onclick = () => socket.emit("join", { name: $("name").value, room: $("room").value });
  $("leave").onclick = () => socket.emit("leave");
  $("form").onsubmit = (e) => { e.preventDefault(); socket.emit("chat", $("msg").value); $("msg").value = ""; };
  socket.on("join", (name) => log(`${name} joined`));
  socket.on("leave", (name) => log(`${name} left`));
  socket.on("chat", ({ name, msg }) => log(`${name}: ${msg}`));
</script>
"#;

/// Who a socket is and where it chats, kept as its socket data.
#[derive(Serialize, Deserialize)]
struct Chatter {
    name: String,
    room: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = common::port("PORT", 3000)?;
    on_each_node!(node, port, common::port("PORT2", port + 1)?);
    Ok(())
}

async fn node<D: Driver>(driver: D, port: u16) -> anyhow::Result<()> {
    let cluster = Cluster::new(driver, ClusterConfig::default());
    let (svc, io) = SocketIo::builder()
        .with_adapter::<A<D>>(cluster.clone())
        .build_svc();
    cluster.bind(&io);
    io.ns("/", (async || ()).with(listen::<D>)).await?;

    let client_js = std::env::var("SOCKETIO_CLIENT_JS").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../web/node_modules/socket.io-client/dist/socket.io.js"
        )
        .into()
    });
    let origins = std::env::var("CORS_ORIGIN").unwrap_or_else(|_| "http://localhost:8080".into());
    let origins: Vec<HeaderValue> = origins
        .split(',')
        .map(|o| o.trim().parse())
        .collect::<Result<_, _>>()?;
    // Pages from these origins may connect too (the browser asks first, with an OPTIONS
    // preflight); a list, so that another origin gets no `Access-Control-Allow-Origin` at all.
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .allow_credentials(true);
    // Socket.IO answers under `/socket.io/` only, so the client file can live beside it.
    let app = Router::new()
        .route("/room.html", get(Html(ROOM_HTML)))
        .route_service("/socket.io/socket.io.js", ServeFile::new(client_js))
        .route_service("/socket.io/", svc)
        .layer(cors);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!("listening on {port}");
    axum::serve(listener, app).await?;
    Ok(())
}

/// Handlers are registered in a connect middleware: socketioxide sends the connect packet after
/// the middlewares but runs the connect handler in a task of its own, so a page emitting `join`
/// as soon as it is connected could beat registrations made there.
async fn listen<D: Driver>(socket: SocketRef<A<D>>) -> Result<(), Infallible> {
    socket.on("join", join::<D>);
    socket.on("chat", chat::<D>);
    socket.on("leave", async |s: SocketRef<A<D>>| leave(&s).await);
    socket.on_disconnect(async |s: SocketRef<A<D>>| leave(&s).await);
    Ok(())
}

async fn join<D: Driver>(socket: SocketRef<A<D>>, Data(chatter): Data<Chatter>) {
    leave(&socket).await; // one room at a time
    socket.join(chatter.room.clone());
    socket
        .within(chatter.room.clone())
        .emit("join", &chatter.name)
        .await
        .ok();
    socketio_cluster::set_data(&socket, &chatter).ok();
}

async fn chat<D: Driver>(socket: SocketRef<A<D>>, Data(msg): Data<Value>) {
    let Some(me) = socketio_cluster::data_as::<_, Chatter>(&socket) else {
        return; // not in a room yet
    };
    let msg = msg.get("msg").unwrap_or(&msg).clone();
    let line = json!({ "name": me.name, "msg": msg });
    socket.within(me.room).emit("chat", &line).await.ok();
}

async fn leave<D: Driver>(socket: &SocketRef<A<D>>) {
    if let Some(me) = socketio_cluster::data_as::<_, Chatter>(socket) {
        socket.leave(me.room.clone());
        socket.within(me.room).emit("leave", &me.name).await.ok();
        socketio_cluster::set_data(socket, &Value::Null).ok();
    }
}
