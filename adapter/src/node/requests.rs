//! Requests to the other nodes and the waiting for their responses: one path serves fetches,
//! rooms, joins and leaves, server-side emits and broadcasts with acks.
//!
//! A request knows whom it waits for: the live nodes of this crate serving the namespace, by uid,
//! plus a number of anonymous responders (Node.js nodes, which send no heartbeat and put no uid in
//! their responses, counted by `PUBSUB NUMSUB` in the same step as the publish). It completes when
//! all have answered (and, for acks, every counted client acked), stops waiting for a node declared
//! dead meanwhile, and otherwise times out naming the silent nodes.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::stream::{BoxStream, StreamExt};
use socketioxide::AckError;
use socketioxide_core::{Sid, adapter::AckStreamItem, parser::ParserError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{
    Namespace, Node,
    membership::NodeEvent,
    pending::{Registration, Waiting},
};
use crate::{
    driver::Driver,
    error::ClusterError,
    keys::{self, Channels},
    opts,
    socket::{Binding, RemoteSocket},
    stats::Stats,
    value::Codec,
    wire::{RequestType, SocketEntry, WireOpts, WirePacket, WireRequest, WireResponse, WireSocket},
};

/// Whom a request waits for.
pub(crate) enum Expect {
    /// Every other node serving the namespace, Node.js ones included (`PUBSUB NUMSUB`).
    AllNodes,
    /// Only this crate's nodes: Node.js nodes never answer join, leave and disconnect.
    OwnNodes,
}

/// What a request does with its responses.
trait Collect {
    /// Takes a response; true when it is its node's answer, which the request waited for.
    fn take(&mut self, res: WireResponse) -> bool;

    /// Whether more responses are due once every node answered (acks of counted clients).
    fn wants_more(&self) -> bool {
        false
    }
}

/// Every response is its node's answer.
impl<F: FnMut(WireResponse)> Collect for F {
    fn take(&mut self, res: WireResponse) -> bool {
        self(res);
        true
    }
}

/// The acks of a broadcast-with-ack: each node answers with the number of its clients the packet
/// went to (BROADCAST_CLIENT_COUNT), then relays one BROADCAST_ACK per client ack.
struct AckRelay {
    acks: mpsc::UnboundedSender<AckStreamItem<AckError>>,
    codec: Codec,
    expected: u64,
    received: u64,
}

impl Collect for AckRelay {
    fn take(&mut self, res: WireResponse) -> bool {
        match res.kind {
            Some(RequestType::BroadcastClientCount) => {
                self.expected += res.client_count.unwrap_or(0);
                true
            }
            Some(RequestType::BroadcastAck) => {
                self.received += 1;
                let sid = res.sid.and_then(|s| s.parse().ok()).unwrap_or(Sid::ZERO);
                let first = res.packet.unwrap_or(rmpv::Value::Nil);
                let item = self
                    .codec
                    .value_of(rmpv::Value::Array(vec![first]))
                    .map_err(|e| AckError::Decode(ParserError::new(e)));
                let _ = self.acks.send((sid, item));
                false
            }
            _ => false,
        }
    }

    fn wants_more(&self) -> bool {
        self.received < self.expected
    }
}

impl AckRelay {
    /// At the ack timeout, every ack still missing is a timeout item.
    fn time_out(&self) {
        for _ in self.received..self.expected {
            let _ = self.acks.send((Sid::ZERO, Err(AckError::Timeout)));
        }
    }
}

/// What decides whom a request waits for: this crate's nodes, and the channels whose subscriber
/// counts reveal the others (the channel requests go on counts every node serving the namespace).
struct Census {
    /// Whether this node itself serves the namespace (and so counts among the subscribers).
    serves: bool,
    alive: Vec<String>,
    dead: Vec<String>,
    /// The channel requests go on, then the own channel of each node in `dead`.
    probe: Vec<String>,
}

/// A request on its way: its registration and whom it waits for.
struct Sent {
    reg: Registration,
    waiting: Waiting,
}

impl<D: Driver, N: Namespace> Node<D, N> {
    /// Who a request to namespace `nsp` would wait for now, Node.js nodes included.
    pub async fn expected(&self, nsp: &str, channels: &Channels) -> Result<Waiting, ClusterError> {
        let census = self.census(nsp, channels);
        let counts = self.driver.num_sub(census.probe.clone()).await?;
        Ok(self.tally(census, &counts))
    }

    pub async fn server_count(&self, nsp: &str, channels: &Channels) -> Result<u16, ClusterError> {
        let others = self.expected(nsp, channels).await?.len();
        Ok(u16::try_from(1 + others).unwrap_or(u16::MAX))
    }

    /// What to count before a request to namespace `nsp`.
    fn census(&self, nsp: &str, channels: &Channels) -> Census {
        let alive = self.membership.alive_in(nsp);
        // A dead node still counted by NUMSUB (a frozen process keeps its connection) must not be
        // mistaken for a Node.js node: its own channel tells whether its connection lives.
        let dead = self.membership.dead_in(nsp);
        let mut probe = vec![self.protocol.request_channel(channels).to_string()];
        probe.extend(
            dead.iter()
                .map(|uid| keys::node_channel(&self.config.key, uid)),
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

    /// Registers `req` and publishes it to the nodes `expect` names: for every node, the count
    /// and the publish are one step, so no node subscribes or leaves in between.
    async fn send(
        &self,
        nsp: &str,
        channels: &Channels,
        mut req: WireRequest,
        expect: Expect,
    ) -> Result<Sent, ClusterError> {
        let reg = self.pending.register();
        req.uid = Some(self.uid().to_string());
        req.request_id = Some(reg.id.clone());
        let payload = self.protocol.encode_request(nsp, &req)?;
        let channel = self.protocol.request_channel(channels).to_string();
        Stats::add(&self.stats.requests, 1);
        let waiting = match expect {
            Expect::OwnNodes => {
                let alive = self.membership.alive_in(nsp);
                self.publish(channel, payload).await?;
                Waiting::new(alive, 0)
            }
            Expect::AllNodes => {
                let census = self.census(nsp, channels);
                Stats::add(&self.stats.published, 1);
                let counts = self
                    .driver
                    .num_sub_then_publish(census.probe.clone(), channel, payload)
                    .await?;
                self.tally(census, &counts)
            }
        };
        Ok(Sent { reg, waiting })
    }

    /// Feeds the responses of a sent request to `collect` until every node it waits for answered
    /// and `collect` wants no more, a node it waits for dies, or `timeout`. On a timeout, returns
    /// whom it still waited for.
    async fn wait(
        &self,
        nsp: &str,
        channels: &Channels,
        sent: Sent,
        timeout: Duration,
        collect: &mut impl Collect,
    ) -> Result<(), Waiting> {
        let Sent {
            mut reg,
            mut waiting,
        } = sent;
        let mut events = self.membership.events();
        let at_start = waiting.clone();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        // Node.js nodes send no heartbeat: NUMSUB, asked again now and then, tells when one died.
        let period = (timeout / 10).max(Duration::from_millis(10));
        let mut recount = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        while !waiting.is_done() || collect.wants_more() {
            tokio::select! {
                Some(res) = reg.rx.recv() => {
                    let uid = res.uid.clone();
                    if collect.take(res) {
                        waiting.answered(uid.as_deref());
                    }
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
                () = &mut deadline => return Err(waiting),
            }
        }
        Ok(())
    }

    /// Sends a request and feeds each response to `on_response` until every expected node
    /// answered, a node it waits for dies, or the request timeout.
    pub async fn ask(
        &self,
        nsp: &str,
        channels: &Channels,
        req: WireRequest,
        name: &'static str,
        expect: Expect,
        mut on_response: impl FnMut(WireResponse),
    ) -> Result<(), ClusterError> {
        let sent = self.send(nsp, channels, req, expect).await?;
        let timeout = self.config.request_timeout;
        self.wait(nsp, channels, sent, timeout, &mut on_response)
            .await
            .map_err(|waiting| {
                Stats::add(&self.stats.request_timeouts, 1);
                self.timeout(&waiting, name)
            })
    }

    /// The error of a request that timed out, logged.
    pub fn timeout(&self, waiting: &Waiting, name: &'static str) -> ClusterError {
        let err = waiting.timeout(name, |uid| {
            self.membership
                .name_of(uid)
                .unwrap_or_else(|| uid.to_string())
        });
        tracing::warn!(%err, "cluster request timed out");
        err
    }

    /// Publishes a broadcast-with-ack to the other nodes and streams the acks they relay; at the
    /// ack timeout each missing ack becomes a timeout item.
    pub async fn remote_acks(
        self: &Arc<Self>,
        nsp: &str,
        channels: &Channels,
        packet: WirePacket,
        wire_opts: WireOpts,
        codec: Codec,
    ) -> Result<BoxStream<'static, AckStreamItem<AckError>>, ClusterError> {
        let timeout = opts::ack_timeout(&wire_opts).unwrap_or(Duration::from_secs(5));
        let req = WireRequest {
            kind: Some(RequestType::Broadcast),
            packet: Some(packet),
            opts: Some(wire_opts),
            ..Default::default()
        };
        let sent = self.send(nsp, channels, req, Expect::AllNodes).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        if !sent.waiting.is_done() {
            let (node, nsp, channels) = (self.clone(), nsp.to_string(), channels.clone());
            let mut relay = AckRelay {
                acks: tx,
                codec,
                expected: 0,
                received: 0,
            };
            tokio::spawn(async move {
                if let Err(waiting) = node.wait(&nsp, &channels, sent, timeout, &mut relay).await {
                    relay.time_out();
                    if !waiting.is_done() {
                        let _ = node.timeout(&waiting, "broadcastWithAck");
                    }
                }
            });
        }
        Ok(UnboundedReceiverStream::new(rx).boxed())
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
        // Node.js' sharded adapter has no allRooms: only this crate's nodes answer then.
        let expect = if self.protocol.is_sharded() {
            Expect::OwnNodes
        } else {
            Expect::AllNodes
        };
        let mut rooms = HashSet::new();
        self.ask(nsp, channels, req, "allRooms", expect, |res| {
            rooms.extend(res.rooms.unwrap_or_default());
        })
        .await?;
        Ok(rooms)
    }

    /// REMOTE_FETCH to the other nodes.
    pub async fn fetch_from_others(
        &self,
        nsp: &str,
        channels: &Channels,
        opts: &WireOpts,
        actions: &Binding,
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
                let entries = res.sockets.unwrap_or_default();
                sockets.reserve(entries.len());
                for entry in entries {
                    match entry {
                        SocketEntry::Socket(s) => {
                            sockets.push(from_wire_socket(*s, (&node, &uid), actions));
                        }
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

    /// Emits an event to the server side of the other nodes and collects one ack per node it
    /// waits for.
    pub async fn server_side_emit_with_ack(
        &self,
        nsp: &str,
        channels: &Channels,
        data: rmpv::Value,
        expect: Expect,
    ) -> Result<Vec<serde_json::Value>, ClusterError> {
        let req = WireRequest {
            kind: Some(RequestType::ServerSideEmit),
            data: Some(data),
            ..Default::default()
        };
        let mut acks = Vec::new();
        self.ask(nsp, channels, req, "serverSideEmit", expect, |res| {
            if let Some(data) = res
                .data
                .as_ref()
                .and_then(|d| crate::value::wire_to_json(d).ok())
            {
                acks.push(data);
            }
        })
        .await?;
        Ok(acks)
    }
}

fn from_wire_socket(
    s: WireSocket,
    (node, uid): (&Option<Arc<str>>, &Option<Arc<str>>),
    actions: &Binding,
) -> RemoteSocket {
    RemoteSocket {
        id: s.id,
        node: s.node.or_else(|| node.clone()),
        node_uid: uid.clone(),
        rooms: s.rooms.into(),
        data: s.data.into(),
        handshake: s.handshake.into(),
        actions: actions.clone(),
    }
}
