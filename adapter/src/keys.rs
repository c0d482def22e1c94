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
//! History ([`HistoryKeys`], `H` = `{{key}}:history`, kept by `chat-server`):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `H:{nsp\|room}:seq` | string | the room's last message number |
//! | `H:{nsp\|room}:list` | list | the room's last messages, JSON, oldest first |
//!
//! Every Lua script receives the keys it touches as `KEYS`; none builds a key name.

/// The channels of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
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

    /// The glob pattern matching every broadcast channel of the namespace.
    pub fn broadcast_pattern(&self) -> String {
        format!("{}*", escape_glob(&self.broadcast))
    }

    /// `{key}-response#{nsp}#{uid}#`
    pub fn specific_response(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }
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

/// The keys of presence and leave timers.
#[derive(Debug, Clone)]
pub struct PresenceKeys {
    prefix: String,
}

impl PresenceKeys {
    pub fn new(key: &str) -> Self {
        Self {
            prefix: format!("{{{key}}}:presence"),
        }
    }

    /// `P:u:{place}`
    pub fn users(&self, place: &str) -> String {
        format!("{}:u:{place}", self.prefix)
    }

    /// `P:s:{place}`
    pub fn sockets(&self, place: &str) -> String {
        format!("{}:s:{place}", self.prefix)
    }

    /// `P:c:{place}`
    pub fn counts(&self, place: &str) -> String {
        format!("{}:c:{place}", self.prefix)
    }

    /// `P:n:{node}`
    pub fn node(&self, node: &str) -> String {
        format!("{}:n:{node}", self.prefix)
    }

    /// `P:timers`
    pub fn timers(&self) -> String {
        format!("{}:timers", self.prefix)
    }

    /// `P:claims`
    pub fn claims(&self) -> String {
        format!("{}:claims", self.prefix)
    }

    /// `P:claimed`
    pub fn claimed(&self) -> String {
        format!("{}:claimed", self.prefix)
    }

    /// `P:nodes`
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
}

/// The keys of chat history.
#[derive(Debug, Clone)]
pub struct HistoryKeys {
    prefix: String,
}

impl HistoryKeys {
    pub fn new(key: &str) -> Self {
        Self {
            prefix: format!("{{{key}}}:history"),
        }
    }

    /// `H:{nsp|room}:sequence`: a hash of the room's last `seq` and its `epoch`.
    pub fn sequence(&self, nsp: &str, room: &str) -> String {
        format!("{}:{}:sequence", self.prefix, place(nsp, room))
    }

    /// `H:{nsp|room}:list`
    pub fn list(&self, nsp: &str, room: &str) -> String {
        format!("{}:{}:list", self.prefix, place(nsp, room))
    }

    /// `H:{nsp|room}:sent:{len(user)}:{user}:{clientId}`: a message of `user` by its clientId, for
    /// retries. The length keeps user ids with `:` from reaching another user's record.
    pub fn sent(&self, nsp: &str, room: &str, user: &str, client_id: &str) -> String {
        format!(
            "{}:{}:sent:{}:{user}:{client_id}",
            self.prefix,
            place(nsp, room),
            user.len()
        )
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
        assert_eq!(p.users(&place("/", "r")), "{k}:presence:u:/|r");
        assert_eq!(p.node("n1"), "{k}:presence:n:n1");
        assert_eq!(p.timers(), "{k}:presence:timers");
        let h = HistoryKeys::new("k");
        assert_eq!(h.sequence("/a", "r"), "{k}:history:/a|r:sequence");
        assert_eq!(h.sent("/", "r", "u:1", "c"), "{k}:history:/|r:sent:3:u:1:c");
        assert_eq!(h.list("/a", "r"), "{k}:history:/a|r:list");
    }

    #[test]
    fn patterns_escape_glob_characters() {
        let ch = Channels::new("k*", "/");
        assert_eq!(ch.broadcast_pattern(), "k\\*#/#*");
    }
}
