//! Messages exchanged between nodes, encoded as `@socket.io/redis-adapter` 8.x encodes them.
//!
//! Broadcasts are MessagePack arrays `[uid, packet, opts]`. Requests and responses are maps with a
//! numeric `type`; Node.js nodes send most of them as JSON and some as MessagePack, and accept
//! both, told apart by the first byte (`{` is JSON). This crate always sends MessagePack.
//!
//! Fields this crate adds (`uid` and `node` on responses, `sid` on acks, `requestId` on
//! join/leave/disconnect) are ignored by Node.js nodes.
//!
//! [`messages`] holds the message types, [`described`] how a socket is described in them,
//! [`fetch`] the fetch responses read and written field by field, and [`msgpack`] the
//! hand-written MessagePack reading and writing they need.

mod described;
mod fetch;
mod messages;
mod msgpack;
pub(crate) mod sharded;

use serde::{Serialize, de::DeserializeOwned};

pub use described::Handshake;
pub(crate) use described::{FromWire, SocketEntry, WirePart, WireSocket};
pub(crate) use fetch::{SocketFields, decode_response, fetch_response};
pub(crate) use messages::{
    BroadcastMessage, EVENT, Heartbeat, RequestType, WireFlags, WireOpts, WirePacket, WireRequest,
    WireResponse,
};

use crate::error::WireError;

/// Encodes any message as MessagePack with named fields, as `notepack.io` does.
pub(crate) fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    rmp_serde::to_vec_named(msg).map_err(WireError::Encode)
}

/// Decodes a message sent as JSON (first byte `{`) or MessagePack.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.first() == Some(&b'{') {
        serde_json::from_slice(bytes).map_err(WireError::Json)
    } else {
        rmp_serde::from_slice(bytes).map_err(WireError::Decode)
    }
}
