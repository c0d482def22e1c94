//! Hands broadcast packets to this node's sockets, and disconnects the clients that cannot keep
//! up instead of letting them miss messages unaware.
//!
//! socketioxide reports a socket whose packet buffer is full only as an anonymous error of the
//! whole broadcast, so packets are handed over one socket at a time: the socket that refused one
//! is then known by id. From that moment it gets no further broadcast (a later one could slip
//! into a freed slot and hide the gap from its client), and it is disconnected as soon as its
//! buffer has room for the disconnect packet; if it never has, engine.io's heartbeat, which
//! cannot queue its ping either, closes the connection.

use std::{collections::HashSet, sync::Mutex, time::Duration};

use socketioxide_core::{
    Sid,
    adapter::errors::SocketError,
    adapter::{BroadcastFlags, BroadcastOptions, CoreLocalAdapter, SocketEmitter},
    packet::Packet,
};

/// How often an evicted socket's buffer is checked for room for the disconnect packet.
pub(crate) const EVICTION_RETRY: Duration = Duration::from_millis(10);

/// What one delivery did, for the caller's counters and logs.
#[derive(Default)]
pub(crate) struct Delivered {
    /// Sockets that took the packet.
    pub delivered: usize,
    /// Sockets that did not take the packet: closing, being evicted, or evicted by this delivery.
    pub undelivered: usize,
    /// Sockets whose full buffer refused the packet: the caller must evict them.
    pub to_evict: Vec<Sid>,
}

/// The sockets of one namespace being disconnected for not keeping up.
#[derive(Default)]
pub(crate) struct Evictions {
    sockets: Mutex<HashSet<Sid>>,
}

impl Evictions {
    /// Delivers `packet` to the sockets `opts` select, except those being evicted. Sockets that
    /// refuse it because their buffer is full are marked as being evicted and returned.
    pub fn deliver<E: SocketEmitter>(
        &self,
        local: &CoreLocalAdapter<E>,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Delivered {
        if opts.has_flag(BroadcastFlags::Volatile) {
            // Volatile packets may be dropped by definition; one anonymous send is enough.
            let _ = local.broadcast(packet, opts);
            return Delivered::default();
        }
        let mut targets = local.sockets(opts);
        let mut delivered = Delivered::default();
        {
            let evicting = self.sockets.lock().unwrap();
            if !evicting.is_empty() {
                let before = targets.len();
                targets.retain(|sid| !evicting.contains(sid));
                delivered.undelivered = before - targets.len();
            }
        }
        for sid in targets {
            match local.broadcast(packet.clone(), BroadcastOptions::new(sid)) {
                Ok(()) => delivered.delivered += 1,
                Err(errors) => {
                    delivered.undelivered += 1;
                    if buffer_full(&errors) {
                        delivered.to_evict.extend(self.start([sid]));
                    }
                }
            }
        }
        delivered
    }

    /// Marks `sids` as being evicted; returns those that were not already.
    pub fn start(&self, sids: impl IntoIterator<Item = Sid>) -> Vec<Sid> {
        let mut evicting = self.sockets.lock().unwrap();
        sids.into_iter()
            .filter(|sid| evicting.insert(*sid))
            .collect()
    }

    /// Tries to disconnect `sid`, which needs room in its buffer for the disconnect packet.
    /// `true` once the socket is gone, and no longer being evicted.
    pub fn try_disconnect<E: SocketEmitter>(&self, local: &CoreLocalAdapter<E>, sid: Sid) -> bool {
        let full = local
            .disconnect_socket(BroadcastOptions::new(sid))
            .is_err_and(|errors| buffer_full(&errors));
        if !full {
            self.sockets.lock().unwrap().remove(&sid);
        }
        !full
    }
}

fn buffer_full(errors: &[SocketError]) -> bool {
    errors
        .iter()
        .any(|e| matches!(e, SocketError::InternalChannelFull))
}
