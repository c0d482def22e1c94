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
static READ: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("lua/read.lua")));

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

/// What a `join` ack carries of the room's messages.
#[derive(Debug, PartialEq)]
pub struct Recovery {
    pub history: Vec<Message>,
    /// Whether `history` is exactly what came after the client's `since`; absent without one.
    pub recovered: Option<bool>,
    /// The room's epoch now (none before its first message). A client recovered from `since`
    /// in an earlier epoch continues in this one: a failover carried its messages over.
    pub epoch: Option<String>,
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
    /// The messages after `since` if they are all kept and fit in `max_bytes`; else the newest
    /// that fit, for the client to start over.
    fn recover(self, since: Option<&Since>, max_bytes: usize) -> Recovery {
        let Some(since) = since else {
            return Recovery {
                history: newest_within(self.messages, max_bytes),
                recovered: None,
                epoch: self.epoch,
            };
        };
        // A failover relabelled the messages this Redis kept: a client holding no more than
        // those lost nothing and continues in the new epoch.
        let carried_over =
            self.prev_epoch.as_deref() == Some(since.epoch.as_str()) && since.seq <= self.carried;
        if (carried_over || self.epoch.as_deref() == Some(since.epoch.as_str()))
            && since.seq <= self.seq
        {
            let missed: Vec<Message> = self
                .messages
                .iter()
                .filter(|m| m.seq > since.seq)
                .cloned()
                .collect();
            let complete = missed.len() as u64 == self.seq - since.seq;
            let count = missed.len();
            let fitting = newest_within(missed, max_bytes);
            if complete && fitting.len() == count {
                return Recovery {
                    history: fitting,
                    recovered: Some(true),
                    epoch: self.epoch,
                };
            }
        }
        Recovery {
            history: newest_within(self.messages, max_bytes),
            recovered: Some(false),
            epoch: self.epoch,
        }
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

    /// What a client joining the room gets of its messages (see [`Recovery`]).
    pub async fn recover(
        &self,
        nsp: &str,
        room: &str,
        since: Option<&Since>,
        max_bytes: usize,
    ) -> Result<Recovery, HistoryError> {
        let kept = match self {
            Self::Redis { client, keys, .. } => {
                let script_keys = vec![keys.sequence(nsp, room), keys.list(nsp, room)];
                let (epoch, seq, stored, prev_epoch, carried): (
                    Option<String>,
                    u64,
                    Vec<String>,
                    Option<String>,
                    u64,
                ) = READ
                    .evalsha_with_reload(client, script_keys, Vec::<String>::new())
                    .await?;
                let messages = match &epoch {
                    Some(epoch) => stored
                        .iter()
                        .map(|m| Ok(serde_json::from_str::<Entry>(m)?.placed(room, epoch)))
                        .collect::<Result<_, HistoryError>>()?,
                    None => Vec::new(),
                };
                Kept {
                    epoch,
                    seq,
                    messages,
                    prev_epoch,
                    carried,
                }
            }
            Self::Memory { rooms, .. } => {
                let mut rooms = rooms.lock().unwrap();
                rooms.forget_expired(Instant::now());
                rooms
                    .rooms
                    .get(&place(nsp, room))
                    .map(|(kept, _)| kept.clone())
                    .unwrap_or_default()
            }
        };
        Ok(kept.recover(since, max_bytes))
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

/// The newest of `messages` (oldest first) whose JSON fits in `max_bytes`, oldest first: what a
/// `join` ack carries, so that a client rejoining in a loop cannot make a node queue a room's
/// whole history each time.
fn newest_within(mut messages: Vec<Message>, max_bytes: usize) -> Vec<Message> {
    let mut total = 0;
    let kept = messages
        .iter()
        .rev()
        .take_while(|m| {
            total += serde_json::to_vec(m).map_or(usize::MAX, |json| json.len() + 1);
            total <= max_bytes
        })
        .count();
    messages.split_off(messages.len() - kept)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use socketio_cluster::{Cluster, ClusterConfig, Driver, Incoming, MemoryDriver};

    use super::*;

    fn alice() -> Member {
        Member {
            id: "a".into(),
            name: "Alice".into(),
        }
    }

    /// A memory history, and a subscriber of what it publishes.
    fn memory(keep: usize) -> (History, Cluster<MemoryDriver>, MemoryDriver) {
        let hub = MemoryHub::new();
        let cluster = Cluster::new(hub.driver(), ClusterConfig::default());
        let ttl = Duration::from_secs(3600);
        (
            History::memory(keep, ttl, hub.clone()),
            cluster,
            hub.driver(),
        )
    }

    async fn post(
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

    fn texts(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.text.as_str()).collect()
    }

    fn since(m: &Message) -> Since {
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
        let kept = history.recover("/", "r", None, usize::MAX).await.unwrap();
        assert_eq!(texts(&kept.history), ["2", "3"]);
        assert_eq!(kept.history[0].seq, 2);
        assert_eq!(kept.history[0].epoch, kept.history[1].epoch);
        assert_eq!(kept.recovered, None);
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

    #[test]
    fn a_failover_relabels_without_a_false_alarm_and_a_real_loss_still_shows() {
        let message = |seq: u64| Message {
            id: format!("new:{seq}"),
            room: "r".into(),
            seq,
            epoch: "new".into(),
            from: alice(),
            text: seq.to_string(),
            ts: 0,
            client_id: None,
        };
        // The promoted replica had seqs 1-3 of epoch "old" (the old primary had acked 4), and
        // numbered 4 and 5 in epoch "new".
        let kept = Kept {
            epoch: Some("new".into()),
            seq: 5,
            messages: (1..=5).map(message).collect(),
            prev_epoch: Some("old".into()),
            carried: 3,
        };
        let since = |epoch: &str, seq| Since {
            epoch: epoch.into(),
            seq,
        };
        let after_2 = kept.clone().recover(Some(&since("old", 2)), usize::MAX);
        assert_eq!(after_2.recovered, Some(true));
        assert_eq!(texts(&after_2.history), ["3", "4", "5"]);
        let after_3 = kept.clone().recover(Some(&since("old", 3)), usize::MAX);
        assert_eq!(after_3.recovered, Some(true));
        assert_eq!(texts(&after_3.history), ["4", "5"]);
        // Holding old 4, which the new epoch never had: a real loss, the client starts over.
        let after_4 = kept.clone().recover(Some(&since("old", 4)), usize::MAX);
        assert_eq!(after_4.recovered, Some(false));
        assert_eq!(texts(&after_4.history), ["1", "2", "3", "4", "5"]);
        let unknown = kept.recover(Some(&since("older", 1)), usize::MAX);
        assert_eq!(unknown.recovered, Some(false));
    }

    #[tokio::test]
    async fn a_client_recovers_exactly_what_it_missed_while_it_is_kept() {
        let (history, cluster, _) = memory(3);
        let mut posted = Vec::new();
        for text in ["1", "2", "3", "4", "5"] {
            posted.push(post(&history, &cluster, text, None).await.message);
        }
        let recover = |s: Since| {
            let history = &history;
            async move {
                history
                    .recover("/", "r", Some(&s), usize::MAX)
                    .await
                    .unwrap()
            }
        };
        let caught_up = recover(since(&posted[4])).await;
        assert_eq!(caught_up.recovered, Some(true));
        assert!(caught_up.history.is_empty());
        let missed_two = recover(since(&posted[2])).await;
        assert_eq!(missed_two.recovered, Some(true));
        assert_eq!(texts(&missed_two.history), ["4", "5"]);
        let too_old = recover(since(&posted[0])).await;
        assert_eq!(too_old.recovered, Some(false));
        assert_eq!(texts(&too_old.history), ["3", "4", "5"]);
        let other_epoch = recover(Since {
            epoch: "lost".into(),
            seq: 4,
        })
        .await;
        assert_eq!(other_epoch.recovered, Some(false));
        let ahead = recover(Since {
            epoch: posted[0].epoch.clone(),
            seq: 9,
        })
        .await;
        assert_eq!(ahead.recovered, Some(false));
    }

    #[tokio::test]
    async fn a_gap_beyond_the_ack_budget_is_not_recovered_and_the_newest_that_fit_come() {
        let (history, cluster, _) = memory(10);
        let mut posted = Vec::new();
        for text in ["one", "two", "three"] {
            posted.push(post(&history, &cluster, text, None).await.message);
        }
        let one = serde_json::to_vec(&posted[2]).unwrap().len() + 1;
        let all = history.recover("/", "r", None, one * 2 + 1).await.unwrap();
        assert_eq!(texts(&all.history), ["two", "three"]);
        let fits = history
            .recover("/", "r", Some(&since(&posted[0])), one * 2 + 1)
            .await
            .unwrap();
        assert_eq!(fits.recovered, Some(true));
        let too_big = history
            .recover("/", "r", Some(&since(&posted[0])), one)
            .await
            .unwrap();
        assert_eq!(too_big.recovered, Some(false));
        assert_eq!(texts(&too_big.history), ["three"]);
    }

    #[tokio::test]
    async fn without_history_seqs_still_count_and_only_a_caught_up_client_recovers() {
        let (history, cluster, _) = memory(0);
        let a = post(&history, &cluster, "x", None).await.message;
        let b = post(&history, &cluster, "y", None).await.message;
        assert_eq!((a.seq, b.seq), (1, 2));
        let caught_up = history
            .recover("/", "r", Some(&since(&b)), usize::MAX)
            .await
            .unwrap();
        assert_eq!(caught_up.recovered, Some(true));
        let behind = history
            .recover("/", "r", Some(&since(&a)), usize::MAX)
            .await
            .unwrap();
        assert_eq!(behind.recovered, Some(false));
    }
}
