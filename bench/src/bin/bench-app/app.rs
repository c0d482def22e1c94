//! The app's events, written once for any adapter; what differs between adapters (counting
//! sockets and rooms cluster-wide, socket data, drop counters) is a [`Backend`].

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{AckSender, Data, SocketRef, State, TryData},
};

use crate::warnings::WarningCounter;

/// What an adapter does its own way.
pub trait Backend: Clone + Send + Sync + 'static {
    type A: Adapter;

    /// Sockets of `/` on every node.
    fn count(&self, io: SocketIo<Self::A>) -> impl Future<Output = Result<usize, String>> + Send;

    /// Rooms of `/` on every node.
    fn rooms(&self, io: SocketIo<Self::A>) -> impl Future<Output = Result<usize, String>> + Send;

    /// Puts the socket in `rooms` (before it is connected).
    fn join(
        &self,
        socket: &SocketRef<Self::A>,
        rooms: Vec<String>,
    ) -> impl Future<Output = ()> + Send;

    /// Called before the socket is connected, with its handshake auth.
    fn connected(&self, socket: &SocketRef<Self::A>, auth: &Value);

    /// The adapter's own counters, if it keeps any.
    fn counters(&self) -> Value;

    /// Every report of a message not reaching a client, without counting one twice: our
    /// adapter counts failed local sends itself, socketioxide-redis only logs its losses.
    fn dropped(&self, emit_errors: u64, warnings: &BTreeMap<String, u64>) -> u64;

    /// Whether a failed broadcast certainly reached nobody, so that its sender can be told
    /// (`refused`) and the generator expects none of its deliveries.
    fn reached_nobody(&self, err: &socketioxide::BroadcastError) -> bool;
}

/// Counters of this app.
#[derive(Clone, Default)]
pub struct Shared {
    /// Broadcasts whose local delivery (or publication) failed, per failed socket.
    emit_errors: Arc<AtomicU64>,
    /// `m` events without a room.
    bad_input: Arc<AtomicU64>,
    warnings: WarningCounter,
}

impl Shared {
    pub fn new(warnings: WarningCounter) -> Self {
        Self {
            warnings,
            ..Self::default()
        }
    }
}

/// The connect handler: everything happens in [`listen`].
pub async fn connected() {}

/// The connect middleware (`connected.with(listen::<B>)`): joins the rooms and registers the
/// events. socketioxide sends the connect packet after the middlewares but spawns the connect
/// handler, so events registered there could miss a client that emits as soon as it is connected.
pub async fn listen<B: Backend>(
    socket: SocketRef<B::A>,
    TryData(auth): TryData<Value>,
    State(backend): State<B>,
) -> Result<(), std::convert::Infallible> {
    let auth = auth.unwrap_or(Value::Null);
    backend.connected(&socket, &auth);
    if let Some(rooms) = auth["rooms"].as_array() {
        let rooms: Vec<String> = rooms
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if !rooms.is_empty() {
            backend.join(&socket, rooms).await;
        }
    }
    socket.on("m", on_message::<B>);
    socket.on("count", on_count::<B>);
    socket.on("rooms", on_rooms::<B>);
    socket.on("stats", on_stats::<B>);
    Ok(())
}

async fn on_message<B: Backend>(
    socket: SocketRef<B::A>,
    Data(payload): Data<Value>,
    State(shared): State<Shared>,
    State(backend): State<B>,
) {
    let Some(room) = payload["r"].as_str().map(str::to_string) else {
        shared.bad_input.fetch_add(1, Relaxed);
        return;
    };
    if let Err(err) = socket.within(room).emit("m", &payload).await {
        let failed = match &err {
            socketioxide::BroadcastError::Socket(sockets) => sockets.len() as u64,
            _ => 1,
        };
        shared.emit_errors.fetch_add(failed, Relaxed);
        tracing::debug!(%err, "broadcast failed");
        if backend.reached_nobody(&err) {
            let _ = socket.emit("refused", &payload);
        }
    }
}

async fn on_count<B: Backend>(io: SocketIo<B::A>, State(backend): State<B>, ack: AckSender<B::A>) {
    answer(ack, backend.count(io).await);
}

async fn on_rooms<B: Backend>(io: SocketIo<B::A>, State(backend): State<B>, ack: AckSender<B::A>) {
    answer(ack, backend.rooms(io).await);
}

fn answer<A: Adapter>(ack: AckSender<A>, result: Result<usize, String>) {
    let reply = match result {
        Ok(n) => json!(n),
        Err(error) => {
            tracing::warn!(%error, "cluster request failed");
            json!({ "error": error })
        }
    };
    let _ = ack.send(&reply);
}

async fn on_stats<B: Backend>(
    State(backend): State<B>,
    State(shared): State<Shared>,
    ack: AckSender<B::A>,
) {
    let emit_errors = shared.emit_errors.load(Relaxed);
    let warnings = shared.warnings.snapshot();
    let _ = ack.send(&json!({
        "dropped": backend.dropped(emit_errors, &warnings),
        "emit_errors": emit_errors,
        "bad_input": shared.bad_input.load(Relaxed),
        "warnings": warnings,
        "adapter": backend.counters(),
    }));
}
