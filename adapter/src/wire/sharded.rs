//! The messages of Node.js' `createShardedAdapter` (`@socket.io/redis-adapter` 8.3, on
//! `socket.io-adapter`'s `ClusterAdapter`): every message is `{type, data, uid, nsp}`, sent as
//! MessagePack here (Node.js nodes send JSON unless the data holds binary, and read both).
//!
//! The node works with the classic messages of [`super::messages`]; this module translates them
//! to and from the sharded form, which carries the same fields inside `data`, except that a
//! server-side emit names its `[event, ...args]` `packet` where the classic form says `data`.
//!
//! Three types are this crate's own, ignored by Node.js nodes (which have no such operations):
//! [`ALL_ROOMS`], its response, and [`APPLIED`], the confirmation of a join, leave or disconnect
//! that Node.js nodes apply without confirming.

use bytes::Bytes;
use rmpv::Value;
use serde::{Deserialize, Serialize};

use super::{
    BroadcastMessage, RequestType, WireError, WireOpts, WirePacket, WireRequest, WireResponse,
    decode, decode_response,
};

const BROADCAST: u8 = 3;
const SOCKETS_JOIN: u8 = 4;
const SOCKETS_LEAVE: u8 = 5;
const DISCONNECT_SOCKETS: u8 = 6;
const FETCH_SOCKETS: u8 = 7;
const FETCH_SOCKETS_RESPONSE: u8 = 8;
const SERVER_SIDE_EMIT: u8 = 9;
const SERVER_SIDE_EMIT_RESPONSE: u8 = 10;
const BROADCAST_CLIENT_COUNT: u8 = 11;
const BROADCAST_ACK: u8 = 12;
/// `allRooms`, which `ClusterAdapter` lacks: only this crate's nodes answer it.
pub(crate) const ALL_ROOMS: u8 = 100;
const ALL_ROOMS_RESPONSE: u8 = 101;
/// A join, leave or disconnect was applied.
pub(crate) const APPLIED: u8 = 102;

/// The sharded type of each classic request (a broadcast with ack is a request).
const REQUESTS: [(RequestType, u8); 7] = [
    (RequestType::Broadcast, BROADCAST),
    (RequestType::RemoteJoin, SOCKETS_JOIN),
    (RequestType::RemoteLeave, SOCKETS_LEAVE),
    (RequestType::RemoteDisconnect, DISCONNECT_SOCKETS),
    (RequestType::RemoteFetch, FETCH_SOCKETS),
    (RequestType::ServerSideEmit, SERVER_SIDE_EMIT),
    (RequestType::AllRooms, ALL_ROOMS),
];

/// The sharded type of each classic response kind; a response of no kind is [`APPLIED`].
const RESPONSES: [(RequestType, u8); 5] = [
    (RequestType::RemoteFetch, FETCH_SOCKETS_RESPONSE),
    (RequestType::ServerSideEmit, SERVER_SIDE_EMIT_RESPONSE),
    (RequestType::BroadcastClientCount, BROADCAST_CLIENT_COUNT),
    (RequestType::BroadcastAck, BROADCAST_ACK),
    (RequestType::AllRooms, ALL_ROOMS_RESPONSE),
];

fn sharded_type(table: &[(RequestType, u8)], kind: RequestType) -> Option<u8> {
    table.iter().find(|(k, _)| *k == kind).map(|(_, t)| *t)
}

fn classic_type(table: &[(RequestType, u8)], kind: u8) -> Option<RequestType> {
    table.iter().find(|(_, t)| *t == kind).map(|(k, _)| *k)
}

/// `{type, data, uid, nsp}`.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    #[serde(rename = "type")]
    kind: u8,
    data: T,
    uid: String,
    nsp: String,
}

/// The `data` of a BROADCAST without ack.
#[derive(Serialize, Deserialize)]
struct BroadcastData {
    packet: WirePacket,
    opts: WireOpts,
}

/// What arrived on a sharded channel, in the classic form.
#[derive(Debug)]
pub(crate) enum Inbound {
    Broadcast(BroadcastMessage),
    Request(WireRequest),
    Response(WireResponse),
    /// A message of a type this node does not handle (heartbeats of other adapters, say).
    Ignored,
}

/// Encodes a broadcast without ack.
pub(crate) fn encode_broadcast(nsp: &str, msg: BroadcastMessage) -> Result<Vec<u8>, WireError> {
    let BroadcastMessage(uid, packet, opts) = msg;
    super::encode(&Envelope {
        kind: BROADCAST,
        data: BroadcastData { packet, opts },
        uid,
        nsp: nsp.into(),
    })
}

/// Encodes a request of node `uid`.
pub(crate) fn encode_request(nsp: &str, req: &WireRequest) -> Result<Vec<u8>, WireError> {
    let Some(kind) = req.kind.and_then(|kind| sharded_type(&REQUESTS, kind)) else {
        return Err(WireError::Data(format!(
            "no sharded form for request {:?}",
            req.kind
        )));
    };
    let uid = req.uid.clone().unwrap_or_default();
    let data = WireRequest {
        kind: None,
        uid: None,
        ..req.clone()
    };
    envelope(kind, &data, &uid, nsp)
}

/// Encodes a response of node `res.uid`.
pub(crate) fn encode_response(nsp: &str, res: &WireResponse) -> Result<Vec<u8>, WireError> {
    let kind = res
        .kind
        .and_then(|kind| sharded_type(&RESPONSES, kind))
        .unwrap_or(APPLIED);
    let uid = res.uid.clone().unwrap_or_default();
    let data = WireResponse {
        kind: None,
        uid: None,
        ..res.clone()
    };
    envelope(kind, &data, &uid, nsp)
}

/// Wraps an encoded classic fetch response (whose fields are those of FETCH_SOCKETS_RESPONSE).
pub(crate) fn wrap_fetch_response(nsp: &str, uid: &str, classic: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(classic.len() + 48 + nsp.len() + uid.len());
    // Writing to a Vec cannot fail.
    let _ = rmp::encode::write_map_len(&mut out, 4);
    let _ = rmp::encode::write_str(&mut out, "type");
    let _ = rmp::encode::write_uint(&mut out, u64::from(FETCH_SOCKETS_RESPONSE));
    let _ = rmp::encode::write_str(&mut out, "data");
    out.extend_from_slice(classic);
    let _ = rmp::encode::write_str(&mut out, "uid");
    let _ = rmp::encode::write_str(&mut out, uid);
    let _ = rmp::encode::write_str(&mut out, "nsp");
    let _ = rmp::encode::write_str(&mut out, nsp);
    out
}

/// A classic message as the sharded envelope `kind`, with `data` renamed `packet` for
/// server-side emits.
fn envelope(kind: u8, data: &impl Serialize, uid: &str, nsp: &str) -> Result<Vec<u8>, WireError> {
    let mut data = to_value(data)?;
    if matches!(kind, SERVER_SIDE_EMIT | SERVER_SIDE_EMIT_RESPONSE) {
        rename(&mut data, "data", "packet");
    }
    super::encode(&Envelope {
        kind,
        data,
        uid: uid.into(),
        nsp: nsp.into(),
    })
}

/// Decodes a message of another node (JSON or MessagePack): its namespace and the message in its
/// classic form. The packet of a broadcast gets the namespace, which Node.js nodes leave out.
pub(crate) fn decode_inbound(payload: &[u8]) -> Result<(String, Inbound), WireError> {
    let Envelope {
        kind,
        mut data,
        uid,
        nsp,
    } = decode::<Envelope<Value>>(payload)?;
    let has_request_id = field(&data, "requestId").is_some();
    let inbound = if kind == BROADCAST && !has_request_id {
        let BroadcastData { mut packet, opts } = from_value(data)?;
        packet.nsp.get_or_insert_with(|| nsp.clone());
        Inbound::Broadcast(BroadcastMessage(uid, packet, opts))
    } else if let Some(classic) = classic_type(&REQUESTS, kind) {
        if kind == SERVER_SIDE_EMIT {
            rename(&mut data, "packet", "data");
        }
        let mut req: WireRequest = from_value(data)?;
        req.kind = Some(classic);
        req.uid = Some(uid);
        Inbound::Request(req)
    } else if kind == APPLIED || classic_type(&RESPONSES, kind).is_some() {
        let classic = classic_type(&RESPONSES, kind);
        if kind == SERVER_SIDE_EMIT_RESPONSE {
            rename(&mut data, "packet", "data");
        }
        if let Value::Map(fields) = &mut data {
            fields.retain(|(k, _)| k.as_str() != Some("type") && k.as_str() != Some("uid"));
            if let Some(kind) = classic {
                fields.push(("type".into(), Value::from(kind as u8)));
            }
            fields.push(("uid".into(), Value::from(uid)));
        }
        // The classic reader takes fetch responses straight off their bytes.
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &data).map_err(|e| WireError::Data(e.to_string()))?;
        Inbound::Response(decode_response(&Bytes::from(bytes))?)
    } else {
        Inbound::Ignored
    };
    Ok((nsp, inbound))
}

fn to_value(data: &impl Serialize) -> Result<Value, WireError> {
    let bytes = super::encode(data)?;
    rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| WireError::Data(e.to_string()))
}

fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, WireError> {
    rmpv::ext::from_value(value).map_err(|e| WireError::Data(e.to_string()))
}

fn field<'v>(map: &'v Value, name: &str) -> Option<&'v Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_nil())
}

fn rename(map: &mut Value, from: &str, to: &str) {
    if let Value::Map(fields) = map {
        for (k, _) in fields.iter_mut() {
            if k.as_str() == Some(from) {
                *k = to.into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EVENT, SocketEntry};

    #[test]
    fn reads_a_node_broadcast_sent_as_json() {
        let json = br#"{"type":3,"data":{"packet":{"type":2,"data":["ev",1]},"opts":{"rooms":["r1"],"except":[],"flags":{}}},"uid":"0123456789abcdef","nsp":"/chat"}"#;
        let (nsp, Inbound::Broadcast(BroadcastMessage(uid, packet, opts))) =
            decode_inbound(json).unwrap()
        else {
            panic!("not a broadcast")
        };
        assert_eq!((nsp.as_str(), uid.as_str()), ("/chat", "0123456789abcdef"));
        assert_eq!(packet.kind, EVENT);
        assert_eq!(packet.nsp.as_deref(), Some("/chat"));
        assert_eq!(opts.rooms, ["r1"]);
    }

    #[test]
    fn reads_the_notepack_bytes_of_a_binary_broadcast() {
        // notepack.io 3.0.1's encoding of the broadcast of ["ev", Buffer[1, 2]] to room r1.
        let hex = "84a47479706503a46461746182a67061636b657482a47479706502a46461746192a26576c4020102a46f70747383a5726f6f6d7391a27231a665786365707490a5666c61677380a3756964b030313233343536373839616263646566a36e7370a12f";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let (_, Inbound::Broadcast(BroadcastMessage(_, packet, opts))) =
            decode_inbound(&bytes).unwrap()
        else {
            panic!("not a broadcast")
        };
        assert_eq!(
            packet.data,
            Value::Array(vec!["ev".into(), Value::Binary(vec![1, 2])])
        );
        assert_eq!(opts.rooms, ["r1"]);
    }

    #[test]
    fn a_broadcast_with_ack_is_a_request() {
        let json = br#"{"type":3,"data":{"packet":{"type":2,"data":["ev"]},"requestId":"q1","opts":{"rooms":[],"except":[],"flags":{"timeout":500}}},"uid":"n1","nsp":"/"}"#;
        let (_, Inbound::Request(req)) = decode_inbound(json).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(req.kind, Some(RequestType::Broadcast));
        assert_eq!(req.request_id.as_deref(), Some("q1"));
        assert_eq!(req.uid.as_deref(), Some("n1"));
    }

    #[test]
    fn server_side_emits_call_their_arguments_packet() {
        let req = WireRequest {
            kind: Some(RequestType::ServerSideEmit),
            uid: Some("me".into()),
            request_id: Some("q2".into()),
            data: Some(Value::Array(vec!["ping".into(), 1.into()])),
            ..Default::default()
        };
        let bytes = encode_request("/", &req).unwrap();
        let value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let data = field(&value, "data").unwrap();
        assert_eq!(field(&value, "type"), Some(&Value::from(SERVER_SIDE_EMIT)));
        assert_eq!(
            field(data, "packet"),
            Some(&Value::Array(vec!["ping".into(), 1.into()]))
        );
        assert!(field(data, "data").is_none() && field(data, "uid").is_none());
        let (_, Inbound::Request(back)) = decode_inbound(&bytes).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(back, req);
    }

    #[test]
    fn responses_come_back_in_their_classic_form() {
        let count = WireResponse {
            kind: Some(RequestType::BroadcastClientCount),
            request_id: "q3".into(),
            uid: Some("n2".into()),
            client_count: Some(4),
            ..Default::default()
        };
        let (_, Inbound::Response(back)) =
            decode_inbound(&encode_response("/", &count).unwrap()).unwrap()
        else {
            panic!("not a response")
        };
        assert_eq!(back, count);

        let json = br#"{"type":8,"data":{"requestId":"q4","sockets":[{"id":"s1","handshake":{},"rooms":["s1","r"],"data":{"user":1}}]},"uid":"node-js","nsp":"/"}"#;
        let (_, Inbound::Response(res)) = decode_inbound(json).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(res.kind, Some(RequestType::RemoteFetch));
        assert_eq!(res.uid.as_deref(), Some("node-js"));
        assert!(matches!(&res.sockets.unwrap()[..], [SocketEntry::Socket(s)] if s.id == "s1"));
    }

    #[test]
    fn garbage_and_unknown_types_never_panic() {
        assert!(decode_inbound(b"{oops").is_err());
        assert!(decode_inbound(&[0x93, 0x01]).is_err());
        assert!(matches!(
            decode_inbound(br#"{"type":2,"data":{},"uid":"x","nsp":"/"}"#),
            Ok((_, Inbound::Ignored))
        ));
    }
}
