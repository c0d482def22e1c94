//! Broadcasts encoded ahead of time with holes, for a Redis script to fill and publish.
//!
//! A value a broadcast carries may be decided only inside a Redis script: a room's next sequence
//! number, say, assigned in the same atomic step as the publish so that every node receives a
//! room's messages in sequence order. The broadcast is then encoded here, in the wire format of
//! the Node.js adapter, with a [`hole`] in place of each such value; the script writes the values'
//! MessagePack encodings between the [`BroadcastTemplate::parts`] and publishes the result on
//! [`BroadcastTemplate::channel`].
//!
//! The broadcast carries the uid [`SCRIPT_UID`], which no node has: every node delivers it to its
//! local sockets, the one that ran the script included, all in the order Redis published them.

use std::sync::LazyLock;

use serde_json::Value;

use crate::{
    error::WireError,
    keys::Channels,
    protocol::Protocol,
    wire::{self, BroadcastMessage, WireOpts, WirePacket},
};

/// The uid of broadcasts published by scripts (see the module documentation).
pub const SCRIPT_UID: &str = "script";

/// A random tag per process: text that a client sends cannot pass for a hole.
static HOLE_TAG: LazyLock<String> =
    LazyLock::new(|| format!("\u{0}hole:{:032x}:", rand::random::<u128>()));

/// The placeholder of the value named `name` in the data given to
/// [`crate::Cluster::broadcast_template`].
pub fn hole(name: &str) -> Value {
    Value::String(format!("{}{name}", *HOLE_TAG))
}

/// An encoded broadcast split at its holes: `parts[0]`, the value of `holes[0]`, `parts[1]`, …,
/// the value of the last hole, the last part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastTemplate {
    channel: String,
    sharded: bool,
    parts: Vec<Vec<u8>>,
    holes: Vec<String>,
}

impl BroadcastTemplate {
    /// Encodes a broadcast of `packet` to the sockets `opts` selects, in `protocol`, for the
    /// channel Node.js nodes use for it.
    pub(crate) fn encode(
        protocol: Protocol,
        channels: &Channels,
        packet: WirePacket,
        opts: WireOpts,
    ) -> Result<Self, WireError> {
        let channel = protocol.broadcast_channel(channels, &opts.rooms);
        let msg = BroadcastMessage(SCRIPT_UID.to_string(), packet, opts);
        let bytes = protocol.encode_broadcast(&channels.nsp, msg)?;
        let (parts, holes) = split_at_holes(&bytes);
        Ok(Self {
            channel,
            sharded: protocol.is_sharded(),
            parts,
            holes,
        })
    }

    /// The channel to publish the filled broadcast on. With sharded pub/sub, a script that
    /// publishes it on a Redis Cluster must touch only keys of this channel's hash slot (see
    /// [`crate::keys::HistoryKeys::in_slot_of`]).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The Redis command that publishes it: `PUBLISH`, or `SPUBLISH` with sharded pub/sub.
    pub fn publish_command(&self) -> &'static str {
        if self.sharded { "SPUBLISH" } else { "PUBLISH" }
    }

    /// The encoded broadcast between the holes; one more than [`BroadcastTemplate::holes`].
    pub fn parts(&self) -> &[Vec<u8>] {
        &self.parts
    }

    /// The names of the holes, in order (a name may repeat).
    pub fn holes(&self) -> &[String] {
        &self.holes
    }

    /// The broadcast with each hole filled by `value_of(name)`, as a script fills it. For
    /// transports without scripts, and to check a script against.
    pub fn fill(&self, value_of: impl Fn(&str) -> Value) -> Result<Vec<u8>, WireError> {
        let mut out = self.parts[0].clone();
        for (hole, part) in self.holes.iter().zip(&self.parts[1..]) {
            out.extend(wire::encode(&value_of(hole))?);
            out.extend_from_slice(part);
        }
        Ok(out)
    }
}

/// Splits MessagePack bytes at every encoded [`hole`] string.
fn split_at_holes(bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<String>) {
    let tag = HOLE_TAG.as_bytes();
    let mut parts = Vec::new();
    let mut holes = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while let Some(found) = find(&bytes[at..], tag) {
        let tag_at = at + found;
        // The string's header sits right before its text; holes are 32 to 255 bytes long, which
        // MessagePack writes as str8: 0xd9, then the length.
        let text_len = match bytes[..tag_at] {
            [.., 0xd9, len] if usize::from(len) >= tag.len() => usize::from(len),
            _ => {
                at = tag_at + tag.len();
                continue;
            }
        };
        let header_len = 2;
        let name_len = text_len - tag.len();
        let name_at = tag_at + tag.len();
        let Some(name) = bytes
            .get(name_at..name_at + name_len)
            .and_then(|n| std::str::from_utf8(n).ok())
        else {
            at = name_at;
            continue;
        };
        parts.push(bytes[start..tag_at - header_len].to_vec());
        holes.push(name.to_string());
        start = name_at + name_len;
        at = start;
    }
    parts.push(bytes[start..].to_vec());
    (parts, holes)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::wire::EVENT;

    fn template(data: Value) -> BroadcastTemplate {
        let packet = WirePacket {
            kind: EVENT,
            data: crate::value::json_to_wire(&json!(["message", data])),
            nsp: Some("/".into()),
            id: None,
        };
        let opts = WireOpts {
            rooms: vec!["lobby".into()],
            ..Default::default()
        };
        BroadcastTemplate::encode(
            Protocol::Classic,
            &Channels::new("socket.io", "/"),
            packet,
            opts,
        )
        .unwrap()
    }

    #[test]
    fn a_filled_template_is_the_broadcast_encoded_with_the_values() {
        let t = template(json!({ "seq": hole("seq"), "epoch": hole("epoch"), "text": "hi" }));
        let mut holes = t.holes().to_vec();
        holes.sort();
        assert_eq!(holes, ["epoch", "seq"]);
        assert_eq!(t.parts().len(), 3);
        assert_eq!(t.channel(), "socket.io#/#lobby#");
        let values = |name: &str| match name {
            "seq" => json!(70_000),
            _ => json!("e1"),
        };
        let filled = t.fill(values).unwrap();
        let expected = template(json!({ "seq": 70_000, "epoch": "e1", "text": "hi" }));
        assert_eq!(filled, expected.parts()[0]);
        let BroadcastMessage(uid, packet, opts) = wire::decode(&filled).unwrap();
        assert_eq!(uid, SCRIPT_UID);
        assert_eq!(opts.rooms, ["lobby"]);
        assert_eq!(
            crate::value::wire_to_json(&packet.data).unwrap(),
            json!(["message", { "seq": 70_000, "epoch": "e1", "text": "hi" }])
        );
    }

    #[test]
    fn a_sharded_template_is_a_cluster_adapter_broadcast_on_the_room_channel() {
        let packet = WirePacket {
            kind: EVENT,
            data: crate::value::json_to_wire(&json!(["message", { "seq": hole("seq") }])),
            nsp: Some("/chat".into()),
            id: None,
        };
        let opts = WireOpts {
            rooms: vec!["lobby".into()],
            ..Default::default()
        };
        let protocol = Protocol::Sharded(crate::config::SubscriptionMode::Dynamic);
        let t = BroadcastTemplate::encode(protocol, &Channels::new("k", "/chat"), packet, opts)
            .unwrap();
        assert_eq!(
            (t.channel(), t.publish_command()),
            ("k#/chat#lobby#", "SPUBLISH")
        );
        let filled = t.fill(|_| json!(7)).unwrap();
        let (nsp, inbound) = wire::sharded::decode_inbound(&filled).unwrap();
        let wire::sharded::Inbound::Broadcast(BroadcastMessage(uid, packet, _)) = inbound else {
            panic!("not a broadcast")
        };
        assert_eq!((nsp.as_str(), uid.as_str()), ("/chat", SCRIPT_UID));
        assert_eq!(
            crate::value::wire_to_json(&packet.data).unwrap(),
            json!(["message", { "seq": 7 }])
        );
    }

    #[test]
    fn text_that_looks_like_a_hole_without_the_process_tag_stays_text() {
        let t = template(json!({ "text": "\u{0}hole:00000000000000000000000000000000:seq" }));
        assert!(t.holes().is_empty());
        assert_eq!(t.parts().len(), 1);
    }
}
