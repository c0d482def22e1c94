//! Who is online where, across the cluster, and the leave timers that keep a page refresh from
//! being announced as leaving and coming back.
//!
//! A user is online in a room of a namespace while at least one of their sockets, on any node, is
//! in it. A socket that disconnects starts a leave timer of `grace`; if the user enters the room
//! again before it fires (on any node) the timer is cancelled silently. A due timer is *claimed*
//! atomically by one node for a lease, which announces the departure and then *settles* it; a
//! claim not settled within its lease (the claimer died, or could not announce) is claimed again,
//! so every departure is announced at least once, and a repeat carries the same
//! [`Departure::id`] for clients to drop. Every node also reaps the sockets of nodes that stopped
//! heartbeating, turning them into leave timers, so nobody stays online forever when a node dies;
//! a node that finds itself forgotten (it was reaped while alive, or the store lost its data)
//! registers its sockets again ([`Reap::forgotten`]).
//!
//! [`RedisPresence`] keeps this in Redis with Lua scripts (in `lua/`); [`MemoryPresence`] keeps it
//! in process for a single node and for tests, with the same semantics.

use std::{future::Future, time::Duration};

use serde::{Deserialize, Serialize};

pub(crate) use crate::keys::place;

mod memory;
mod redis;

pub use memory::MemoryPresence;
pub use redis::RedisPresence;

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub name: String,
}

/// What a socket entering a room changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The user was not online in the room: announce it.
    CameOnline,
    /// The user came back before their leave timer fired: announce nothing.
    Rejoined,
    /// The user was already online with another socket.
    AlreadyOnline,
}

/// What a socket leaving a room changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    /// The socket was not in the room.
    Absent,
    /// The user still has another socket in the room.
    StillOnline,
    /// The user's last socket disconnected: a leave timer runs.
    Pending,
    /// The user left explicitly with their last socket: announce it now.
    WentOffline(Member),
}

/// A user whose leave timer fired: announce it, then [`PresenceStore::settle`] it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    pub nsp: String,
    pub room: String,
    pub user: Member,
    /// The same for every claim of this departure, different for the next one of the user.
    pub id: String,
}

impl Departure {
    /// Its timer and claim entry, `nsp|room\nuser`.
    pub(crate) fn entry(&self) -> String {
        entry(&place(&self.nsp, &self.room), &self.user.id)
    }
}

/// What a heartbeat of this node into the store found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reap {
    /// Nodes whose sockets this node took over.
    pub taken_over: Vec<String>,
    /// The store did not know this node: it just started, was reaped while alive (stalled
    /// longer than the node timeout), or the store lost its data. Its live sockets must be
    /// registered again.
    pub forgotten: bool,
}

/// Presence errors.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("invalid {0}: control characters (and `|` in namespaces) are not allowed")]
    Invalid(&'static str),
}

/// Presence and leave timers, shared by every node.
pub trait PresenceStore: Send + Sync + 'static {
    /// A socket of `user` enters `room`.
    fn join(
        &self,
        nsp: &str,
        room: &str,
        user: &Member,
        socket: &str,
    ) -> impl Future<Output = Result<Joined, PresenceError>> + Send;

    /// A socket leaves `room`: explicitly when `grace` is `None`, by disconnecting otherwise.
    fn leave(
        &self,
        nsp: &str,
        room: &str,
        socket: &str,
        grace: Option<Duration>,
    ) -> impl Future<Output = Result<Left, PresenceError>> + Send;

    /// The users online in `room`, sorted by id.
    fn online(
        &self,
        nsp: &str,
        room: &str,
    ) -> impl Future<Output = Result<Vec<Member>, PresenceError>> + Send;

    /// How many users are online in `room`, without listing them.
    fn count(
        &self,
        nsp: &str,
        room: &str,
    ) -> impl Future<Output = Result<usize, PresenceError>> + Send;

    /// Claims up to `limit` departures for `lease`: due leave timers, and claims whose lease ran
    /// out unsettled. Each is returned to one caller at a time.
    fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Departure>, PresenceError>> + Send;

    /// The departure was announced: it is not claimed again.
    fn settle(
        &self,
        departure: &Departure,
    ) -> impl Future<Output = Result<(), PresenceError>> + Send;

    /// Records this node as alive and takes over the sockets of nodes silent for `node_timeout`,
    /// giving their users leave timers of `grace`. A node whose own previous heartbeat is older
    /// than `node_timeout` (it just started, or lost the store for a while) reaps nobody this
    /// time: stale heartbeats then say nothing about the others.
    fn reap(
        &self,
        node_timeout: Duration,
        grace: Duration,
    ) -> impl Future<Output = Result<Reap, PresenceError>> + Send;

    /// This node leaves: whatever sockets it still has get leave timers of `grace`.
    fn retire(&self, grace: Duration) -> impl Future<Output = Result<(), PresenceError>> + Send;
}

/// Rooms, users and sockets are joined with `|` and `\n` in keys and timer entries: refuse names
/// that could break them apart.
pub(crate) fn check(what: &'static str, s: &str) -> Result<(), PresenceError> {
    if s.chars().any(char::is_control) {
        Err(PresenceError::Invalid(what))
    } else {
        Ok(())
    }
}

/// The namespace, room and user of a presence change, checked.
pub(crate) fn check_all(nsp: &str, room: &str, user: Option<&str>) -> Result<(), PresenceError> {
    if nsp.contains('|') {
        return Err(PresenceError::Invalid("namespace"));
    }
    check("namespace", nsp)?;
    check("room", room)?;
    user.map_or(Ok(()), |user| check("user id", user))
}

/// An entry `nsp|room\nitem` naming a user (leave timers, claims) or a socket (a node's sockets)
/// of a room; [`split_timer`] takes a user entry apart.
pub(crate) fn entry(place: &str, item: &str) -> String {
    format!("{place}\n{item}")
}

/// Splits a timer entry `nsp|room\nuser`.
pub(crate) fn split_timer(entry: &str) -> Option<(&str, &str, &str)> {
    let (place, user) = entry.rsplit_once('\n')?;
    let (nsp, room) = place.split_once('|')?;
    Some((nsp, room, user))
}

/// The departure of timer entry `nsp|room\nuser`.
pub(crate) fn departure(entry: &str, id: String, name: String) -> Option<Departure> {
    let (nsp, room, user) = split_timer(entry)?;
    Some(Departure {
        nsp: nsp.to_string(),
        room: room.to_string(),
        user: Member {
            id: user.to_string(),
            name,
        },
        id,
    })
}
