//! Socket data and handshake, visible from every node.
//!
//! socketioxide's adapter trait describes a remote socket by id only. Node.js applications read
//! `socket.data` and `socket.handshake` of remote sockets from `fetchSockets()`, so this crate
//! keeps both with the socket (in its extensions) and ships them in fetch responses, in the shape
//! the Node.js adapter uses.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::extract::ConnectInfo;
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use socketioxide::{adapter::Adapter, socket::Socket};

use futures_util::future::BoxFuture;

use crate::{
    error::{ClusterError, TrackError, WireError},
    wire::{FromWire, Handshake, SocketFields, WirePart},
};

/// Headers never shipped to other nodes: they carry credentials.
const PRIVATE_HEADERS: [&str; 2] = ["authorization", "cookie"];

/// What this crate stores in a socket's extensions: its description, encoded once. A fetch
/// request copies the encoded fields instead of describing every socket again, and the
/// handshake and data are kept only encoded (a decoded handshake with a browser's headers takes
/// a few KiB, which every connection would pay). One `Arc`, so that reading it from the
/// extensions of hundreds of sockets costs one count each.
#[derive(Clone)]
pub(crate) struct Described(Arc<SocketFields>);

impl Described {
    fn new(id: &str, data: &Value, handshake: &Handshake) -> Result<Self, WireError> {
        SocketFields::new(id, handshake, data).map(|fields| Self(Arc::new(fields)))
    }

    /// The description of a socket of this node: the stored one, or one made now for a socket
    /// never tracked.
    pub fn of<A: Adapter>(socket: &Socket<A>) -> Result<Self, WireError> {
        match socket.extensions.get::<Self>() {
            Some(described) => Ok(described),
            None => Self::new(
                &socket.id.to_string(),
                &Value::Null,
                &handshake_of(socket, 0),
            ),
        }
    }

    /// A socket known by its id only.
    pub fn bare(id: &str) -> Result<Self, WireError> {
        Self::new(id, &Value::Null, &Handshake::default())
    }

    pub fn fields(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The socket data (`Value::Null` if unreadable, which a description this node encoded
    /// is not).
    fn data(&self) -> Value {
        self.0.data().decode().unwrap_or_default()
    }

    /// This description with its rooms and node, as `fetchSockets()` returns it.
    pub fn to_remote(
        &self,
        id: String,
        rooms: Vec<String>,
        (node, uid): (&Arc<str>, &Arc<str>),
        actions: &Binding,
    ) -> RemoteSocket {
        RemoteSocket {
            id,
            node: Some(node.clone()),
            node_uid: Some(uid.clone()),
            rooms: Arc::new(rooms).into(),
            data: self.0.data().into(),
            handshake: self.0.handshake().into(),
            actions: actions.clone(),
        }
    }
}

/// Starts tracking a socket: sets its data and puts it in the room named after its id, as
/// Node.js does, so other nodes (Node.js ones included) can address it with `to(socket_id)`.
/// Call it from the connect handler.
pub fn track<A: Adapter>(socket: &Socket<A>, data: &impl Serialize) -> Result<(), TrackError> {
    let data = serde_json::to_value(data)?;
    let handshake = handshake_of(socket, now_ms());
    socket.join(socket.id.to_string());
    socket
        .extensions
        .insert(Described::new(&socket.id.to_string(), &data, &handshake)?);
    Ok(())
}

/// Replaces the data of a tracked socket (`socket.data = …` in Node.js).
pub fn set_data<A: Adapter>(socket: &Socket<A>, data: &impl Serialize) -> Result<(), TrackError> {
    let data = serde_json::to_value(data)?;
    let described = match socket.extensions.get::<Described>() {
        Some(described) => Described(Arc::new(described.0.with_data(&data)?)),
        None => Described::new(
            &socket.id.to_string(),
            &data,
            &handshake_of(socket, now_ms()),
        )?,
    };
    socket.extensions.insert(described);
    Ok(())
}

/// The data of a socket of this node (`Value::Null` when untracked), decoded from its
/// description.
pub fn data<A: Adapter>(socket: &Socket<A>) -> Value {
    socket
        .extensions
        .get::<Described>()
        .map_or(Value::Null, |d| d.data())
}

/// The handshake of a socket of this node, as other nodes see it (credential headers and the
/// auth payload left out).
pub fn handshake<A: Adapter>(socket: &Socket<A>) -> Handshake {
    match socket.extensions.get::<Described>() {
        Some(described) => described.0.handshake().decode().unwrap_or_default(),
        None => handshake_of(socket, now_ms()),
    }
}

/// The data of a socket of this node, deserialized.
pub fn data_as<A: Adapter, T: DeserializeOwned>(socket: &Socket<A>) -> Option<T> {
    T::deserialize(socket.extensions.get::<Described>()?.data()).ok()
}

/// A socket anywhere in the cluster, as `fetchSockets()` describes it: its data, and actions
/// that reach it on whichever node holds it (a Node.js one included), as Node's `RemoteSocket`.
#[derive(Clone)]
pub struct RemoteSocket {
    pub(crate) id: String,
    pub(crate) node: Option<Arc<str>>,
    pub(crate) node_uid: Option<Arc<str>>,
    pub(crate) rooms: Part<Vec<String>>,
    pub(crate) data: Part<Value>,
    pub(crate) handshake: Part<Handshake>,
    /// Set by [`crate::Cluster::fetch_sockets`], which hands out every `RemoteSocket`.
    pub(crate) actions: Binding,
}

/// What a fetched socket acts through: its namespace and the cluster. The sockets of one fetch
/// share it, and get it as they are built (a fetch of 1000 sockets moved each again to bind it).
pub(crate) type Binding = Option<(Arc<str>, Arc<dyn SocketActions>)>;

impl std::fmt::Debug for RemoteSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSocket")
            .field("id", &self.id)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What a [`RemoteSocket`] can do, through the cluster of namespace `nsp`. Every action targets
/// the room named by the socket's id, which is how the Node.js adapter reaches one socket too.
pub(crate) trait SocketActions: Send + Sync {
    fn emit<'a>(
        &'a self,
        nsp: &'a str,
        sid: &'a str,
        event: &'a str,
        args: Vec<Value>,
        ack_timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ClusterError>>;

    fn change_rooms<'a>(
        &'a self,
        nsp: &'a str,
        sid: &'a str,
        rooms: Vec<String>,
        join: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;

    fn disconnect<'a>(
        &'a self,
        nsp: &'a str,
        sid: &'a str,
        close: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
}

impl RemoteSocket {
    fn actions(&self) -> Result<(&str, &dyn SocketActions), ClusterError> {
        self.actions
            .as_ref()
            .map(|(nsp, actions)| (&**nsp, &**actions))
            .ok_or_else(|| ClusterError::Unbound(self.id.clone()))
    }

    /// Emits `event` to this socket.
    pub async fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), ClusterError> {
        let (nsp, actions) = self.actions()?;
        actions.emit(nsp, &self.id, event, args, None).await?;
        Ok(())
    }

    /// Emits `event` to this socket and waits at most `timeout` for its ack (the ack's first
    /// argument); `None` when it did not ack in time.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Option<Value>, ClusterError> {
        let (nsp, actions) = self.actions()?;
        let acks = actions
            .emit(nsp, &self.id, event, args, Some(timeout))
            .await?;
        Ok(acks.into_iter().next())
    }

    /// Puts this socket in `rooms`.
    pub async fn join(&self, rooms: Vec<String>) -> Result<(), ClusterError> {
        let (nsp, actions) = self.actions()?;
        actions.change_rooms(nsp, &self.id, rooms, true).await
    }

    /// Takes this socket out of `rooms`.
    pub async fn leave(&self, rooms: Vec<String>) -> Result<(), ClusterError> {
        let (nsp, actions) = self.actions()?;
        actions.change_rooms(nsp, &self.id, rooms, false).await
    }

    /// Disconnects this socket; `close` closes its whole connection (every namespace).
    pub async fn disconnect(&self, close: bool) -> Result<(), ClusterError> {
        let (nsp, actions) = self.actions()?;
        actions.disconnect(nsp, &self.id, close).await
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name of the node holding it; `None` for Node.js nodes, which do not say.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The cluster id of the node holding it, when it is a node of this crate.
    pub fn node_uid(&self) -> Option<&str> {
        self.node_uid.as_deref()
    }

    /// Its rooms, its own id included when tracked. Another node's arrive encoded and are
    /// decoded on first use.
    pub fn rooms(&self) -> &[String] {
        self.rooms.get(&self.id, "rooms")
    }

    /// Its data (`Value::Null` when untracked). Another node's arrives encoded and is decoded on
    /// first use.
    pub fn data(&self) -> &Value {
        self.data.get(&self.id, "data")
    }

    /// The socket data, deserialized.
    pub fn data_as<T: DeserializeOwned>(&self) -> Option<T> {
        T::deserialize(self.data()).ok()
    }

    /// Its handshake. Another node's arrives encoded and is decoded on first use.
    pub fn handshake(&self) -> &Handshake {
        self.handshake.get(&self.id, "handshake")
    }
}

/// The handshake, rooms or data of a fetched socket: shared with the socket's description (or
/// made for it), or still encoded and decoded once, on first read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Part<T> {
    encoded: Option<Bytes>,
    decoded: OnceLock<Arc<T>>,
}

impl<T: FromWire + Default> Part<T> {
    /// The decoded part; an unreadable one is logged and read as the default value.
    fn get(&self, socket: &str, part: &str) -> &T {
        self.decoded.get_or_init(|| match &self.encoded {
            Some(encoded) => Arc::new(T::from_wire(encoded).unwrap_or_else(|err| {
                tracing::warn!(%err, socket, "unreadable {part} of a fetched socket");
                T::default()
            })),
            None => Arc::default(),
        })
    }
}

impl<T> From<Arc<T>> for Part<T> {
    fn from(part: Arc<T>) -> Self {
        Self {
            encoded: None,
            decoded: OnceLock::from(part),
        }
    }
}

impl<T> From<WirePart<T>> for Part<T> {
    fn from(part: WirePart<T>) -> Self {
        match part {
            WirePart::Decoded(part) => Arc::new(part).into(),
            WirePart::Encoded(encoded) => Self {
                encoded: Some(encoded),
                decoded: OnceLock::new(),
            },
        }
    }
}

/// The handshake of a socket of this node, connected at `issued` (ms since the epoch).
fn handshake_of<A: Adapter>(socket: &Socket<A>, issued: u64) -> Handshake {
    let parts = socket.req_parts();
    let headers: Map<String, Value> = parts
        .headers
        .iter()
        .filter(|(name, _)| !PRIVATE_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), Value::from(value.to_str().ok()?))))
        .collect();
    let query: Map<String, Value> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
            .collect();
    Handshake {
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
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_unreadable_fetched_part_reads_as_its_default() {
        let data = Part::<Value>::from(WirePart::Encoded(Bytes::from_static(&[0xc1])));
        assert_eq!(*data.get("s", "data"), Value::Null);
        let handshake = Part::<Handshake>::from(WirePart::Encoded(Bytes::from_static(&[0x91])));
        assert_eq!(*handshake.get("s", "handshake"), Handshake::default());
        // a room that is a map
        let rooms = Part::<Vec<String>>::from(WirePart::Encoded(Bytes::from_static(&[0x91, 0x80])));
        assert!(rooms.get("s", "rooms").is_empty());
    }

    #[test]
    fn a_fetched_part_is_decoded_once_and_a_local_one_shared() {
        let encoded = rmp_serde::to_vec(&json!({"a": 1})).unwrap();
        let data = Part::<Value>::from(WirePart::Encoded(Bytes::from(encoded)));
        assert_eq!(*data.get("s", "data"), json!({"a": 1}));
        assert!(std::ptr::eq(data.get("s", "data"), data.get("s", "data")));

        let shared = Arc::new(json!([1]));
        let local = Part::from(shared.clone());
        assert!(std::ptr::eq(local.get("s", "data"), &*shared));
    }
}
