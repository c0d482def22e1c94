//! The two protocols nodes speak over pub/sub, and what differs between them: which channels a
//! namespace subscribes, which channel each message goes on, and how it is encoded.
//!
//! * **Classic** — `@socket.io/redis-adapter`'s `createAdapter`: `PUBLISH`, every node
//!   psubscribes to every broadcast channel of its namespaces, requests and responses on channels
//!   of their own ([`crate::keys`]).
//! * **Sharded** — its `createShardedAdapter`: `SPUBLISH`/`SSUBSCRIBE`, requests and broadcasts
//!   on the namespace's channel `{key}#{nsp}#`, responses on `{key}#{nsp}#{uid}#`, and, in the
//!   dynamic modes, a broadcast to one room on the room's channel `{key}#{nsp}#{room}#`, which a
//!   node subscribes only while it hosts a socket of the room. Messages are `{type, data, uid,
//!   nsp}` ([`crate::wire::sharded`]).

use crate::{
    config::SubscriptionMode,
    error::WireError,
    keys::Channels,
    wire::{self, BroadcastMessage, WireRequest, WireResponse, sharded},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Classic,
    Sharded(SubscriptionMode),
}

impl Protocol {
    pub fn new(sharded: bool, mode: SubscriptionMode) -> Self {
        if sharded {
            Self::Sharded(mode)
        } else {
            Self::Classic
        }
    }

    pub fn is_sharded(self) -> bool {
        matches!(self, Self::Sharded(_))
    }

    /// Whether rooms have channels of their own (the dynamic sharded modes).
    pub fn has_room_channels(self) -> bool {
        matches!(
            self,
            Self::Sharded(SubscriptionMode::Dynamic | SubscriptionMode::DynamicPrivate)
        )
    }

    /// The channels and patterns a namespace subscribes when it joins the cluster.
    pub fn namespace_subscriptions(
        self,
        channels: &Channels,
        uid: &str,
    ) -> (Vec<String>, Vec<String>) {
        match self {
            Self::Classic => (
                vec![
                    channels.request.clone(),
                    channels.response.clone(),
                    channels.specific_response(uid),
                ],
                vec![channels.broadcast_pattern()],
            ),
            Self::Sharded(_) => (
                vec![channels.broadcast.clone(), channels.sharded_response(uid)],
                Vec::new(),
            ),
        }
    }

    /// The channel on which node `uid` receives responses.
    pub fn own_response_channel(self, channels: &Channels, uid: &str) -> String {
        match self {
            Self::Classic => channels.specific_response(uid),
            Self::Sharded(_) => channels.sharded_response(uid),
        }
    }

    /// The channel requests go on.
    pub fn request_channel(self, channels: &Channels) -> &str {
        match self {
            Self::Classic => &channels.request,
            Self::Sharded(_) => &channels.broadcast,
        }
    }

    /// The channel of a response to a request of node `to`.
    pub fn response_channel(self, channels: &Channels, to: Option<&str>, specific: bool) -> String {
        match (self, to) {
            (Self::Sharded(_), Some(uid)) => channels.sharded_response(uid),
            (Self::Classic, Some(uid)) if specific => channels.specific_response(uid),
            (Self::Classic, _) => channels.response.clone(),
            (Self::Sharded(_), None) => channels.broadcast.clone(),
        }
    }

    /// The channel a broadcast (without ack) to `rooms` goes on.
    pub fn broadcast_channel(self, channels: &Channels, rooms: &[String]) -> String {
        match self {
            Self::Classic => channels.for_broadcast(rooms),
            Self::Sharded(mode) => channels.for_sharded_broadcast(mode, rooms),
        }
    }

    /// The channel of its own that `room` has, which a node subscribes while it hosts one of the
    /// room's sockets ([`Channels::room_channel`]); never in the classic protocol, whose nodes
    /// subscribe every room by pattern.
    pub fn room_channel(self, channels: &Channels, room: &str) -> Option<String> {
        match self {
            Self::Classic => None,
            Self::Sharded(mode) => channels.room_channel(mode, room),
        }
    }

    pub fn encode_broadcast(self, nsp: &str, msg: BroadcastMessage) -> Result<Vec<u8>, WireError> {
        match self {
            Self::Classic => wire::encode(&msg),
            Self::Sharded(_) => sharded::encode_broadcast(nsp, msg),
        }
    }

    pub fn encode_request(self, nsp: &str, req: &WireRequest) -> Result<Vec<u8>, WireError> {
        match self {
            Self::Classic => wire::encode(req),
            Self::Sharded(_) => sharded::encode_request(nsp, req),
        }
    }

    pub fn encode_response(self, nsp: &str, res: &WireResponse) -> Result<Vec<u8>, WireError> {
        match self {
            Self::Classic => wire::encode(res),
            Self::Sharded(_) => sharded::encode_response(nsp, res),
        }
    }

    /// A fetch response encoded in the classic form, in this protocol's.
    pub fn fetch_response(self, nsp: &str, uid: &str, classic: Vec<u8>) -> Vec<u8> {
        match self {
            Self::Classic => classic,
            Self::Sharded(_) => sharded::wrap_fetch_response(nsp, uid, &classic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketioxide_core::Sid;

    #[test]
    fn broadcasts_to_one_room_take_its_channel_only_in_dynamic_modes() {
        let ch = Channels::new("socket.io", "/");
        let one = |p: Protocol, room: &str| p.broadcast_channel(&ch, &[room.to_string()]);
        let dynamic = Protocol::Sharded(SubscriptionMode::Dynamic);
        let private = Protocol::Sharded(SubscriptionMode::DynamicPrivate);
        let fixed = Protocol::Sharded(SubscriptionMode::Static);
        let sid = Sid::new().to_string();
        assert_eq!(one(dynamic, "lobby"), "socket.io#/#lobby#");
        assert_eq!(one(dynamic, &sid), "socket.io#/#");
        assert_eq!(one(dynamic, "abcdefghijklmnopqrst"), "socket.io#/#");
        assert_eq!(one(private, &sid), format!("socket.io#/#{sid}#"));
        assert_eq!(one(fixed, "lobby"), "socket.io#/#");
        assert_eq!(
            dynamic.broadcast_channel(&ch, &["a".into(), "b".into()]),
            "socket.io#/#"
        );
        assert_eq!(one(Protocol::Classic, "lobby"), "socket.io#/#lobby#");
        assert_eq!(dynamic.room_channel(&ch, &sid), None);
        assert_eq!(fixed.room_channel(&ch, "lobby"), None);
    }

    #[test]
    fn sharded_requests_and_responses_share_the_namespace_prefix() {
        let ch = Channels::new("k", "/chat");
        let p = Protocol::Sharded(SubscriptionMode::Dynamic);
        assert_eq!(p.request_channel(&ch), "k#/chat#");
        assert_eq!(p.response_channel(&ch, Some("u1"), true), "k#/chat#u1#");
        assert_eq!(
            p.namespace_subscriptions(&ch, "u1"),
            (
                vec!["k#/chat#".to_string(), "k#/chat#u1#".to_string()],
                vec![]
            )
        );
    }
}
