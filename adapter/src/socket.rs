//! Socket data and handshake, visible from every node.
//!
//! socketioxide's adapter trait describes a remote socket by id only. Node.js applications read
//! `socket.data` and `socket.handshake` of remote sockets from `fetchSockets()`, so this crate
//! keeps both with the socket (in its extensions) and ships them in fetch responses, in the shape
//! the Node.js adapter uses.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::extract::ConnectInfo;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use socketioxide::{adapter::Adapter, socket::Socket};

/// Headers never shipped to other nodes: they carry credentials.
const PRIVATE_HEADERS: [&str; 2] = ["authorization", "cookie"];

/// What this crate stores in a socket's extensions.
#[derive(Clone)]
struct Tracked {
    data: Arc<Value>,
    issued_ms: u64,
}

/// Starts tracking a socket: sets its data and puts it in the room named after its id, as
/// Node.js does, so other nodes (Node.js ones included) can address it with `to(socket_id)`.
/// Call it from the connect handler.
pub fn track<A: Adapter>(
    socket: &Socket<A>,
    data: &impl Serialize,
) -> Result<(), serde_json::Error> {
    let data = serde_json::to_value(data)?;
    socket.join(socket.id.to_string());
    socket.extensions.insert(Tracked {
        data: Arc::new(data),
        issued_ms: now_ms(),
    });
    Ok(())
}

/// Replaces the data of a tracked socket (`socket.data = …` in Node.js).
pub fn set_data<A: Adapter>(
    socket: &Socket<A>,
    data: &impl Serialize,
) -> Result<(), serde_json::Error> {
    let data = Arc::new(serde_json::to_value(data)?);
    let issued_ms = socket
        .extensions
        .get::<Tracked>()
        .map_or_else(now_ms, |t| t.issued_ms);
    socket.extensions.insert(Tracked { data, issued_ms });
    Ok(())
}

/// The data of a socket of this node (`Value::Null` when untracked).
pub fn data<A: Adapter>(socket: &Socket<A>) -> Value {
    socket
        .extensions
        .get::<Tracked>()
        .map_or(Value::Null, |t| (*t.data).clone())
}

/// The data of a socket of this node, deserialized.
pub fn data_as<A: Adapter, T: DeserializeOwned>(socket: &Socket<A>) -> Option<T> {
    let tracked = socket.extensions.get::<Tracked>()?;
    T::deserialize(&*tracked.data).ok()
}

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

/// A socket anywhere in the cluster, as `fetchSockets()` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    pub id: String,
    /// The name of the node holding it; `None` for Node.js nodes, which do not say.
    pub node: Option<String>,
    /// The cluster id of the node holding it, when it is a node of this crate.
    pub node_uid: Option<String>,
    /// Its rooms, its own id included when tracked.
    pub rooms: Vec<String>,
    pub data: Value,
    pub handshake: Handshake,
}

impl RemoteSocket {
    /// The socket data, deserialized.
    pub fn data_as<T: DeserializeOwned>(&self) -> Option<T> {
        T::deserialize(&self.data).ok()
    }
}

/// Describes a socket of this node.
pub(crate) fn describe<A: Adapter>(
    socket: &Socket<A>,
    rooms: Vec<String>,
    node: &str,
    uid: &str,
) -> RemoteSocket {
    let tracked = socket.extensions.get::<Tracked>();
    let parts = socket.req_parts();
    let headers: Map<String, Value> = parts
        .headers
        .iter()
        .filter(|(name, _)| !PRIVATE_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), Value::from(value.to_str().ok()?))))
        .collect();
    let query: Map<String, Value> = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k), Value::from(decode_component(v)))
        })
        .collect();
    let issued = tracked.as_ref().map_or(0, |t| t.issued_ms);
    RemoteSocket {
        id: socket.id.to_string(),
        node: Some(node.to_string()),
        node_uid: Some(uid.to_string()),
        rooms,
        data: tracked.map_or(Value::Null, |t| (*t.data).clone()),
        handshake: Handshake {
            xdomain: parts.headers.contains_key(http::header::ORIGIN),
            secure: false,
            time: humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(issued))
                .to_string(),
            address: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string())
                .unwrap_or_default(),
            issued,
            url: parts.uri.to_string(),
            headers,
            query,
            auth: Map::new(),
        },
    }
}

/// Percent-decoding of a query string component (`+` is a space).
fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(bytes[i + 1]) << 4 | hex(bytes[i + 2]));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::decode_component;

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(decode_component("a%20b+c"), "a b c");
        assert_eq!(decode_component("%zz%4"), "%zz%4");
        assert_eq!(decode_component("%C3%A9"), "é");
    }
}
