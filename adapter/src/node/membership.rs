//! Which nodes of this crate are alive, learned from their heartbeats.
//!
//! Every node publishes a [`Heartbeat`] every `heartbeat_interval` on `{key}-heartbeat#`, and at
//! once when it creates a namespace or hears of a node it did not know (so newcomers learn the
//! cluster without waiting a full interval). A node silent for `node_timeout` is declared dead; a
//! node that leaves on purpose says goodbye and is gone at once. Dead nodes are kept (as
//! `crashed`) until their Redis connection is also gone, because a frozen process can keep its
//! subscriptions alive and still be counted by `PUBSUB NUMSUB`.

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

pub(crate) struct Membership {
    peers: Mutex<HashMap<String, Peer>>,
    node_timeout: Duration,
    events: broadcast::Sender<NodeEvent>,
}

impl Membership {
    pub fn new(node_timeout: Duration) -> Self {
        Self {
            peers: Mutex::new(HashMap::new()),
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

    /// Declares silent nodes dead and announces them.
    pub fn sweep(&self) {
        let mut peers = self.peers.lock().unwrap();
        for peer in peers.values_mut() {
            if peer.alive && peer.seen.elapsed() > self.node_timeout {
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
        let m = Membership::new(Duration::from_millis(0));
        let mut events = m.events();
        assert!(m.on_heartbeat(hb("a", false)));
        assert!(matches!(events.try_recv(), Ok(NodeEvent::Joined(_))));
        std::thread::sleep(Duration::from_millis(2));
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
}
