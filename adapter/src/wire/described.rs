//! How a socket is described on the wire, in the `sockets` of a fetch response: its id, handshake,
//! rooms and data, the parts kept encoded until read.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{MapAccess, Visitor, value::MapAccessDeserializer},
};
use serde_json::{Map, Value};

use super::msgpack::{Cursor, MAX_DEPTH, room_list};
use crate::{error::WireError, value};

/// The handshake of a socket, with the fields of Node.js' `socket.handshake`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Handshake {
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// Connection time, human readable.
    #[serde(default)]
    pub time: String,
    /// Remote address of the client connection.
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub xdomain: bool,
    #[serde(default)]
    pub secure: bool,
    /// Connection time, ms since the epoch.
    #[serde(default)]
    pub issued: u64,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub query: Map<String, Value>,
    /// Always empty when sent by this crate: the auth payload may hold tokens.
    #[serde(default)]
    pub auth: Map<String, Value>,
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

pub(super) fn room_part<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<WirePart<Vec<String>>, D::Error> {
    room_list(d).map(WirePart::Decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
