//! Counters of what the cluster layer did and what went wrong, for the application's metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub(crate) struct Stats {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub lost: AtomicU64,
    pub malformed: AtomicU64,
    pub reconnects: AtomicU64,
    pub requests: AtomicU64,
    pub request_timeouts: AtomicU64,
    pub delivered: AtomicU64,
    pub undelivered: AtomicU64,
    pub evicted: AtomicU64,
    pub rejected: AtomicU64,
    pub namespace_races: AtomicU64,
    pub rooms_reconciled: AtomicU64,
}

/// A snapshot of a node's cluster counters (all monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Messages published to the other nodes.
    pub published: u64,
    /// Messages received from the other nodes.
    pub received: u64,
    /// Messages the transport dropped because they came faster than they were read.
    pub lost: u64,
    /// Messages that could not be decoded (ignored).
    pub malformed: u64,
    /// Reconnections of the subscriber connection.
    pub reconnects: u64,
    /// Cluster requests sent.
    pub requests: u64,
    /// Cluster requests that timed out.
    pub request_timeouts: u64,
    /// Broadcast packets handed to local clients (volatile ones are not counted).
    pub delivered: u64,
    /// Packets that could not be handed to a local client: its buffer was full, it was closing,
    /// or it was being disconnected for not keeping up.
    pub undelivered: u64,
    /// Local clients disconnected because they could not keep up (their packet buffer was
    /// full) or this node could not (it lost messages, see `ClusterConfig::disconnect_on_loss`):
    /// a client never misses a packet while it stays connected.
    pub evicted: u64,
    /// Broadcasts refused with `ClusterError::Overloaded`, reaching nobody.
    pub rejected: u64,
    /// Concurrent first connects to one new namespace beyond the first: the namespace each of
    /// them built is dropped unanswered, and its client connects again after socketioxide's
    /// connect timeout (to the namespace the first one built) with the packets it buffered.
    pub namespace_races: u64,
    /// Rooms found with local sockets but no subscription of their channel (dynamic sharded
    /// modes): sockets were put in them without [`Cluster::join`](crate::Cluster::join), and may
    /// have missed broadcasts until the room was subscribed (within a second).
    pub rooms_reconciled: u64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> ClusterStats {
        ClusterStats {
            published: self.published.load(Relaxed),
            received: self.received.load(Relaxed),
            lost: self.lost.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            requests: self.requests.load(Relaxed),
            request_timeouts: self.request_timeouts.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            undelivered: self.undelivered.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            namespace_races: self.namespace_races.load(Relaxed),
            rooms_reconciled: self.rooms_reconciled.load(Relaxed),
        }
    }
}
