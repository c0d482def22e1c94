//! The public API of a cluster node: what socketioxide's adapter trait cannot express (remote
//! sockets with their data, emits from anywhere, server-side emits, liveness, counters). The
//! handle itself, [`Cluster`], is defined beside the adapter it is given to (`adapter.rs`); this
//! module holds its methods. Each works on this node's namespace adapter (if it has one) and on
//! the node's requests to the others.

use std::{collections::HashSet, future::Future, sync::Arc, time::Duration};

use futures_util::{StreamExt, future::BoxFuture};
use serde_json::Value;
use socketioxide::SocketIo;
use tokio::sync::broadcast;

use crate::{
    adapter::{Cluster, ClusterAdapter},
    config::ClusterConfig,
    driver::Driver,
    error::ClusterError,
    keys::Channels,
    node::{
        Node, ServerEvent, ServerEventHandler,
        membership::{NodeEvent, NodeInfo},
        requests::Expect,
    },
    opts::Target,
    socket::{RemoteSocket, SocketActions},
    stats::ClusterStats,
    template::BroadcastTemplate,
    value::{Codec, json_to_wire, wire_to_json},
    wire::{self, RequestType, WireFlags, WirePacket, WireRequest},
};

impl<D: Driver> Cluster<D> {
    /// A node over `driver`. Its tasks start with its first namespace.
    pub fn new(driver: D, config: ClusterConfig) -> Self {
        Self(Arc::new(Node::new(driver, config)))
    }

    /// Lets the node describe its sockets (data, handshake) to the others. Call once, right after
    /// building the `SocketIo`.
    pub fn bind(&self, io: &SocketIo<ClusterAdapter<D>>) {
        self.0.bind(io);
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
            .namespace(nsp)
            .ok_or_else(|| ClusterError::UnknownNamespace(nsp.to_string()))?;
        adapter.join_cluster().await
    }

    /// Puts `socket` in `rooms` on this node, once the rooms' channels are subscribed. With
    /// sharded pub/sub in a dynamic [`SubscriptionMode`](crate::SubscriptionMode), a node
    /// receives a room's broadcasts only while it hosts a socket of the room, and socketioxide's
    /// `SocketRef::join` does not tell the adapter: join with this instead, or the socket may
    /// miss the room's broadcasts until the node notices the room (within a second, counted in
    /// [`ClusterStats::rooms_reconciled`]). In the other modes it is `SocketRef::join`, once the
    /// namespace's channels are subscribed: socketioxide connects the first socket of a dynamic
    /// namespace before they are.
    pub async fn join(
        &self,
        socket: &socketioxide::extract::SocketRef<ClusterAdapter<D>>,
        rooms: impl socketioxide_core::adapter::RoomParam,
    ) -> Result<(), ClusterError> {
        let rooms: Vec<String> = rooms.into_room_iter().map(|r| r.to_string()).collect();
        match self.0.namespace(socket.ns()) {
            Some(adapter) => {
                // socketioxide connects a dynamic namespace's first socket while the namespace is
                // still subscribing its channels: wait for that, or a broadcast sent right after
                // the connect could pass this node by. (A lazy namespace joins on `admit`.)
                if !self.0.config.lazy_namespaces {
                    adapter.join_cluster().await?;
                }
                let _entering = adapter.enter_rooms(&rooms).await?;
                socket.join(rooms);
            }
            None => socket.join(rooms),
        }
        Ok(())
    }

    /// This node's cluster id, once its first namespace exists.
    pub fn uid(&self) -> Option<&str> {
        self.0.uid_if_set()
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
        self.0.ensure_capacity()
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
        let actions: Arc<dyn SocketActions> = Arc::new(self.clone());
        let binding = Some((Arc::<str>::from(nsp), actions));
        let wire = target.to_wire();
        match self.0.namespace(nsp) {
            Some(adapter) => adapter.fetch_remote_sockets(&wire, &binding).await,
            None => {
                let channels = self.0.channels_for(nsp).await?;
                self.0
                    .fetch_from_others(nsp, &channels, &wire, &binding)
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
        if let Some(adapter) = self.0.namespace(nsp) {
            adapter
                .apply_membership(kind, target.to_local(), rooms.clone())
                .await?;
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
        if let Some(adapter) = self.0.namespace(nsp) {
            rooms.extend(adapter.local_rooms());
        }
        Ok(rooms)
    }

    /// Emits `event` with `args` to the matching sockets of every node, from any node (even one
    /// without sockets in the namespace), like `@socket.io/redis-emitter`. It takes the path of
    /// every broadcast (see [`ClusterAdapter`]): refused as overloaded, it reaches nobody.
    pub async fn emit(
        &self,
        nsp: &str,
        target: &Target,
        event: &str,
        args: Vec<Value>,
    ) -> Result<(), ClusterError> {
        let packet = event_packet(nsp, event, &args);
        match self.0.namespace(nsp) {
            Some(adapter) => {
                adapter
                    .broadcast_wire(packet, target.to_wire(), target.to_local())
                    .await
            }
            None => {
                let channels = self.0.channels_for(nsp).await?;
                self.0
                    .publish_broadcast(&channels, packet, target.to_wire())
                    .await
            }
        }
    }

    /// A broadcast of `event` with `data` to room `room` of namespace `nsp`, encoded for a
    /// Redis script to fill its [`hole`](crate::hole)s and publish (see [`BroadcastTemplate`]).
    pub fn broadcast_template(
        &self,
        nsp: &str,
        room: &str,
        event: &str,
        data: &Value,
    ) -> Result<BroadcastTemplate, ClusterError> {
        let channels = Channels::new(&self.0.config.key, nsp);
        let target = Target::rooms([room]);
        Ok(BroadcastTemplate::encode(
            self.0.protocol,
            &channels,
            event_packet(nsp, event, std::slice::from_ref(data)),
            target.to_wire(),
        )?)
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
        let (local, codec) = match self.0.namespace(nsp) {
            Some(adapter) => (
                adapter.local_acks(packet.data.clone(), target.to_local(), timeout),
                adapter.codec(),
            ),
            None => (futures_util::stream::empty().boxed(), Codec::Common),
        };
        let remote = self
            .0
            .remote_acks(nsp, &channels, packet, wire_opts, codec)
            .await?;
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
        let protocol = self.0.protocol;
        let payload = protocol.encode_request(nsp, &req)?;
        let channel = protocol.request_channel(&channels).to_string();
        self.0.publish(channel, payload).await
    }

    /// Emits `event` to every other node and collects one ack per node, as Node's
    /// `serverSideEmit` with a callback: every node serving `nsp` is waited for, Node.js ones
    /// included (which answer only if they listen for `event`).
    pub async fn server_side_emit_with_ack(
        &self,
        nsp: &str,
        event: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, ClusterError> {
        self.emit_to_servers(nsp, event, args, Expect::AllNodes)
            .await
    }

    /// Emits `event` to every other node and collects the acks of this crate's nodes: for events
    /// only they handle. Node.js nodes of a mixed cluster hear it too, but are not waited for, so
    /// their silence costs no timeout.
    pub async fn server_side_emit_with_ack_of_own_nodes(
        &self,
        nsp: &str,
        event: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, ClusterError> {
        self.emit_to_servers(nsp, event, args, Expect::OwnNodes)
            .await
    }

    async fn emit_to_servers(
        &self,
        nsp: &str,
        event: &str,
        args: Vec<Value>,
        expect: Expect,
    ) -> Result<Vec<Value>, ClusterError> {
        let channels = self.0.channels_for(nsp).await?;
        self.0
            .server_side_emit_with_ack(nsp, &channels, event_data(event, &args), expect)
            .await
    }

    /// Handles server-side events of namespace `nsp` sent by other nodes; with `nsp`
    /// [`ANY_NAMESPACE`](crate::ANY_NAMESPACE), those of every namespace without a handler of its
    /// own (dynamic ones included).
    pub fn on_server_event<F, Fut>(&self, nsp: &str, handler: F)
    where
        F: Fn(ServerEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Value>> + Send + 'static,
    {
        let handler: ServerEventHandler = Arc::new(move |ev| Box::pin(handler(ev)));
        self.0.on_server_event(nsp, handler);
    }

    /// Leaves the cluster: says goodbye (nobody waits for this node any more) and stops the
    /// background tasks. Call after `SocketIo::close`.
    pub async fn close(&self) {
        self.0.close().await;
    }
}

impl<D: Driver> Clone for Cluster<D> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
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

impl<D: Driver> SocketActions for Cluster<D> {
    fn emit<'a>(
        &'a self,
        nsp: &'a str,
        sid: &'a str,
        event: &'a str,
        args: Vec<Value>,
        ack_timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ClusterError>> {
        let target = Target::rooms([sid]);
        Box::pin(async move {
            match ack_timeout {
                Some(timeout) => self.emit_with_ack(nsp, &target, event, args, timeout).await,
                None => self
                    .emit(nsp, &target, event, args)
                    .await
                    .map(|()| Vec::new()),
            }
        })
    }

    fn change_rooms<'a>(
        &'a self,
        nsp: &'a str,
        sid: &'a str,
        rooms: Vec<String>,
        join: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        let target = Target::rooms([sid]);
        Box::pin(async move {
            if join {
                self.add_sockets(nsp, &target, rooms).await
            } else {
                self.del_sockets(nsp, &target, rooms).await
            }
        })
    }

    fn disconnect<'a>(
        &'a self,
        nsp: &'a str,
        sid: &'a str,
        close: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        let target = Target::rooms([sid]);
        Box::pin(async move { self.disconnect_sockets(nsp, &target, close).await })
    }
}
