//! [`Driver`] in process: every [`MemoryDriver`] made from one [`MemoryHub`] sees the others'
//! messages, as Redis clients sharing a server do. For tests and single-process clusters.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Driver, Incoming, IncomingStream};
use crate::error::DriverError;

/// The shared "server" of in-memory drivers.
#[derive(Clone, Default)]
pub struct MemoryHub(Arc<Mutex<HubState>>);

#[derive(Default)]
struct HubState {
    sharded: bool,
    /// How long a subscription takes to land; see [`MemoryHub::with_subscribe_delay`].
    subscribe_delay: std::time::Duration,
    next_id: u64,
    subscribers: HashMap<u64, Subscriber>,
}

impl HubState {
    fn publish(&self, channel: String, payload: Vec<u8>) {
        let payload = Bytes::from(payload);
        for sub in self.subscribers.values() {
            // Like Redis, a message matching a channel and a pattern is delivered once for each.
            let matches = usize::from(sub.channels.contains(&channel))
                + sub
                    .patterns
                    .iter()
                    .filter(|p| glob_match(p, &channel))
                    .count();
            for _ in 0..matches {
                let _ = sub.tx.send(Incoming::Message {
                    channel: channel.clone(),
                    payload: payload.clone(),
                });
            }
        }
    }

    fn num_sub(&self, channels: &[String]) -> Vec<u64> {
        channels
            .iter()
            .map(|c| {
                self.subscribers
                    .values()
                    .filter(|s| s.channels.contains(c))
                    .count() as u64
            })
            .collect()
    }
}

struct Subscriber {
    channels: HashSet<String>,
    patterns: HashSet<String>,
    tx: mpsc::UnboundedSender<Incoming>,
}

impl MemoryHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// A hub whose drivers say they speak sharded pub/sub ([`Driver::sharded`]): the nodes
    /// speak the sharded protocol over it.
    pub fn sharded() -> Self {
        let hub = Self::default();
        hub.0.lock().unwrap().sharded = true;
        hub
    }

    /// A hub whose subscriptions land only after `delay`, as a remote server's do after a round
    /// trip: what is published meanwhile misses the subscriber.
    pub fn with_subscribe_delay(delay: std::time::Duration) -> Self {
        let hub = Self::default();
        hub.0.lock().unwrap().subscribe_delay = delay;
        hub
    }

    /// Publishes `payload` on `channel` at once, before this returns: what one caller publishes
    /// under its own lock reaches every subscriber in that lock's order.
    pub fn publish(&self, channel: String, payload: Vec<u8>) {
        self.0.lock().unwrap().publish(channel, payload);
    }

    /// A new connection to the hub.
    pub fn driver(&self) -> MemoryDriver {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.0.lock().unwrap();
        let id = state.next_id;
        state.next_id += 1;
        state.subscribers.insert(
            id,
            Subscriber {
                channels: HashSet::new(),
                patterns: HashSet::new(),
                tx,
            },
        );
        MemoryDriver {
            hub: self.clone(),
            id,
            rx: Mutex::new(Some(rx)),
        }
    }
}

/// One connection to a [`MemoryHub`]. Dropping it closes the connection, like a process exit.
pub struct MemoryDriver {
    hub: MemoryHub,
    id: u64,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Incoming>>>,
}

impl MemoryDriver {
    fn with_subscriber(&self, f: impl FnOnce(&mut Subscriber)) {
        if let Some(sub) = self.hub.0.lock().unwrap().subscribers.get_mut(&self.id) {
            f(sub);
        }
    }
}

impl Drop for MemoryDriver {
    fn drop(&mut self) {
        self.hub.0.lock().unwrap().subscribers.remove(&self.id);
    }
}

impl Driver for MemoryDriver {
    fn sharded(&self) -> bool {
        self.hub.0.lock().unwrap().sharded
    }

    async fn publish(&self, channel: String, payload: Vec<u8>) -> Result<(), DriverError> {
        self.hub.publish(channel, payload);
        Ok(())
    }

    async fn subscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> Result<(), DriverError> {
        let delay = self.hub.0.lock().unwrap().subscribe_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.with_subscriber(|sub| {
            sub.channels.extend(channels);
            sub.patterns.extend(patterns);
        });
        Ok(())
    }

    async fn unsubscribe(
        &self,
        channels: Vec<String>,
        patterns: Vec<String>,
    ) -> Result<(), DriverError> {
        self.with_subscriber(|sub| {
            channels.iter().for_each(|c| {
                sub.channels.remove(c);
            });
            patterns.iter().for_each(|p| {
                sub.patterns.remove(p);
            });
        });
        Ok(())
    }

    async fn num_sub(&self, channels: Vec<String>) -> Result<Vec<u64>, DriverError> {
        Ok(self.hub.0.lock().unwrap().num_sub(&channels))
    }

    /// Both under one lock of the hub: nobody subscribes in between.
    async fn num_sub_then_publish(
        &self,
        probe: Vec<String>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<Vec<u64>, DriverError> {
        let state = self.hub.0.lock().unwrap();
        let counts = state.num_sub(&probe);
        state.publish(channel, payload);
        Ok(counts)
    }

    fn incoming(&self) -> IncomingStream {
        let rx = self.rx.lock().unwrap().take();
        match rx {
            Some(rx) => receiver_stream(rx),
            None => Box::pin(futures_util::stream::empty()),
        }
    }
}

fn receiver_stream(rx: mpsc::UnboundedReceiver<Incoming>) -> IncomingStream {
    Box::pin(UnboundedReceiverStream::new(rx))
}

/// Redis glob matching for the subset this crate uses: `*`, `?` and `\` escapes.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                t.first() == Some(&rest[0]) && go(&rest[1..], &t[1..])
            }
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn glob_supports_star_question_and_escapes() {
        assert!(glob_match("a#/#*", "a#/#room#"));
        assert!(glob_match("a#/#*", "a#/#"));
        assert!(!glob_match("a#/#*", "a#/x#"));
        assert!(glob_match("k\\*#?", "k*#z"));
        assert!(!glob_match("k\\*#?", "kk#z"));
    }

    #[tokio::test]
    async fn delivers_to_channel_and_pattern_subscribers_and_counts_them() {
        let hub = MemoryHub::new();
        let a = hub.driver();
        let b = hub.driver();
        b.subscribe(vec!["req".into()], vec!["b#*".into()])
            .await
            .unwrap();
        let mut incoming = b.incoming();
        a.publish("req".into(), b"1".to_vec()).await.unwrap();
        a.publish("b#x".into(), b"2".to_vec()).await.unwrap();
        for expected in ["1", "2"] {
            match incoming.next().await.unwrap() {
                Incoming::Message { payload, .. } => assert_eq!(payload, expected.as_bytes()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            a.num_sub(vec!["req".into(), "x".into()]).await.unwrap(),
            vec![1, 0]
        );
        drop(b);
        assert_eq!(a.num_sub(vec!["req".into()]).await.unwrap(), vec![0]);
    }
}
