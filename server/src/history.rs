//! Messages kept per room, and the ids that order them.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use std::sync::LazyLock;

use fred::types::scripts::Script;
use fred::{clients::Client, interfaces::ListInterface};
use serde_json::json;
use socketio_cluster::keys::{HistoryKeys, place};

use crate::protocol::{Member, Message};

static ADD: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("lua/history_add.lua")));
static RETRACT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("lua/history_retract.lua")));

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("stored message is not valid: {0}")]
    Decode(#[from] serde_json::Error),
}

/// History in Redis (shared by the cluster) or in memory (single node).
pub enum History {
    Redis {
        client: Client,
        keys: HistoryKeys,
        keep: usize,
        ttl_secs: u64,
    },
    Memory {
        rooms: Mutex<HashMap<String, (u64, VecDeque<Message>)>>,
        keep: usize,
    },
}

impl History {
    pub fn redis(client: Client, key: &str, keep: usize, ttl_secs: u64) -> Self {
        Self::Redis {
            client,
            keys: HistoryKeys::new(key),
            keep,
            ttl_secs,
        }
    }

    pub fn memory(keep: usize) -> Self {
        Self::Memory {
            rooms: Mutex::default(),
            keep,
        }
    }

    /// Stores a new message (when history is on) and returns it with its id.
    pub async fn append(
        &self,
        nsp: &str,
        room: &str,
        from: &Member,
        text: &str,
        ts: u64,
    ) -> Result<Message, HistoryError> {
        match self {
            Self::Redis {
                client,
                keys,
                keep,
                ttl_secs,
            } => {
                let keys = vec![keys.seq(nsp, room), keys.list(nsp, room)];
                let body =
                    json!({ "room": room, "from": from, "text": text, "ts": ts }).to_string();
                let args = vec![body, keep.to_string(), ttl_secs.to_string()];
                let stored: String = ADD.evalsha_with_reload(client, keys, args).await?;
                Ok(serde_json::from_str(&stored)?)
            }
            Self::Memory { rooms, keep } => {
                let mut rooms = rooms.lock().unwrap();
                let (seq, kept) = rooms.entry(place(nsp, room)).or_default();
                *seq += 1;
                let message = Message {
                    id: format!("{seq:016}"),
                    room: room.to_string(),
                    from: from.clone(),
                    text: text.to_string(),
                    ts,
                };
                if *keep > 0 {
                    kept.push_back(message.clone());
                    while kept.len() > *keep {
                        kept.pop_front();
                    }
                }
                Ok(message)
            }
        }
    }

    /// Removes a message that was appended but could not be sent, so that nobody sees it
    /// later in the history either. Its id is not reused.
    pub async fn retract(&self, nsp: &str, room: &str, id: &str) -> Result<(), HistoryError> {
        match self {
            Self::Redis { client, keys, .. } => {
                let keys = vec![keys.list(nsp, room)];
                let _removed: u8 = RETRACT
                    .evalsha_with_reload(client, keys, vec![id.to_string()])
                    .await?;
            }
            Self::Memory { rooms, .. } => {
                if let Some((_, kept)) = rooms.lock().unwrap().get_mut(&place(nsp, room)) {
                    kept.retain(|m| m.id != id);
                }
            }
        }
        Ok(())
    }

    /// The kept messages of a room, oldest first.
    pub async fn recent(&self, nsp: &str, room: &str) -> Result<Vec<Message>, HistoryError> {
        match self {
            Self::Redis {
                client, keys, keep, ..
            } => {
                if *keep == 0 {
                    return Ok(Vec::new());
                }
                let stored: Vec<String> = client.lrange(keys.list(nsp, room), 0, -1).await?;
                stored
                    .iter()
                    .map(|m| Ok(serde_json::from_str(m)?))
                    .collect()
            }
            Self::Memory { rooms, .. } => Ok(rooms
                .lock()
                .unwrap()
                .get(&place(nsp, room))
                .map(|(_, kept)| kept.iter().cloned().collect())
                .unwrap_or_default()),
        }
    }
}

/// The newest of `messages` (oldest first) whose JSON fits in `max_bytes`, oldest first: what a
/// `join` ack carries, so that a client rejoining in a loop cannot make a node queue a room's
/// whole history each time.
pub fn newest_within(mut messages: Vec<Message>, max_bytes: usize) -> Vec<Message> {
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
    use super::*;

    fn alice() -> Member {
        Member {
            id: "a".into(),
            name: "Alice".into(),
        }
    }

    #[tokio::test]
    async fn memory_history_keeps_the_last_messages_with_ordered_ids() {
        let history = History::memory(2);
        for text in ["1", "2", "3"] {
            history.append("/", "r", &alice(), text, 0).await.unwrap();
        }
        let kept = history.recent("/", "r").await.unwrap();
        assert_eq!(
            kept.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["2", "3"]
        );
        assert!(kept[0].id < kept[1].id);
        assert!(history.recent("/", "other").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_retracted_message_leaves_the_history_and_its_id_is_not_reused() {
        let history = History::memory(10);
        let kept = history.append("/", "r", &alice(), "kept", 0).await.unwrap();
        let unsent = history
            .append("/", "r", &alice(), "unsent", 0)
            .await
            .unwrap();
        history.retract("/", "r", &unsent.id).await.unwrap();
        history.retract("/", "other", &unsent.id).await.unwrap();
        let next = history.append("/", "r", &alice(), "next", 0).await.unwrap();
        let recent = history.recent("/", "r").await.unwrap();
        assert_eq!(
            recent.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["kept", "next"]
        );
        assert!(kept.id < unsent.id && unsent.id < next.id);
    }

    #[tokio::test]
    async fn a_join_carries_the_newest_messages_that_fit_in_its_byte_budget() {
        let history = History::memory(10);
        for text in ["one", "two", "three"] {
            history.append("/", "r", &alice(), text, 0).await.unwrap();
        }
        let all = history.recent("/", "r").await.unwrap();
        let one = serde_json::to_vec(&all[2]).unwrap().len() + 1;
        let texts = |ms: Vec<Message>| ms.into_iter().map(|m| m.text).collect::<Vec<_>>();
        assert_eq!(
            texts(newest_within(all.clone(), one * 2 + 1)),
            ["two", "three"]
        );
        assert_eq!(
            texts(newest_within(all.clone(), usize::MAX)),
            ["one", "two", "three"]
        );
        assert!(newest_within(all, 10).is_empty());
    }

    #[tokio::test]
    async fn disabled_history_still_gives_unique_ids() {
        let history = History::memory(0);
        let a = history.append("/", "r", &alice(), "x", 0).await.unwrap();
        let b = history.append("/", "r", &alice(), "y", 0).await.unwrap();
        assert_ne!(a.id, b.id);
        assert!(history.recent("/", "r").await.unwrap().is_empty());
    }
}
