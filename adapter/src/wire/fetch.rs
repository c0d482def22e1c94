//! Fetch responses (`fetchSockets`), read and written field by field: a response describing a
//! thousand sockets is mostly their handshakes and data, which stay encoded until someone reads
//! them (see `described`), and this node's own sockets are copied from their stored encoding
//! (`SocketFields`) instead of being encoded again.

use std::{ops::Range, sync::Arc};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::{
    decode,
    described::{Handshake, SocketEntry, WirePart, WireSocket},
    messages::WireResponse,
    msgpack::{Cursor, Writer},
};
use crate::error::WireError;

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
/// framed around each socket's [`SocketFields`]. Its buffer is sized first: a response of
/// hundreds of sockets that outgrew a guess was copied once per doubling.
pub(crate) fn fetch_response<'a>(
    request_id: &str,
    uid: &str,
    node: &str,
    sockets: impl ExactSizeIterator<Item = (&'a [u8], &'a [String])> + Clone,
) -> Result<Vec<u8>, WireError> {
    // Each value carries at most 5 bytes of MessagePack header; the keys take 24 per socket.
    let size: usize = sockets
        .clone()
        .map(|(fields, rooms)| {
            let rooms: usize = rooms.iter().map(|room| room.len() + 5).sum();
            fields.len() + rooms + node.len() + 40
        })
        .sum();
    let mut out = Writer(Vec::with_capacity(64 + request_id.len() + uid.len() + size));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{RequestType, encode};

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
}
