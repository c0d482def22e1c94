//! Which namespaces a node keeps: socketioxide builds a namespace for every connect packet that
//! names a new one, before any middleware can look at the name or the credentials. Such a
//! namespace costs no Redis subscription until a socket passes `authenticate` (the cluster's
//! lazy namespaces), and the sweeper (`timers::spawn_sweeper`) forgets every dynamic namespace
//! that has no socket: within two sweeps for one that never admitted a socket (refused names and
//! credentials), after `NAMESPACE_IDLE_SECS` for one that did. This module holds what both need.

use std::{collections::HashMap, sync::Mutex};

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

    pub fn any(&self, nsp: &str) -> bool {
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

/// A namespace name as logged: a client chooses it, so at most 64 characters of it.
pub fn shown(nsp: &str) -> String {
    match nsp.char_indices().nth(64) {
        Some((end, _)) => format!("{}… ({} bytes)", &nsp[..end], nsp.len()),
        None => nsp.to_string(),
    }
}
