//! # The server instance: namespaces and operations on sockets of every node
//!
//! With `@socket.io/redis-adapter`, Node's `io` acts on the sockets of the whole cluster. Here
//! socketioxide's own `io.to(..).emit(..)`, `io.in(..).sockets_join(..)`, … are cluster-wide as
//! well; [`Cluster`] adds what socketioxide's API cannot carry (the data of remote sockets,
//! server-side events) and works from anywhere, even a node without sockets. A small HTTP API on
//! the same port as Socket.IO triggers each operation:
//!
//! | Node.js (socket.io 4) | here | HTTP |
//! | --- | --- | --- |
//! | `io.of("/orders")` | `io.ns("/orders", …)`; every call below takes the namespace | `?nsp=/orders` |
//! | `io.in(rooms).except(rooms)` | [`Target::rooms`]`(..).except(..)` | `?in=a,b&except=c` |
//! | `await io.fetchSockets()` | [`Cluster::fetch_sockets`], with `data`, `rooms`, `handshake` | `GET /sockets` |
//! | `io.socketsJoin(room)` / `socketsLeave` | [`Cluster::add_sockets`] / [`Cluster::del_sockets`] | `POST /join?room=` / `/leave?room=` |
//! | `io.disconnectSockets()` | [`Cluster::disconnect_sockets`] | `POST /disconnect` |
//! | `io.emit(event, data)` | [`Cluster::emit`] | `POST /emit?event=` (body: JSON) |
//! | `io.serverSideEmit(event, data)` / `io.on(event, …)` | [`Cluster::server_side_emit`] / [`Cluster::on_server_event`] | `POST /server-emit?event=` |
//! | `(await io.serverCount())` | [`Cluster::server_count`] | `GET /count` |
//! | `socket.emit` / `emitWithAck` / `join` / `leave` / `disconnect` of a fetched socket | [`RemoteSocket`]'s methods | `POST /sockets/{id}/emit\|ask\|join\|leave\|disconnect` |
//!
//! Clients connect (to `/` or `/orders`) with `auth: { name }`; a node's sockets hear the other
//! nodes' server-side events as `server-event`. Two nodes run in this process, on `PORT` and
//! `PORT2` (default `PORT + 1`), over Redis when `REDIS_URL` is set, else an in-process hub.
//!
//! Run: `PORT=3000 cargo run -p socketio-cluster --example server_api`, then
//! `curl localhost:3000/sockets`, `curl -XPOST 'localhost:3001/emit?event=hi&except=vip' -d '"hello"'`.

#[macro_use]
mod common;

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use socketio_cluster::{Cluster, ClusterAdapter, ClusterConfig, Driver, RemoteSocket, Target};
use socketioxide::{
    SocketIo,
    extract::{Data, SocketRef},
    handler::ConnectHandler,
};

type A<D> = ClusterAdapter<D>;
type Reply = Result<Json<Value>, (StatusCode, String)>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = common::port("PORT", 3000)?;
    on_each_node!(node, port, common::port("PORT2", port + 1)?);
    Ok(())
}

async fn node<D: Driver>(driver: D, port: u16) -> anyhow::Result<()> {
    let cluster = Cluster::new(driver, ClusterConfig::default());
    let (layer, io) = SocketIo::builder()
        .with_adapter::<A<D>>(cluster.clone())
        .build_layer();
    cluster.bind(&io);
    for nsp in ["/", "/orders"] {
        // In a connect middleware, awaited before the client is told it is connected: its data
        // is there for the first `fetch_sockets` that lists it.
        let track = async |socket: SocketRef<A<D>>, Data(auth): Data<Value>| {
            socketio_cluster::track(&socket, &json!({ "name": auth["name"] }))
        };
        io.ns(nsp, (async || ()).with(track)).await?;
    }
    // `io.on(event)` for `serverSideEmit` of the other nodes: tell this node's sockets.
    let local = io.clone();
    cluster.on_server_event("/", move |event| {
        let io = local.clone();
        async move {
            let heard = json!({ "event": event.event, "args": event.args, "from": event.from });
            io.local().emit("server-event", &heard).await.ok();
            None // no ack
        }
    });

    let app = Router::new()
        .route("/sockets", get(list::<D>))
        .route("/count", get(count::<D>))
        .route("/{op}", post(operation::<D>))
        .route("/sockets/{id}/{action}", post(socket_action::<D>))
        .with_state(cluster)
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!("listening on {port}");
    axum::serve(listener, app).await?;
    Ok(())
}

#[derive(Deserialize)]
struct Params {
    nsp: Option<String>,
    #[serde(rename = "in")]
    rooms: Option<String>,
    except: Option<String>,
    room: Option<String>,
    event: Option<String>,
}

impl Params {
    fn nsp(&self) -> &str {
        self.nsp.as_deref().unwrap_or("/")
    }

    fn target(&self) -> Target {
        let list = |s: &Option<String>| -> Vec<String> {
            let items = s.as_deref().unwrap_or_default().split(',');
            items.filter(|r| !r.is_empty()).map(String::from).collect()
        };
        Target::rooms(list(&self.rooms)).except(list(&self.except))
    }

    fn room(&self) -> Vec<String> {
        self.room.iter().cloned().collect()
    }

    fn event(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

fn fail(err: impl ToString) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

fn describe(s: &RemoteSocket) -> Value {
    json!({ "id": s.id(), "node": s.node(), "rooms": s.rooms(), "data": s.data() })
}

async fn list<D: Driver>(State(cluster): State<Cluster<D>>, Query(p): Query<Params>) -> Reply {
    let sockets = cluster
        .fetch_sockets(p.nsp(), &p.target())
        .await
        .map_err(fail)?;
    Ok(Json(sockets.iter().map(describe).collect()))
}

async fn count<D: Driver>(State(cluster): State<Cluster<D>>, Query(p): Query<Params>) -> Reply {
    Ok(Json(json!(
        cluster.server_count(p.nsp()).await.map_err(fail)?
    )))
}

async fn operation<D: Driver>(
    State(cluster): State<Cluster<D>>,
    Path(op): Path<String>,
    Query(p): Query<Params>,
    body: String,
) -> Reply {
    let (nsp, target) = (p.nsp(), p.target());
    let args = vec![serde_json::from_str(&body).unwrap_or(Value::Null)];
    match op.as_str() {
        "join" => cluster.add_sockets(nsp, &target, p.room()).await,
        "leave" => cluster.del_sockets(nsp, &target, p.room()).await,
        "disconnect" => cluster.disconnect_sockets(nsp, &target, false).await,
        "emit" => cluster.emit(nsp, &target, p.event(), args).await,
        "server-emit" => cluster.server_side_emit(nsp, p.event(), args).await,
        _ => return Err((StatusCode::NOT_FOUND, format!("no operation {op}"))),
    }
    .map_err(fail)?;
    Ok(Json(json!({ "ok": true })))
}

/// A socket fetched by id (its own room) acts on the node that holds it.
async fn socket_action<D: Driver>(
    State(cluster): State<Cluster<D>>,
    Path((id, action)): Path<(String, String)>,
    Query(p): Query<Params>,
    body: String,
) -> Reply {
    let found = cluster.fetch_sockets(p.nsp(), &Target::rooms([&id])).await;
    let socket = found.map_err(fail)?.into_iter().next();
    let socket = socket.ok_or((StatusCode::NOT_FOUND, format!("no socket {id}")))?;
    let args = vec![serde_json::from_str(&body).unwrap_or(Value::Null)];
    let timeout = Duration::from_secs(2);
    let ack = match action.as_str() {
        "emit" => socket.emit(p.event(), args).await.map(|()| Value::Null),
        "ask" => socket
            .emit_with_ack(p.event(), args, timeout)
            .await
            .map(Value::from),
        "join" => socket.join(p.room()).await.map(|()| Value::Null),
        "leave" => socket.leave(p.room()).await.map(|()| Value::Null),
        "disconnect" => socket.disconnect(false).await.map(|()| Value::Null),
        _ => return Err((StatusCode::NOT_FOUND, format!("no action {action}"))),
    };
    Ok(Json(
        json!({ "node": socket.node(), "ack": ack.map_err(fail)? }),
    ))
}
