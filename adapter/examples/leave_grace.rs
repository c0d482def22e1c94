//! # Join and leave notices that survive a page refresh
//!
//! A NestJS gateway that announces "X left" from `handleDisconnect` announces every page refresh
//! as a leave followed by a join. The cure: on disconnect start a leave timer, cancel it when the
//! same chatter (an id the client keeps across refreshes, like a `chatterId` in local storage)
//! joins again, and announce only timers that fire. With several nodes the timer cannot live in
//! one process (the refreshed page may land on another node), so here it lives in the cluster's
//! presence store, and exactly one node claims each due timer.
//!
//! | NestJS / Node.js | here |
//! | --- | --- |
//! | `@SubscribeMessage("joinRoom")` | `socket.on("join", …)` |
//! | `handleDisconnect(socket)` | `socket.on_disconnect(…)`, which still sees `socket.rooms()` |
//! | `setTimeout(announceLeave, grace)` / `clearTimeout` on rejoin | [`PresenceStore::leave`]`(…, Some(grace))` → [`Left::Pending`]; [`PresenceStore::join`] → [`Joined::Rejoined`] |
//! | the timer callback | a loop on every node: [`PresenceStore::claim_due`], announce, [`PresenceStore::settle`] |
//! | an explicit leave button | [`PresenceStore::leave`]`(…, None)` → [`Left::WentOffline`], announced at once |
//! | `this.server.to(roomId).emit(…)` | `socket.to(room).emit(…)` / `io.of(nsp).to(room).emit(…)`, cluster-wide |
//!
//! Two nodes run in this process, on `PORT` and `PORT2` (default `PORT + 1`), sharing Redis
//! ([`RedisPresence`]) when `REDIS_URL` is set, else an in-process hub ([`MemoryPresence`]).
//! Clients emit `join` with `{ room, userId, name }` (ack: who is online) and `leave` with the
//! room; everyone in the room gets `notice` `{ kind: "join" | "leave", user: { id, name } }`.
//! `GRACE_MS` (default 3000) is how long a disconnected chatter has to come back unannounced.
//!
//! Run: `PORT=3000 REDIS_URL=redis://127.0.0.1:6379 cargo run -p socketio-cluster --example leave_grace`

use std::{convert::Infallible, time::Duration};

use serde::Deserialize;
use serde_json::json;
use socketio_cluster::{
    Cluster, ClusterAdapter, ClusterConfig, Driver, MemoryHub, RedisDriver, RedisDriverConfig,
    presence::{Joined, Left, Member, MemoryPresence, PresenceStore, RedisPresence},
};
use socketioxide::{
    SocketIo,
    extract::{AckSender, Data, SocketRef, State},
    handler::ConnectHandler,
};

type A<D> = ClusterAdapter<D>;

#[derive(Clone)]
struct Rooms<P> {
    presence: P,
    grace: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinRequest {
    room: String,
    user_id: String,
    name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let port = env("PORT").unwrap_or(3000) as u16;
    let port2 = env("PORT2").map_or(port + 1, |p| p as u16);
    let grace = Duration::from_millis(env("GRACE_MS").unwrap_or(3000));
    if let Ok(url) = std::env::var("REDIS_URL") {
        let connect = || RedisDriver::connect(RedisDriverConfig::new(url.clone()));
        let (d1, d2) = (connect().await?, connect().await?);
        // The presence keys share the cluster's prefix, `socket.io` by default.
        let p1 = RedisPresence::new(d1.client().clone(), "socket.io", "node-1");
        let p2 = RedisPresence::new(d2.client().clone(), "socket.io", "node-2");
        tokio::try_join!(node(d1, p1, port, grace), node(d2, p2, port2, grace))?;
    } else {
        let (hub, presence) = (MemoryHub::new(), MemoryPresence::new("node-1"));
        let p2 = presence.for_node("node-2");
        tokio::try_join!(
            node(hub.driver(), presence, port, grace),
            node(hub.driver(), p2, port2, grace)
        )?;
    }
    Ok(())
}

async fn node<D: Driver, P: PresenceStore + Clone>(
    driver: D,
    presence: P,
    port: u16,
    grace: Duration,
) -> anyhow::Result<()> {
    let cluster = Cluster::new(driver, ClusterConfig::default());
    let rooms = Rooms { presence, grace };
    let (layer, io) = SocketIo::builder()
        .with_adapter::<A<D>>(cluster.clone())
        .with_state(rooms.clone())
        .build_layer();
    cluster.bind(&io);
    io.ns("/", connected::<D>.with(listen::<D, P>)).await?;

    tokio::spawn(announce_departures(io, rooms));

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!("listening on {port}");
    axum::serve(listener, axum::Router::new().layer(layer)).await?;
    Ok(())
}

/// The timer callback. Every node looks for due timers; the store hands each to one node only.
async fn announce_departures<D: Driver, P: PresenceStore>(io: SocketIo<A<D>>, rooms: Rooms<P>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        // The heartbeat of this node: if it dies, the others turn its sockets into leave timers.
        let _ = rooms
            .presence
            .reap(Duration::from_secs(10), rooms.grace)
            .await;
        let due = rooms.presence.claim_due(64, Duration::from_secs(5)).await;
        for departure in due.unwrap_or_default() {
            let Some(nsp) = io.of(&departure.nsp) else {
                continue;
            };
            let room = departure.room.clone();
            let notice = json!({ "kind": "leave", "user": departure.user, "id": departure.id });
            // Unsettled (the emit failed), the claim runs out and the departure is claimed again.
            if nsp.to(room).emit("notice", &notice).await.is_ok() {
                let _ = rooms.presence.settle(&departure).await;
            }
        }
    }
}

/// Handlers are registered in a connect middleware: socketioxide sends the connect packet after
/// the middlewares but runs the connect handler in a task of its own, so a client emitting as
/// soon as it is connected could beat registrations made there.
async fn listen<D: Driver, P: PresenceStore + Clone>(
    socket: SocketRef<A<D>>,
) -> Result<(), Infallible> {
    socket.on("join", join::<D, P>);
    socket.on("leave", leave::<D, P>);
    socket.on_disconnect(disconnected::<D, P>);
    Ok(())
}

async fn connected<D: Driver>(socket: SocketRef<A<D>>) {
    println!("{} connected", socket.id);
}

async fn join<D: Driver, P: PresenceStore>(
    socket: SocketRef<A<D>>,
    Data(req): Data<JoinRequest>,
    State(rooms): State<Rooms<P>>,
    ack: AckSender<A<D>>,
) {
    let user = Member {
        id: req.user_id,
        name: req.name,
    };
    let sid = socket.id.to_string();
    match rooms
        .presence
        .join(socket.ns(), &req.room, &user, &sid)
        .await
    {
        Ok(Joined::CameOnline) => {
            let notice = json!({ "kind": "join", "user": user });
            socket
                .to(req.room.clone())
                .emit("notice", &notice)
                .await
                .ok();
        }
        // Back within the grace (a refresh), or online in another tab: nothing to tell.
        Ok(Joined::Rejoined | Joined::AlreadyOnline) => {}
        Err(err) => {
            ack.send(&json!({ "error": err.to_string() })).ok();
            return;
        }
    }
    socket.join(req.room.clone());
    let online = rooms.presence.online(socket.ns(), &req.room).await;
    ack.send(&online.unwrap_or_default()).ok();
}

/// An explicit leave is announced at once: no refresh is coming.
async fn leave<D: Driver, P: PresenceStore>(
    socket: SocketRef<A<D>>,
    Data(room): Data<String>,
    State(rooms): State<Rooms<P>>,
) {
    let sid = socket.id.to_string();
    socket.leave(room.clone());
    if let Ok(Left::WentOffline(user)) = rooms.presence.leave(socket.ns(), &room, &sid, None).await
    {
        let notice = json!({ "kind": "leave", "user": user });
        socket.within(room).emit("notice", &notice).await.ok();
    }
}

/// A disconnect only starts a timer ([`Left::Pending`]): the claim loop announces it if the
/// chatter is not back in time.
async fn disconnected<D: Driver, P: PresenceStore>(
    socket: SocketRef<A<D>>,
    State(rooms): State<Rooms<P>>,
) {
    let sid = socket.id.to_string();
    for room in socket.rooms() {
        let grace = Some(rooms.grace);
        if let Err(err) = rooms.presence.leave(socket.ns(), &room, &sid, grace).await {
            eprintln!("{sid} leaving {room}: {err}");
        }
    }
}
