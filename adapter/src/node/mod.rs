//! A node of the cluster: what the namespaces of this process share — the transport, the node's
//! identity and liveness (heartbeats, [`membership`]), the [`requests`] in flight — and the
//! receive loop, which hands each incoming message to the namespace it is for through the
//! [`Namespace`] trait. The node knows namespaces only through that trait: the socketioxide
//! adapter (`adapter.rs`) implements it, and the public facade (`cluster.rs`) sits above both.

pub(crate) mod membership;
mod pending;
pub(crate) mod requests;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{
        Arc, Mutex, OnceLock, RwLock, Weak,
        atomic::{
            AtomicUsize,
            Ordering::{AcqRel, Acquire},
        },
    },
};

use futures_util::{StreamExt, future::BoxFuture};
use serde_json::Value;
use socketioxide::{SocketIo, adapter::Adapter};

/// Describes sockets of a namespace of this node, with their rooms (see [`Node::bind`]).
type Describer = Arc<dyn Fn(&str, SocketsWithRooms) -> Vec<Description> + Send + Sync>;

/// Sockets of this node, by id, with their rooms.
pub(crate) type SocketsWithRooms = Vec<(Sid, Vec<String>)>;

/// A socket of this node, described, with its rooms.
pub(crate) type Description = (Sid, Described, Vec<String>);
use socketioxide_core::Sid;
use tokio::{
    sync::{OnceCell, Semaphore},
    task::AbortHandle,
};

use crate::{
    config::ClusterConfig,
    driver::{Driver, Incoming, IncomingStream},
    error::{ClusterError, WireError},
    keys::{self, Channels, Route},
    protocol::Protocol,
    socket::{self, Described},
    stats::Stats,
    wire::{
        self, BroadcastMessage, Heartbeat, WireOpts, WirePacket, WireRequest, WireResponse,
        sharded::{self, Inbound},
    },
};
use membership::{Membership, NodeInfo};
use pending::Pending;

/// A server-side event from another node (`serverSideEmit`).
#[derive(Debug, Clone)]
pub struct ServerEvent {
    pub nsp: String,
    pub event: String,
    pub args: Vec<Value>,
    /// The sending node's uid, when it is a node of this crate.
    pub from: Option<String>,
}

/// The namespace name under which [`crate::Cluster::on_server_event`] handles the server-side
/// events of every namespace that has no handler of its own (namespace names start with `/`).
pub const ANY_NAMESPACE: &str = "*";

/// Handles server-side events; returning `Some` acknowledges with that value when the sender
/// asked for acks.
pub type ServerEventHandler =
    Arc<dyn Fn(ServerEvent) -> BoxFuture<'static, Option<Value>> + Send + Sync>;

/// What the node needs of a namespace: to hand it what other nodes sent, and to ask whether it
/// hears the cluster and how many sockets it has (for heartbeats).
pub(crate) trait Namespace: Send + Sync + 'static {
    fn path(&self) -> &str;
    /// Whether it joined the cluster (its channels are subscribed).
    fn in_cluster(&self) -> bool;
    fn socket_count(&self) -> u64;
    /// A broadcast published by another node.
    fn on_broadcast(&self, msg: BroadcastMessage);
    /// A request from another node.
    fn on_request(self: Arc<Self>, req: WireRequest) -> impl Future<Output = ()> + Send;
    /// This node may have missed broadcasts: every client must resync.
    fn evict_everyone(&self);
    /// Brings its room subscriptions in line with its sockets' rooms; returns how many rooms had
    /// sockets but no subscription (joined behind the adapter's back).
    fn reconcile_rooms(self: Arc<Self>) -> impl Future<Output = usize> + Send;
}

pub(crate) struct Node<D: Driver, N: Namespace> {
    pub config: ClusterConfig,
    pub driver: D,
    pub protocol: Protocol,
    uid: OnceLock<String>,
    started: OnceCell<()>,
    pub membership: Membership,
    pub pending: Arc<Pending>,
    namespaces: RwLock<HashMap<String, Weak<N>>>,
    /// Namespaces of this node in the cluster, bounded by `max_namespaces`.
    in_cluster: AtomicUsize,
    /// Namespaces this node only sends requests to (it has no socket there): their response
    /// channel is subscribed once.
    detached: Mutex<HashSet<String>>,
    /// Set by [`Node::bind`]. It holds the `SocketIo`, which holds this node: type-erased, so
    /// that proving the node `Send` does not go round that circle forever.
    describer: RwLock<Option<Describer>>,
    handlers: RwLock<HashMap<String, ServerEventHandler>>,
    pub stats: Stats,
    /// One permit per broadcast that may wait for the pub/sub server.
    broadcast_slots: Semaphore,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl<D: Driver, N: Namespace> Node<D, N> {
    pub fn new(driver: D, config: ClusterConfig) -> Self {
        Self {
            protocol: Protocol::new(driver.sharded(), config.subscription_mode),
            membership: Membership::new(config.node_timeout),
            broadcast_slots: Semaphore::new(
                config.max_pending_broadcasts.min(Semaphore::MAX_PERMITS),
            ),
            config,
            driver,
            uid: OnceLock::new(),
            started: OnceCell::new(),
            pending: Default::default(),
            namespaces: Default::default(),
            in_cluster: AtomicUsize::new(0),
            detached: Default::default(),
            describer: Default::default(),
            handlers: Default::default(),
            stats: Default::default(),
            tasks: Default::default(),
        }
    }

    pub fn uid(&self) -> &str {
        self.uid.get().map_or("", String::as_str)
    }

    pub fn uid_if_set(&self) -> Option<&str> {
        self.uid.get().map(String::as_str)
    }

    /// Records the id socketioxide gave the server (the same for every namespace).
    pub fn set_uid(&self, uid: String) {
        let _ = self.uid.set(uid);
    }

    /// Starts the node's tasks, once: the heartbeat and the receive loop.
    pub async fn start(self: &Arc<Self>) -> Result<(), ClusterError> {
        if self.uid.get().is_none() {
            return Err(ClusterError::NotStarted);
        }
        self.started
            .get_or_try_init(|| async {
                let incoming = self.driver.incoming();
                let key = &self.config.key;
                self.driver
                    .subscribe(
                        vec![keys::heartbeat_channel(key), keys::node_channel(key, self.uid())],
                        vec![],
                    )
                    .await?;
                let receiver = tokio::spawn(receive_loop(Arc::downgrade(self), incoming));
                let heartbeat = tokio::spawn(heartbeat_loop(Arc::downgrade(self)));
                let mut tasks = self.tasks.lock().unwrap();
                tasks.push(receiver.abort_handle());
                tasks.push(heartbeat.abort_handle());
                if self.protocol.has_room_channels() {
                    let rooms = tokio::spawn(room_reconcile_loop(Arc::downgrade(self)));
                    tasks.push(rooms.abort_handle());
                }
                tracing::info!(node = %self.config.node_name, uid = %self.uid(), key = %key, "cluster node started");
                Ok::<_, ClusterError>(())
            })
            .await
            .map(|_| ())
    }

    /// Says goodbye (nobody waits for this node any more) and stops the background tasks.
    pub async fn close(&self) {
        if self.uid.get().is_some() {
            self.send_heartbeat(true).await;
        }
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        // Both may hold the application's `SocketIo`, which holds the application.
        self.describer.write().unwrap().take();
        self.handlers.write().unwrap().clear();
    }

    /// Lets the node describe its sockets (data, handshake) to the others.
    pub fn bind<A: Adapter>(&self, io: &SocketIo<A>) {
        let io = io.clone();
        let describer: Describer = Arc::new(move |nsp, sockets| {
            let Some(ns) = io.of(nsp) else {
                return Vec::new();
            };
            described(sockets, |sid| Some(Described::of(&*ns.get_socket(sid)?)))
        });
        *self.describer.write().unwrap() = Some(describer);
    }

    /// Registers the namespace `nsp` unless a live one is registered already (a concurrent
    /// first connect built it): the first one stays.
    pub fn register(&self, nsp: &str, namespace: Weak<N>) -> bool {
        let mut namespaces = self.namespaces.write().unwrap();
        if namespaces
            .get(nsp)
            .is_some_and(|existing| existing.strong_count() > 0)
        {
            return false;
        }
        namespaces.insert(nsp.to_string(), namespace);
        true
    }

    /// Unregisters `namespace` if it is the one registered for `nsp`.
    pub fn unregister(&self, nsp: &str, namespace: &N) -> bool {
        let mut namespaces = self.namespaces.write().unwrap();
        let registered = namespaces
            .get(nsp)
            .is_some_and(|weak| std::ptr::eq(weak.as_ptr(), namespace));
        if registered {
            namespaces.remove(nsp);
        }
        registered
    }

    /// Takes one of the `max_namespaces` places in the cluster.
    pub fn reserve_namespace(&self) -> Result<(), ClusterError> {
        let max = self.config.max_namespaces;
        self.in_cluster
            .fetch_update(AcqRel, Acquire, |n| (n < max).then_some(n + 1))
            .map(|_| ())
            .map_err(|_| ClusterError::TooManyNamespaces { max })
    }

    /// Gives back the place of a namespace that left the cluster.
    pub fn left_cluster(&self) {
        self.in_cluster.fetch_sub(1, AcqRel);
    }

    pub fn namespace(&self, nsp: &str) -> Option<Arc<N>> {
        self.namespaces
            .read()
            .unwrap()
            .get(nsp)
            .and_then(Weak::upgrade)
    }

    /// Whether this node hears the cluster in `nsp`.
    pub fn serves(&self, nsp: &str) -> bool {
        self.namespace(nsp).is_some_and(|n| n.in_cluster())
    }

    /// The namespaces that joined the cluster.
    fn joined(&self) -> Vec<Arc<N>> {
        self.namespaces
            .read()
            .unwrap()
            .values()
            .filter_map(Weak::upgrade)
            .filter(|n| n.in_cluster())
            .collect()
    }

    /// The channels of `nsp`, subscribing to its response channel when this node does not serve
    /// the namespace, so it can still ask the others. Such namespaces count against
    /// `max_namespaces` too: requests naming ever new namespaces cannot grow subscriptions.
    pub async fn channels_for(self: &Arc<Self>, nsp: &str) -> Result<Channels, ClusterError> {
        self.start().await?;
        let channels = Channels::new(&self.config.key, nsp);
        if !self.serves(nsp) && self.detach(nsp)? {
            let response = self.protocol.own_response_channel(&channels, self.uid());
            if let Err(err) = self.driver.subscribe(vec![response], vec![]).await {
                self.detached.lock().unwrap().remove(nsp);
                return Err(err.into());
            }
        }
        Ok(channels)
    }

    /// Records `nsp` as asked without being served; true when it is new.
    fn detach(&self, nsp: &str) -> Result<bool, ClusterError> {
        let mut detached = self.detached.lock().unwrap();
        if detached.contains(nsp) {
            return Ok(false);
        }
        let max = self.config.max_namespaces;
        if detached.len() >= max {
            return Err(ClusterError::TooManyNamespaces { max });
        }
        Ok(detached.insert(nsp.to_string()))
    }

    pub async fn publish(&self, channel: String, payload: Vec<u8>) -> Result<(), ClusterError> {
        Stats::add(&self.stats.published, 1);
        Ok(self.driver.publish(channel, payload).await?)
    }

    /// Sends a response to a request of node `to`.
    pub async fn respond(&self, channels: &Channels, to: Option<&str>, mut res: WireResponse) {
        res.uid = Some(self.uid().to_string());
        let encoded = self.protocol.encode_response(&channels.nsp, &res);
        self.send_response(channels, to, &res.request_id, encoded)
            .await;
    }

    /// Sends an encoded response to request `request_id` of node `to`.
    pub async fn send_response(
        &self,
        channels: &Channels,
        to: Option<&str>,
        request_id: &str,
        encoded: Result<Vec<u8>, WireError>,
    ) {
        let channel =
            self.protocol
                .response_channel(channels, to, self.config.specific_response_channel);
        let sent = match encoded {
            Ok(bytes) => self.publish(channel, bytes).await,
            Err(err) => Err(err.into()),
        };
        if let Err(err) = sent {
            tracing::warn!(%err, request = %request_id, "could not send a response");
        }
    }

    /// Fails with [`ClusterError::Overloaded`], counted like a refused broadcast, when a
    /// broadcast from this node would be refused now.
    pub fn ensure_capacity(&self) -> Result<(), ClusterError> {
        if self.broadcast_slots.available_permits() == 0 {
            return Err(self.overloaded());
        }
        Ok(())
    }

    /// Publishes a broadcast to the other nodes, unless `max_pending_broadcasts` already wait
    /// for the pub/sub server.
    pub async fn publish_broadcast(
        &self,
        channels: &Channels,
        packet: WirePacket,
        opts: WireOpts,
    ) -> Result<(), ClusterError> {
        let Ok(_pending) = self.broadcast_slots.try_acquire() else {
            return Err(self.overloaded());
        };
        let channel = self.protocol.broadcast_channel(channels, &opts.rooms);
        let msg = BroadcastMessage(self.uid().to_string(), packet, opts);
        let payload = self.protocol.encode_broadcast(&channels.nsp, msg)?;
        self.publish(channel, payload).await
    }

    /// The refusal of a broadcast beyond `max_pending_broadcasts`, counted.
    fn overloaded(&self) -> ClusterError {
        Stats::add(&self.stats.rejected, 1);
        ClusterError::Overloaded {
            pending: self.config.max_pending_broadcasts,
        }
    }

    /// Describes sockets of this node, with their rooms; sockets gone meanwhile are left out.
    /// Before [`Node::bind`], sockets are described by id and rooms only.
    pub fn describe(&self, nsp: &str, sockets: SocketsWithRooms) -> Vec<Description> {
        let describer = self.describer.read().unwrap().clone();
        match describer {
            Some(describe) => describe(nsp, sockets),
            None => described(sockets, |sid| Some(Described::bare(&sid.to_string()))),
        }
    }

    pub fn on_server_event(&self, nsp: &str, handler: ServerEventHandler) {
        self.handlers
            .write()
            .unwrap()
            .insert(nsp.to_string(), handler);
    }

    /// The handler of `nsp`, else the one of every namespace ([`ANY_NAMESPACE`]).
    pub fn server_event_handler(&self, nsp: &str) -> Option<ServerEventHandler> {
        let handlers = self.handlers.read().unwrap();
        handlers
            .get(nsp)
            .or_else(|| handlers.get(ANY_NAMESPACE))
            .cloned()
    }

    /// This node as its heartbeats describe it.
    pub fn self_info(&self) -> NodeInfo {
        let joined = self.joined();
        NodeInfo {
            uid: self.uid().to_string(),
            name: self.config.node_name.clone(),
            sockets: joined.iter().map(|n| n.socket_count()).sum(),
            nsps: joined.iter().map(|n| n.path().to_string()).collect(),
            last_heartbeat_ms: socket::now_ms(),
        }
    }

    pub async fn send_heartbeat(&self, bye: bool) {
        let info = self.self_info();
        let hb = Heartbeat {
            uid: info.uid,
            name: info.name,
            nsps: info.nsps,
            sockets: info.sockets,
            ts: info.last_heartbeat_ms,
            bye,
        };
        let sent = match wire::encode(&hb) {
            Ok(bytes) => {
                self.publish(keys::heartbeat_channel(&self.config.key), bytes)
                    .await
            }
            Err(err) => Err(err.into()),
        };
        if let Err(err) = sent {
            tracing::warn!(%err, "could not send heartbeat");
        }
    }

    /// Hands a message from another node to whom it is for.
    fn dispatch(self: &Arc<Self>, channel: &str, payload: bytes::Bytes) {
        Stats::add(&self.stats.received, 1);
        if payload.len() > self.config.max_inbound_bytes {
            let err = format!(
                "{} bytes on {channel}, above max_inbound_bytes ({})",
                payload.len(),
                self.config.max_inbound_bytes
            );
            return self.malformed("message", &err);
        }
        // Every channel of the sharded protocol reads as a broadcast channel of the classic one
        // (`{key}#…`); the message itself says what it is.
        let inbound = match (self.protocol, keys::route(&self.config.key, channel)) {
            (_, Route::Heartbeat) => return self.on_heartbeat(&payload),
            (_, Route::Other) => Ok(None),
            (Protocol::Classic, route) => classic_inbound(route, &payload).map(Some),
            (Protocol::Sharded(_), _) => sharded::decode_inbound(&payload).map(Some),
        };
        match inbound {
            Ok(Some((nsp, inbound))) => self.handle(&nsp, inbound),
            Ok(None) => {}
            Err(err) => self.malformed("message", &err),
        }
    }

    fn handle(self: &Arc<Self>, nsp: &str, inbound: Inbound) {
        match inbound {
            Inbound::Broadcast(msg) => {
                if msg.0 != self.uid()
                    && let Some(namespace) = self.namespace(nsp)
                {
                    namespace.on_broadcast(msg);
                }
            }
            Inbound::Request(req) => {
                if req.uid.as_deref() != Some(self.uid())
                    && let Some(namespace) = self.namespace(nsp)
                {
                    tokio::spawn(namespace.on_request(req));
                }
            }
            Inbound::Response(res) => {
                if !self.pending.deliver(res) {
                    tracing::trace!("response to an unknown or finished request");
                }
            }
            Inbound::Ignored => {}
        }
    }

    fn on_heartbeat(self: &Arc<Self>, payload: &[u8]) {
        match wire::decode::<Heartbeat>(payload) {
            Ok(hb) if hb.uid == self.uid() => self.membership.on_own_heartbeat(),
            Ok(hb) => {
                if self.membership.on_heartbeat(hb) {
                    let this = self.clone();
                    tokio::spawn(async move { this.send_heartbeat(false).await });
                }
            }
            Err(err) => self.malformed("heartbeat", &err),
        }
    }

    /// Every client of every namespace must resync: this node may have missed broadcasts.
    fn evict_everyone(&self) {
        if self.config.disconnect_on_loss {
            self.joined().iter().for_each(|n| n.evict_everyone());
        }
    }

    pub fn malformed(&self, what: &str, err: &dyn std::fmt::Display) {
        Stats::add(&self.stats.malformed, 1);
        tracing::warn!(%err, "ignoring a malformed {what} from another node");
    }
}

/// A message of the classic protocol on a channel `route`d to a namespace: the namespace and the
/// message.
fn classic_inbound(
    route: Route<'_>,
    payload: &bytes::Bytes,
) -> Result<(String, Inbound), WireError> {
    let (nsp, inbound) = match route {
        Route::Broadcast { nsp } => (nsp, Inbound::Broadcast(wire::decode(payload)?)),
        Route::Request { nsp } => (nsp, Inbound::Request(wire::decode(payload)?)),
        Route::Response { nsp } => (nsp, Inbound::Response(wire::decode_response(payload)?)),
        // The caller handles these channels itself.
        Route::Heartbeat | Route::Other => ("", Inbound::Ignored),
    };
    Ok((nsp.to_string(), inbound))
}

async fn receive_loop<D: Driver, N: Namespace>(
    node: Weak<Node<D, N>>,
    mut incoming: IncomingStream,
) {
    while let Some(item) = incoming.next().await {
        let Some(node) = node.upgrade() else { return };
        match item {
            Incoming::Message { channel, payload } => node.dispatch(&channel, payload),
            Incoming::Lost(n) => {
                Stats::add(&node.stats.lost, n);
                tracing::error!(
                    lost = n,
                    "messages from other nodes were lost: they arrived faster than this node read them"
                );
                node.evict_everyone();
            }
            Incoming::Reconnected => {
                Stats::add(&node.stats.reconnects, 1);
                tracing::warn!("reconnected to the pub/sub server; subscriptions restored");
                node.membership.on_reconnected();
                // Whatever was published while the subscriber was away never reached this node.
                node.evict_everyone();
                node.send_heartbeat(false).await;
            }
        }
    }
    tracing::error!("the pub/sub stream ended: this node no longer hears the cluster");
}

async fn heartbeat_loop<D: Driver, N: Namespace>(node: Weak<Node<D, N>>) {
    let interval = match node.upgrade() {
        Some(node) => node.config.heartbeat_interval,
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        node.send_heartbeat(false).await;
        node.membership.sweep();
    }
}

/// How often room subscriptions are checked against the rooms of local sockets.
const ROOM_RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

async fn room_reconcile_loop<D: Driver, N: Namespace>(node: Weak<Node<D, N>>) {
    let mut ticker = tokio::time::interval(ROOM_RECONCILE_INTERVAL);
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        for namespace in node.joined() {
            let found = namespace.clone().reconcile_rooms().await;
            if found > 0 {
                Stats::add(&node.stats.rooms_reconciled, found as u64);
                tracing::warn!(nsp = %namespace.path(), rooms = found, "rooms joined without Cluster::join were subscribed late: their sockets may have missed broadcasts");
            }
        }
    }
}

/// `sockets` described by `describe`; a socket it cannot find is left out, one it cannot describe
/// is logged and left out.
fn described(
    sockets: SocketsWithRooms,
    describe: impl Fn(Sid) -> Option<Result<Described, WireError>>,
) -> Vec<Description> {
    sockets
        .into_iter()
        .filter_map(|(sid, rooms)| match describe(sid)? {
            Ok(described) => Some((sid, described, rooms)),
            Err(err) => {
                tracing::warn!(%err, socket = %sid, "cannot describe a socket");
                None
            }
        })
        .collect()
}
