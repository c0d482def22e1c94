//! Messages of a room, in order: posting one gives it the room's next `seq` in the same atomic
//! step that publishes it, so every node receives a room's messages in `seq` order; the kept
//! messages let a client that was away recover what it missed; the sender's `clientId` makes a
//! retry return the message already stored instead of posting it again.

use std::{
    collections::{HashMap, VecDeque},
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use fred::{clients::Client, types::Value as RedisValue, types::scripts::Script};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketio_cluster::{
    BroadcastTemplate, MemoryHub, hole,
    keys::{HistoryKeys, place},
};

use crate::{
    protocol::{Member, Message, Since},
    redis_function::RedisFunction,
};

static POST: LazyLock<RedisFunction> =
    LazyLock::new(|| RedisFunction::new(include_str!("lua/post.lua"), "post"));
static PAGE: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("lua/page.lua")));

/// How long a sent message is remembered by its `clientId` (`shared/PROTOCOL.md`, "Messages").
pub const RETRY_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("stored message is not valid: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the broadcast could not be encoded: {0}")]
    Encode(#[from] socketio_cluster::WireError),
}

/// A message as its sender gave it, before it has a place in the room. Serialized, it is what
/// the history keeps of it besides its seq: the room, its id and epoch are the room's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Draft<'a> {
    #[serde(skip)]
    pub room: &'a str,
    pub from: &'a Member,
    pub text: &'a str,
    pub ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
}

impl Draft<'_> {
    /// The data of its broadcast, with a hole for each field only posting decides.
    pub fn with_holes(&self) -> Result<Value, HistoryError> {
        let mut data = serde_json::to_value(self)?;
        data["room"] = json!(self.room);
        for field in ["id", "seq", "epoch"] {
            data[field] = hole(field);
        }
        Ok(data)
    }

    fn placed(&self, epoch: &str, seq: u64) -> Message {
        Message {
            id: format!("{epoch}:{seq}"),
            room: self.room.to_string(),
            seq,
            epoch: epoch.to_string(),
            from: self.from.clone(),
            text: self.text.to_string(),
            ts: self.ts,
            client_id: self.client_id.map(str::to_string),
        }
    }
}

/// A message as the history in Redis keeps it: a [`Draft`] and its seq. (Entries stored before
/// this form also name their id, room and epoch, which are ignored: the room's keys say them.)
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    seq: u64,
    from: Member,
    text: String,
    ts: u64,
    #[serde(default)]
    client_id: Option<String>,
}

impl Entry {
    fn placed(self, room: &str, epoch: &str) -> Message {
        Message {
            id: format!("{epoch}:{}", self.seq),
            room: room.to_string(),
            seq: self.seq,
            epoch: epoch.to_string(),
            from: self.from,
            text: self.text,
            ts: self.ts,
            client_id: self.client_id,
        }
    }
}

/// A posted message: `fresh` unless it was a retry of one already stored.
#[derive(Debug)]
pub struct Posted {
    pub message: Message,
    pub fresh: bool,
}

/// Where a page of a room's messages starts (see [`History::select`]).
#[derive(Debug, Clone, Copy)]
pub enum Position<'a> {
    /// Back from the message before this seq; 0: from the newest.
    Before(u64),
    /// On from the message after this one.
    After(&'a Since),
}

/// A page of a room's kept messages as the store selected it, oldest first.
#[derive(Debug, Default, PartialEq)]
pub struct Selected {
    /// The room's epoch now (none before its first message).
    pub epoch: Option<String>,
    /// The room's last seq.
    pub seq: u64,
    /// Whether an `After` position is one of the room's: its epoch, or the epoch before a
    /// failover up to the seq carried from it. Always true for `Before`.
    pub known: bool,
    /// Whether the room keeps messages past the page in its direction.
    pub more: bool,
    pub messages: Vec<Message>,
}

/// A room's sequence and the messages kept of it, oldest first.
#[derive(Debug, Default, Clone)]
struct Kept {
    epoch: Option<String>,
    seq: u64,
    messages: Vec<Message>,
    /// The epoch before a failover, whose seqs up to `carried` are the same messages in this one.
    prev_epoch: Option<String>,
    carried: u64,
}

impl Kept {
    /// What `lua/page.lua` selects from Redis, from the messages kept in memory: at most
    /// `limit` messages from `position`, ending with the one that reaches `max_bytes` of JSON.
    fn select(&self, position: Position<'_>, limit: usize, max_bytes: usize) -> Selected {
        let mut selected = Selected {
            epoch: self.epoch.clone(),
            seq: self.seq,
            known: true,
            ..Selected::default()
        };
        // The kept messages are the room's last, without gaps: seq `first` is at index 0.
        let first = self.seq + 1 - self.messages.len() as u64;
        let (mut at, forward) = match position {
            Position::After(since) => {
                let is = |epoch: &Option<String>| epoch.as_deref() == Some(since.epoch.as_str());
                selected.known = self.epoch.is_some()
                    && ((is(&self.epoch) && since.seq <= self.seq)
                        || (is(&self.prev_epoch) && since.seq <= self.carried));
                if !selected.known {
                    return selected;
                }
                ((since.seq + 1).max(first), true)
            }
            Position::Before(before) => {
                let before = if before == 0 { self.seq + 1 } else { before };
                (before.min(self.seq + 1).saturating_sub(1), false)
            }
        };
        let kept = |seq: u64| seq >= first && seq >= 1 && seq <= self.seq;
        let mut bytes = 0;
        while selected.messages.len() < limit && bytes < max_bytes && kept(at) {
            let message = &self.messages[(at - first) as usize];
            bytes += serde_json::to_vec(message).map_or(0, |json| json.len());
            selected.messages.push(message.clone());
            at = if forward { at + 1 } else { at - 1 };
        }
        selected.more = kept(at);
        if !forward {
            selected.messages.reverse();
        }
        selected
    }
}

/// History in Redis (shared by the cluster) or in memory (single node).
pub enum History {
    Redis {
        client: Client,
        keys: HistoryKeys,
        keep: usize,
        ttl_secs: u64,
        retry_window: Duration,
    },
    Memory {
        rooms: Mutex<MemoryRooms>,
        keep: usize,
        hub: MemoryHub,
    },
}

/// How often the single node looks for rooms whose history expired.
const ROOM_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A single node's rooms and remembered clientIds.
pub struct MemoryRooms {
    /// Each room's history, and when it was last posted to.
    rooms: HashMap<String, (Kept, Instant)>,
    /// A room's history is forgotten this long after its last message, as Redis expires it.
    ttl: Duration,
    last_sweep: Instant,
    sent: HashMap<String, Message>,
    /// `sent` in the order it expires.
    expiring: VecDeque<(Instant, String)>,
}

impl History {
    /// History in Redis under `keys` ([`HistoryKeys::in_slot_of`] with sharded pub/sub), whose
    /// clientIds are remembered longer than `retry_window` and forgotten within three
    /// ([`RETRY_WINDOW`] in the chat; see `lua/post.lua`).
    pub fn redis(
        client: Client,
        keys: HistoryKeys,
        keep: usize,
        ttl_secs: u64,
        retry_window: Duration,
    ) -> Self {
        Self::Redis {
            client,
            keys,
            keep,
            ttl_secs,
            retry_window,
        }
    }

    /// History of a single node, whose broadcasts go through `hub`; a room's expires `ttl` after
    /// its last message.
    pub fn memory(keep: usize, ttl: Duration, hub: MemoryHub) -> Self {
        Self::Memory {
            rooms: Mutex::new(MemoryRooms {
                rooms: HashMap::new(),
                ttl,
                last_sweep: Instant::now(),
                sent: HashMap::new(),
                expiring: VecDeque::new(),
            }),
            keep,
            hub,
        }
    }

    /// Gives `draft` the room's next seq, keeps it and publishes `broadcast` filled with its id,
    /// seq and epoch, all in one step; or returns the stored message for a retry of its
    /// `clientId`.
    pub async fn post(
        &self,
        nsp: &str,
        draft: &Draft<'_>,
        broadcast: &BroadcastTemplate,
    ) -> Result<Posted, HistoryError> {
        match self {
            Self::Redis {
                client,
                keys,
                keep,
                ttl_secs,
                retry_window,
            } => {
                let mut function_keys =
                    vec![keys.sequence(nsp, draft.room), keys.list(nsp, draft.room)];
                let record = match draft.client_id {
                    Some(client_id) => {
                        function_keys.extend(keys.retry_records(nsp, draft.room));
                        retry_field(&draft.from.id, client_id)
                    }
                    None => String::new(),
                };
                let mut args: Vec<RedisValue> = vec![
                    serde_json::to_string(draft)?.into(),
                    keep.to_string().into(),
                    ttl_secs.to_string().into(),
                    new_epoch().into(),
                    retry_window.as_secs().max(1).to_string().into(),
                    record.into(),
                    draft.ts.to_string().into(),
                    broadcast.publish_command().into(),
                    broadcast.channel().into(),
                    broadcast.holes().len().to_string().into(),
                ];
                args.extend(broadcast.holes().iter().map(|h| h.as_str().into()));
                args.extend(
                    broadcast
                        .parts()
                        .iter()
                        .map(|p| RedisValue::Bytes(p.clone().into())),
                );
                let placed: (i64, String, u64, Option<u64>) =
                    POST.call(client, function_keys, args).await?;
                let (fresh, epoch, seq, first_ts) = placed;
                let mut message = draft.placed(&epoch, seq);
                message.ts = first_ts.unwrap_or(message.ts);
                Ok(Posted {
                    message,
                    fresh: fresh == 1,
                })
            }
            Self::Memory { rooms, keep, hub } => {
                let mut rooms = rooms.lock().unwrap();
                rooms.forget_expired(Instant::now());
                let sent_key = draft.client_id.map(|client_id| {
                    format!("{}\n{}\n{client_id}", place(nsp, draft.room), draft.from.id)
                });
                if let Some(stored) = sent_key.as_ref().and_then(|k| rooms.sent.get(k)) {
                    return Ok(Posted {
                        message: stored.clone(),
                        fresh: false,
                    });
                }
                let (room, last_post) = rooms
                    .rooms
                    .entry(place(nsp, draft.room))
                    .or_insert_with(|| (Kept::default(), Instant::now()));
                *last_post = Instant::now();
                room.seq += 1;
                let epoch = room.epoch.get_or_insert_with(new_epoch).clone();
                let message = draft.placed(&epoch, room.seq);
                if *keep > 0 {
                    room.messages.push(message.clone());
                    let excess = room.messages.len().saturating_sub(*keep);
                    room.messages.drain(..excess);
                }
                let payload = broadcast.fill(|hole| match hole {
                    "id" => json!(message.id),
                    "seq" => json!(message.seq),
                    _ => json!(message.epoch),
                })?;
                // Published under the lock, so broadcasts leave in seq order.
                hub.publish(broadcast.channel().to_string(), payload);
                if let Some(key) = sent_key {
                    rooms
                        .expiring
                        .push_back((Instant::now() + RETRY_WINDOW, key.clone()));
                    rooms.sent.insert(key, message.clone());
                }
                Ok(Posted {
                    message,
                    fresh: true,
                })
            }
        }
    }

    /// At most `limit` of the room's kept messages from `position`, ending with the one that
    /// reaches `max_bytes` of stored JSON; reads what it returns, whatever the room keeps.
    pub async fn select(
        &self,
        nsp: &str,
        room: &str,
        position: Position<'_>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Selected, HistoryError> {
        match self {
            Self::Redis { client, keys, .. } => {
                let (direction, seq, epoch) = match position {
                    Position::Before(seq) => ("before", seq, ""),
                    Position::After(since) => ("after", since.seq, since.epoch.as_str()),
                };
                let function_keys = vec![keys.sequence(nsp, room), keys.list(nsp, room)];
                let args = vec![
                    direction.to_string(),
                    seq.to_string(),
                    epoch.to_string(),
                    limit.min(u32::MAX as usize).to_string(),
                    max_bytes.min(u32::MAX as usize).to_string(),
                ];
                let (epoch, seq, known, more, entries): (
                    Option<String>,
                    u64,
                    i64,
                    i64,
                    Vec<String>,
                ) = PAGE
                    .evalsha_with_reload(client, function_keys, args)
                    .await?;
                let messages = match &epoch {
                    Some(epoch) => entries
                        .iter()
                        .map(|m| Ok(serde_json::from_str::<Entry>(m)?.placed(room, epoch)))
                        .collect::<Result<_, HistoryError>>()?,
                    None => Vec::new(),
                };
                Ok(Selected {
                    epoch,
                    seq,
                    known: known == 1,
                    more: more == 1,
                    messages,
                })
            }
            Self::Memory { rooms, .. } => {
                let mut rooms = rooms.lock().unwrap();
                rooms.forget_expired(Instant::now());
                Ok(rooms
                    .rooms
                    .get(&place(nsp, room))
                    .map(|(kept, _)| kept.select(position, limit, max_bytes))
                    .unwrap_or_else(|| Kept::default().select(position, limit, max_bytes)))
            }
        }
    }
}

impl MemoryRooms {
    /// Forgets the clientIds past the retry window and, once a minute, the rooms past their TTL.
    fn forget_expired(&mut self, now: Instant) {
        while let Some((at, key)) = self.expiring.front() {
            if *at > now {
                break;
            }
            self.sent.remove(key);
            self.expiring.pop_front();
        }
        if now.saturating_duration_since(self.last_sweep) >= ROOM_SWEEP_INTERVAL {
            self.last_sweep = now;
            let ttl = self.ttl;
            self.rooms
                .retain(|_, (_, last_post)| now.saturating_duration_since(*last_post) < ttl);
        }
    }
}

/// The field of a retry record in the room's hash of them: the sender's id and the clientId,
/// the length first, so that user ids with `:` cannot reach another user's record.
fn retry_field(user: &str, client_id: &str) -> String {
    format!("{}:{user}:{client_id}", user.len())
}

/// A new epoch: random, so a room whose sequence was lost never reuses one.
fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
pub(crate) mod tests {
    use futures_util::StreamExt;
    use socketio_cluster::{Cluster, ClusterConfig, Driver, Incoming, MemoryDriver};

    use super::*;

    pub(crate) fn alice() -> Member {
        Member {
            id: "a".into(),
            name: "Alice".into(),
        }
    }

    /// A memory history, and a subscriber of what it publishes.
    pub(crate) fn memory(keep: usize) -> (History, Cluster<MemoryDriver>, MemoryDriver) {
        let hub = MemoryHub::new();
        let cluster = Cluster::new(hub.driver(), ClusterConfig::default());
        let ttl = Duration::from_secs(3600);
        (
            History::memory(keep, ttl, hub.clone()),
            cluster,
            hub.driver(),
        )
    }

    pub(crate) async fn post(
        history: &History,
        cluster: &Cluster<MemoryDriver>,
        text: &str,
        client_id: Option<&str>,
    ) -> Posted {
        let from = alice();
        let draft = Draft {
            room: "r",
            from: &from,
            text,
            ts: 0,
            client_id,
        };
        let template = cluster
            .broadcast_template("/", "r", "message", &draft.with_holes().unwrap())
            .unwrap();
        history.post("/", &draft, &template).await.unwrap()
    }

    pub(crate) fn texts(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.text.as_str()).collect()
    }

    pub(crate) fn since(m: &Message) -> Since {
        Since {
            epoch: m.epoch.clone(),
            seq: m.seq,
        }
    }

    #[tokio::test]
    async fn posts_are_numbered_kept_and_published_in_order() {
        let (history, cluster, subscriber) = memory(2);
        subscriber
            .subscribe(vec![], vec!["socket.io#/#*".into()])
            .await
            .unwrap();
        let mut incoming = subscriber.incoming();
        for text in ["1", "2", "3"] {
            post(&history, &cluster, text, None).await;
        }
        let kept = history
            .select("/", "r", Position::Before(0), usize::MAX, usize::MAX)
            .await
            .unwrap();
        assert_eq!(texts(&kept.messages), ["2", "3"]);
        assert_eq!(kept.messages[0].seq, 2);
        assert_eq!(kept.messages[0].epoch, kept.messages[1].epoch);
        assert!(!kept.more, "seq 1 is no longer kept");
        for seq in 1..=3 {
            let Some(Incoming::Message { payload, .. }) = incoming.next().await else {
                panic!("a broadcast per post");
            };
            let text = String::from_utf8_lossy(&payload).to_string();
            assert!(text.contains(&format!(":{seq}")), "{text}");
        }
    }

    #[tokio::test]
    async fn a_single_nodes_room_history_expires_after_its_last_message() {
        let (history, cluster, _) = memory(10);
        let first = post(&history, &cluster, "old", None).await;
        let History::Memory { rooms, .. } = &history else {
            unreachable!()
        };
        let later = Instant::now() + Duration::from_secs(3600) + ROOM_SWEEP_INTERVAL;
        rooms.lock().unwrap().forget_expired(later);
        assert!(rooms.lock().unwrap().rooms.is_empty());
        let next = post(&history, &cluster, "new", None).await;
        assert_eq!(next.message.seq, 1, "an expired room starts over");
        assert_ne!(next.message.epoch, first.message.epoch);
    }

    #[tokio::test]
    async fn a_retry_returns_the_stored_message_and_posts_nothing() {
        let (history, cluster, _) = memory(10);
        let first = post(&history, &cluster, "hi", Some("c1")).await;
        let retry = post(&history, &cluster, "hi", Some("c1")).await;
        let other = post(&history, &cluster, "hi", Some("c2")).await;
        assert!(first.fresh && !retry.fresh && other.fresh);
        assert_eq!(retry.message, first.message);
        assert_eq!(first.message.client_id.as_deref(), Some("c1"));
        assert_eq!(other.message.seq, 2);
    }

    /// Message `seq` of room `r` in `epoch`, its text the seq.
    fn kept_message(epoch: &str, seq: u64) -> Message {
        Message {
            id: format!("{epoch}:{seq}"),
            room: "r".into(),
            seq,
            epoch: epoch.into(),
            from: alice(),
            text: seq.to_string(),
            ts: 0,
            client_id: None,
        }
    }

    #[test]
    fn a_failover_carries_its_seqs_into_the_new_epoch() {
        // The promoted replica had seqs 1-3 of epoch "old" (the old primary had acked 4), and
        // numbered 4 and 5 in epoch "new".
        let kept = Kept {
            epoch: Some("new".into()),
            seq: 5,
            messages: (1..=5).map(|seq| kept_message("new", seq)).collect(),
            prev_epoch: Some("old".into()),
            carried: 3,
        };
        let after = |epoch: &str, seq| {
            let since = Since {
                epoch: epoch.into(),
                seq,
            };
            kept.select(Position::After(&since), usize::MAX, usize::MAX)
        };
        let after_2 = after("old", 2);
        assert!(after_2.known);
        assert_eq!(texts(&after_2.messages), ["3", "4", "5"]);
        assert_eq!(texts(&after("old", 3).messages), ["4", "5"]);
        // Old 4 was never numbered here: that position is not the room's.
        assert!(!after("old", 4).known);
        assert!(!after("older", 1).known);
        assert!(!after("new", 6).known, "a seq the room never gave");
        assert!(after("new", 5).known);
    }

    #[test]
    fn a_selection_pages_by_position_and_says_whether_more_is_kept() {
        // Seqs 4 to 10 kept of 10.
        let kept = Kept {
            epoch: Some("e".into()),
            seq: 10,
            messages: (4..=10).map(|seq| kept_message("e", seq)).collect(),
            prev_epoch: None,
            carried: 0,
        };
        let since = |seq| Since {
            epoch: "e".into(),
            seq,
        };
        let (since_1, since_4, since_7) = (since(1), since(4), since(7));
        let page = |position, limit| kept.select(position, limit, usize::MAX);
        let newest = page(Position::Before(0), 3);
        assert_eq!(
            (texts(&newest.messages), newest.more),
            (vec!["8", "9", "10"], true)
        );
        let back = page(Position::Before(8), 3);
        assert_eq!(
            (texts(&back.messages), back.more),
            (vec!["5", "6", "7"], true)
        );
        let oldest = page(Position::Before(5), 3);
        assert_eq!((texts(&oldest.messages), oldest.more), (vec!["4"], false));
        assert!(page(Position::Before(4), 3).messages.is_empty());
        let on = page(Position::After(&since_4), 3);
        assert_eq!((texts(&on.messages), on.more), (vec!["5", "6", "7"], true));
        let last = page(Position::After(&since_7), 3);
        assert_eq!(
            (texts(&last.messages), last.more),
            (vec!["8", "9", "10"], false)
        );
        // Seqs 2 and 3 are gone: the page starts at the oldest kept, and the gap shows.
        let gap = page(Position::After(&since_1), 2);
        assert_eq!(texts(&gap.messages), ["4", "5"]);
        let one = serde_json::to_vec(&kept.messages[6]).unwrap().len();
        let by_bytes = kept.select(Position::Before(0), usize::MAX, one + 1);
        assert_eq!(
            texts(&by_bytes.messages),
            ["9", "10"],
            "ends with the one that reaches it"
        );
    }
}
