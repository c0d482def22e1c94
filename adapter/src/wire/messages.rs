//! The messages of `@socket.io/redis-adapter` 8.x: broadcasts (`[uid, packet, opts]`), requests
//! and responses (maps with a numeric `type`), and this crate's own heartbeats.

use serde::{Deserialize, Deserializer, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};

use super::{described::SocketEntry, msgpack::room_list};

/// The request and response types of the Node.js adapter, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub(crate) enum RequestType {
    Sockets = 0,
    AllRooms = 1,
    RemoteJoin = 2,
    RemoteLeave = 3,
    RemoteDisconnect = 4,
    RemoteFetch = 5,
    ServerSideEmit = 6,
    Broadcast = 7,
    BroadcastClientCount = 8,
    BroadcastAck = 9,
}

/// `opts.flags` of a broadcast. Unknown flags are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireFlags {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volatile: Option<bool>,
    /// Ack timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// Which sockets an operation applies to: those in any of `rooms` (every socket when empty) and
/// in none of `except`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireOpts {
    #[serde(default, deserialize_with = "room_list")]
    pub rooms: Vec<String>,
    #[serde(default, deserialize_with = "room_list")]
    pub except: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub flags: Option<WireFlags>,
}

/// A socket.io packet as the Node.js parser models it: `data` is `[event, ...args]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WirePacket {
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default = "nil")]
    pub data: rmpv::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nsp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
}

/// The socket.io packet type of an event.
pub(crate) const EVENT: u8 = 2;

/// A broadcast: `[uid, packet, opts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BroadcastMessage(pub String, pub WirePacket, pub WireOpts);

/// A request on `{key}-request#{nsp}#`. One shape serves every type; each uses some fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireRequest {
    #[serde(rename = "type")]
    pub kind: Option<RequestType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opts: Option<WireOpts>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_rooms"
    )]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<bool>,
    /// `[event, ...args]` of a server-side emit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<rmpv::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet: Option<WirePacket>,
    /// Legacy single-socket join/leave/disconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// A response on `{key}-response#{nsp}#[uid#]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireResponse {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RequestType>,
    #[serde(rename = "requestId", default)]
    pub request_id: String,
    /// The responding node (this crate's nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Socket ids (SOCKETS) or socket descriptions (REMOTE_FETCH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<Vec<SocketEntry>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_rooms"
    )]
    pub rooms: Option<Vec<String>>,
    /// The ack argument of a server-side emit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<rmpv::Value>,
    #[serde(
        rename = "clientCount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_count: Option<u64>,
    /// The first argument of a client's ack (BROADCAST_ACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet: Option<rmpv::Value>,
    /// The socket that sent the ack (this crate's nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// A liveness message on `{key}-heartbeat#` (this crate's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Heartbeat {
    pub uid: String,
    pub name: String,
    pub nsps: Vec<String>,
    pub sockets: u64,
    /// Sender's clock, milliseconds since the epoch.
    pub ts: u64,
    /// True when the node leaves the cluster on purpose.
    #[serde(default)]
    pub bye: bool,
}

fn nil() -> rmpv::Value {
    rmpv::Value::Nil
}

fn lenient_rooms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    room_list(d).map(Some)
}

/// `undefined` flags arrive as nil or as an empty map; anything unreadable means "no flags".
fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<WireFlags>, D::Error> {
    let value = rmpv::Value::deserialize(d)?;
    Ok(rmpv::ext::from_value(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode};

    #[test]
    fn decodes_a_node_broadcast() {
        // What notepack.io produces for
        // [uid, {type: 2, data: ["hello", 1], nsp: "/"}, {rooms: ["r"], except: [], flags: {}}]
        let node = rmpv::Value::Array(vec![
            "abc123".into(),
            rmpv::Value::Map(vec![
                ("type".into(), 2.into()),
                (
                    "data".into(),
                    rmpv::Value::Array(vec!["hello".into(), 1.into()]),
                ),
                ("nsp".into(), "/".into()),
            ]),
            rmpv::Value::Map(vec![
                (
                    "rooms".into(),
                    rmpv::Value::Array(vec!["r".into(), 7.into()]),
                ),
                ("except".into(), rmpv::Value::Array(vec![])),
                ("flags".into(), rmpv::Value::Map(vec![])),
            ]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &node).unwrap();
        let BroadcastMessage(uid, packet, opts) = decode(&bytes).unwrap();
        assert_eq!(uid, "abc123");
        assert_eq!(packet.kind, EVENT);
        assert_eq!(packet.nsp.as_deref(), Some("/"));
        assert_eq!(opts.rooms, vec!["r".to_string(), "7".to_string()]);
        assert_eq!(opts.flags, Some(WireFlags::default()));
    }

    #[test]
    fn decodes_json_requests_as_node_sends_them() {
        let json = br#"{"uid":"n1","requestId":"r1","type":5,"opts":{"rooms":["a"],"except":[]}}"#;
        let req: WireRequest = decode(json).unwrap();
        assert_eq!(req.kind, Some(RequestType::RemoteFetch));
        assert_eq!(req.request_id.as_deref(), Some("r1"));
        assert_eq!(req.opts.unwrap().rooms, vec!["a".to_string()]);
    }

    #[test]
    fn requests_round_trip_through_messagepack_with_named_fields() {
        let req = WireRequest {
            kind: Some(RequestType::RemoteJoin),
            uid: Some("n1".into()),
            rooms: Some(vec!["x".into()]),
            opts: Some(WireOpts::default()),
            ..Default::default()
        };
        let bytes = encode(&req).unwrap();
        let as_value: rmpv::Value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let keys: Vec<_> = as_value
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, ["type", "uid", "opts", "rooms"]);
        assert_eq!(decode::<WireRequest>(&bytes).unwrap(), req);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(decode::<WireRequest>(b"{not json").is_err());
        assert!(decode::<BroadcastMessage>(&[0xc1, 0x00]).is_err());
        assert!(decode::<WireRequest>(br#"{"type":42}"#).is_err());
    }
}
