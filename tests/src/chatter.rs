//! A chat user that follows the recovery rules of `shared/PROTOCOL.md` ("Messages, order and
//! recovery"), as the web client does: it sends every message with a `clientId` and retries it
//! until acked, reconnects (to the next address) when its connection or node goes away, rejoins
//! with `since` after every reconnect and after a gap in the live `seq`s, and keeps its view of
//! the room by `seq`. Crash and rolling-restart tests run many of them and check their views.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{Client, Received};

/// What happened to one chatter, summed up by a test.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChatterStats {
    pub sent: u64,
    pub reconnects: u64,
    pub recovered_joins: u64,
    pub unrecovered_joins: u64,
    /// Sends that needed more than one attempt.
    pub retried: u64,
    /// Retries answered with the message an earlier attempt had stored.
    pub deduplicated: u64,
    /// Live messages after which a `seq` was missing, so the chatter rejoined with `since`.
    pub gaps: u64,
    /// `history` pages fetched after a join whose ack held only part of what was missed.
    pub pages: u64,
}

impl ChatterStats {
    /// What happened to all of `chatters`.
    pub fn total(chatters: &[Chatter]) -> Self {
        chatters.iter().fold(Self::default(), |t, c| {
            let o = c.stats;
            Self {
                sent: t.sent + o.sent,
                reconnects: t.reconnects + o.reconnects,
                recovered_joins: t.recovered_joins + o.recovered_joins,
                unrecovered_joins: t.unrecovered_joins + o.unrecovered_joins,
                retried: t.retried + o.retried,
                deduplicated: t.deduplicated + o.deduplicated,
                gaps: t.gaps + o.gaps,
                pages: t.pages + o.pages,
            }
        })
    }
}

impl std::fmt::Display for ChatterStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reconnects {}, recovered joins {}, unrecovered joins {}, retried sends {}, \
             deduplicated retries {}, gaps healed {}, history pages {}",
            self.reconnects,
            self.recovered_joins,
            self.unrecovered_joins,
            self.retried,
            self.deduplicated,
            self.gaps,
            self.pages
        )
    }
}

/// A chatter of one room.
pub struct Chatter {
    pub name: String,
    room: String,
    ports: Vec<u16>,
    next_port: usize,
    client: Option<Client>,
    epoch: Option<String>,
    /// The room as this chatter knows it, by seq.
    view: BTreeMap<u64, Value>,
    /// The last live `seq` in order since the last join: a live message beyond the next one
    /// means some were missed. (Acks of its own messages may run ahead of the live ones.)
    last_live: u64,
    sends: u64,
    connected_once: bool,
    pub stats: ChatterStats,
}

/// How long a connect or a request may take before the chatter tries again elsewhere.
const RETRY_AFTER: Duration = Duration::from_millis(300);
/// How long the chatter keeps trying to reach some node.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

impl Chatter {
    /// Connects to the first of `ports` that answers (moving on to the next ones when a node is
    /// down) and joins `room`.
    pub async fn join(name: &str, room: &str, ports: Vec<u16>) -> anyhow::Result<Self> {
        let mut chatter = Self {
            name: name.to_string(),
            room: room.to_string(),
            ports,
            next_port: 0,
            client: None,
            epoch: None,
            view: BTreeMap::new(),
            last_live: 0,
            sends: 0,
            connected_once: false,
            stats: ChatterStats::default(),
        };
        chatter.connect().await?;
        Ok(chatter)
    }

    /// The messages this chatter holds, by seq.
    pub fn view(&self) -> &BTreeMap<u64, Value> {
        &self.view
    }

    /// The room's epoch as this chatter knows it.
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// Sends `text` with a new clientId, retrying until acked; returns the stored message.
    pub async fn send(&mut self, text: &str) -> anyhow::Result<Value> {
        self.sends += 1;
        let client_id = format!("{}-{}", self.name, self.sends);
        let payload = json!({ "room": self.room, "text": text, "clientId": client_id });
        let started = std::time::Instant::now();
        let mut attempts = 0;
        loop {
            if self.client.is_none() {
                self.connect().await?;
            }
            attempts += 1;
            let attempt_ms = now_ms();
            match self.request("message", &payload).await {
                Ok(ack) if ack["ok"] == json!(true) => {
                    let message = ack["message"].clone();
                    self.stats.sent += 1;
                    if attempts > 1 {
                        self.stats.retried += 1;
                        if message["ts"].as_u64().is_some_and(|ts| ts < attempt_ms) {
                            self.stats.deduplicated += 1;
                        }
                    }
                    self.hold(&message);
                    return Ok(message);
                }
                Ok(ack) if is_final(&ack) => bail!("{}: message refused: {ack}", self.name),
                _ => {}
            }
            if started.elapsed() > GIVE_UP_AFTER {
                bail!("{}: `{text}` was never acked", self.name);
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    /// Reads what arrived for `wait`: live messages, and disconnects (after which it reconnects
    /// and rejoins). Rejoins with `since` after a gap.
    pub async fn listen(&mut self, wait: Duration) -> anyhow::Result<()> {
        let Some(client) = self.client.as_mut() else {
            return self.connect().await;
        };
        let received = client.drain(wait).await;
        self.take(received).await
    }

    /// Rejoins with `since` (as after a reconnect), so that it holds everything said so far.
    pub async fn catch_up(&mut self) -> anyhow::Result<()> {
        self.listen(Duration::from_millis(200)).await?;
        self.rejoin().await
    }

    async fn take(&mut self, received: Vec<Received>) -> anyhow::Result<()> {
        let mut gap = false;
        let mut lost = false;
        for r in received {
            match r {
                Received::Event { name, args } if name == "message" => {
                    let message = &args[0];
                    let seq = message["seq"].as_u64().unwrap_or(0);
                    let in_epoch = self.hold(message);
                    gap |= !in_epoch || seq > self.last_live + 1;
                    self.last_live = self.last_live.max(seq);
                }
                Received::Disconnected => lost = true,
                Received::Event { .. } => {}
            }
        }
        if lost {
            self.client = None;
            self.connect().await
        } else if gap {
            self.stats.gaps += 1;
            self.rejoin().await
        } else {
            Ok(())
        }
    }

    /// Adds a message to the view; false when it belongs to another epoch than the view.
    fn hold(&mut self, message: &Value) -> bool {
        let (Some(seq), Some(epoch)) = (message["seq"].as_u64(), message["epoch"].as_str()) else {
            return false;
        };
        match &self.epoch {
            None => self.epoch = Some(epoch.to_string()),
            Some(known) if known != epoch => return false,
            Some(_) => {}
        }
        self.view.insert(seq, message.clone());
        true
    }

    /// The highest seq up to which the view has no gap.
    fn contiguous(&self) -> u64 {
        let mut last = self.view.keys().next().map_or(0, |first| first - 1);
        for &seq in self.view.keys() {
            if seq != last + 1 {
                break;
            }
            last = seq;
        }
        last
    }

    async fn rejoin(&mut self) -> anyhow::Result<()> {
        loop {
            if self.client.is_none() {
                return self.connect().await;
            }
            match self.join_room().await {
                Ok(()) => return Ok(()),
                Err(_) => self.client = None,
            }
        }
    }

    /// Connects to some node and joins, trying the addresses in turn until one answers.
    async fn connect(&mut self) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        loop {
            let port = self.ports[self.next_port % self.ports.len()];
            self.next_port += 1;
            let auth = json!({ "userId": self.name, "name": self.name });
            let connected = tokio::time::timeout(
                Duration::from_secs(3),
                Client::connect(port, "/", auth, json!(1)),
            )
            .await;
            if let Ok(Ok(client)) = connected {
                self.client = Some(client);
                if std::mem::replace(&mut self.connected_once, true) {
                    self.stats.reconnects += 1;
                }
                if self.join_room().await.is_ok() {
                    return Ok(());
                }
                self.client = None;
            }
            if started.elapsed() > GIVE_UP_AFTER {
                bail!("{}: no node answered for {GIVE_UP_AFTER:?}", self.name);
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    /// Joins the room with `since` when it holds messages, and merges the history.
    async fn join_room(&mut self) -> anyhow::Result<()> {
        let mut payload = json!({ "room": self.room });
        if let Some(epoch) = &self.epoch {
            payload["since"] = json!({ "epoch": epoch, "seq": self.contiguous() });
        }
        let ack = self.request("join", &payload).await?;
        if ack["ok"] != json!(true) {
            bail!("{}: join refused: {ack}", self.name);
        }
        let history = ack["history"].as_array().context("no history")?;
        match ack["recovered"].as_bool() {
            Some(true) => {
                self.stats.recovered_joins += 1;
                // Recovered across a failover: the messages held keep their seqs in the epoch
                // the room has now.
                if let Some(epoch) = ack["epoch"].as_str() {
                    self.epoch = Some(epoch.to_string());
                }
            }
            Some(false) => {
                self.stats.unrecovered_joins += 1;
                self.view.clear();
                self.epoch = None;
            }
            None => {}
        }
        for message in history {
            self.hold(message);
        }
        // What it missed did not fit the ack: it pages on (`history { after }`).
        let mut more = ack["more"] == json!(true);
        while more {
            let after = json!({ "epoch": self.epoch, "seq": self.contiguous() });
            let page = self
                .request("history", &json!({ "room": self.room, "after": after }))
                .await?;
            self.stats.pages += 1;
            let messages = page["messages"].as_array().context("no messages")?;
            for message in messages {
                self.hold(message);
            }
            more = page["more"] == json!(true) && !messages.is_empty();
        }
        self.last_live = self.contiguous();
        // Live messages that came with the ack.
        let received = match self.client.as_mut() {
            Some(client) => client.drain(Duration::ZERO).await,
            None => Vec::new(),
        };
        Box::pin(self.take(received)).await
    }

    /// One request on the current connection; an error when there is none or it broke.
    async fn request(&mut self, event: &str, payload: &Value) -> anyhow::Result<Value> {
        let client = self.client.as_mut().context("not connected")?;
        match client
            .emit_with_ack(event, std::slice::from_ref(payload))
            .await
        {
            Ok(mut ack) if !ack.is_empty() => Ok(ack.swap_remove(0)),
            Ok(_) => bail!("empty ack"),
            Err(err) => {
                // A connection that stopped answering is replaced by the caller.
                self.client = None;
                Err(err)
            }
        }
    }
}

/// Whether an error ack means a retry cannot succeed.
fn is_final(ack: &Value) -> bool {
    matches!(
        ack["error"]["code"].as_str(),
        Some("bad_request" | "too_long" | "not_in_room" | "unauthorized")
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Checks that every chatter of a room holds exactly the room's messages `1..=n` of one epoch,
/// that each send appears once (by clientId), and that the history a fresh join gets agrees.
/// Returns n.
pub fn check_room(room: &str, chatters: &[&Chatter], history: &[Value]) -> anyhow::Result<u64> {
    let first = chatters.first().context("no chatter")?;
    let n = first.view.len() as u64;
    let expected: Vec<u64> = (1..=n).collect();
    let sent: u64 = chatters.iter().map(|c| c.stats.sent).sum();
    for c in chatters {
        let seqs: Vec<u64> = c.view.keys().copied().collect();
        anyhow::ensure!(
            seqs == expected,
            "{room}: {} holds seqs {seqs:?}, expected 1..={n}",
            c.name
        );
        anyhow::ensure!(
            c.epoch == first.epoch,
            "{room}: {} is in another epoch",
            c.name
        );
        anyhow::ensure!(
            c.view == first.view,
            "{room}: {} and {} hold different messages",
            c.name,
            first.name
        );
    }
    let mut client_ids: Vec<&str> = first
        .view
        .values()
        .filter_map(|m| m["clientId"].as_str())
        .collect();
    client_ids.sort_unstable();
    client_ids.dedup();
    anyhow::ensure!(
        client_ids.len() as u64 == n && n == sent,
        "{room}: {n} messages, {} distinct clientIds, {sent} acked sends",
        client_ids.len()
    );
    let history: Vec<&Value> = history.iter().collect();
    let view: Vec<&Value> = first.view.values().collect();
    anyhow::ensure!(
        history == view,
        "{room}: the history differs from what the chatters hold"
    );
    Ok(n)
}
