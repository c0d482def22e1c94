//! Requests in flight: responses routed to the request that waits for them, and whom each still
//! waits for (this crate's nodes by uid, Node.js nodes as a count).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;

use crate::{error::ClusterError, wire::WireResponse};

/// Routes responses to the requests waiting for them, by request id.
#[derive(Default)]
pub(crate) struct Pending {
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<WireResponse>>>,
}

impl Pending {
    /// Registers a new request; its responses arrive on the returned receiver until it is dropped.
    pub fn register(self: &Arc<Self>) -> Registration {
        let id = new_request_id();
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiting.lock().unwrap().insert(id.clone(), tx);
        Registration {
            id,
            rx,
            pending: self.clone(),
        }
    }

    /// Hands a response to its request. Returns false when nobody waits for it (any more).
    pub fn deliver(&self, response: WireResponse) -> bool {
        let waiting = self.waiting.lock().unwrap();
        match waiting.get(&response.request_id) {
            Some(tx) => tx.send(response).is_ok(),
            None => false,
        }
    }
}

/// A request in flight. Dropping it stops the routing of its responses.
pub(crate) struct Registration {
    pub id: String,
    pub rx: mpsc::UnboundedReceiver<WireResponse>,
    pending: Arc<Pending>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.pending.waiting.lock().unwrap().remove(&self.id);
    }
}

/// Who a request still waits for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Waiting {
    nodes: HashSet<String>,
    anonymous: usize,
}

impl Waiting {
    pub fn new(nodes: impl IntoIterator<Item = String>, anonymous: usize) -> Self {
        Self {
            nodes: nodes.into_iter().collect(),
            anonymous,
        }
    }

    /// How many responders are expected in all.
    pub fn len(&self) -> usize {
        self.nodes.len() + self.anonymous
    }

    /// Records an answer from `uid` (None: a Node.js node). A node of this crate not yet known
    /// (its first heartbeat still on the way) fills an anonymous slot, as `NUMSUB` counted it.
    pub fn answered(&mut self, uid: Option<&str>) {
        if uid.is_some_and(|uid| self.nodes.remove(uid)) {
            return;
        }
        self.anonymous = self.anonymous.saturating_sub(1);
    }

    /// Stops waiting for a node that died.
    pub fn node_down(&mut self, uid: &str) {
        self.nodes.remove(uid);
    }

    /// Whether both wait for the same nodes of this crate.
    pub fn same_nodes(&self, other: &Self) -> bool {
        self.nodes == other.nodes
    }

    /// Node.js nodes not heard from yet.
    pub fn foreign(&self) -> usize {
        self.anonymous
    }

    /// Only `alive` Node.js nodes remain: no more than that can still answer. (Which ones died
    /// is unknown, as their responses carry no uid, so the count can only be capped.)
    pub fn foreign_alive(&mut self, alive: usize) {
        self.anonymous = self.anonymous.min(alive);
    }

    pub fn is_done(&self) -> bool {
        self.nodes.is_empty() && self.anonymous == 0
    }

    /// The error for a request that timed out, naming silent nodes with `name_of`.
    pub fn timeout(&self, request: &'static str, name_of: impl Fn(&str) -> String) -> ClusterError {
        let mut nodes: Vec<String> = self.nodes.iter().map(|uid| name_of(uid)).collect();
        nodes.sort();
        ClusterError::Timeout {
            request,
            nodes,
            foreign: self.anonymous,
        }
    }
}

fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_when_every_expected_node_answered() {
        let mut w = Waiting::new(["a".to_string(), "b".to_string()], 1);
        assert_eq!(w.len(), 3);
        w.answered(Some("a"));
        w.answered(None);
        assert!(!w.is_done());
        w.node_down("b");
        assert!(w.is_done());
    }

    #[test]
    fn dead_foreign_nodes_cap_the_wait_but_never_raise_it() {
        let mut w = Waiting::new([], 2);
        w.foreign_alive(3);
        assert_eq!(w.foreign(), 2);
        w.foreign_alive(1);
        assert_eq!(w.foreign(), 1);
        w.answered(None);
        assert!(w.is_done());
        let ours = Waiting::new(["a".to_string()], 1);
        assert!(ours.same_nodes(&Waiting::new(["a".to_string()], 0)));
        assert!(!ours.same_nodes(&Waiting::new(["a".to_string(), "b".to_string()], 0)));
    }

    #[test]
    fn unknown_node_fills_an_anonymous_slot_and_timeout_names_the_silent() {
        let mut w = Waiting::new(["a".to_string()], 1);
        w.answered(Some("newcomer"));
        assert!(!w.is_done());
        match w.timeout("fetchSockets", |uid| format!("node-{uid}")) {
            ClusterError::Timeout { nodes, foreign, .. } => {
                assert_eq!(nodes, vec!["node-a".to_string()]);
                assert_eq!(foreign, 0);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn responses_reach_only_registered_requests() {
        let pending = Arc::new(Pending::default());
        let mut reg = pending.register();
        let response = WireResponse {
            request_id: reg.id.clone(),
            ..Default::default()
        };
        assert!(pending.deliver(response.clone()));
        assert_eq!(reg.rx.recv().await.unwrap(), response);
        let id = reg.id.clone();
        drop(reg);
        assert!(!pending.deliver(WireResponse {
            request_id: id,
            ..Default::default()
        }));
    }
}
