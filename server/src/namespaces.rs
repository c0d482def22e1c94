//! Which namespaces a node keeps: socketioxide builds a namespace for every connect packet that
//! names a new one, before any middleware can look at the name or the credentials. Such a
//! namespace costs no Redis subscription until a socket passes `authenticate` (the cluster's
//! lazy namespaces), and the sweeper here forgets every dynamic namespace that has no socket:
//! at once for one that never admitted a socket (refused names and credentials), after
//! `NAMESPACE_IDLE_SECS` for one that did.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use socketioxide::SocketIo;
use tokio::task::JoinHandle;

use crate::chat::{Adapter, Chat};

/// How often the sweeper looks, and how long a namespace that never admitted a socket may stay
/// empty (a client being authenticated is not yet in it: see [`Connecting`]).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Connects in progress per namespace: a namespace whose socket is still in `authenticate` is not
/// empty, though socketioxide does not count it yet.
#[derive(Default)]
pub struct Connecting(Mutex<HashMap<String, usize>>);

/// Marks one connect in progress until dropped.
pub struct ConnectingGuard<'a> {
    connecting: &'a Connecting,
    nsp: String,
}

impl Connecting {
    pub fn start(&self, nsp: &str) -> ConnectingGuard<'_> {
        *self.0.lock().unwrap().entry(nsp.to_string()).or_default() += 1;
        ConnectingGuard {
            connecting: self,
            nsp: nsp.to_string(),
        }
    }

    fn any(&self, nsp: &str) -> bool {
        self.0.lock().unwrap().contains_key(nsp)
    }
}

impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        let mut connecting = self.connecting.0.lock().unwrap();
        if let Some(n) = connecting.get_mut(&self.nsp) {
            *n -= 1;
            if *n == 0 {
                connecting.remove(&self.nsp);
            }
        }
    }
}

/// Releases empty dynamic namespaces until aborted.
pub fn spawn_sweeper(io: SocketIo<Adapter>, chat: Arc<Chat>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut empty_since: HashMap<String, Instant> = HashMap::new();
        let mut ticker = tokio::time::interval(SWEEP_EVERY);
        loop {
            ticker.tick().await;
            sweep(&io, &chat, &mut empty_since);
        }
    })
}

fn sweep(io: &SocketIo<Adapter>, chat: &Chat, empty_since: &mut HashMap<String, Instant>) {
    let now = Instant::now();
    let mut seen = HashMap::new();
    for ns in io.nsps() {
        let nsp = ns.ns_path().to_string();
        if nsp == "/" || !ns.sockets().is_empty() || chat.connecting.any(&nsp) {
            continue;
        }
        let since = *empty_since.get(&nsp).unwrap_or(&now);
        let keep_for = if chat.cluster.in_cluster(&nsp) {
            chat.config.namespace_idle()
        } else {
            Duration::ZERO
        };
        if now.duration_since(since) >= keep_for {
            tracing::debug!(nsp = %shown(&nsp), "releasing an empty namespace");
            chat.metrics.namespaces_released.inc();
            io.delete_ns(&nsp);
        } else {
            seen.insert(nsp, since);
        }
    }
    *empty_since = seen;
}

/// A namespace name as logged: a client chooses it, so at most 64 characters of it.
pub fn shown(nsp: &str) -> String {
    match nsp.char_indices().nth(64) {
        Some((end, _)) => format!("{}… ({} bytes)", &nsp[..end], nsp.len()),
        None => nsp.to_string(),
    }
}
