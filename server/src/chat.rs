//! The chat events of `shared/PROTOCOL.md`: handshake identity, `join`, `leave`, `message`, and
//! what a disconnect starts. Every handler answers its ack with `{ ok: true, … }` or
//! `{ ok: false, error: { code, message } }` and never panics on bad input.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use socketio_cluster::{
    ANY_NAMESPACE, Cluster, ClusterAdapter, ClusterError, Target,
    presence::{Joined, Left, PresenceStore},
};
use socketioxide::{
    SocketIo,
    extract::{AckSender, Event, SocketRef, State, TryData},
    handler::ConnectHandler,
    socket::DisconnectReason,
};
use tokio::sync::Semaphore;

use crate::{
    admin_ui::monitor::Monitor,
    backend::Backend,
    config::Config,
    connections::{Admission, Permit},
    fanout::{self, RoomSizes},
    history::{Draft, History},
    history_pages,
    identity::{AuthError, Identity, identify},
    metrics::Metrics,
    namespaces::{self, Connecting},
    protocol::{
        ChatError, ErrorCode, JoinRequest, LeaveRequest, MAX_CLIENT_ID_LEN, Member, MessageRequest,
        Notice, NoticeKind, PresenceUpdate, check_name, check_room, ok_ack, parse, valid_namespace,
    },
    rate_limit::RateLimiter,
};

/// The socketioxide adapter of a chat on backend `B`.
pub type Adapter<B> = ClusterAdapter<<B as Backend>::Driver>;

/// Departures claimed at once; more wait for the next claim.
const CLAIM_BATCH: usize = 500;

/// Everything the handlers share.
pub struct Chat<B: Backend> {
    pub config: Config,
    pub cluster: Cluster<B::Driver>,
    pub presence: B::Presence,
    pub history: History,
    pub metrics: Arc<Metrics>,
    /// The sessions this node holds, against `MAX_CONNECTIONS`.
    pub admission: Arc<Admission>,
    /// Sockets being authenticated, per namespace (see `namespaces`).
    pub connecting: Connecting,
    /// Local members per `nsp|room`, for the rooms gauge and the fan-out budget.
    local_rooms: Mutex<HashMap<String, usize>>,
    /// Rooms' cluster-wide sizes, for the fan-out budget.
    room_sizes: RoomSizes,
    /// What the Admin UI is told (nothing when it is off).
    pub monitor: Monitor,
}

/// Per-socket state, kept in the socket's extensions: one allocation, which every connection
/// pays, shared by the handlers of the socket's requests.
#[derive(Clone)]
struct Session(Arc<SessionState>);

struct SessionState {
    identity: Mutex<Identity>,
    rooms: Mutex<BTreeSet<String>>,
    limiter: Mutex<RateLimiter>,
    /// Bytes × recipients its messages may still cost (see [`crate::fanout`]).
    fanout: Mutex<RateLimiter>,
    /// One permit per request being handled (`MAX_IN_FLIGHT`).
    in_flight: Semaphore,
}

impl std::ops::Deref for Session {
    type Target = SessionState;
    fn deref(&self) -> &SessionState {
        &self.0
    }
}

/// Requests of one socket handled at once; more are refused as `rate_limited`.
const MAX_IN_FLIGHT: usize = 8;

impl<B: Backend> Chat<B> {
    pub fn new(
        config: Config,
        cluster: Cluster<B::Driver>,
        presence: B::Presence,
        history: History,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let admission = Admission::new(config.connection_limits(), metrics.clone());
        let monitor = Monitor::new(&config.admin_ui);
        Self {
            config,
            cluster,
            presence,
            history,
            metrics,
            admission,
            connecting: Connecting::default(),
            local_rooms: Mutex::default(),
            room_sizes: RoomSizes::default(),
            monitor,
        }
    }

    /// Registers the chat on `/` and on every dynamic namespace `/{name}`.
    pub async fn serve_namespaces(io: &socketioxide::SocketIo<Adapter<B>>) -> anyhow::Result<()> {
        io.ns("/", on_connect::<B>.with(authenticate::<B>)).await?;
        io.dyn_ns("/{name}", on_connect::<B>.with(authenticate::<B>))?;
        Ok(())
    }

    /// Chat rooms with members on this node.
    pub fn local_room_count(&self) -> usize {
        self.local_rooms.lock().unwrap().len()
    }

    fn count_room(&self, nsp: &str, room: &str, delta: isize) {
        let mut rooms = self.local_rooms.lock().unwrap();
        let key = socketio_cluster::keys::place(nsp, room);
        let n = rooms.entry(key.clone()).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            rooms.remove(&key);
        }
    }

    /// Tells a room a user came or went, and how many are online now, on every node. `except` is the
    /// socket whose join caused it: its ack already carries the online list.
    pub async fn announce(
        &self,
        nsp: &str,
        room: &str,
        kind: NoticeKind,
        user: &Member,
        except: Option<&str>,
        id: Option<&str>,
    ) -> Result<(), ChatError> {
        let count = self
            .presence
            .count(nsp, room)
            .await
            .map_err(ChatError::internal)?;
        let target = Target::rooms([room]).except(except);
        let notice = Notice {
            room,
            kind,
            user,
            ts: now_ms(),
            id,
        };
        let presence = PresenceUpdate::new(room, count, kind, user);
        let notice = serde_json::to_value(&notice).map_err(ChatError::internal)?;
        let presence = serde_json::to_value(&presence).map_err(ChatError::internal)?;
        self.cluster
            .emit(nsp, &target, "notice", vec![notice])
            .await
            .map_err(|e| refused_by_cluster(&e))?;
        self.cluster
            .emit(nsp, &target, "presence", vec![presence])
            .await
            .map_err(|e| refused_by_cluster(&e))
    }

    /// Claims due departures and announces them; one that cannot be announced now stays claimed
    /// and is claimed again, by any node, when its lease runs out.
    pub async fn announce_departures(&self) {
        let lease = self.config.node_timeout();
        let departures = match self.presence.claim_due(CLAIM_BATCH, lease).await {
            Ok(departures) => departures,
            Err(err) => return tracing::error!(%err, "could not claim leave timers"),
        };
        for d in departures {
            tracing::debug!(nsp = %d.nsp, room = %d.room, user = %d.user.id, id = %d.id, "leave timer fired");
            let announced = self
                .announce(
                    &d.nsp,
                    &d.room,
                    NoticeKind::Leave,
                    &d.user,
                    None,
                    Some(&d.id),
                )
                .await;
            match announced {
                Ok(()) => {
                    if let Err(err) = self.presence.settle(&d).await {
                        tracing::warn!(%err, room = %d.room, user = %d.user.id, "an announced departure stays claimed: it may be announced again, with the same id");
                    }
                }
                Err(err) => {
                    self.metrics.departures_retried.inc();
                    tracing::warn!(err = %err.message, room = %d.room, user = %d.user.id, "could not announce a departure: it is retried after its lease");
                }
            }
        }
    }

    /// The presence store forgot this node (it was reaped while stalled, or the store lost its
    /// data): its live sockets enter their rooms again, and users others were told had left are
    /// announced back.
    pub async fn register_again(&self, io: &SocketIo<Adapter<B>>) {
        let mut registered = 0;
        for ns in io.nsps() {
            let nsp = ns.ns_path().to_string();
            for socket in ns.sockets() {
                let Some(session) = socket.extensions.get::<Session>() else {
                    continue;
                };
                let member = session.identity.lock().unwrap().member();
                let rooms = session.rooms.lock().unwrap().clone();
                for room in rooms {
                    registered += 1;
                    let sid = socket.id.to_string();
                    if let Err(err) = self.enter(&nsp, &room, &member, &sid, None).await {
                        tracing::error!(err = %err.message, %room, user = %member.id, "could not register a socket again");
                    }
                }
            }
        }
        if registered > 0 {
            self.metrics.presence_reregistered.inc_by(registered);
            tracing::warn!(
                registered,
                "the presence store had forgotten this node: its sockets are registered again"
            );
        }
    }

    /// Under overload this node's broadcasts would be refused: a request that would broadcast
    /// is refused before it changes anything.
    fn ensure_capacity(&self) -> Result<(), ChatError> {
        self.cluster
            .ensure_capacity()
            .map_err(|e| refused_by_cluster(&e))
    }

    async fn join(
        &self,
        socket: &SocketRef<Adapter<B>>,
        session: &Session,
        payload: Value,
    ) -> Result<Value, ChatError> {
        let req: JoinRequest = parse(payload)?;
        check_room(&req.room)?;
        self.ensure_capacity()?;
        let max = self.config.max_rooms_per_socket;
        {
            let rooms = session.rooms.lock().unwrap();
            if !rooms.contains(&req.room) && rooms.len() >= max {
                return Err(ChatError::bad_request(format!(
                    "a socket may be in at most {max} rooms: leave one first"
                )));
            }
        }
        let identity = {
            let mut identity = session.identity.lock().unwrap();
            let no_room_yet = session.rooms.lock().unwrap().is_empty();
            if let (Some(chatter_id), true) = (&req.chatter_id, no_room_yet) {
                if identity.adopt_chatter_id(chatter_id) {
                    let _ = socketio_cluster::set_data(socket, &*identity);
                }
            }
            identity.clone()
        };
        let nsp = socket.ns().to_string();
        let member = identity.member();
        let me = socket.id.to_string();
        self.join_room(socket, session, &req.room, Some(&me))
            .await?;
        let online = self
            .presence
            .online(&nsp, &req.room)
            .await
            .map_err(ChatError::internal)?;
        let recovery = history_pages::recover(
            &self.history,
            &nsp,
            &req.room,
            req.since.as_ref(),
            self.config.history_ack_bytes,
        )
        .await
        .map_err(ChatError::internal)?;
        let mut ack = json!({ "chatter": member, "online": online, "history": recovery.history });
        if let Some(epoch) = recovery.epoch {
            ack["epoch"] = json!(epoch);
        }
        if let Some(recovered) = recovery.recovered {
            ack["recovered"] = json!(recovered);
            ack["more"] = json!(recovery.more);
            self.metrics.count_recovery(recovered);
        }
        Ok(ok_ack(ack))
    }

    async fn leave(
        &self,
        socket: &SocketRef<Adapter<B>>,
        session: &Session,
        payload: Value,
    ) -> Result<Value, ChatError> {
        let req: LeaveRequest = parse(payload)?;
        self.ensure_capacity()?;
        self.leave_room(socket, session, &req.room).await?;
        Ok(ok_ack(json!({})))
    }

    /// Puts the socket in the room, chat-wise: its session, its Socket.IO room and presence, with
    /// a join notice when its user came online (except to the socket `except`). A join nobody was
    /// told of is undone, so that a retry announces it.
    async fn join_room(
        &self,
        socket: &SocketRef<Adapter<B>>,
        session: &Session,
        room: &str,
        except: Option<&str>,
    ) -> Result<(), ChatError> {
        let nsp = socket.ns().to_string();
        let member = session.identity.lock().unwrap().member();
        let entered = session.rooms.lock().unwrap().insert(room.to_string());
        if entered {
            // Through the cluster: with sharded pub/sub the room's channel is subscribed before
            // the socket is in, so it misses no message.
            if let Err(err) = self.cluster.join(socket, room.to_string()).await {
                session.rooms.lock().unwrap().remove(room);
                return Err(ChatError::internal(err));
            }
            self.count_room(&nsp, room, 1);
        }
        let me = socket.id.to_string();
        if let Err(err) = self.enter(&nsp, room, &member, &me, except).await {
            if entered {
                self.undo_join(socket, session, room).await;
            }
            return Err(err);
        }
        if entered {
            self.monitor.room(&nsp, room, &me, true);
        }
        Ok(())
    }

    /// Takes the socket out of the room, chat-wise; an explicit leave is a leave timer due at
    /// once: announced now, and like every departure retried until announced.
    async fn leave_room(
        &self,
        socket: &SocketRef<Adapter<B>>,
        session: &Session,
        room: &str,
    ) -> Result<(), ChatError> {
        if !session.rooms.lock().unwrap().remove(room) {
            return Err(ChatError::not_in_room(room));
        }
        let nsp = socket.ns().to_string();
        socket.leave(room.to_string());
        self.count_room(&nsp, room, -1);
        self.monitor.room(&nsp, room, &socket.id.to_string(), false);
        let left = self
            .presence
            .leave(&nsp, room, &socket.id.to_string(), Some(Duration::ZERO))
            .await
            .map_err(ChatError::internal)?;
        if left == Left::Pending {
            self.announce_departures().await;
        }
        Ok(())
    }

    /// Applies the [`RoomChange`]s other nodes send (admin `socketsJoin` / `socketsLeave`) to
    /// this node's sockets, acking with how many it changed.
    pub fn follow_room_changes(self: &Arc<Self>, io: &SocketIo<Adapter<B>>) {
        let (chat, io) = (Arc::downgrade(self), io.clone());
        self.cluster.on_server_event(ANY_NAMESPACE, move |ev| {
            let (chat, io) = (chat.clone(), io.clone());
            async move {
                if ev.event != ROOM_CHANGE_EVENT {
                    return None;
                }
                let change = ev
                    .args
                    .into_iter()
                    .next()
                    .map(serde_json::from_value::<RoomChange>);
                match change {
                    Some(Ok(change)) if change.nsp == ev.nsp => {
                        let chat = chat.upgrade()?;
                        Some(json!(chat.change_rooms(&io, &change).await))
                    }
                    _ => {
                        tracing::warn!(nsp = %ev.nsp, "ignoring a malformed room change from another node");
                        None
                    }
                }
            }
        });
    }

    /// An admin `socketsJoin` / `socketsLeave` on this node's sockets among `change.sockets`: each
    /// joins or leaves as if it had sent `join` / `leave` (presence, notices, may post). Returns
    /// how many sockets it changed.
    pub async fn change_rooms(&self, io: &SocketIo<Adapter<B>>, change: &RoomChange) -> usize {
        let Some(ns) = io.of(&change.nsp) else {
            return 0;
        };
        let mut changed = 0;
        for sid in &change.sockets {
            let Some(socket) = sid.parse().ok().and_then(|sid| ns.get_socket(sid)) else {
                continue;
            };
            let Some(session) = socket.extensions.get::<Session>() else {
                continue;
            };
            changed += 1;
            for room in &change.rooms {
                let done = if change.join {
                    self.join_room(&socket, &session, room, None).await
                } else {
                    match self.leave_room(&socket, &session, room).await {
                        Err(err) if err.code == ErrorCode::NotInRoom => Ok(()),
                        other => other,
                    }
                };
                if let Err(err) = done {
                    tracing::error!(err = %err.message, %room, socket = %sid, join = change.join, "an admin room change failed");
                }
            }
        }
        changed
    }

    /// Puts `socket` of `member` in the room's presence and, when the member came online with it,
    /// tells the room, except the socket `except` (its join ack carries the online list).
    async fn enter(
        &self,
        nsp: &str,
        room: &str,
        member: &Member,
        socket: &str,
        except: Option<&str>,
    ) -> Result<(), ChatError> {
        let joined = self
            .presence
            .join(nsp, room, member, socket)
            .await
            .map_err(ChatError::internal)?;
        if joined == Joined::CameOnline {
            self.announce(nsp, room, NoticeKind::Join, member, except, None)
                .await?;
        }
        Ok(())
    }

    /// Takes back a join whose announcement failed, telling nobody.
    async fn undo_join(&self, socket: &SocketRef<Adapter<B>>, session: &Session, room: &str) {
        session.rooms.lock().unwrap().remove(room);
        socket.leave(room.to_string());
        self.count_room(socket.ns(), room, -1);
        let left = self
            .presence
            .leave(socket.ns(), room, &socket.id.to_string(), None)
            .await;
        if let Err(err) = left {
            tracing::error!(%err, %room, socket = %socket.id, "a failed join stays in presence");
        }
    }

    async fn message(
        &self,
        socket: &SocketRef<Adapter<B>>,
        session: &Session,
        payload: Value,
    ) -> Result<Value, ChatError> {
        let req: MessageRequest = parse(payload)?;
        if !session.rooms.lock().unwrap().contains(&req.room) {
            return Err(ChatError::not_in_room(&req.room));
        }
        let length = req.text.chars().count();
        if length > self.config.max_message_len {
            return Err(ChatError::new(
                ErrorCode::TooLong,
                format!(
                    "message is {length} characters; at most {} allowed",
                    self.config.max_message_len
                ),
            ));
        }
        if req.text.trim().is_empty() {
            return Err(ChatError::bad_request("text must not be empty"));
        }
        if let Some(client_id) = &req.client_id {
            check_name("clientId", client_id, MAX_CLIENT_ID_LEN)?;
        }
        self.metrics.messages_in.inc();
        self.ensure_capacity()?;
        let recipients = self.recipients(socket.ns(), &req.room).await?;
        let cost = fanout::cost(req.text.len(), recipients);
        if !session.fanout.lock().unwrap().try_take_amount(cost) {
            return Err(ChatError::new(
                ErrorCode::RateLimited,
                format!(
                    "this message would reach {recipients} people: your fan-out budget is spent for now; slow down or shorten it"
                ),
            ));
        }
        let from = session.identity.lock().unwrap().member();
        let draft = Draft {
            room: &req.room,
            from: &from,
            text: &req.text,
            ts: now_ms(),
            client_id: req.client_id.as_deref(),
        };
        let broadcast = draft
            .with_holes()
            .map_err(ChatError::internal)
            .and_then(|data| {
                self.cluster
                    .broadcast_template(socket.ns(), &req.room, "message", &data)
                    .map_err(ChatError::internal)
            })?;
        let posted = self
            .history
            .post(socket.ns(), &draft, &broadcast)
            .await
            .map_err(ChatError::internal)?;
        if posted.fresh {
            self.metrics.messages_out.inc();
        } else {
            self.metrics.retries_deduplicated.inc();
            tracing::debug!(room = %req.room, seq = posted.message.seq, "a retried message was already stored");
        }
        Ok(ok_ack(json!({ "message": posted.message })))
    }

    /// How many a message to `room` reaches: its sockets on this node or its online users in
    /// the cluster, whichever is more (the latter read at most once a second).
    async fn recipients(&self, nsp: &str, room: &str) -> Result<usize, ChatError> {
        let place = socketio_cluster::keys::place(nsp, room);
        let local = self.local_rooms.lock().unwrap().get(&place).copied();
        let cluster = match self.room_sizes.recent(&place) {
            Some(size) => size,
            None => {
                let size = self
                    .presence
                    .count(nsp, room)
                    .await
                    .map_err(ChatError::internal)?;
                self.room_sizes.remember(&place, size);
                size
            }
        };
        Ok(cluster.max(local.unwrap_or_default()))
    }

    /// A disconnected socket starts a leave timer in each of its rooms.
    async fn disconnected(&self, socket: &SocketRef<Adapter<B>>, session: &Session) {
        let nsp = socket.ns().to_string();
        let rooms = std::mem::take(&mut *session.rooms.lock().unwrap());
        for room in rooms {
            self.count_room(&nsp, &room, -1);
            let left = self
                .presence
                .leave(
                    &nsp,
                    &room,
                    &socket.id.to_string(),
                    Some(self.config.leave_grace()),
                )
                .await;
            if let Err(err) = left {
                tracing::error!(%err, socket = %socket.id, %room, "could not start a leave timer");
            }
        }
    }
}

/// Connect middleware: refuses bad namespaces and handshakes, records who the socket is and
/// listens to its events. socketioxide sends the connect packet after the middleware but runs the
/// connect handler in a spawned task: handlers registered there could miss the first events of a
/// client that emits as soon as it is connected.
async fn authenticate<B: Backend>(
    socket: SocketRef<Adapter<B>>,
    TryData(auth): TryData<Value>,
    State(chat): State<Arc<Chat<B>>>,
) -> Result<(), AuthError> {
    let nsp = socket.ns();
    let _connecting = chat.connecting.start(nsp);
    if !valid_namespace(nsp) {
        tracing::info!(nsp = %namespaces::shown(nsp), "handshake refused: invalid namespace");
        return Err(AuthError::BadRequest("invalid namespace".into()));
    }
    let auth = auth.unwrap_or(Value::Null);
    let query = socket.req_parts().uri.query();
    let identity =
        identify(&auth, query, chat.config.auth_secret.as_deref()).inspect_err(|err| {
            tracing::info!(%err, socket = %socket.id, "handshake refused");
        })?;
    socketio_cluster::track(&socket, &identity)
        .map_err(|e| AuthError::BadRequest(e.to_string()))?;
    // Only now may the namespace cost Redis anything; the socket is told it is connected once
    // the namespace hears the cluster, so it misses no broadcast.
    chat.cluster.admit(nsp).await.map_err(|err| match err {
        ClusterError::TooManyNamespaces { .. } => {
            tracing::info!(%err, nsp, socket = %socket.id, "handshake refused");
            AuthError::BadRequest(err.to_string())
        }
        err => {
            tracing::warn!(%err, nsp, socket = %socket.id, "handshake refused: the namespace cannot join the cluster");
            AuthError::Unavailable(err.to_string())
        }
    })?;
    socket.extensions.insert(Session(Arc::new(SessionState {
        identity: Mutex::new(identity),
        rooms: Mutex::default(),
        in_flight: Semaphore::new(MAX_IN_FLIGHT),
        limiter: Mutex::new(RateLimiter::new(
            chat.config.rate_limit_per_sec,
            chat.config.rate_limit_burst,
        )),
        fanout: Mutex::new(RateLimiter::new(
            chat.config.fanout_bytes_per_sec,
            chat.config.fanout_burst_bytes,
        )),
    })));
    listen::<B>(&socket);
    chat.monitor.connected(&socket);
    if let Some(permit) = socket.req_parts().extensions.get::<Arc<Permit>>() {
        permit.connected();
    }
    Ok(())
}

/// An admin `socketsJoin` (`join`) or `socketsLeave` of `sockets` of namespace `nsp`, sent to
/// every node as the server-side event [`ROOM_CHANGE_EVENT`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RoomChange {
    pub nsp: String,
    pub sockets: Vec<String>,
    pub rooms: Vec<String>,
    pub join: bool,
}

/// The server-side event that carries a [`RoomChange`] to the other nodes.
pub const ROOM_CHANGE_EVENT: &str = "chat:room-change";

/// The client events, each answered through its ack.
#[derive(Debug, Clone, Copy)]
enum ChatEvent {
    Join,
    Leave,
    Message,
    History,
}

impl ChatEvent {
    const ALL: [Self; 4] = [Self::Join, Self::Leave, Self::Message, Self::History];

    fn name(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Message => "message",
            Self::History => "history",
        }
    }

    /// The chat event named `name`, if it is one.
    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.name() == name)
    }
}

async fn on_connect<B: Backend>(socket: SocketRef<Adapter<B>>) {
    tracing::debug!(socket = %socket.id, nsp = socket.ns(), "connected");
}

/// Answers the chat events through their acks; a disconnect starts the leave timers.
fn listen<B: Backend>(socket: &SocketRef<Adapter<B>>) {
    // One fallback handler rather than an `on` handler per event: socketioxide keeps `on`
    // handlers in a map of each socket's own, about 350 bytes for the four events on every idle
    // connection, where the fallback takes one slot (the price: each event's name is copied
    // while it is handled). Other events are ignored, as they were without a handler.
    socket.on_fallback(
        async |s: SocketRef<Adapter<B>>,
               Event(name): Event,
               TryData(payload): TryData<Value>,
               ack: AckSender<Adapter<B>>,
               State(chat): State<Arc<Chat<B>>>| {
            if let Some(event) = ChatEvent::named(&name) {
                handle(&s, event, payload, ack, &chat).await;
            }
        },
    );
    socket.on_disconnect(
        async |s: SocketRef<Adapter<B>>,
               reason: DisconnectReason,
               State(chat): State<Arc<Chat<B>>>| {
            let reason = reason_name(reason);
            chat.metrics.count_disconnect(reason);
            if let Some(session) = s.extensions.get::<Session>() {
                chat.monitor
                    .disconnected(&s, reason, session.rooms.lock().unwrap().iter());
                let user = session.identity.lock().unwrap().member().id;
                tracing::info!(socket = %s.id, nsp = %s.ns(), %user, reason, "disconnected");
                chat.disconnected(&s, &session).await;
            }
        },
    );
}

/// A disconnect reason as Node's socket.io names it, for logs and metrics.
pub(crate) fn reason_name(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::TransportClose => "transport close",
        DisconnectReason::TransportError | DisconnectReason::MultipleHttpPollingError => {
            "transport error"
        }
        DisconnectReason::PacketParsingError => "parse error",
        DisconnectReason::HeartbeatTimeout => "ping timeout",
        DisconnectReason::ClientNSDisconnect => "client namespace disconnect",
        DisconnectReason::ServerNSDisconnect => "server namespace disconnect",
        DisconnectReason::ClosingServer => "server shutting down",
    }
}

/// Rate limits, runs an event and answers its ack; bad input becomes an error ack and a log line.
async fn handle<B: Backend>(
    socket: &SocketRef<Adapter<B>>,
    event: ChatEvent,
    payload: Result<Value, socketioxide::ParserError>,
    ack: AckSender<Adapter<B>>,
    chat: &Chat<B>,
) {
    let Some(session) = socket.extensions.get::<Session>() else {
        return;
    };
    chat.monitor
        .received(socket, event.name(), payload.as_ref().ok());
    // A request in flight holds what it read (a room's history, say) until answered: a client
    // may not have more than a few at once, whatever its rate.
    let in_flight = session.in_flight.try_acquire();
    let result = if in_flight.is_err() || !session.limiter.lock().unwrap().try_take() {
        Err(ChatError::new(
            ErrorCode::RateLimited,
            "too many events; slow down",
        ))
    } else {
        match payload {
            Ok(payload) => match event {
                ChatEvent::Join => chat.join(socket, &session, payload).await,
                ChatEvent::Leave => chat.leave(socket, &session, payload).await,
                ChatEvent::Message => chat.message(socket, &session, payload).await,
                ChatEvent::History => {
                    let in_room = |room: &str| session.rooms.lock().unwrap().contains(room);
                    history_pages::answer(
                        &chat.history,
                        &chat.config,
                        socket.ns(),
                        in_room,
                        payload,
                    )
                    .await
                }
            },
            Err(err) => Err(ChatError::bad_request(format!(
                "payload is not valid JSON: {err}"
            ))),
        }
    };
    let reply = match result {
        Ok(reply) => reply,
        Err(err) => {
            chat.metrics.rejected(err.code);
            tracing::info!(socket = %socket.id, event = event.name(), code = ?err.code, message = %err.message, "request refused");
            err.to_ack()
        }
    };
    let _ = ack.send(&reply);
}

/// An overloaded cluster is the sender's cue to back off and retry, like a rate limit, and is
/// logged as a refusal rather than as an internal error (it comes in floods).
fn refused_by_cluster(err: &ClusterError) -> ChatError {
    match err {
        ClusterError::Overloaded { .. } => ChatError::new(
            ErrorCode::RateLimited,
            "the cluster is overloaded; retry in a moment",
        ),
        err => ChatError::internal(err),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
