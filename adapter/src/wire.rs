//! Messages exchanged between nodes, encoded as `@socket.io/redis-adapter` 8.x encodes them.
//!
//! Broadcasts are MessagePack arrays `[uid, packet, opts]`. Requests and responses are maps with a
//! numeric `type`; Node.js nodes send most of them as JSON and some as MessagePack, and accept
//! both, told apart by the first byte (`{` is JSON). This crate always sends MessagePack.
//!
//! Fields this crate adds (`uid` and `node` on responses, `sid` on acks, `requestId` on
//! join/leave/disconnect) are ignored by Node.js nodes.

use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};

use crate::error::WireError;

/// The request and response types of the Node.js adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl RequestType {
    fn from_u8(n: u8) -> Option<Self> {
        use RequestType::*;
        Some(match n {
            0 => Sockets,
            1 => AllRooms,
            2 => RemoteJoin,
            3 => RemoteLeave,
            4 => RemoteDisconnect,
            5 => RemoteFetch,
            6 => ServerSideEmit,
            7 => Broadcast,
            8 => BroadcastClientCount,
            9 => BroadcastAck,
            _ => return None,
        })
    }
}

impl Serialize for RequestType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl<'de> Deserialize<'de> for RequestType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u8::deserialize(d)?;
        Self::from_u8(n).ok_or_else(|| serde::de::Error::custom(format!("unknown type {n}")))
    }
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
    pub sockets: Option<Vec<rmpv::Value>>,
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

/// One socket of a REMOTE_FETCH response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireSocket {
    pub id: String,
    #[serde(default = "nil")]
    pub handshake: rmpv::Value,
    #[serde(default, deserialize_with = "room_list")]
    pub rooms: Vec<String>,
    #[serde(default = "nil")]
    pub data: rmpv::Value,
    /// The name of the node holding the socket (this crate's nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
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

/// Encodes any message as MessagePack with named fields, as `notepack.io` does.
pub(crate) fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    rmp_serde::to_vec_named(msg).map_err(WireError::Encode)
}

/// A value as a MessagePack value with named fields, for struct fields of dynamic type:
/// `rmpv::ext::to_value` writes structs as arrays, which Node.js reads as garbage.
pub(crate) fn named_value<T: Serialize>(v: &T) -> Result<rmpv::Value, WireError> {
    let bytes = encode(v)?;
    rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|e| WireError::Data(e.to_string()))
}

/// Decodes a message sent as JSON (first byte `{`) or MessagePack.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.first() == Some(&b'{') {
        serde_json::from_slice(bytes).map_err(WireError::Json)
    } else {
        rmp_serde::from_slice(bytes).map_err(WireError::Decode)
    }
}

fn nil() -> rmpv::Value {
    rmpv::Value::Nil
}

/// Rooms are strings, but Node.js lets numbers through: accept both.
fn room_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values = Option::<Vec<rmpv::Value>>::deserialize(d)?.unwrap_or_default();
    values
        .into_iter()
        .map(|v| match v {
            rmpv::Value::String(s) => s
                .into_str()
                .ok_or_else(|| serde::de::Error::custom("room is not UTF-8")),
            rmpv::Value::Integer(n) => Ok(n.to_string()),
            rmpv::Value::F64(n) => Ok(n.to_string()),
            other => Err(serde::de::Error::custom(format!("invalid room {other}"))),
        })
        .collect()
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
    fn fetched_sockets_carry_named_fields_as_node_reads_them() {
        #[derive(Serialize)]
        struct Handshake {
            url: &'static str,
        }
        let socket = WireSocket {
            id: "s1".into(),
            handshake: named_value(&Handshake { url: "/socket.io/" }).unwrap(),
            rooms: vec!["s1".into()],
            data: rmpv::Value::Nil,
            node: None,
        };
        let value = named_value(&socket).unwrap();
        let field = |v: &rmpv::Value, name: &str| {
            let map = v.as_map().expect("a map, not an array");
            map.iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(field(&value, "id"), Some("s1".into()));
        let handshake = field(&value, "handshake").unwrap();
        assert_eq!(field(&handshake, "url"), Some("/socket.io/".into()));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(decode::<WireRequest>(b"{not json").is_err());
        assert!(decode::<BroadcastMessage>(&[0xc1, 0x00]).is_err());
        assert!(decode::<WireRequest>(br#"{"type":42}"#).is_err());
    }
}
