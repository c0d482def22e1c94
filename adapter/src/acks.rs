//! Acks of a broadcast-with-ack relayed by the other nodes.
//!
//! Each node answers the request with the number of its sockets the packet went to
//! (BROADCAST_CLIENT_COUNT), then one BROADCAST_ACK per client ack. The stream ends when every
//! expected node gave its count and every counted client acked, or at the ack timeout, when each
//! missing ack becomes a timeout item.

use std::{sync::Arc, time::Duration};

use futures_util::{
    StreamExt,
    stream::{self, BoxStream},
};
use socketioxide::AckError;
use socketioxide_core::{Sid, adapter::AckStreamItem, parser::ParserError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::{
    channels::Channels,
    cluster::Inner,
    driver::Driver,
    error::ClusterError,
    membership::NodeEvent,
    opts,
    stats::Stats,
    value::Codec,
    wire::{self, RequestType, WireOpts, WirePacket, WireRequest},
};

/// Publishes a broadcast-with-ack to the other nodes and streams the acks they relay.
pub(crate) async fn remote<D: Driver>(
    node: &Arc<Inner<D>>,
    nsp: &str,
    channels: &Channels,
    packet: WirePacket,
    wire_opts: WireOpts,
    codec: Codec,
) -> Result<BoxStream<'static, AckStreamItem<AckError>>, ClusterError> {
    let timeout = opts::ack_timeout(&wire_opts).unwrap_or(Duration::from_secs(5));
    let mut reg = node.register_request();
    let mut events = node.membership.events();
    let req = WireRequest {
        kind: Some(RequestType::Broadcast),
        uid: Some(node.uid().to_string()),
        request_id: Some(reg.id.clone()),
        packet: Some(packet),
        opts: Some(wire_opts),
        ..Default::default()
    };
    Stats::add(&node.stats.requests, 1);
    let mut waiting = node
        .publish_request(nsp, channels, wire::encode(&req)?)
        .await?;
    if waiting.is_done() {
        return Ok(stream::empty().boxed());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let node = node.clone();
    tokio::spawn(async move {
        let (mut expected, mut received) = (0u64, 0u64);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        while !(waiting.is_done() && received >= expected) {
            tokio::select! {
                Some(res) = reg.rx.recv() => match res.kind {
                    Some(RequestType::BroadcastClientCount) => {
                        waiting.answered(res.uid.as_deref());
                        expected += res.client_count.unwrap_or(0);
                    }
                    Some(RequestType::BroadcastAck) => {
                        received += 1;
                        let sid = res.sid.and_then(|s| s.parse().ok()).unwrap_or(Sid::ZERO);
                        let first = res.packet.unwrap_or(rmpv::Value::Nil);
                        let item = codec
                            .value_of(rmpv::Value::Array(vec![first]))
                            .map_err(|e| AckError::Decode(ParserError::new(e)));
                        let _ = tx.send((sid, item));
                    }
                    _ => {}
                },
                Ok(NodeEvent::Left { node: left, .. }) = events.recv() => waiting.node_down(&left.uid),
                () = &mut deadline => {
                    for _ in received..expected {
                        let _ = tx.send((Sid::ZERO, Err(AckError::Timeout)));
                    }
                    if !waiting.is_done() {
                        let _ = node.timeout(&waiting, "broadcastWithAck");
                    }
                    break;
                }
            }
        }
    });
    Ok(UnboundedReceiverStream::new(rx).boxed())
}
