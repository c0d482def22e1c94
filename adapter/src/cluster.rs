//! A node of the cluster: what the adapters of all its namespaces share (transport, identity,
//! membership, requests in flight), its background tasks, and the public API for what
//! socketioxide's adapter trait cannot express.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{
            AtomicUsize,
            Ordering::{AcqRel, Acquire},
        },
    },
    time::Duration,
};

use futures_util::{StreamExt, future::BoxFuture};
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide_core::Sid;
use tokio::{
    sync::{OnceCell, Semaphore, broadcast},
    task::AbortHandle,
};

use crate::{
    acks,
    adapter::ClusterAdapter,
    channels::{self, Channels, Route},
    config::ClusterConfig,
    driver::{Driver, Incoming},
    error::{ClusterError, WireError},
    membership::{Membership, NodeEvent, NodeInfo},
    opts::Target,
    requests::{Pending, Registration, Waiting},
    socket::{self, Described, RemoteSocket},
    stats::{ClusterStats, Stats},
    value::Codec,
    value::{json_to_wire, wire_to_json},
    wire::{
        self, BroadcastMessage, Heartbeat, RequestType, SocketEntry, WireFlags, WireOpts,
        WirePacket, WireRequest, WireResponse, WireSocket,
    },
};

/// A server-side event from another node (`serverSideEmit`).
#[derive(Debug, Clone)]
pub struct ServerEvent {
    pub nsp: String,
    pub event: String,
    pub args: Vec<Value>,
    /// The sending node's uid, when it is a node of this crate.
    pub from: Option<String>,
}

/// Handles server-side events; returning `Some` acknowledges with that value when the sender
/// asked for acks.
pub type ServerEventHandler =
    Arc<dyn Fn(ServerEvent) -> BoxFuture<'static, Option<Value>> + Send + Sync>;

/// The handle of a cluster node, given to socketioxide as the adapter state:
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use socketio_cluster::{Cluster, ClusterAdapter, ClusterConfig, RedisDriver, RedisDriverConfig};
/// use socketioxide::{SocketIo, extract::SocketRef};
///
/// let driver = RedisDriver::connect(RedisDriverConfig::new("redis://127.0.0.1:6379")).await?;
/// let cluster = Cluster::new(driver, ClusterConfig::default());
/// let (layer, io) = SocketIo::builder()
///     .with_adapter::<ClusterAdapter<RedisDriver>>(cluster.clone())
///     .build_layer();
/// cluster.bind(&io);
/// io.ns("/", async |socket: SocketRef<ClusterAdapter<RedisDriver>>| {
///     socketio_cluster::track(&socket, &serde_json::json!({ "user": 1 })).ok();
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub struct Cluster<D: Driver>(pub(crate) Arc<Inner<D>>);

impl<D: Driver> Clone for Cluster<D> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

pub(crate) struct Inner<D: Driver> {
    pub config: ClusterConfig,
    pub driver: D,
    uid: std::sync::OnceLock<String>,
    started: OnceCell<()>,
    pub membership: Membership,
    pub pending: Arc<Pending>,
    namespaces: RwLock<HashMap<String, Weak<ClusterAdapter<D>>>>,
    /// Namespaces of this node in the cluster, bounded by `max_namespaces`.
    in_cluster: AtomicUsize,
    /// Namespaces this node only sends requests to (it has no socket there): their response
    /// channel is subscribed once.
    detached: Mutex<HashSet<String>>,
    io: RwLock<Option<SocketIo<ClusterAdapter<D>>>>,
    handlers: RwLock<HashMap<String, ServerEventHandler>>,
    pub stats: Stats,
    /// One permit per broadcast that may wait for the pub/sub server.
    broadcast_slots: Semaphore,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl<D: Driver> Cluster<D> {
    /// A node over `driver`. Its tasks start with its first namespace.
    pub fn new(driver: D, config: ClusterConfig) -> Self {
        Self(Arc::new(Inner {
            membership: Membership::new(config.node_timeout),
            broadcast_slots: Semaphore::new(
                config.max_pending_broadcasts.min(Semaphore::MAX_PERMITS),
            ),
            config,
            driver,
            uid: Default::default(),
            started: OnceCell::new(),
            pending: Default::default(),
            namespaces: Default::default(),
            in_cluster: AtomicUsize::new(0),
            detached: Default::default(),
            io: Default::default(),
            handlers: Default::default(),
            stats: Default::default(),
            tasks: Default::default(),
        }))
    }

    /// Lets the node describe its sockets (data, handshake) to the others. Call once, right after
    /// building the `SocketIo`.
    pub fn bind(&self, io: &SocketIo<ClusterAdapter<D>>) {
        *self.0.io.write().unwrap() = Some(io.clone());
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.0.config
    }

    /// Whether namespace `nsp` joined the cluster on this node (see [`Cluster::admit`]).
    pub fn in_cluster(&self, nsp: &str) -> bool {
        self.0.serves(nsp)
    }

    /// Lets namespace `nsp` join the cluster if it has not yet: subscribes its channels and lists
    /// it in this node's heartbeats. With [`ClusterConfig::lazy_namespaces`], call it for every
    /// socket once the application accepted it (a connect middleware is the place): the socket
    /// is told it is connected only after this returns, so it misses no broadcast. Fails with
    /// [`ClusterError::TooManyNamespaces`] beyond [`ClusterConfig::max_namespaces`].
    pub async fn admit(&self, nsp: &str) -> Result<(), ClusterError> {
        let adapter = self
            .0
            .adapter(nsp)
            .ok_or_else(|| ClusterError::UnknownNamespace(nsp.to_string()))?;
        adapter.join_cluster().await
    }

    /// This node's cluster id, once its first namespace exists.
    pub fn uid(&self) -> Option<&str> {
        self.0.uid.get().map(String::as_str)
    }

    /// This node and every live node it hears of.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut nodes = vec![self.0.self_info()];
        let mut others = self.0.membership.alive();
        others.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.extend(others);
        nodes
    }

    /// Nodes joining and leaving (or crashing).
    pub fn node_events(&self) -> broadcast::Receiver<NodeEvent> {
        self.0.membership.events()
    }

    /// Whether `uid` is a live node (this one included).
    pub fn is_alive(&self, uid: &str) -> bool {
        self.uid() == Some(uid) || self.0.membership.is_alive(uid)
    }

    pub fn stats(&self) -> ClusterStats {
        self.0.stats.snapshot()
    }

    /// Fails with [`ClusterError::Overloaded`], counted like a refused broadcast, when a
    /// broadcast from this node would be refused now: an application can turn work away before
    /// doing it (storing a message it could not send, say).
    pub fn ensure_capacity(&self) -> Result<(), ClusterError> {
        if self.0.broadcast_slots.available_permits() == 0 {
            return Err(self.0.overloaded());
        }
        Ok(())
    }

    /// The transport.
    pub fn driver(&self) -> &D {
        &self.0.driver
    }

    /// Every matching socket of the namespace on every node, with data and handshake.
    pub async fn fetch_sockets(
        &self,
        nsp: &str,
        target: &Target,
    ) -> Result<Vec<RemoteSocket>, ClusterError> {
        match self.0.adapter(nsp) {
            Some(adapter) => adapter.fetch_remote_sockets(&target.to_wire()).await,
            None => {
                self.0
                    .fetch_from_others(nsp, &self.0.channels_for(nsp).await?, &target.to_wire())
                    .await
            }
        }
    }

    /// How many nodes serve the namespace, this one included (`serverCount`).
    pub async fn server_count(&self, nsp: &str) -> Result<u16, ClusterError> {
        self.0
            .server_count(nsp, &self.0.channels_for(nsp).await?)
            .await
    }

    /// Puts the matching sockets of every node in `rooms` (`socketsJoin`).
    pub async fn add_sockets(
        &self,
        nsp: &str,
        target: &Target,
        rooms: Vec<String>,
    ) -> Result<(), ClusterError> {
        self.membership_op(nsp, target, RequestType::RemoteJoin, rooms, None)
            .await
    }

    /// Removes the matching sockets of every node from `rooms` (`socketsLeave`).
    pub async fn del_sockets(
        &self,
        nsp: &str,
        target: &Target,
        rooms: Vec<String>,
    ) -> Result<(), ClusterError> {
        self.membership_op(nsp, target, RequestType::RemoteLeave, rooms, None)
            .await
    }

    /// Disconnects the matching sockets of every node (`disconnectSockets`). `close` asks Node.js
    /// nodes to close the whole connection; socketioxide can only disconnect the namespace.
    pub async fn disconnect_sockets(
        &self,
        nsp: &str,
        target: &Target,
        close: bool,
    ) -> Result<(), ClusterError> {
        self.membership_op(
            nsp,
            target,
            RequestType::RemoteDisconnect,
            Vec::new(),
            Some(close),
        )
        .await
    }

    async fn membership_op(
        &self,
        nsp: &str,
        target: &Target,
        kind: RequestType,
        rooms: Vec<String>,
        close: Option<bool>,
    ) -> Result<(), ClusterError> {
        if let Some(adapter) = self.0.adapter(nsp) {
            adapter.apply_membership(kind, target.to_local(), rooms.clone());
        }
        let channels = self.0.channels_for(nsp).await?;
        self.0
            .relay(nsp, &channels, kind, target.to_wire(), rooms, close)
            .await
    }

    /// Every room of the namespace on every node (`allRooms`).
    pub async fn rooms(&self, nsp: &str) -> Result<HashSet<String>, ClusterError> {
        let channels = self.0.channels_for(nsp).await?;
        let mut rooms = self
            .0
            .remote_rooms(nsp, &channels, Target::all().to_wire())
            .await?;
        if let Some(adapter) = self.0.adapter(nsp) {
            rooms.extend(adapter.local_rooms());
        }
        Ok(rooms)
    }

    /// Emits `event` with `args` to the matching sockets of every node, from any node (even one
    /// without sockets in the namespace), like `@socket.io/redis-emitter`.
    pub async fn emit(
        &self,
        nsp: &str,
        target: &Target,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), ClusterError> {
        let channels = self.0.channels_for(nsp).await?;
        let packet = event_packet(nsp, event, &args);
        if let Some(adapter) = self.0.adapter(nsp) {
            adapter.deliver_wire(packet.data.clone(), target.to_local());
        }
        self.0
            .publish_broadcast(&channels, packet, target.to_wire())
            .await
    }

    /// Emits `event` to the matching sockets of every node and collects their acks (the first
    /// argument of each), waiting at most `timeout`. Clients that did not ack in time are left out.
    pub async fn emit_with_ack(
        &self,
        nsp: &str,
        target: &Target,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, ClusterError> {
        let channels = self.0.channels_for(nsp).await?;
        let packet = event_packet(nsp, event, &args);
        let mut wire_opts = target.to_wire();
        wire_opts.flags = Some(WireFlags {
            timeout: Some(timeout.as_millis() as u64),
            ..Default::default()
        });
        let (local, codec) = match self.0.adapter(nsp) {
            Some(adapter) => (
                adapter.local_acks(packet.data.clone(), target.to_local(), timeout),
                adapter.codec(),
            ),
            None => (futures_util::stream::empty().boxed(), Codec::Common),
        };
        let remote = acks::remote(&self.0, nsp, &channels, packet, wire_opts, codec).await?;
        let acks: Vec<_> = futures_util::stream::select(local, remote).collect().await;
        Ok(acks
            .into_iter()
            .filter_map(|(_, ack)| ack.ok())
            .filter_map(|ack| match codec.wire_of(&ack) {
                Ok(rmpv::Value::Array(args)) => args.into_iter().next(),
                _ => None,
            })
            .filter_map(|first| wire_to_json(&first).ok())
            .collect())
    }

    /// Emits `event` to the server side of every other node (`serverSideEmit`).
    pub async fn server_side_emit(
        &self,
        nsp: &str,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), ClusterError> {
        let channels = self.0.channels_for(nsp).await?;
        let req = WireRequest {
            kind: Some(RequestType::ServerSideEmit),
            uid: Some(self.0.uid().to_string()),
            data: Some(event_data(event, &args)),
            ..Default::default()
        };
        self.0.publish(channels.request, wire::encode(&req)?).await
    }

    /// Emits `event` to every other node and collects one ack per node.
    pub async fn server_side_emit_with_ack(
        &self,
        nsp: &str,
        event: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, ClusterError> {
        let channels = self.0.channels_for(nsp).await?;
        let req = WireRequest {
            kind: Some(RequestType::ServerSideEmit),
            data: Some(event_data(event, &args)),
            ..Default::default()
        };
        let mut acks = Vec::new();
        self.0
            .ask(
                nsp,
                &channels,
                req,
                "serverSideEmit",
                Expect::AllNodes,
                |res| {
                    if let Some(data) = res.data.as_ref().and_then(|d| wire_to_json(d).ok()) {
                        acks.push(data);
                    }
                },
            )
            .await?;
        Ok(acks)
    }

    /// Handles server-side events of namespace `nsp` sent by other nodes.
    pub fn on_server_event<F, Fut>(&self, nsp: &str, handler: F)
    where
        F: Fn(ServerEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Value>> + Send + 'static,
    {
        let handler: ServerEventHandler = Arc::new(move |ev| Box::pin(handler(ev)));
        self.0
            .handlers
            .write()
            .unwrap()
            .insert(nsp.to_string(), handler);
    }

    /// Leaves the cluster: says goodbye (nobody waits for this node any more) and stops the
    /// background tasks. Call after `SocketIo::close`.
    pub async fn close(&self) {
        if self.0.uid.get().is_some() {
            self.0.send_heartbeat(true).await;
        }
        for task in self.0.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        self.0.io.write().unwrap().take();
    }
}

/// Whom a request waits for.
pub(crate) enum Expect {
    /// Every other node serving the namespace, Node.js ones included (`PUBSUB NUMSUB`).
    AllNodes,
    /// Only this crate's nodes: Node.js nodes never answer join, leave and disconnect.
    OwnNodes,
}

/// What decides whom a request waits for: this crate's nodes, and the channels whose subscriber
/// counts reveal the others.
struct Census {
    /// Whether this node itself serves the namespace (and so counts among the subscribers).
    serves: bool,
    alive: Vec<String>,
    dead: Vec<String>,
    /// The request channel, then the own channel of each node in `dead`.
    probe: Vec<String>,
}

impl<D: Driver> Inner<D> {
    pub fn uid(&self) -> &str {
        self.uid.get().map_or("", String::as_str)
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
                        vec![channels::heartbeat_channel(key), channels::node_channel(key, self.uid())],
                        vec![],
                    )
                    .await?;
                let receiver = tokio::spawn(receive_loop(Arc::downgrade(self), incoming));
                let heartbeat = tokio::spawn(heartbeat_loop(Arc::downgrade(self)));
                let mut tasks = self.tasks.lock().unwrap();
                tasks.push(receiver.abort_handle());
                tasks.push(heartbeat.abort_handle());
                tracing::info!(node = %self.config.node_name, uid = %self.uid(), key = %key, "cluster node started");
                Ok::<_, ClusterError>(())
            })
            .await
            .map(|_| ())
    }

    /// Registers the adapter of `nsp` unless a live one is registered already (a concurrent
    /// first connect built it): the first one stays.
    pub fn register(&self, nsp: &str, adapter: Weak<ClusterAdapter<D>>) -> bool {
        let mut namespaces = self.namespaces.write().unwrap();
        if namespaces
            .get(nsp)
            .is_some_and(|existing| existing.strong_count() > 0)
        {
            return false;
        }
        namespaces.insert(nsp.to_string(), adapter);
        true
    }

    /// Unregisters `adapter` if it is the one registered for `nsp`.
    pub fn unregister(&self, nsp: &str, adapter: &ClusterAdapter<D>) -> bool {
        let mut namespaces = self.namespaces.write().unwrap();
        let registered = namespaces
            .get(nsp)
            .is_some_and(|weak| std::ptr::eq(weak.as_ptr(), adapter));
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

    pub fn adapter(&self, nsp: &str) -> Option<Arc<ClusterAdapter<D>>> {
        self.namespaces
            .read()
            .unwrap()
            .get(nsp)
            .and_then(Weak::upgrade)
    }

    /// Whether this node hears the cluster in `nsp`.
    fn serves(&self, nsp: &str) -> bool {
        self.adapter(nsp).is_some_and(|a| a.in_cluster())
    }

    /// The adapters of the namespaces that joined the cluster.
    fn adapters(&self) -> Vec<Arc<ClusterAdapter<D>>> {
        self.namespaces
            .read()
            .unwrap()
            .values()
            .filter_map(Weak::upgrade)
            .filter(|a| a.in_cluster())
            .collect()
    }

    /// The channels of `nsp`, subscribing to its response channel when this node does not serve
    /// the namespace, so it can still ask the others. Such namespaces count against
    /// `max_namespaces` too: requests naming ever new namespaces cannot grow subscriptions.
    async fn channels_for(self: &Arc<Self>, nsp: &str) -> Result<Channels, ClusterError> {
        self.start().await?;
        let channels = Channels::new(&self.config.key, nsp);
        if !self.serves(nsp) && self.detach(nsp)? {
            let response = channels.specific_response(self.uid());
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
        self.send_response(channels, to, &res.request_id, wire::encode(&res))
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
        let channel = match to {
            Some(uid) if self.config.specific_response_channel => channels.specific_response(uid),
            _ => channels.response.clone(),
        };
        let sent = match encoded {
            Ok(bytes) => self.publish(channel, bytes).await,
            Err(err) => Err(err.into()),
        };
        if let Err(err) = sent {
            tracing::warn!(%err, request = %request_id, "could not send a response");
        }
    }

    /// Who a request to namespace `nsp` would wait for now, Node.js nodes included.
    pub async fn expected(&self, nsp: &str, channels: &Channels) -> Result<Waiting, ClusterError> {
        let census = self.census(nsp, channels);
        let counts = self.driver.num_sub(census.probe.clone()).await?;
        Ok(self.tally(census, &counts))
    }

    /// Publishes a request to every node serving `nsp` and tells whom it reached: the count and
    /// the publish are one step, so no node subscribes or leaves in between.
    pub async fn publish_request(
        &self,
        nsp: &str,
        channels: &Channels,
        payload: Vec<u8>,
    ) -> Result<Waiting, ClusterError> {
        let census = self.census(nsp, channels);
        Stats::add(&self.stats.published, 1);
        let counts = self
            .driver
            .num_sub_then_publish(census.probe.clone(), channels.request.clone(), payload)
            .await?;
        Ok(self.tally(census, &counts))
    }

    /// What to count before a request to namespace `nsp`.
    fn census(&self, nsp: &str, channels: &Channels) -> Census {
        let alive = self.membership.alive_in(nsp);
        // A dead node still counted by NUMSUB (a frozen process keeps its connection) must not be
        // mistaken for a Node.js node: its own channel tells whether its connection lives.
        let dead = self.membership.dead_in(nsp);
        let mut probe = vec![channels.request.clone()];
        probe.extend(
            dead.iter()
                .map(|uid| channels::node_channel(&self.config.key, uid)),
        );
        Census {
            serves: self.serves(nsp),
            alive,
            dead,
            probe,
        }
    }

    /// Who a request waits for, given the subscriber counts of the census' probe.
    fn tally(&self, census: Census, counts: &[u64]) -> Waiting {
        let mut zombies = 0;
        for (uid, count) in census.dead.iter().zip(&counts[1..]) {
            if *count > 0 {
                zombies += 1;
            } else {
                self.membership.forget(uid);
            }
        }
        let known = u64::from(census.serves) + census.alive.len() as u64 + zombies;
        let anonymous = counts[0].saturating_sub(known) as usize;
        Waiting::new(census.alive, anonymous)
    }

    pub async fn server_count(&self, nsp: &str, channels: &Channels) -> Result<u16, ClusterError> {
        let others = self.expected(nsp, channels).await?.len();
        Ok(u16::try_from(1 + others).unwrap_or(u16::MAX))
    }

    /// Publishes a request and feeds each response to `on_response` until every expected node
    /// answered, a node it waits for dies, or the timeout.
    pub async fn ask(
        &self,
        nsp: &str,
        channels: &Channels,
        mut req: WireRequest,
        name: &'static str,
        expect: Expect,
        mut on_response: impl FnMut(WireResponse),
    ) -> Result<(), ClusterError> {
        let mut events = self.membership.events();
        let mut reg = self.pending.register();
        req.uid = Some(self.uid().to_string());
        req.request_id = Some(reg.id.clone());
        let payload = wire::encode(&req)?;
        Stats::add(&self.stats.requests, 1);
        let mut waiting = match expect {
            Expect::OwnNodes => {
                let alive = self.membership.alive_in(nsp);
                self.publish(channels.request.clone(), payload).await?;
                Waiting::new(alive, 0)
            }
            Expect::AllNodes => self.publish_request(nsp, channels, payload).await?,
        };
        let at_start = waiting.clone();
        let deadline = tokio::time::sleep(self.config.request_timeout);
        tokio::pin!(deadline);
        // Node.js nodes send no heartbeat: NUMSUB, asked again now and then, tells when one died.
        let period = (self.config.request_timeout / 10).max(Duration::from_millis(10));
        let mut recount = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        while !waiting.is_done() {
            tokio::select! {
                Some(res) = reg.rx.recv() => {
                    waiting.answered(res.uid.as_deref());
                    on_response(res);
                }
                Ok(NodeEvent::Left { node, .. }) = events.recv() => waiting.node_down(&node.uid),
                _ = recount.tick(), if waiting.foreign() > 0 => {
                    // Only while this crate's live nodes are those of the start: a node of ours
                    // heard from since filled an anonymous slot then, and its leaving the count
                    // must not pass for a Node.js node that died.
                    if let Ok(now) = self.expected(nsp, channels).await
                        && now.same_nodes(&at_start)
                    {
                        waiting.foreign_alive(now.foreign());
                    }
                }
                () = &mut deadline => {
                    Stats::add(&self.stats.request_timeouts, 1);
                    return Err(self.timeout(&waiting, name));
                }
            }
        }
        drop(reg);
        Ok(())
    }

    pub fn timeout(&self, waiting: &Waiting, name: &'static str) -> ClusterError {
        let err = waiting.timeout(name, |uid| {
            self.membership
                .name_of(uid)
                .unwrap_or_else(|| uid.to_string())
        });
        tracing::warn!(%err, "cluster request timed out");
        err
    }

    /// Publishes a broadcast to the other nodes.
    pub async fn publish_broadcast(
        &self,
        channels: &Channels,
        packet: WirePacket,
        opts: WireOpts,
    ) -> Result<(), ClusterError> {
        let Ok(_pending) = self.broadcast_slots.try_acquire() else {
            return Err(self.overloaded());
        };
        let channel = channels.for_broadcast(&opts.rooms);
        let msg = BroadcastMessage(self.uid().to_string(), packet, opts);
        self.publish(channel, wire::encode(&msg)?).await
    }

    /// The refusal of a broadcast beyond `max_pending_broadcasts`, counted.
    fn overloaded(&self) -> ClusterError {
        Stats::add(&self.stats.rejected, 1);
        ClusterError::Overloaded {
            pending: self.config.max_pending_broadcasts,
        }
    }

    /// Relays a join, leave or disconnect to the other nodes and waits until this crate's nodes
    /// applied it (Node.js nodes apply it too but never confirm).
    pub async fn relay(
        &self,
        nsp: &str,
        channels: &Channels,
        kind: RequestType,
        opts: WireOpts,
        rooms: Vec<String>,
        close: Option<bool>,
    ) -> Result<(), ClusterError> {
        let name = match kind {
            RequestType::RemoteJoin => "socketsJoin",
            RequestType::RemoteLeave => "socketsLeave",
            _ => "disconnectSockets",
        };
        let req = WireRequest {
            kind: Some(kind),
            opts: Some(opts),
            rooms: (kind != RequestType::RemoteDisconnect).then_some(rooms),
            close,
            ..Default::default()
        };
        self.ask(nsp, channels, req, name, Expect::OwnNodes, |_| ())
            .await
    }

    /// The rooms of the other nodes' sockets matching `opts`.
    pub async fn remote_rooms(
        &self,
        nsp: &str,
        channels: &Channels,
        opts: WireOpts,
    ) -> Result<HashSet<String>, ClusterError> {
        let req = WireRequest {
            kind: Some(RequestType::AllRooms),
            opts: Some(opts),
            ..Default::default()
        };
        let mut rooms = HashSet::new();
        self.ask(nsp, channels, req, "allRooms", Expect::AllNodes, |res| {
            rooms.extend(res.rooms.unwrap_or_default());
        })
        .await?;
        Ok(rooms)
    }

    /// Registers a request whose responses the caller reads itself.
    pub fn register_request(&self) -> Registration {
        self.pending.register()
    }

    /// REMOTE_FETCH to the other nodes.
    pub async fn fetch_from_others(
        &self,
        nsp: &str,
        channels: &Channels,
        opts: &wire::WireOpts,
    ) -> Result<Vec<RemoteSocket>, ClusterError> {
        let req = WireRequest {
            kind: Some(RequestType::RemoteFetch),
            opts: Some(opts.clone()),
            ..Default::default()
        };
        let mut sockets = Vec::new();
        self.ask(
            nsp,
            channels,
            req,
            "fetchSockets",
            Expect::AllNodes,
            |res| {
                let uid = res.uid.as_deref().map(Arc::<str>::from);
                let node = res
                    .uid
                    .as_deref()
                    .and_then(|uid| self.membership.name_of(uid))
                    .map(Arc::<str>::from);
                for entry in res.sockets.unwrap_or_default() {
                    match entry {
                        SocketEntry::Socket(s) => sockets.push(from_wire_socket(*s, &node, &uid)),
                        SocketEntry::Id(id) => {
                            self.malformed(
                                "fetch response",
                                &format!("socket {id} without a description"),
                            );
                        }
                    }
                }
            },
        )
        .await?;
        Ok(sockets)
    }

    /// Describes sockets of this node, with their rooms; sockets gone meanwhile are left out.
    /// Before [`Cluster::bind`], sockets are described by id and rooms only.
    pub fn describe(
        &self,
        nsp: &str,
        sids: impl IntoIterator<Item = (Sid, Vec<String>)>,
    ) -> Vec<(Sid, Described, Vec<String>)> {
        let io = self.io.read().unwrap().clone();
        let ns = io.as_ref().map(|io| io.of(nsp));
        sids.into_iter()
            .filter_map(|(sid, rooms)| {
                let described = match &ns {
                    Some(ns) => Described::of(&*ns.as_ref()?.get_socket(sid)?),
                    None => Described::bare(&sid.to_string()),
                };
                match described {
                    Ok(described) => Some((sid, described, rooms)),
                    Err(err) => {
                        tracing::warn!(%err, socket = %sid, "cannot describe a socket");
                        None
                    }
                }
            })
            .collect()
    }

    pub fn server_event_handler(&self, nsp: &str) -> Option<ServerEventHandler> {
        self.handlers.read().unwrap().get(nsp).cloned()
    }

    fn self_info(&self) -> NodeInfo {
        let adapters = self.adapters();
        NodeInfo {
            uid: self.uid().to_string(),
            name: self.config.node_name.clone(),
            sockets: adapters.iter().map(|a| a.local_socket_count()).sum(),
            nsps: adapters.iter().map(|a| a.nsp().to_string()).collect(),
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
                self.publish(channels::heartbeat_channel(&self.config.key), bytes)
                    .await
            }
            Err(err) => Err(err.into()),
        };
        if let Err(err) = sent {
            tracing::warn!(%err, "could not send heartbeat");
        }
    }

    fn dispatch(self: &Arc<Self>, channel: &str, payload: bytes::Bytes) {
        Stats::add(&self.stats.received, 1);
        match channels::route(&self.config.key, channel) {
            Route::Broadcast { nsp } => {
                if let Some(adapter) = self.adapter(nsp) {
                    adapter.on_broadcast(&payload);
                }
            }
            Route::Request { nsp } => match wire::decode::<WireRequest>(&payload) {
                Ok(req) if req.uid.as_deref() == Some(self.uid()) => {}
                Ok(req) => {
                    if let Some(adapter) = self.adapter(nsp) {
                        tokio::spawn(async move { adapter.on_request(req).await });
                    }
                }
                Err(err) => self.malformed("request", &err),
            },
            Route::Response { .. } => match wire::decode_response(&payload) {
                Ok(res) => {
                    if !self.pending.deliver(res) {
                        tracing::trace!("response to an unknown or finished request");
                    }
                }
                Err(err) => self.malformed("response", &err),
            },
            Route::Heartbeat => match wire::decode::<Heartbeat>(&payload) {
                Ok(hb) if hb.uid == self.uid() => {}
                Ok(hb) => {
                    if self.membership.on_heartbeat(hb) {
                        let this = self.clone();
                        tokio::spawn(async move { this.send_heartbeat(false).await });
                    }
                }
                Err(err) => self.malformed("heartbeat", &err),
            },
            Route::Other => {}
        }
    }

    pub fn malformed(&self, what: &str, err: &dyn std::fmt::Display) {
        Stats::add(&self.stats.malformed, 1);
        tracing::warn!(%err, "ignoring a malformed {what} from another node");
    }
}

async fn receive_loop<D: Driver>(
    node: Weak<Inner<D>>,
    mut incoming: crate::driver::IncomingStream,
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
                if node.config.disconnect_on_loss {
                    node.adapters().iter().for_each(|a| a.evict_everyone());
                }
            }
            Incoming::Reconnected => {
                Stats::add(&node.stats.reconnects, 1);
                tracing::warn!("reconnected to the pub/sub server; subscriptions restored");
                // Whatever was published while the subscriber was away never reached this node.
                if node.config.disconnect_on_loss {
                    node.adapters().iter().for_each(|a| a.evict_everyone());
                }
                node.send_heartbeat(false).await;
            }
        }
    }
    tracing::error!("the pub/sub stream ended: this node no longer hears the cluster");
}

async fn heartbeat_loop<D: Driver>(node: Weak<Inner<D>>) {
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

/// An event packet for the wire.
fn event_packet(nsp: &str, event: &str, args: &[Value]) -> WirePacket {
    WirePacket {
        kind: wire::EVENT,
        data: event_data(event, args),
        nsp: Some(nsp.to_string()),
        id: None,
    }
}

/// `[event, ...args]` on the wire.
fn event_data(event: &str, args: &[Value]) -> rmpv::Value {
    let mut items = vec![rmpv::Value::from(event)];
    items.extend(args.iter().map(json_to_wire));
    rmpv::Value::Array(items)
}

fn from_wire_socket(
    s: WireSocket,
    node: &Option<Arc<str>>,
    uid: &Option<Arc<str>>,
) -> RemoteSocket {
    RemoteSocket {
        id: s.id,
        node: s.node.or_else(|| node.clone()),
        node_uid: uid.clone(),
        rooms: s.rooms.into(),
        data: s.data.into(),
        handshake: s.handshake.into(),
    }
}
