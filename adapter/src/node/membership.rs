//! Which nodes of this crate are alive, learned from their heartbeats.
//!
//! Every node publishes a [`Heartbeat`] every `heartbeat_interval` on `{key}-heartbeat#`, and at
//! once when it creates a namespace or hears of a node it did not know (so newcomers learn the
//! cluster without waiting a full interval). A node silent for `node_timeout` is declared dead; a
//! node that leaves on purpose says goodbye and is gone at once. Dead nodes are kept (as
//! `crashed`) until their Redis connection is also gone, because a frozen process can keep its
//! subscriptions alive and still be counted by `PUBSUB NUMSUB`.
//!
//! Silence only counts while this node could have heard: its own heartbeat, which comes back to
//! it like everyone else's, proves it. A node that has not heard itself for `node_timeout` (Redis
//! restarted, failed over, or this process was frozen) declares nobody dead, and once it hears
//! again — or its subscriber reconnects — every peer gets a fresh `node_timeout` to be heard. A
//! blip of Redis is then no death of the whole cluster, which would leave every node out of
//! every other's requests until heartbeats crossed again.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::broadcast;

use crate::wire::Heartbeat;

/// A node of the cluster as last heard of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's cluster-unique id (changes at every start).
    pub uid: String,
    /// The configured node name.
    pub name: String,
    /// Sockets connected to the node, over all namespaces.
    pub sockets: u64,
    /// Namespaces the node serves.
    pub nsps: Vec<String>,
    /// When the node last sent a heartbeat, by its clock (ms since the epoch).
    pub last_heartbeat_ms: u64,
}

/// A change in cluster membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A node was heard of for the first time.
    Joined(NodeInfo),
    /// A node left: `crashed` is true when it went silent, false when it said goodbye.
    Left { node: NodeInfo, crashed: bool },
}

struct Peer {
    info: NodeInfo,
    seen: Instant,
    alive: bool,
}

/// When this node last heard its own heartbeat, and whether it said it stopped judging others.
struct Hearing {
    own_heartbeat: Instant,
    deaf: bool,
}

pub(crate) struct Membership {
    peers: Mutex<HashMap<String, Peer>>,
    hearing: Mutex<Hearing>,
    node_timeout: Duration,
    events: broadcast::Sender<NodeEvent>,
}

impl Membership {
    pub fn new(node_timeout: Duration) -> Self {
        Self {
            peers: Mutex::new(HashMap::new()),
            hearing: Mutex::new(Hearing {
                own_heartbeat: Instant::now(),
                deaf: false,
            }),
            node_timeout,
            events: broadcast::channel(1024).0,
        }
    }

    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Records a heartbeat (or goodbye). Returns true when the sender was not known alive, so
    /// this node should introduce itself at once.
    pub fn on_heartbeat(&self, hb: Heartbeat) -> bool {
        let info = NodeInfo {
            uid: hb.uid,
            name: hb.name,
            sockets: hb.sockets,
            nsps: hb.nsps,
            last_heartbeat_ms: hb.ts,
        };
        let mut peers = self.peers.lock().unwrap();
        if hb.bye {
            if let Some(peer) = peers.remove(&info.uid) {
                if peer.alive {
                    let _ = self.events.send(NodeEvent::Left {
                        node: info,
                        crashed: false,
                    });
                }
            }
            return false;
        }
        let is_new = !peers.get(&info.uid).is_some_and(|p| p.alive);
        if is_new {
            let _ = self.events.send(NodeEvent::Joined(info.clone()));
        }
        peers.insert(
            info.uid.clone(),
            Peer {
                info,
                seen: Instant::now(),
                alive: true,
            },
        );
        is_new
    }

    /// Records this node's own heartbeat coming back. After a silence that made it deaf, every
    /// peer's silence is forgiven: it fell in a time this node could not have heard it.
    pub fn on_own_heartbeat(&self) {
        let was_deaf = {
            let mut hearing = self.hearing.lock().unwrap();
            let silence = hearing.own_heartbeat.elapsed();
            hearing.own_heartbeat = Instant::now();
            hearing.deaf = false;
            silence > self.node_timeout
        };
        if was_deaf {
            tracing::warn!("this node hears the cluster again: peers get a fresh node timeout");
            self.forgive_silence();
        }
    }

    /// This node's subscriber reconnected: whatever peers said meanwhile never reached it.
    pub fn on_reconnected(&self) {
        self.hearing.lock().unwrap().own_heartbeat = Instant::now();
        self.forgive_silence();
    }

    fn forgive_silence(&self) {
        let now = Instant::now();
        for peer in self.peers.lock().unwrap().values_mut() {
            peer.seen = now;
        }
    }

    /// Declares dead, and announces, the nodes silent for `node_timeout` before this node last
    /// heard its own heartbeat: silence it could have heard. A deaf node declares nobody dead.
    pub fn sweep(&self) {
        let heard_at = {
            let mut hearing = self.hearing.lock().unwrap();
            let silence = hearing.own_heartbeat.elapsed();
            if silence > self.node_timeout {
                if !hearing.deaf {
                    hearing.deaf = true;
                    tracing::warn!(
                        ?silence,
                        "this node does not hear its own heartbeat: it declares no other node dead until it does"
                    );
                }
                return;
            }
            hearing.own_heartbeat
        };
        let mut peers = self.peers.lock().unwrap();
        for peer in peers.values_mut() {
            if peer.alive && heard_at.saturating_duration_since(peer.seen) > self.node_timeout {
                peer.alive = false;
                tracing::warn!(node = %peer.info.name, uid = %peer.info.uid, "node stopped sending heartbeats: declared dead");
                let _ = self.events.send(NodeEvent::Left {
                    node: peer.info.clone(),
                    crashed: true,
                });
            }
        }
    }

    /// Live nodes serving `nsp`.
    pub fn alive_in(&self, nsp: &str) -> Vec<String> {
        self.select(|p| p.alive && p.info.nsps.iter().any(|n| n == nsp))
    }

    /// Dead nodes that served `nsp` and may still hold subscriptions.
    pub fn dead_in(&self, nsp: &str) -> Vec<String> {
        self.select(|p| !p.alive && p.info.nsps.iter().any(|n| n == nsp))
    }

    /// Forgets a dead node whose connection is gone.
    pub fn forget(&self, uid: &str) {
        self.peers
            .lock()
            .unwrap()
            .retain(|id, p| p.alive || id != uid);
    }

    pub fn is_alive(&self, uid: &str) -> bool {
        self.peers.lock().unwrap().get(uid).is_some_and(|p| p.alive)
    }

    pub fn name_of(&self, uid: &str) -> Option<String> {
        self.peers
            .lock()
            .unwrap()
            .get(uid)
            .map(|p| p.info.name.clone())
    }

    /// Every live node but this one.
    pub fn alive(&self) -> Vec<NodeInfo> {
        let peers = self.peers.lock().unwrap();
        peers
            .values()
            .filter(|p| p.alive)
            .map(|p| p.info.clone())
            .collect()
    }

    fn select(&self, keep: impl Fn(&Peer) -> bool) -> Vec<String> {
        let peers = self.peers.lock().unwrap();
        peers
            .values()
            .filter(|p| keep(p))
            .map(|p| p.info.uid.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(uid: &str, bye: bool) -> Heartbeat {
        Heartbeat {
            uid: uid.into(),
            name: format!("name-{uid}"),
            nsps: vec!["/".into()],
            sockets: 0,
            ts: 0,
            bye,
        }
    }

    #[test]
    fn silent_node_is_declared_dead_once_and_kept_until_forgotten() {
        let m = Membership::new(Duration::from_millis(20));
        let mut events = m.events();
        assert!(m.on_heartbeat(hb("a", false)));
        assert!(matches!(events.try_recv(), Ok(NodeEvent::Joined(_))));
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(12));
            m.on_own_heartbeat();
        }
        m.sweep();
        m.sweep();
        assert!(matches!(
            events.try_recv(),
            Ok(NodeEvent::Left { crashed: true, .. })
        ));
        assert!(events.try_recv().is_err());
        assert!(m.alive_in("/").is_empty());
        assert_eq!(m.dead_in("/"), vec!["a".to_string()]);
        m.forget("a");
        assert!(m.dead_in("/").is_empty());
    }

    #[test]
    fn goodbye_removes_the_node_at_once() {
        let m = Membership::new(Duration::from_secs(10));
        m.on_heartbeat(hb("a", false));
        assert!(!m.on_heartbeat(hb("a", false)));
        let mut events = m.events();
        m.on_heartbeat(hb("a", true));
        assert!(matches!(
            events.try_recv(),
            Ok(NodeEvent::Left { crashed: false, .. })
        ));
        assert!(m.alive_in("/").is_empty() && m.dead_in("/").is_empty());
    }

    #[test]
    fn a_node_that_cannot_hear_itself_declares_nobody_dead_and_forgives_once_it_hears() {
        let m = Membership::new(Duration::from_millis(200));
        let mut events = m.events();
        m.on_heartbeat(hb("a", false));
        let _ = events.try_recv();
        // Redis is gone: neither a's heartbeats nor this node's own come back.
        std::thread::sleep(Duration::from_millis(250));
        m.sweep();
        assert_eq!(m.alive_in("/"), vec!["a".to_string()]);
        // Back: a has a fresh timeout from now, not from before the outage.
        m.on_own_heartbeat();
        m.sweep();
        assert!(events.try_recv().is_err());
        // The same when no sweep ran while this node was deaf.
        std::thread::sleep(Duration::from_millis(250));
        m.on_own_heartbeat();
        m.sweep();
        assert!(events.try_recv().is_err());
        // Hearing itself all along (every 120 ms, within the timeout), it hears a no more.
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(120));
            m.on_own_heartbeat();
        }
        m.sweep();
        assert!(matches!(
            events.try_recv(),
            Ok(NodeEvent::Left { crashed: true, .. })
        ));
    }

    #[test]
    fn a_reconnect_gives_every_peer_a_fresh_timeout() {
        let m = Membership::new(Duration::from_millis(200));
        m.on_heartbeat(hb("a", false));
        std::thread::sleep(Duration::from_millis(150));
        m.on_own_heartbeat();
        // The subscriber was away for a while, shorter than the timeout, then reconnected: a's
        // heartbeats of that while were lost, and it reconnects a little later than this node.
        // Without the reconnect, a would be 250 ms silent here (100 ms of slack for a slow host).
        m.on_reconnected();
        std::thread::sleep(Duration::from_millis(100));
        m.on_own_heartbeat();
        m.sweep();
        assert_eq!(m.alive_in("/"), vec!["a".to_string()]);
    }
}
