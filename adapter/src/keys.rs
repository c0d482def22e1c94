//! Every Redis channel and key this project uses, named in one place. `{key}` is the cluster's
//! prefix (`ClusterConfig::key`, the Node.js adapter's `key`), `{nsp|room}` a room of a namespace
//! as presence and history name it ([`place`]).
//!
//! # Channels
//!
//! The first five are those of `@socket.io/redis-adapter` 8.x, so Rust and Node.js nodes sharing
//! a `key` hear each other:
//!
//! | channel | carries |
//! | --- | --- |
//! | `{key}#{nsp}#` | broadcasts to everyone or to several rooms (psubscribed as `{key}#{nsp}#*`) |
//! | `{key}#{nsp}#{room}#` | broadcasts to exactly one room |
//! | `{key}-request#{nsp}#` | requests (fetch sockets, rooms, join, leave, disconnect, emits with acks) |
//! | `{key}-response#{nsp}#` | responses, when the responder does not use specific channels |
//! | `{key}-response#{nsp}#{uid}#` | responses addressed to the node `uid` |
//!
//! Two more are this crate's own; Node.js nodes never subscribe to them:
//!
//! | channel | carries |
//! | --- | --- |
//! | `{key}-heartbeat#` | node heartbeats and goodbyes (liveness) |
//! | `{key}-node#{uid}#` | nothing: a node subscribes to it so `PUBSUB NUMSUB` tells whether its connection lives |
//!
//! # Keys
//!
//! Presence ([`PresenceKeys`], `P` = `{{key}}:presence`; the hash tag keeps them in one slot):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P:u:{nsp\|room}` | hash | user id → name, of the users online in the room |
//! | `P:s:{nsp\|room}` | hash | socket id → user id, of the sockets in the room |
//! | `P:c:{nsp\|room}` | hash | user id → number of their sockets in the room |
//! | `P:timers` | sorted set | `nsp\|room\nuser` → when its leave timer fires (ms) |
//! | `P:claims` | sorted set | `nsp\|room\nuser` → when the claim of a departure lapses (ms) |
//! | `P:claimed` | hash | `nsp\|room\nuser` → `id\nname` of a claimed departure |
//! | `P:n:{node}` | set | `nsp\|room\nsocket`, the sockets node `node` holds |
//! | `P:nodes` | sorted set | node → its last presence heartbeat (ms) |
//!
//! On a Redis Cluster presence is split in shards, each with its own tag (`{{key}:i}`), timers,
//! claims, heartbeats and socket sets: see [`PresenceKeys`].
//!
//! History ([`HistoryKeys`], `H` = `{{key}}:history`, kept by `chat-server`):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `H:{nsp\|room}:sequence` | hash | the room's last message number, its epoch and what numbered it |
//! | `H:{nsp\|room}:list` | list | the room's last messages, JSON without id, room and epoch, oldest first |
//! | `H:{nsp\|room}:retries`, `…:retries:previous` | hash | seq and time of each message by its sender and clientId, in two generations |
//!
//! With sharded pub/sub a room's history keys carry the tag of its channel's slot instead: see
//! [`HistoryKeys`].
//!
//! Every Lua script receives the keys it touches as `KEYS`; none builds a key name, and each
//! script's keys share one hash slot.

use crate::config::SubscriptionMode;

/// The channels of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    pub nsp: String,
    /// `{key}#{nsp}#`
    pub broadcast: String,
    /// `{key}-request#{nsp}#`
    pub request: String,
    /// `{key}-response#{nsp}#`
    pub response: String,
}

impl Channels {
    pub fn new(key: &str, nsp: &str) -> Self {
        Self {
            nsp: nsp.to_string(),
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            response: format!("{key}-response#{nsp}#"),
        }
    }

    /// The channel a broadcast is published on: the room's own channel when it targets exactly
    /// one room, so nodes without that room can skip it cheaply.
    pub fn for_broadcast(&self, rooms: &[String]) -> String {
        match rooms {
            [room] => format!("{}{room}#", self.broadcast),
            _ => self.broadcast.clone(),
        }
    }

    /// The channel a broadcast (without ack) to `rooms` goes on with sharded pub/sub in `mode`: the
    /// room's own channel for exactly one room that has one ([`Channels::room_channel`]), the
    /// namespace's otherwise.
    pub fn for_sharded_broadcast(&self, mode: SubscriptionMode, rooms: &[String]) -> String {
        match rooms {
            [room] => self
                .room_channel(mode, room)
                .unwrap_or_else(|| self.broadcast.clone()),
            _ => self.broadcast.clone(),
        }
    }

    /// The channel of its own that `room` has with sharded pub/sub in `mode`, which a node
    /// subscribes while it hosts one of the room's sockets: in the dynamic modes only, and for a
    /// room named like a socket id only in `DynamicPrivate`. The same test decides where
    /// broadcasts go, so none is published on a channel nobody subscribes.
    pub fn room_channel(&self, mode: SubscriptionMode, room: &str) -> Option<String> {
        let has_channel = match mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !looks_like_socket_id(room),
            SubscriptionMode::DynamicPrivate => true,
        };
        has_channel.then(|| format!("{}{room}#", self.broadcast))
    }

    /// The glob pattern matching every broadcast channel of the namespace.
    pub fn broadcast_pattern(&self) -> String {
        format!("{}*", escape_glob(&self.broadcast))
    }

    /// `{key}-response#{nsp}#{uid}#`
    pub fn specific_response(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }

    /// `{key}#{nsp}#{uid}#`, where node `uid` receives responses in the sharded protocol.
    pub fn sharded_response(&self, uid: &str) -> String {
        format!("{}{uid}#", self.broadcast)
    }
}

/// A socket's own room: a socketioxide socket id, or 20 characters, the length of Node.js'
/// socket ids (the test Node.js' sharded adapter applies before publishing).
fn looks_like_socket_id(room: &str) -> bool {
    room.len() == 20 || room.parse::<socketioxide_core::Sid>().is_ok()
}

/// `{key}-heartbeat#`
pub(crate) fn heartbeat_channel(key: &str) -> String {
    format!("{key}-heartbeat#")
}

/// `{key}-node#{uid}#`
pub(crate) fn node_channel(key: &str, uid: &str) -> String {
    format!("{key}-node#{uid}#")
}

/// What a channel a message arrived on is for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Broadcast { nsp: &'a str },
    Request { nsp: &'a str },
    Response { nsp: &'a str },
    Heartbeat,
    Other,
}

/// Classifies `channel` for the adapter prefix `key`.
pub(crate) fn route<'a>(key: &str, channel: &'a str) -> Route<'a> {
    let Some(rest) = channel.strip_prefix(key) else {
        return Route::Other;
    };
    let nsp_of = |tail: &'a str| tail.split_once('#').map(|(nsp, _)| nsp);
    if let Some(tail) = rest.strip_prefix('#') {
        nsp_of(tail).map_or(Route::Other, |nsp| Route::Broadcast { nsp })
    } else if let Some(tail) = rest.strip_prefix("-request#") {
        nsp_of(tail).map_or(Route::Other, |nsp| Route::Request { nsp })
    } else if let Some(tail) = rest.strip_prefix("-response#") {
        nsp_of(tail).map_or(Route::Other, |nsp| Route::Response { nsp })
    } else if rest == "-heartbeat#" {
        Route::Heartbeat
    } else {
        Route::Other
    }
}

/// A room of a namespace, as presence and history keys and timer entries name it: `nsp|room`.
pub fn place(nsp: &str, room: &str) -> String {
    format!("{nsp}|{room}")
}

/// The hash tag of a Redis key: keys with the same tag live in the same hash slot, so one Lua
/// script may touch them all on a Redis Cluster.
fn tagged(tag: &str, rest: &str) -> String {
    format!("{{{tag}}}{rest}")
}

/// A short tag for each of Redis Cluster's 16384 hash slots: `{SLOT_TAGS[s]}` puts a key in slot
/// `s`. A key can so share the slot of a channel whatever the channel's name (a room's name may
/// hold `{` or `}`), and a script can store and `SPUBLISH` on it in one step.
static SLOT_TAGS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    let mut tags = vec![String::new(); 16384];
    let mut missing = tags.len();
    let mut n = 0u32;
    while missing > 0 {
        let candidate = n.to_string();
        let slot = usize::from(fred::util::redis_keyslot(candidate.as_bytes()));
        if tags[slot].is_empty() {
            tags[slot] = candidate;
            missing -= 1;
        }
        n += 1;
    }
    tags
});

/// The tag that puts a key in the hash slot of `channel`.
fn slot_tag_of(channel: &str) -> &'static str {
    &SLOT_TAGS[usize::from(fred::util::redis_keyslot(channel.as_bytes()))]
}

/// One of the shards of presence. On a Redis Cluster each shard's keys share a hash slot (see
/// [`PresenceKeys`]), and a node runs each presence script on one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PresenceShard(u16);

/// The keys of presence and leave timers, in shards.
///
/// Joining a room, leaving it, claiming a due timer and taking over a dead node's sockets each
/// change a room's hashes together with a timer index and a node's socket set, atomically. On a
/// Redis Cluster one script may only touch one hash slot, so rooms are spread over `shards`
/// shards (by a hash of `nsp|room`), and each shard has its own timers, claims, node heartbeats
/// and node socket sets, all with the shard's hash tag. Every node claims the due timers and reaps
/// the silent nodes of every shard. With one shard (a standalone Redis) the tag is `{key}` and the
/// layout is that of earlier versions.
#[derive(Debug, Clone)]
pub struct PresenceKeys {
    prefixes: Vec<String>,
}

impl PresenceKeys {
    /// Presence in one shard: every key in the slot of `{key}`.
    pub fn new(key: &str) -> Self {
        Self::sharded(key, 1)
    }

    /// Presence in `shards` shards (at least one), tagged `{key:0}`, `{key:1}`, ….
    pub fn sharded(key: &str, shards: u16) -> Self {
        let prefixes = match shards {
            0 | 1 => vec![tagged(key, ":presence")],
            n => (0..n)
                .map(|i| tagged(&format!("{key}:{i}"), ":presence"))
                .collect(),
        };
        Self { prefixes }
    }

    /// Every shard.
    pub fn shards(&self) -> impl Iterator<Item = PresenceShard> + use<> {
        (0..self.prefixes.len() as u16).map(PresenceShard)
    }

    /// The shard of the room `place` (`nsp|room`), the same on every node.
    pub fn shard_of(&self, place: &str) -> PresenceShard {
        let n = self.prefixes.len() as u16;
        PresenceShard(fred::util::redis_keyslot(place.as_bytes()) % n)
    }

    fn prefix(&self, shard: PresenceShard) -> &str {
        &self.prefixes[usize::from(shard.0)]
    }

    fn of_room(&self, kind: &str, place: &str) -> String {
        format!("{}:{kind}:{place}", self.prefix(self.shard_of(place)))
    }

    /// `P:u:{place}`
    pub fn users(&self, place: &str) -> String {
        self.of_room("u", place)
    }

    /// `P:s:{place}`
    pub fn sockets(&self, place: &str) -> String {
        self.of_room("s", place)
    }

    /// `P:c:{place}`
    pub fn counts(&self, place: &str) -> String {
        self.of_room("c", place)
    }

    /// `P:n:{node}`, the node's sockets of rooms in `shard`.
    pub fn node(&self, shard: PresenceShard, node: &str) -> String {
        format!("{}:n:{node}", self.prefix(shard))
    }

    /// `P:timers`
    pub fn timers(&self, shard: PresenceShard) -> String {
        format!("{}:timers", self.prefix(shard))
    }

    /// `P:claims`
    pub fn claims(&self, shard: PresenceShard) -> String {
        format!("{}:claims", self.prefix(shard))
    }

    /// `P:claimed`
    pub fn claimed(&self, shard: PresenceShard) -> String {
        format!("{}:claimed", self.prefix(shard))
    }

    /// `P:nodes`, the presence heartbeats of nodes as `shard` saw them.
    pub fn nodes(&self, shard: PresenceShard) -> String {
        format!("{}:nodes", self.prefix(shard))
    }
}

/// The keys of chat history.
///
/// A room's keys share a hash slot, so one script stores a message and publishes its broadcast.
/// On a standalone Redis (or with classic pub/sub, which a Redis Cluster relays to every shard)
/// the tag is `{key}`. With sharded pub/sub the script `SPUBLISH`es on the room's channel, and a
/// Redis Cluster requires that channel in the slot of the keys: each room's keys then carry the
/// tag of the slot of the channel its broadcasts go to ([`HistoryKeys::in_slot_of`]).
#[derive(Debug, Clone)]
pub struct HistoryKeys {
    key: String,
    placement: HistoryPlacement,
}

#[derive(Debug, Clone)]
enum HistoryPlacement {
    OneSlot,
    ChannelSlot(SubscriptionMode),
}

impl HistoryKeys {
    /// Every room's keys tagged `{key}`.
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_string(),
            placement: HistoryPlacement::OneSlot,
        }
    }

    /// Each room's keys in the slot of the channel its broadcasts go on with sharded pub/sub in
    /// `mode` (the channel of [`crate::BroadcastTemplate::channel`]).
    pub fn in_slot_of(key: &str, mode: SubscriptionMode) -> Self {
        Self {
            key: key.to_string(),
            placement: HistoryPlacement::ChannelSlot(mode),
        }
    }

    fn room(&self, nsp: &str, room: &str) -> String {
        let tag = match self.placement {
            HistoryPlacement::OneSlot => self.key.as_str(),
            HistoryPlacement::ChannelSlot(mode) => {
                let channels = Channels::new(&self.key, nsp);
                slot_tag_of(&channels.for_sharded_broadcast(mode, &[room.to_string()]))
            }
        };
        tagged(tag, &format!(":history:{}", place(nsp, room)))
    }

    /// `H:{nsp|room}:sequence`: a hash of the room's last `seq` and its `epoch`.
    pub fn sequence(&self, nsp: &str, room: &str) -> String {
        format!("{}:sequence", self.room(nsp, room))
    }

    /// `H:{nsp|room}:list`
    pub fn list(&self, nsp: &str, room: &str) -> String {
        format!("{}:list", self.room(nsp, room))
    }

    /// `H:{nsp|room}:retries` and `H:{nsp|room}:retries:previous`: hashes of the room's retry
    /// records by sender and clientId, of this generation and the one before.
    pub fn retry_records(&self, nsp: &str, room: &str) -> [String; 2] {
        let room = self.room(nsp, room);
        [
            format!("{room}:retries"),
            format!("{room}:retries:previous"),
        ]
    }
}

/// Escapes the characters Redis glob patterns treat specially.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_match_the_node_adapter() {
        let ch = Channels::new("socket.io", "/chat");
        assert_eq!(ch.broadcast, "socket.io#/chat#");
        assert_eq!(ch.request, "socket.io-request#/chat#");
        assert_eq!(ch.response, "socket.io-response#/chat#");
        assert_eq!(ch.specific_response("abc"), "socket.io-response#/chat#abc#");
        assert_eq!(ch.for_broadcast(&["r1".into()]), "socket.io#/chat#r1#");
        assert_eq!(
            ch.for_broadcast(&["a".into(), "b".into()]),
            "socket.io#/chat#"
        );
        assert_eq!(ch.for_broadcast(&[]), "socket.io#/chat#");
    }

    #[test]
    fn routes_every_channel_kind() {
        let key = "socket.io";
        assert_eq!(route(key, "socket.io#/#"), Route::Broadcast { nsp: "/" });
        assert_eq!(
            route(key, "socket.io#/a#room#x#"),
            Route::Broadcast { nsp: "/a" }
        );
        assert_eq!(
            route(key, "socket.io-request#/#"),
            Route::Request { nsp: "/" }
        );
        assert_eq!(
            route(key, "socket.io-response#/b#uid1#"),
            Route::Response { nsp: "/b" }
        );
        assert_eq!(route(key, "socket.io-heartbeat#"), Route::Heartbeat);
        assert_eq!(route(key, "socket.io-node#x#"), Route::Other);
        assert_eq!(route(key, "other#/#"), Route::Other);
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let p = PresenceKeys::new("k");
        let only = p.shards().next().unwrap();
        assert_eq!(p.users(&place("/", "r")), "{k}:presence:u:/|r");
        assert_eq!(p.node(only, "n1"), "{k}:presence:n:n1");
        assert_eq!(p.timers(only), "{k}:presence:timers");
        let h = HistoryKeys::new("k");
        assert_eq!(h.sequence("/a", "r"), "{k}:history:/a|r:sequence");
        assert_eq!(
            h.retry_records("/", "r"),
            [
                "{k}:history:/|r:retries",
                "{k}:history:/|r:retries:previous"
            ]
        );
        assert_eq!(h.list("/a", "r"), "{k}:history:/a|r:list");
    }

    #[test]
    fn sharded_presence_keeps_each_room_with_its_shard_indexes() {
        let p = PresenceKeys::sharded("k", 16);
        assert_eq!(p.shards().count(), 16);
        let place = place("/", "lobby");
        let shard = p.shard_of(&place);
        let slot = |key: &str| fred::util::redis_keyslot(key.as_bytes());
        let expected = slot(&p.timers(shard));
        for key in [
            p.users(&place),
            p.sockets(&place),
            p.counts(&place),
            p.claims(shard),
            p.claimed(shard),
            p.nodes(shard),
            p.node(shard, "n1"),
        ] {
            assert_eq!(slot(&key), expected, "{key}");
        }
        let slots: std::collections::HashSet<u16> =
            p.shards().map(|s| slot(&p.timers(s))).collect();
        assert!(slots.len() > 8, "shards spread over slots: {slots:?}");
    }

    #[test]
    fn sharded_history_keys_share_the_slot_of_the_room_channel() {
        let channel = |nsp: &str, room: &str| format!("k#{nsp}#{room}#");
        let h = HistoryKeys::in_slot_of("k", SubscriptionMode::Dynamic);
        let slot = |key: &str| fred::util::redis_keyslot(key.as_bytes());
        let fixed = HistoryKeys::in_slot_of("k", SubscriptionMode::Static);
        assert_eq!(slot(&fixed.list("/chat", "r")), slot("k#/chat#"));
        for room in ["lobby", "a{b}c", "}{", "김재환"] {
            let expected = slot(&channel("/chat", room));
            assert_eq!(slot(&h.sequence("/chat", room)), expected, "{room}");
            assert_eq!(slot(&h.list("/chat", room)), expected, "{room}");
            for key in h.retry_records("/chat", room) {
                assert_eq!(slot(&key), expected, "{room}");
            }
        }
        assert!(SLOT_TAGS.iter().all(|t| !t.is_empty()));
    }

    #[test]
    fn patterns_escape_glob_characters() {
        let ch = Channels::new("k*", "/");
        assert_eq!(ch.broadcast_pattern(), "k\\*#/#*");
    }
}
