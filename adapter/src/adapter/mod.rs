//! The socketioxide adapter of one namespace: applies every operation locally and relays it to
//! the other nodes through the node's requests, and answers what other nodes send it (the node
//! hands it their broadcasts and requests through the `Namespace` trait, see [`incoming`]). Also
//! the handle socketioxide creates adapters from, [`Cluster`], whose public API is in `cluster.rs`.

mod incoming;
mod rooms;

use std::{
    borrow::Cow,
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{
    StreamExt,
    future::BoxFuture,
    stream::{self, BoxStream, Fuse},
};
use socketioxide::{AckError, adapter::Emitter};
use socketioxide_core::{
    Sid, Uid,
    adapter::{
        AckStreamItem, BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter,
        DefinedAdapter, RemoteSocketData, Room, RoomParam, Spawnable,
        errors::{AdapterError, BroadcastError},
    },
    packet::Packet,
};
use tokio::sync::OnceCell;

use crate::{
    delivery::{self, Evictions},
    driver::Driver,
    error::ClusterError,
    keys::Channels,
    node::{Description, Node},
    opts,
    socket::{Binding, RemoteSocket},
    stats::Stats,
    value::Codec,
    wire::{EVENT, RequestType, WireOpts, WirePacket},
};

/// The acks of a cluster-wide `emit_with_ack`: local ones and those relayed by other nodes.
/// Acks from Node.js nodes carry no socket id; they come with `Sid::ZERO`.
pub type ClusterAckStream = Fuse<BoxStream<'static, AckStreamItem<AckError>>>;

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
pub struct Cluster<D: Driver>(pub(crate) Arc<ClusterNode<D>>);

/// The node of a cluster, knowing its namespaces as adapters of this module.
pub(crate) type ClusterNode<D> = Node<D, ClusterAdapter<D>>;

/// The adapter of one namespace. socketioxide creates one per namespace from the [`Cluster`].
pub struct ClusterAdapter<D: Driver> {
    node: Arc<ClusterNode<D>>,
    local: CoreLocalAdapter<Emitter>,
    codec: Codec,
    channels: Channels,
    nsp: String,
    evictions: Evictions,
    /// Set once the namespace joined the cluster (its channels subscribed, see
    /// [`Cluster::admit`]); until then it is local only and costs Redis nothing.
    joined: OnceCell<()>,
    /// The subscribed channels of its rooms (dynamic sharded modes only).
    rooms: rooms::RoomChannels,
}

/// The initialization of a namespace. Await it for a static namespace (`io.ns(...).await?`);
/// socketioxide spawns it for dynamic ones.
#[must_use = "the namespace is usable only once this future completed"]
pub struct NsInit(BoxFuture<'static, Result<(), ClusterError>>);

impl NsInit {
    fn ready(result: Result<(), ClusterError>) -> Self {
        Self(Box::pin(std::future::ready(result)))
    }
}

impl Future for NsInit {
    type Output = Result<(), ClusterError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Spawnable for NsInit {
    fn spawn(self) {
        tokio::spawn(async move {
            if let Err(err) = self.await {
                tracing::warn!(%err, "could not initialize a namespace");
            }
        });
    }
}

impl<D: Driver> DefinedAdapter for ClusterAdapter<D> {}

impl<D: Driver> CoreAdapter<Emitter> for ClusterAdapter<D> {
    type Error = ClusterError;
    type State = Cluster<D>;
    type AckStream = ClusterAckStream;
    type InitRes = NsInit;

    fn new(state: &Cluster<D>, local: CoreLocalAdapter<Emitter>) -> Self {
        let nsp = local.path().to_string();
        Self {
            channels: Channels::new(&state.0.config.key, &nsp),
            node: state.0.clone(),
            codec: Codec::of(local.parser()),
            local,
            nsp,
            evictions: Evictions::default(),
            joined: OnceCell::new(),
            rooms: rooms::RoomChannels::default(),
        }
    }

    /// Registers the namespace with the node and lets socketioxide use it at once, before any
    /// await: concurrent first connects to one dynamic namespace each build a namespace, and the
    /// one registered first is the one that stays (socketioxide would otherwise let a later one
    /// replace it, orphaning the sockets of the first). A later one is dropped unanswered.
    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> NsInit {
        let node = self.node.clone();
        node.set_uid(self.local.server_id().to_string());
        if !node.register(&self.nsp, Arc::downgrade(&self)) {
            Stats::add(&node.stats.namespace_races, 1);
            tracing::debug!(nsp = %self.nsp, "a concurrent first connect built this namespace again; its client reconnects after the connect timeout");
            return NsInit::ready(Err(ClusterError::NamespaceRace(self.nsp.clone())));
        }
        on_success();
        if node.config.lazy_namespaces {
            return NsInit::ready(Ok(()));
        }
        NsInit(Box::pin(async move { self.join_cluster().await }))
    }

    /// Leaves the cluster. The unsubscription runs in a task of its own: `SocketIo::delete_ns`
    /// polls this future only once.
    async fn close(&self) -> Result<(), ClusterError> {
        if !self.node.unregister(&self.nsp, self) || self.joined.get().is_none() {
            return Ok(());
        }
        self.node.left_cluster();
        let node = self.node.clone();
        let (mut channels, patterns) = self.subscriptions();
        channels.extend(self.rooms.subscribed());
        let nsp = self.nsp.clone();
        tokio::spawn(async move {
            if let Err(err) = node.driver.unsubscribe(channels, patterns).await {
                tracing::warn!(%err, %nsp, "could not unsubscribe a closed namespace");
            }
        });
        Ok(())
    }

    async fn server_count(&self) -> Result<u16, ClusterError> {
        self.node.server_count(&self.nsp, &self.channels).await
    }

    async fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Result<(), BroadcastError> {
        let remote = if opts.is_local(self.local.server_id()) {
            None
        } else {
            let wire_packet = self.wire_packet(&packet).map_err(adapter_error)?;
            Some((wire_packet, opts::to_wire(&opts, None)))
        };
        self.broadcast_packet(packet, remote, opts)
            .await
            .map_err(adapter_error)
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<ClusterAckStream, ClusterError> {
        let (local, _) = self
            .local
            .broadcast_with_ack(packet.clone(), opts.clone(), timeout);
        if opts.is_local(self.local.server_id()) {
            return Ok(local.boxed().fuse());
        }
        let timeout = timeout.unwrap_or_else(|| self.local.ack_timeout());
        let wire_opts = opts::to_wire(&opts, Some(timeout));
        let remote = self
            .node
            .remote_acks(
                &self.nsp,
                &self.channels,
                self.wire_packet(&packet)?,
                wire_opts,
                self.codec,
            )
            .await?;
        Ok(stream::select(local, remote).boxed().fuse())
    }

    async fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), ClusterError> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        let names = rooms.iter().map(|r| r.to_string()).collect();
        self.apply_membership(RequestType::RemoteJoin, opts.clone(), names)
            .await?;
        self.relay(RequestType::RemoteJoin, &opts, rooms, None)
            .await
    }

    async fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), ClusterError> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        self.local.del_sockets(opts.clone(), rooms.clone());
        self.relay(RequestType::RemoteLeave, &opts, rooms, None)
            .await
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        self.relay(
            RequestType::RemoteDisconnect,
            &opts,
            Vec::new(),
            Some(false),
        )
        .await
        .map_err(adapter_error)?;
        self.local
            .disconnect_socket(opts)
            .map_err(BroadcastError::Socket)
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, ClusterError> {
        let mut rooms: HashSet<Room> = self.local.rooms(opts.clone());
        if !opts.is_local(self.local.server_id()) {
            let remote = self
                .node
                .remote_rooms(&self.nsp, &self.channels, opts::to_wire(&opts, None))
                .await?;
            rooms.extend(remote.into_iter().map(Room::from));
        }
        Ok(rooms.into_iter().collect())
    }

    async fn fetch_sockets(
        &self,
        opts: BroadcastOptions,
    ) -> Result<Vec<RemoteSocketData>, ClusterError> {
        if opts.is_local(self.local.server_id()) {
            return Ok(self.local.fetch_sockets(opts));
        }
        let sockets = self
            .fetch_remote_sockets(&opts::to_wire(&opts, None), &None)
            .await?;
        Ok(sockets
            .into_iter()
            .filter_map(|s| {
                Some(RemoteSocketData {
                    id: s.id.parse().ok()?,
                    server_id: s
                        .node_uid
                        .as_deref()
                        .and_then(|uid| uid.parse().ok())
                        .unwrap_or(Uid::ZERO),
                    ns: self.local.path().clone(),
                })
            })
            .collect())
    }

    fn get_local(&self) -> &CoreLocalAdapter<Emitter> {
        &self.local
    }
}

impl<D: Driver> ClusterAdapter<D> {
    /// Subscribes the namespace's channels, once, so it hears the cluster and is counted and
    /// asked by the other nodes.
    pub(crate) async fn join_cluster(&self) -> Result<(), ClusterError> {
        let joined_before = self.joined.initialized();
        self.joined
            .get_or_try_init(|| async {
                let node = &self.node;
                node.start().await?;
                node.reserve_namespace()?;
                let (channels, patterns) = self.subscriptions();
                if let Err(err) = node.driver.subscribe(channels, patterns).await {
                    node.left_cluster();
                    return Err(err.into());
                }
                // Sockets that entered rooms before the namespace joined the cluster.
                if let Err(err) = self.reconcile_rooms().await {
                    node.left_cluster();
                    return Err(err);
                }
                Ok::<_, ClusterError>(())
            })
            .await?;
        // Once joined, so the heartbeat lists the namespace: the others then wait for this node's
        // answers to their requests in it right away, not from its next heartbeat on. (Callers
        // racing the first join may each send one: a heartbeat more is harmless.)
        if !joined_before {
            self.node.send_heartbeat(false).await;
            tracing::debug!(nsp = %self.nsp, "namespace joined the cluster");
        }
        Ok(())
    }

    /// The channels and patterns of the namespace itself, without its rooms'.
    fn subscriptions(&self) -> (Vec<String>, Vec<String>) {
        self.node
            .protocol
            .namespace_subscriptions(&self.channels, self.node.uid())
    }

    /// Subscribes the channels of `rooms` that have one (dynamic sharded modes) and are not yet
    /// subscribed, before sockets enter them: keep the result until they are in.
    pub(crate) async fn enter_rooms(
        &self,
        rooms: &[String],
    ) -> Result<rooms::Entering<'_>, ClusterError> {
        let protocol = self.node.protocol;
        let with_channels = if self.joined.get().is_some() {
            rooms
                .iter()
                .filter_map(|room| {
                    let channel = protocol.room_channel(&self.channels, room)?;
                    Some((room.clone(), channel))
                })
                .collect()
        } else {
            // Not in the cluster yet: joining it subscribes the rooms entered meanwhile.
            Vec::new()
        };
        Ok(self.rooms.enter(&self.node.driver, with_channels).await?)
    }

    /// Brings the room subscriptions in line with the rooms of local sockets (see `rooms`);
    /// returns how many rooms had sockets but no subscription. A socket's own room (its id, which
    /// `DynamicPrivate` gives a channel) is not counted: no join API covers it, so finding it
    /// here is the normal way, within a second of the connect.
    pub(crate) async fn reconcile_rooms(&self) -> Result<usize, ClusterError> {
        let protocol = self.node.protocol;
        if !protocol.has_room_channels() {
            return Ok(0);
        }
        let sids: HashSet<String> = self
            .local
            .sockets(every_socket())
            .into_iter()
            .map(|sid| sid.to_string())
            .collect();
        let local_rooms = || {
            let mut rooms: Vec<String> = self.local_rooms();
            rooms.extend(sids.iter().cloned());
            rooms
                .into_iter()
                .filter_map(|room| {
                    let channel = protocol.room_channel(&self.channels, &room)?;
                    Some((room, channel))
                })
                .collect()
        };
        let found = self.rooms.reconcile(&self.node.driver, local_rooms).await?;
        Ok(found.iter().filter(|room| !sids.contains(*room)).count())
    }

    pub(crate) fn codec(&self) -> Codec {
        self.codec
    }

    /// Every matching socket of the cluster, this node's first, bound to `actions`.
    pub(crate) async fn fetch_remote_sockets(
        &self,
        wire_opts: &WireOpts,
        actions: &Binding,
    ) -> Result<Vec<RemoteSocket>, ClusterError> {
        // The request is polled first, so it is on its way and the other nodes describe their
        // sockets while this one describes its own.
        let remote = self
            .node
            .fetch_from_others(&self.nsp, &self.channels, wire_opts, actions);
        let local = async {
            let node = Arc::<str>::from(self.node.config.node_name.as_str());
            let uid = Arc::<str>::from(self.node.uid());
            self.describe_local(wire_opts)
                .into_iter()
                .map(|(sid, described, rooms)| {
                    described.to_remote(sid.to_string(), rooms, (&node, &uid), actions)
                })
                .collect::<Vec<RemoteSocket>>()
        };
        let (remote, mut sockets) = futures_util::join!(remote, local);
        sockets.extend(remote?);
        Ok(sockets)
    }

    /// This node's sockets matching `wire_opts`: id, description and rooms.
    fn describe_local(&self, wire_opts: &WireOpts) -> Vec<Description> {
        let sids = self.local.sockets(opts::to_local(wire_opts));
        let with_rooms = sids
            .into_iter()
            .map(|sid| {
                let rooms = self
                    .local
                    .socket_rooms(sid)
                    .into_iter()
                    .map(Cow::into_owned)
                    .collect();
                (sid, rooms)
            })
            .collect();
        self.node.describe(&self.nsp, with_rooms)
    }

    pub(crate) fn wire_packet(&self, packet: &Packet) -> Result<WirePacket, ClusterError> {
        let (data, id) = match &packet.inner {
            socketioxide_core::packet::PacketData::Event(v, id)
            | socketioxide_core::packet::PacketData::BinaryEvent(v, id) => (v, *id),
            other => {
                return Err(crate::error::WireError::Data(format!(
                    "cannot relay packet type {}",
                    other.index()
                ))
                .into());
            }
        };
        Ok(WirePacket {
            kind: EVENT,
            data: self.codec.wire_of(data)?,
            nsp: Some(self.nsp.clone()),
            id,
        })
    }

    /// Every broadcast of this namespace takes this path, socketioxide's and the cluster's own
    /// emits alike, in this order: refused before anything if this node has too many broadcasts
    /// waiting for the pub/sub server (so a refused broadcast reaches nobody), published to the
    /// other nodes (unless it is for this node only), then handed to local sockets. Clients that
    /// could not take the packet are being disconnected (see `delivery`): the broadcast itself
    /// succeeded for everyone who stays connected.
    async fn broadcast_packet(
        &self,
        packet: Packet,
        remote: Option<(WirePacket, WireOpts)>,
        opts: BroadcastOptions,
    ) -> Result<(), ClusterError> {
        if let Some((wire_packet, wire_opts)) = remote {
            self.node
                .publish_broadcast(&self.channels, wire_packet, wire_opts)
                .await?;
        }
        self.deliver_locally(packet, opts);
        Ok(())
    }

    /// A cluster-wide broadcast of wire event data (`Cluster::emit`).
    pub(crate) async fn broadcast_wire(
        &self,
        packet: WirePacket,
        wire_opts: WireOpts,
        opts: BroadcastOptions,
    ) -> Result<(), ClusterError> {
        let value = self.codec.value_of(packet.data.clone())?;
        let local = Packet::event(self.local.path().clone(), value);
        self.broadcast_packet(local, Some((packet, wire_opts)), opts)
            .await
    }

    /// Hands a packet to local sockets, counting those that could not take it and disconnecting
    /// those that cannot keep up.
    fn deliver_locally(&self, packet: Packet, opts: BroadcastOptions) {
        let delivered = self.evictions.deliver(&self.local, packet, opts);
        Stats::add(&self.node.stats.delivered, delivered.delivered as u64);
        Stats::add(&self.node.stats.undelivered, delivered.undelivered as u64);
        for sid in &delivered.to_evict {
            tracing::warn!(nsp = %self.nsp, socket = %sid, "disconnecting a client that cannot keep up: its packet buffer is full");
        }
        self.evict(delivered.to_evict);
    }

    /// Disconnects sockets already marked as being evicted, counting them.
    fn evict(&self, sids: Vec<Sid>) {
        Stats::add(&self.node.stats.evicted, sids.len() as u64);
        for sid in sids {
            tokio::spawn(evict(self.node.clone(), self.nsp.clone(), sid));
        }
    }

    /// Relays a join, leave or disconnect unless it targets only this node.
    async fn relay(
        &self,
        kind: RequestType,
        opts: &BroadcastOptions,
        rooms: Vec<Room>,
        close: Option<bool>,
    ) -> Result<(), ClusterError> {
        if opts.is_local(self.local.server_id()) {
            return Ok(());
        }
        let rooms = rooms.iter().map(|r| r.to_string()).collect();
        self.node
            .relay(
                &self.nsp,
                &self.channels,
                kind,
                opts::to_wire(opts, None),
                rooms,
                close,
            )
            .await
    }

    /// Every room of this node's sockets.
    pub(crate) fn local_rooms(&self) -> Vec<String> {
        self.local
            .rooms(every_socket())
            .into_iter()
            .map(Cow::into_owned)
            .collect()
    }

    /// Emits wire event data to the matching local sockets and streams their acks.
    pub(crate) fn local_acks(
        &self,
        data: rmpv::Value,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxStream<'static, AckStreamItem<AckError>> {
        match self.codec.value_of(data) {
            Ok(value) => {
                let packet = Packet::event(self.local.path().clone(), value);
                self.local
                    .broadcast_with_ack(packet, opts, Some(timeout))
                    .0
                    .boxed()
            }
            Err(err) => {
                self.node.malformed("broadcast", &err);
                stream::empty().boxed()
            }
        }
    }
}

/// Disconnects a socket of `nsp` that could not keep up, as soon as its buffer has room for the
/// disconnect packet (or until it is gone otherwise).
async fn evict<D: Driver>(node: Arc<ClusterNode<D>>, nsp: String, sid: Sid) {
    let mut retry = tokio::time::interval(delivery::EVICTION_RETRY);
    loop {
        retry.tick().await;
        let Some(adapter) = node.namespace(&nsp) else {
            return;
        };
        if adapter.evictions.try_disconnect(&adapter.local, sid) {
            tracing::info!(%nsp, socket = %sid, "disconnected a client that could not keep up");
            return;
        }
    }
}

/// Options selecting every socket of the namespace.
pub(crate) fn every_socket() -> BroadcastOptions {
    let mut opts = BroadcastOptions::default();
    opts.add_flag(BroadcastFlags::Broadcast);
    opts
}

fn adapter_error(err: ClusterError) -> BroadcastError {
    BroadcastError::Adapter(AdapterError::from(err))
}
