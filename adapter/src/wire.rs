//! Messages exchanged between nodes, encoded as `@socket.io/redis-adapter` 8.x encodes them.
//!
//! Broadcasts are MessagePack arrays `[uid, packet, opts]`. Requests and responses are maps with a
//! numeric `type`; Node.js nodes send most of them as JSON and some as MessagePack, and accept
//! both, told apart by the first byte (`{` is JSON). This crate always sends MessagePack.
//!
//! Fields this crate adds (`uid` and `node` on responses, `sid` on acks, `requestId` on
//! join/leave/disconnect) are ignored by Node.js nodes.

use std::{fmt, ops::Range, sync::Arc};

use bytes::Bytes;
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{DeserializeOwned, MapAccess, Visitor, value::MapAccessDeserializer},
};
use serde_repr::{Deserialize_repr, Serialize_repr};

use crate::{error::WireError, socket::Handshake, value};

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

/// One element of a response's `sockets`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum SocketEntry {
    /// A socket id (SOCKETS).
    Id(String),
    /// A socket description (REMOTE_FETCH).
    Socket(Box<WireSocket>),
}

impl<'de> Deserialize<'de> for SocketEntry {
    /// Told apart by their first token, without buffering the value as `untagged` would.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = SocketEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a socket id or a socket description")
            }
            fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<SocketEntry, E> {
                Ok(SocketEntry::Id(id.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, id: String) -> Result<SocketEntry, E> {
                Ok(SocketEntry::Id(id))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SocketEntry, A::Error> {
                WireSocket::deserialize(MapAccessDeserializer::new(map))
                    .map(|s| SocketEntry::Socket(Box::new(s)))
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// One socket of a REMOTE_FETCH response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireSocket {
    pub id: String,
    #[serde(default)]
    pub handshake: WirePart<Handshake>,
    #[serde(default, deserialize_with = "room_part")]
    pub rooms: WirePart<Vec<String>>,
    #[serde(default)]
    pub data: WirePart<serde_json::Value>,
    /// The name of the node holding the socket (this crate's nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
}

/// The handshake, rooms or data of a fetched socket. They are most of a fetch response and many
/// callers read none of them, so when they came as MessagePack they stay encoded until decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WirePart<T> {
    Decoded(T),
    Encoded(Bytes),
}

impl<T: Default> Default for WirePart<T> {
    fn default() -> Self {
        Self::Decoded(T::default())
    }
}

impl<T: FromWire + Clone> WirePart<T> {
    pub fn decode(&self) -> Result<T, WireError> {
        match self {
            Self::Decoded(part) => Ok(part.clone()),
            Self::Encoded(bytes) => T::from_wire(bytes),
        }
    }
}

impl<T: FromWire + Clone + Serialize> Serialize for WirePart<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.decode()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for WirePart<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Self::Decoded)
    }
}

/// A part of a fetched socket, read from its MessagePack encoding.
pub(crate) trait FromWire: Sized {
    fn from_wire(bytes: &[u8]) -> Result<Self, WireError>;
}

impl FromWire for Handshake {
    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        rmp_serde::from_slice(bytes).map_err(WireError::Decode)
    }
}

impl FromWire for Vec<String> {
    /// A room list.
    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        Cursor::new(bytes).rooms()
    }
}

/// How deep a value read from a peer (socket data, a room) may nest. rmpv's own limit (1024)
/// takes more than a 2 MiB thread stack in a debug build; data this deep is a hostile peer, not
/// an application.
const MAX_DEPTH: usize = 256;

impl FromWire for serde_json::Value {
    /// Plain JSON values (nearly all socket data) straight off the bytes; anything else, and
    /// anything malformed, through `rmpv`, which turns binaries into arrays of bytes as Node.js'
    /// JSON would and says what is wrong.
    fn from_wire(bytes: &[u8]) -> Result<Self, WireError> {
        Cursor::new(bytes)
            .json(MAX_DEPTH)
            .map_or_else(|| json_through_rmpv(bytes), Ok)
    }
}

fn json_through_rmpv(bytes: &[u8]) -> Result<serde_json::Value, WireError> {
    value::wire_to_json(&Cursor::new(bytes).value()?)
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

/// The fields of a fetched socket that change only with its data, `id`, `handshake` and `data`,
/// as MessagePack key-value pairs: a fetch response copies them instead of encoding them again,
/// and they are all a node keeps of a socket's handshake and data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SocketFields {
    bytes: Bytes,
    /// Where the handshake's value lies; the `data` pair follows it.
    handshake: Range<usize>,
}

/// `"data"`, the key in front of the data value.
const DATA_KEY: &[u8] = &[0xa4, b'd', b'a', b't', b'a'];

impl SocketFields {
    pub fn new(
        id: &str,
        handshake: &Handshake,
        data: &serde_json::Value,
    ) -> Result<Self, WireError> {
        let mut out = Writer(Vec::with_capacity(256));
        out.value(&"id")?;
        out.value(&id)?;
        out.value(&"handshake")?;
        let start = out.0.len();
        out.value(handshake)?;
        let handshake = start..out.0.len();
        Self::ending_with(out, handshake, data)
    }

    /// The same socket with other data.
    pub fn with_data(&self, data: &serde_json::Value) -> Result<Self, WireError> {
        let out = Writer(self.bytes[..self.handshake.end].to_vec());
        Self::ending_with(out, self.handshake.clone(), data)
    }

    /// Appends the data to the id and handshake in `out`; the result takes no spare capacity.
    fn ending_with(
        mut out: Writer,
        handshake: Range<usize>,
        data: &serde_json::Value,
    ) -> Result<Self, WireError> {
        out.0.extend_from_slice(DATA_KEY);
        out.value(data)?;
        Ok(Self {
            bytes: Bytes::from(out.0.into_boxed_slice()),
            handshake,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn handshake(&self) -> WirePart<Handshake> {
        WirePart::Encoded(self.bytes.slice(self.handshake.clone()))
    }

    pub fn data(&self) -> WirePart<serde_json::Value> {
        WirePart::Encoded(self.bytes.slice(self.handshake.end + DATA_KEY.len()..))
    }
}

/// A REMOTE_FETCH response, `{requestId, uid, sockets: [{id, handshake, data, rooms, node}]}`,
/// framed around each socket's [`SocketFields`].
pub(crate) fn fetch_response<'a>(
    request_id: &str,
    uid: &str,
    node: &str,
    sockets: impl ExactSizeIterator<Item = (&'a [u8], &'a [String])>,
) -> Result<Vec<u8>, WireError> {
    let mut out = Writer(Vec::with_capacity(64 + sockets.len() * 320));
    out.map(3)?;
    out.value(&"requestId")?;
    out.value(&request_id)?;
    out.value(&"uid")?;
    out.value(&uid)?;
    out.value(&"sockets")?;
    out.array(sockets.len())?;
    for (fields, rooms) in sockets {
        out.map(5)?;
        out.0.extend_from_slice(fields);
        out.value(&"rooms")?;
        out.value(&rooms)?;
        out.value(&"node")?;
        out.value(&node)?;
    }
    Ok(out.0)
}

/// Writes MessagePack piece by piece, for messages built around already encoded parts.
struct Writer(Vec<u8>);

impl Writer {
    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), WireError> {
        v.serialize(&mut rmp_serde::Serializer::new(&mut self.0).with_struct_map())
            .map_err(WireError::Encode)
    }

    fn map(&mut self, len: usize) -> Result<(), WireError> {
        rmp::encode::write_map_len(&mut self.0, container_len(len)?)
            .map(drop)
            .map_err(|e| WireError::Data(e.to_string()))
    }

    fn array(&mut self, len: usize) -> Result<(), WireError> {
        rmp::encode::write_array_len(&mut self.0, container_len(len)?)
            .map(drop)
            .map_err(|e| WireError::Data(e.to_string()))
    }
}

fn container_len(len: usize) -> Result<u32, WireError> {
    u32::try_from(len).map_err(|_| WireError::Data(format!("{len} elements are too many")))
}

/// Decodes a response. Its sockets and rooms, the bulk of it, are read straight off the buffer;
/// the handshakes, rooms and data of sockets sent as MessagePack are kept encoded: a fetch of
/// 1000 sockets would spend most of its time building values nobody reads.
pub(crate) fn decode_response(payload: &Bytes) -> Result<WireResponse, WireError> {
    if payload.first() == Some(&b'{') {
        return decode(payload);
    }
    let mut cursor = Cursor::new(payload);
    let (mut sockets, mut rooms) = (None, None);
    let mut res: WireResponse = decode_map_except(&mut cursor, |field, cursor| {
        match field {
            "sockets" => sockets = Some(socket_entries(cursor, payload)?),
            "rooms" => rooms = Some(cursor.rooms()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    res.sockets = sockets;
    res.rooms = rooms;
    Ok(res)
}

/// The `sockets` of a MessagePack response: ids, or socket maps whose handshake, rooms and data
/// stay encoded.
fn socket_entries(cursor: &mut Cursor<'_>, payload: &Bytes) -> Result<Vec<SocketEntry>, WireError> {
    let len = cursor.array_len()?;
    let mut entries = Vec::with_capacity(len.min(cursor.remaining()));
    // Every socket of a response names the same node: one name serves them all.
    let mut node = None;
    for _ in 0..len {
        if cursor.peek_is_str()? {
            entries.push(SocketEntry::Id(cursor.str()?.to_owned()));
        } else {
            let socket = wire_socket(cursor, payload, &mut node)?;
            entries.push(SocketEntry::Socket(Box::new(socket)));
        }
    }
    Ok(entries)
}

/// One socket map of a fetch response, read field by field: a response holds hundreds of them,
/// and serde would first copy each one out to decode it. `node` is the last node name read.
fn wire_socket(
    cursor: &mut Cursor<'_>,
    payload: &Bytes,
    node: &mut Option<Arc<str>>,
) -> Result<WireSocket, WireError> {
    let mut id = None;
    let mut socket = WireSocket {
        id: String::new(),
        handshake: WirePart::default(),
        rooms: WirePart::default(),
        data: WirePart::default(),
        node: None,
    };
    let encoded = |cursor: &mut Cursor<'_>| {
        let start = cursor.pos;
        cursor.skip()?;
        Ok::<_, WireError>(payload.slice(start..cursor.pos))
    };
    for _ in 0..cursor.map_len()? {
        match cursor.str()? {
            "id" => id = Some(cursor.str()?.to_owned()),
            "handshake" => socket.handshake = WirePart::Encoded(encoded(cursor)?),
            "data" => socket.data = WirePart::Encoded(encoded(cursor)?),
            "rooms" => socket.rooms = WirePart::Encoded(encoded(cursor)?),
            "node" => {
                socket.node = match cursor.nil_or(Cursor::str)? {
                    Some(name) if node.as_deref() == Some(name) => node.clone(),
                    Some(name) => node.insert(Arc::from(name)).clone().into(),
                    None => None,
                }
            }
            _ => cursor.skip()?,
        }
    }
    socket.id = id.ok_or_else(|| WireError::Data("a fetched socket without an id".into()))?;
    Ok(socket)
}

/// Decodes the map at the cursor with serde, except the fields `read_field` reads from the
/// cursor itself (it says whether it did).
fn decode_map_except<T: DeserializeOwned>(
    cursor: &mut Cursor<'_>,
    mut read_field: impl FnMut(&str, &mut Cursor<'_>) -> Result<bool, WireError>,
) -> Result<T, WireError> {
    let (mut others, mut other_fields) = (Vec::new(), 0);
    for _ in 0..cursor.map_len()? {
        let start = cursor.pos;
        let field = cursor.str()?;
        if !read_field(field, cursor)? {
            cursor.skip()?;
            others.extend_from_slice(&cursor.buf[start..cursor.pos]);
            other_fields += 1;
        }
    }
    reframe_map(other_fields, &others)
}

/// Decodes `fields` (encoded key-value pairs) as a map of `len` entries.
fn reframe_map<T: DeserializeOwned>(len: usize, fields: &[u8]) -> Result<T, WireError> {
    let mut map = Writer(Vec::with_capacity(fields.len() + 5));
    map.map(len)?;
    map.0.extend_from_slice(fields);
    rmp_serde::from_slice(&map.0).map_err(WireError::Decode)
}

/// Walks MessagePack by hand, to find where values start and end without decoding them.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| WireError::Data("truncated MessagePack".into()))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A big-endian number of `width` bytes (at most 8).
    fn be_u64(&mut self, width: usize) -> Result<u64, WireError> {
        Ok(self
            .take(width)?
            .iter()
            .fold(0u64, |n, b| n << 8 | u64::from(*b)))
    }

    fn uint(&mut self, width: usize) -> Result<usize, WireError> {
        usize::try_from(self.be_u64(width)?)
            .map_err(|_| WireError::Data("MessagePack length too large".into()))
    }

    fn peek_is_str(&self) -> Result<bool, WireError> {
        let byte = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| WireError::Data("truncated MessagePack".into()))?;
        Ok(matches!(byte, 0xa0..=0xbf | 0xd9..=0xdb))
    }

    /// `None` for nil, else what `read` reads.
    fn nil_or<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, WireError>,
    ) -> Result<Option<T>, WireError> {
        if self.buf.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            return Ok(None);
        }
        read(self).map(Some)
    }

    /// The value at the cursor, decoded (its extent is checked first, so no length in it can
    /// claim more than the message holds).
    fn value(&mut self) -> Result<rmpv::Value, WireError> {
        let start = self.pos;
        self.skip()?;
        rmpv::decode::read_value_with_max_depth(&mut &self.buf[start..self.pos], MAX_DEPTH)
            .map_err(|e| WireError::Data(e.to_string()))
    }

    /// A room list: strings, or the numbers Node.js lets through; nil is no rooms.
    fn rooms(&mut self) -> Result<Vec<String>, WireError> {
        let Some(len) = self.nil_or(Self::array_len)? else {
            return Ok(Vec::new());
        };
        let mut rooms = Vec::with_capacity(len.min(self.remaining()));
        for _ in 0..len {
            if self.peek_is_str()? {
                rooms.push(self.str()?.to_owned());
                continue;
            }
            rooms.push(room_name(self.value()?).map_err(WireError::Data)?);
        }
        Ok(rooms)
    }

    fn str(&mut self) -> Result<&'a str, WireError> {
        let len = match self.take(1)?[0] {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.uint(1)?,
            0xda => self.uint(2)?,
            0xdb => self.uint(4)?,
            b => {
                return Err(WireError::Data(format!(
                    "expected a string, found 0x{b:02x}"
                )));
            }
        };
        std::str::from_utf8(self.take(len)?).map_err(|e| WireError::Data(e.to_string()))
    }

    fn map_len(&mut self) -> Result<usize, WireError> {
        match self.take(1)?[0] {
            b @ 0x80..=0x8f => Ok(usize::from(b & 0x0f)),
            0xde => self.uint(2),
            0xdf => self.uint(4),
            b => Err(WireError::Data(format!("expected a map, found 0x{b:02x}"))),
        }
    }

    fn array_len(&mut self) -> Result<usize, WireError> {
        match self.take(1)?[0] {
            b @ 0x90..=0x9f => Ok(usize::from(b & 0x0f)),
            0xdc => self.uint(2),
            0xdd => self.uint(4),
            b => Err(WireError::Data(format!(
                "expected an array, found 0x{b:02x}"
            ))),
        }
    }

    /// The value at the cursor if it is plain JSON: nil, booleans, integers, 64-bit floats,
    /// UTF-8 strings, arrays, maps with string keys, at most `depth` deep. `None` for anything
    /// else, or malformed, for the caller to decode the slow way.
    fn json(&mut self, depth: usize) -> Option<serde_json::Value> {
        use serde_json::Value as Json;
        let depth = depth.checked_sub(1)?;
        let marker = *self.take(1).ok()?.first()?;
        Some(match marker {
            0x00..=0x7f => Json::from(marker),
            0xe0..=0xff => Json::from(marker as i8),
            0xc0 => Json::Null,
            0xc2 => Json::Bool(false),
            0xc3 => Json::Bool(true),
            0xcc..=0xcf => Json::from(self.be_u64(1 << (marker - 0xcc)).ok()?),
            0xd0..=0xd3 => {
                let width = 1 << (marker - 0xd0);
                let shift = 64 - 8 * width;
                Json::from((self.be_u64(width).ok()? << shift) as i64 >> shift)
            }
            0xcb => Json::from(f64::from_bits(self.be_u64(8).ok()?)),
            0xa0..=0xbf | 0xd9..=0xdb => {
                self.pos -= 1;
                Json::String(self.str().ok()?.to_owned())
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                self.pos -= 1;
                let len = self.array_len().ok()?;
                let mut items = Vec::with_capacity(len.min(self.remaining()));
                for _ in 0..len {
                    items.push(self.json(depth)?);
                }
                Json::Array(items)
            }
            0x80..=0x8f | 0xde | 0xdf => {
                self.pos -= 1;
                let mut map = serde_json::Map::new();
                for _ in 0..self.map_len().ok()? {
                    if !self.peek_is_str().ok()? {
                        return None;
                    }
                    let key = self.str().ok()?.to_owned();
                    map.insert(key, self.json(depth)?);
                }
                Json::Object(map)
            }
            _ => return None,
        })
    }

    /// Steps over one value, nested ones included; a loop, not recursion, so that no nesting
    /// depth can exhaust the stack.
    fn skip(&mut self) -> Result<(), WireError> {
        let mut values = 1usize;
        while values > 0 {
            values -= 1;
            let (payload, nested) = match self.take(1)?[0] {
                0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
                b @ 0x80..=0x8f => (0, 2 * usize::from(b & 0x0f)),
                b @ 0x90..=0x9f => (0, usize::from(b & 0x0f)),
                b @ 0xa0..=0xbf => (usize::from(b & 0x1f), 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xca | 0xce | 0xd2 => (4, 0),
                0xcb | 0xcf | 0xd3 => (8, 0),
                0xc4 | 0xd9 => (self.uint(1)?, 0),
                0xc5 | 0xda => (self.uint(2)?, 0),
                0xc6 | 0xdb => (self.uint(4)?, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xc7 => (self.uint(1)? + 1, 0),
                0xc8 => (self.uint(2)? + 1, 0),
                0xc9 => (self.uint(4)? + 1, 0),
                0xdc => (0, self.uint(2)?),
                0xdd => (0, self.uint(4)?),
                0xde => (0, 2 * self.uint(2)?),
                0xdf => (0, 2 * self.uint(4)?),
                0xc1 => return Err(WireError::Data("reserved MessagePack marker 0xc1".into())),
            };
            self.take(payload)?;
            values = values
                .checked_add(nested)
                .filter(|n| *n <= self.remaining())
                .ok_or_else(|| {
                    WireError::Data("MessagePack container larger than its message".into())
                })?;
        }
        Ok(())
    }
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
fn room_name(value: rmpv::Value) -> Result<String, String> {
    match value {
        rmpv::Value::String(s) => s.into_str().ok_or_else(|| "room is not UTF-8".to_string()),
        rmpv::Value::Integer(n) => Ok(n.to_string()),
        rmpv::Value::F64(n) => Ok(n.to_string()),
        other => Err(format!("invalid room {other}")),
    }
}

fn room_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values = Option::<Vec<rmpv::Value>>::deserialize(d)?.unwrap_or_default();
    values
        .into_iter()
        .map(|v| room_name(v).map_err(serde::de::Error::custom))
        .collect()
}

fn room_part<'de, D: Deserializer<'de>>(d: D) -> Result<WirePart<Vec<String>>, D::Error> {
    room_list(d).map(WirePart::Decoded)
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
    fn fetch_responses_carry_named_fields_as_node_reads_them() {
        let handshake = Handshake {
            url: "/socket.io/?EIO=4".into(),
            issued: 42,
            ..Default::default()
        };
        let fields =
            SocketFields::new("s1", &handshake, &serde_json::json!({"user": "ann"})).unwrap();
        let rooms = vec!["s1".to_string(), "lobby".to_string()];
        let bytes = fetch_response(
            "r1",
            "n1",
            "node-a",
            [(fields.as_bytes(), &rooms[..])].into_iter(),
        )
        .unwrap();

        let value = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        let field = |v: &rmpv::Value, name: &str| {
            let map = v.as_map().expect("a map, not an array");
            map.iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no field {name}"))
        };
        assert_eq!(field(&value, "requestId"), "r1".into());
        let socket = field(&value, "sockets").as_array().unwrap()[0].clone();
        assert_eq!(field(&socket, "id"), "s1".into());
        assert_eq!(field(&socket, "node"), "node-a".into());
        assert_eq!(field(&field(&socket, "data"), "user"), "ann".into());
        assert_eq!(field(&field(&socket, "handshake"), "issued"), 42.into());

        let res = decode_response(&Bytes::from(bytes.clone())).unwrap();
        assert_eq!(res.uid.as_deref(), Some("n1"));
        assert_eq!(res.request_id, "r1");
        let Some([SocketEntry::Socket(s)]) = res.sockets.as_deref() else {
            panic!("one socket expected: {:?}", res.sockets);
        };
        assert!(matches!(s.rooms, WirePart::Encoded(_)));
        assert_eq!(s.rooms.decode().unwrap(), rooms);
        assert!(matches!(s.handshake, WirePart::Encoded(_)));
        assert_eq!(s.handshake.decode().unwrap(), handshake);
        assert!(matches!(s.data, WirePart::Encoded(_)));
        assert_eq!(s.data.decode().unwrap(), serde_json::json!({"user": "ann"}));
        assert_eq!(s.node.as_deref(), Some("node-a"));

        // The generic decoder reads the same response the same way, with every part decoded.
        let eager: WireResponse = decode(&bytes).unwrap();
        let Some([SocketEntry::Socket(e)]) = eager.sockets.as_deref() else {
            panic!("one socket expected");
        };
        assert_eq!(e.handshake, WirePart::Decoded(handshake));
        assert_eq!(e.data, WirePart::Decoded(s.data.decode().unwrap()));
        assert_eq!(e.rooms, WirePart::Decoded(rooms));
        assert_eq!(e.id, s.id);
    }

    #[test]
    fn socket_fields_keep_the_handshake_when_the_data_changes() {
        let handshake = Handshake {
            address: "::1".into(),
            issued: 7,
            ..Default::default()
        };
        let fields = SocketFields::new("s1", &handshake, &serde_json::json!({"a": 1})).unwrap();
        let changed = fields.with_data(&serde_json::json!(["b"])).unwrap();
        for (f, data) in [
            (&fields, serde_json::json!({"a": 1})),
            (&changed, serde_json::json!(["b"])),
        ] {
            assert_eq!(f.handshake().decode().unwrap(), handshake);
            assert_eq!(f.data().decode().unwrap(), data);
            // Still three key-value pairs a fetch response can frame as a map.
            let mut map = vec![0x83];
            map.extend_from_slice(f.as_bytes());
            let value = rmpv::decode::read_value(&mut map.as_slice()).unwrap();
            assert_eq!(value.as_map().map(Vec::len), Some(3));
            assert_eq!(value.as_map().unwrap()[0], ("id".into(), "s1".into()));
        }
    }

    #[test]
    fn reads_socket_ids_and_node_descriptions_alike() {
        let json = br#"{"requestId":"r1","sockets":["a",{"id":"b","rooms":["b",7],"data":{"x":1},
            "handshake":{"headers":{"host":"h"},"time":"t","address":"::1","xdomain":false,
            "secure":true,"issued":1700000000000,"url":"/socket.io/","query":{"EIO":"4"},"auth":{}}}]}"#;
        let res: WireResponse = decode(json).unwrap();
        let sockets = res.sockets.unwrap();
        assert_eq!(sockets[0], SocketEntry::Id("a".into()));
        let SocketEntry::Socket(b) = &sockets[1] else {
            panic!("a description expected")
        };
        assert_eq!(b.rooms.decode().unwrap(), ["b", "7"]);
        let handshake = b.handshake.decode().unwrap();
        assert_eq!(handshake.issued, 1_700_000_000_000);
        assert!(handshake.secure);
        assert_eq!(handshake.query["EIO"], "4");
    }

    #[test]
    fn reads_a_node_js_fetch_response_field_by_field() {
        let socket = |fields: Vec<(&str, rmpv::Value)>| {
            rmpv::Value::Map(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
        };
        let response = socket(vec![
            ("requestId", "r1".into()),
            (
                "sockets",
                rmpv::Value::Array(vec![
                    socket(vec![
                        ("id", "b".into()),
                        ("later", rmpv::Value::Array(vec![1.into()])),
                        ("rooms", rmpv::Value::Array(vec!["b".into(), 7.into()])),
                        ("data", socket(vec![("x", 1.into())])),
                        ("handshake", socket(vec![("issued", 42.into())])),
                        ("node", rmpv::Value::Nil),
                    ]),
                    socket(vec![("id", "c".into()), ("rooms", rmpv::Value::Nil)]),
                ]),
            ),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &response).unwrap();
        let sockets = decode_response(&Bytes::from(bytes))
            .unwrap()
            .sockets
            .unwrap();
        let [SocketEntry::Socket(b), SocketEntry::Socket(c)] = &sockets[..] else {
            panic!("two descriptions expected, got {sockets:?}")
        };
        assert_eq!(
            (b.id.as_str(), b.rooms.decode().unwrap()),
            ("b", ["b", "7"].map(String::from).to_vec())
        );
        assert_eq!(b.data.decode().unwrap(), serde_json::json!({"x": 1}));
        assert_eq!(b.handshake.decode().unwrap().issued, 42);
        assert_eq!(b.node, None);
        assert_eq!(
            (
                c.id.as_str(),
                c.rooms.decode().unwrap().len(),
                c.data.decode().unwrap()
            ),
            ("c", 0, serde_json::Value::Null)
        );
    }

    #[test]
    fn decodes_every_response_field_around_the_sockets() {
        let res = WireResponse {
            kind: Some(RequestType::BroadcastAck),
            request_id: "r2".into(),
            uid: Some("n2".into()),
            sockets: Some(vec![SocketEntry::Id("a".into())]),
            rooms: Some(vec!["x".into()]),
            data: Some(rmpv::Value::Array(vec![
                1.into(),
                rmpv::Value::Binary(vec![7]),
            ])),
            client_count: Some(3),
            packet: Some("ok".into()),
            sid: Some("s".into()),
        };
        let bytes = Bytes::from(encode(&res).unwrap());
        assert_eq!(decode_response(&bytes).unwrap(), res);
    }

    #[test]
    fn a_hostile_response_is_an_error_not_a_crash() {
        let hostile: [&[u8]; 7] = [
            // {"sockets": [[[[…]]]]} nested far deeper than any stack would allow recursing
            &[
                &[0x81, 0xa7][..],
                b"sockets",
                &[0x91, 0x81, 0xa9],
                b"handshake",
                &[0x91; 100_000],
            ]
            .concat(),
            // socket data nested deeper than any stack would allow recursing, and truncated
            &deep_data_response(&[]),
            // a socket without an id
            &[&[0x81, 0xa7][..], b"sockets", &[0x91, 0x80]].concat(),
            // an array claiming 4 billion elements
            &[
                &[0x81, 0xa7][..],
                b"sockets",
                &[0xdd, 0xff, 0xff, 0xff, 0xff],
            ]
            .concat(),
            // a map claiming 4 billion entries
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            // a string running past the end
            &[0x81, 0xda, 0xff, 0xff],
            &[],
        ];
        for bytes in hostile {
            assert!(decode_response(&Bytes::from(bytes.to_vec())).is_err());
        }
    }

    /// `{"sockets": [{"id": "s", "data": [[[…` 100,000 deep, then `innermost`.
    fn deep_data_response(innermost: &[u8]) -> Vec<u8> {
        [
            &[0x81, 0xa7][..],
            b"sockets",
            &[0x91, 0x82, 0xa2],
            b"id",
            &[0xa1, b's', 0xa4],
            b"data",
            &[0x91; 100_000],
            innermost,
        ]
        .concat()
    }

    #[test]
    fn socket_data_nested_too_deep_fails_when_read_not_when_fetched() {
        // Valid MessagePack (the innermost array holds nil), deeper than any stack.
        let res = decode_response(&Bytes::from(deep_data_response(&[0xc0]))).unwrap();
        let Some([SocketEntry::Socket(s)]) = res.sockets.as_deref() else {
            panic!("one socket expected: {:?}", res.sockets);
        };
        assert_eq!(s.id, "s");
        assert!(s.data.decode().is_err());
    }

    #[test]
    fn plain_json_data_decodes_as_through_rmpv() {
        let plain = serde_json::json!({
            "s": "é ✓", "n": null, "t": true, "f": false, "pos": [0, 127, 128, 255, 256, 65535,
            65536, 4294967295_u64, 4294967296_u64, u64::MAX], "neg": [-1, -32, -33, -128, -129,
            -32768, -32769, -2147483648_i64, -2147483649_i64, i64::MIN], "x": 0.5, "e": 1e300,
            "deep": [[[{"a": [{}]}]]], "long": "y".repeat(70_000)
        });
        let bytes = rmp_serde::to_vec(&plain).unwrap();
        assert!(
            Cursor::new(&bytes).json(MAX_DEPTH).is_some(),
            "the fast way reads it"
        );
        assert_eq!(serde_json::Value::from_wire(&bytes).unwrap(), plain);
        assert_eq!(json_through_rmpv(&bytes).unwrap(), plain);
        // Duplicate keys: the last one wins either way.
        let dup = [0x82, 0xa1, b'k', 0x01, 0xa1, b'k', 0x02];
        assert_eq!(
            serde_json::Value::from_wire(&dup).unwrap(),
            json_through_rmpv(&dup).unwrap()
        );

        let not_plain: [rmpv::Value; 5] = [
            rmpv::Value::Binary(vec![1, 2]),
            rmpv::Value::Ext(1, vec![9]),
            rmpv::Value::F32(0.25),
            rmpv::Value::Map(vec![(7.into(), "int key".into())]),
            rmpv::Value::Array(vec!["ok".into(), rmpv::Value::Binary(vec![3])]),
        ];
        for value in not_plain {
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &value).unwrap();
            assert!(
                Cursor::new(&bytes).json(MAX_DEPTH).is_none(),
                "{value} is not plain"
            );
            assert_eq!(
                serde_json::Value::from_wire(&bytes).unwrap(),
                json_through_rmpv(&bytes).unwrap()
            );
        }
        // A string that is not UTF-8 comes out as its bytes, as rmpv serializes it.
        let not_utf8 = [0xa1, 0xff];
        assert_eq!(
            serde_json::Value::from_wire(&not_utf8).unwrap(),
            serde_json::json!([255])
        );
        for malformed in [&[0x92, 0x01][..], &[0xa5, b'a'], &[0xcd, 0x01], &[]] {
            assert!(serde_json::Value::from_wire(malformed).is_err());
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(decode::<WireRequest>(b"{not json").is_err());
        assert!(decode::<BroadcastMessage>(&[0xc1, 0x00]).is_err());
        assert!(decode::<WireRequest>(br#"{"type":42}"#).is_err());
    }
}
