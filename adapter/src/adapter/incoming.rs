//! What a namespace does with what other nodes send it: their broadcasts, and their requests
//! (fetch, rooms, join, leave, disconnect, server-side emits, broadcasts with acks), which it
//! applies to this node's sockets and answers.

use std::sync::Arc;

use futures_util::StreamExt;
use socketioxide_core::{
    Sid,
    adapter::{BroadcastOptions, Room},
    packet::Packet,
};

use super::{ClusterAdapter, every_socket};
use crate::{
    driver::Driver,
    node::{Namespace, ServerEvent},
    opts, value,
    wire::{self, BroadcastMessage, RequestType, SocketEntry, WireOpts, WireRequest, WireResponse},
};

impl<D: Driver> ClusterAdapter<D> {
    /// A request from another node.
    async fn handle_request(&self, req: WireRequest) {
        let Some(kind) = req.kind else {
            return self.node.malformed("request", &"no type");
        };
        let local_opts = req.opts.as_ref().map(opts::to_local);
        let response = WireResponse {
            request_id: req.request_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        let reply = |res: WireResponse| async {
            self.node
                .respond(&self.channels, req.uid.as_deref(), res)
                .await
        };
        match kind {
            RequestType::Sockets => {
                let mut opts = every_socket();
                opts.rooms = req
                    .rooms
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(Room::from)
                    .collect();
                let sockets = self
                    .local
                    .sockets(opts)
                    .into_iter()
                    .map(|s| SocketEntry::Id(s.to_string()))
                    .collect();
                reply(WireResponse {
                    sockets: Some(sockets),
                    ..response
                })
                .await;
            }
            RequestType::AllRooms => {
                let rooms = self.local.rooms(local_opts.unwrap_or_else(every_socket));
                let rooms = rooms.into_iter().map(|r| r.to_string()).collect();
                reply(WireResponse {
                    rooms: Some(rooms),
                    ..response
                })
                .await;
            }
            RequestType::RemoteJoin | RequestType::RemoteLeave | RequestType::RemoteDisconnect => {
                let applied = match (local_opts, &req.sid) {
                    (Some(opts), _) => {
                        let rooms = req.rooms.clone().unwrap_or_default();
                        self.apply_membership(kind, opts, rooms).await
                    }
                    (None, Some(sid)) => self.apply_to_one(kind, sid, req.room.clone()).await,
                    (None, None) => return self.node.malformed("request", &"no target"),
                };
                if let Err(err) = applied {
                    tracing::warn!(%err, nsp = %self.nsp, "could not apply a join of another node");
                    return;
                }
                if req.request_id.is_some() {
                    reply(response).await;
                }
            }
            RequestType::RemoteFetch => {
                let described =
                    self.describe_local(req.opts.as_ref().unwrap_or(&WireOpts::default()));
                let encoded = wire::fetch_response(
                    &response.request_id,
                    self.node.uid(),
                    &self.node.config.node_name,
                    described
                        .iter()
                        .map(|(_, d, rooms)| (d.fields(), &rooms[..])),
                )
                .map(|classic| {
                    self.node
                        .protocol
                        .fetch_response(&self.nsp, self.node.uid(), classic)
                });
                self.node
                    .send_response(
                        &self.channels,
                        req.uid.as_deref(),
                        &response.request_id,
                        encoded,
                    )
                    .await;
            }
            RequestType::ServerSideEmit => {
                let ack = self.on_server_event(&req).await;
                if let (Some(ack), Some(_)) = (ack, &req.request_id) {
                    let res = WireResponse {
                        kind: Some(RequestType::ServerSideEmit),
                        data: Some(value::json_to_wire(&ack)),
                        ..response
                    };
                    reply(res).await;
                }
            }
            RequestType::Broadcast => self.relay_acks(&req, response).await,
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => {}
        }
    }

    /// Applies a join, leave or disconnect to local sockets. A join first subscribes the rooms'
    /// channels (dynamic sharded modes), so the sockets miss no broadcast once in.
    pub(crate) async fn apply_membership(
        &self,
        kind: RequestType,
        opts: BroadcastOptions,
        rooms: Vec<String>,
    ) -> Result<(), crate::error::ClusterError> {
        match kind {
            RequestType::RemoteJoin => {
                let _entering = self.enter_rooms(&rooms).await?;
                self.local.add_sockets(opts, rooms);
            }
            RequestType::RemoteLeave => self.local.del_sockets(opts, rooms),
            _ => {
                if let Err(errors) = self.local.disconnect_socket(opts) {
                    tracing::debug!(?errors, "some sockets were already gone");
                }
            }
        }
        Ok(())
    }

    /// The single-socket form of join/leave/disconnect used by older Node.js adapters.
    async fn apply_to_one(
        &self,
        kind: RequestType,
        sid: &str,
        room: Option<String>,
    ) -> Result<(), crate::error::ClusterError> {
        let Ok(sid) = sid.parse::<Sid>() else {
            return Ok(());
        };
        let opts = BroadcastOptions::new(sid);
        self.apply_membership(kind, opts, room.into_iter().collect())
            .await
    }

    async fn on_server_event(&self, req: &WireRequest) -> Option<serde_json::Value> {
        let handler = self.node.server_event_handler(&self.nsp)?;
        let Some(Ok(serde_json::Value::Array(args))) = req.data.as_ref().map(value::wire_to_json)
        else {
            self.node
                .malformed("server-side emit", &"data is not an array");
            return None;
        };
        let mut args = args.into_iter();
        let event = args.next()?.as_str()?.to_string();
        let event = ServerEvent {
            nsp: self.nsp.clone(),
            event,
            args: args.collect(),
            from: req.uid.clone(),
        };
        handler(event).await
    }

    /// Emits a broadcast-with-ack of another node locally and relays the acks back to it.
    async fn relay_acks(&self, req: &WireRequest, response: WireResponse) {
        let (Some(packet), Some(wire_opts)) = (&req.packet, &req.opts) else {
            return self
                .node
                .malformed("request", &"broadcast without packet or opts");
        };
        let data = match self.codec.value_of(packet.data.clone()) {
            Ok(data) => data,
            Err(err) => return self.node.malformed("request", &err),
        };
        let packet = Packet::event(self.local.path().clone(), data);
        let (acks, count) = self.local.broadcast_with_ack(
            packet,
            opts::to_local(wire_opts),
            opts::ack_timeout(wire_opts),
        );
        let mut acks = std::pin::pin!(acks);
        let to = req.uid.as_deref();
        let count_res = WireResponse {
            kind: Some(RequestType::BroadcastClientCount),
            client_count: Some(u64::from(count)),
            ..response.clone()
        };
        self.node.respond(&self.channels, to, count_res).await;
        while let Some((sid, ack)) = acks.next().await {
            let Ok(ack) = ack else { continue };
            let first = match self.codec.wire_of(&ack) {
                Ok(rmpv::Value::Array(mut args)) if !args.is_empty() => args.swap_remove(0),
                Ok(_) => rmpv::Value::Nil,
                Err(err) => {
                    tracing::warn!(%err, "cannot relay an ack");
                    continue;
                }
            };
            let res = WireResponse {
                kind: Some(RequestType::BroadcastAck),
                packet: Some(first),
                sid: Some(sid.to_string()),
                ..response.clone()
            };
            self.node.respond(&self.channels, to, res).await;
        }
    }
}

impl<D: Driver> Namespace for ClusterAdapter<D> {
    fn path(&self) -> &str {
        &self.nsp
    }

    fn in_cluster(&self) -> bool {
        self.joined.get().is_some()
    }

    fn socket_count(&self) -> u64 {
        self.local.sockets(every_socket()).len() as u64
    }

    fn on_broadcast(&self, msg: BroadcastMessage) {
        let BroadcastMessage(uid, packet, wire_opts) = msg;
        if uid == self.node.uid() || packet.nsp.as_deref().unwrap_or("/") != self.nsp {
            return;
        }
        match self.codec.value_of(packet.data) {
            Ok(value) => self.deliver_locally(
                Packet::event(self.local.path().clone(), value),
                opts::to_local(&wire_opts),
            ),
            Err(err) => self.node.malformed("broadcast", &err),
        }
    }

    async fn on_request(self: Arc<Self>, req: WireRequest) {
        self.handle_request(req).await
    }

    async fn reconcile_rooms(self: Arc<Self>) -> usize {
        match ClusterAdapter::reconcile_rooms(&self).await {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(%err, nsp = %self.nsp, "could not bring room subscriptions up to date");
                0
            }
        }
    }

    /// Disconnects every client of this namespace on this node: this node lost messages from
    /// the others, so any of them may have missed a broadcast.
    fn evict_everyone(&self) {
        let sids = self.evictions.start(self.local.sockets(every_socket()));
        if !sids.is_empty() {
            tracing::warn!(nsp = %self.nsp, clients = sids.len(), "disconnecting every client: this node lost messages they may have needed");
        }
        self.evict(sids);
    }
}
