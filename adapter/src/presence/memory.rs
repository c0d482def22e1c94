//! [`PresenceStore`] in process: the single-node mode and tests. Handles made with
//! [`MemoryPresence::for_node`] share one state, as nodes share Redis.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{
    Departure, Joined, Left, Member, PresenceError, PresenceStore, Reap, check_all, departure,
    entry, place, split_timer,
};

#[derive(Default)]
struct Room {
    users: BTreeMap<String, String>,
    sockets: HashMap<String, String>,
    counts: HashMap<String, usize>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, Room>,
    /// `nsp|room\nuser` → due, and the departure's id.
    timers: HashMap<String, (Instant, u64)>,
    /// `nsp|room\nuser` → claimed departure: lease end, id, name.
    claims: HashMap<String, (Instant, String, String)>,
    /// The id of the next leave timer.
    next_id: u64,
    /// node → `(place, socket)`.
    node_sockets: HashMap<String, HashSet<(String, String)>>,
    heartbeats: HashMap<String, Instant>,
}

impl State {
    /// The socket is gone: if it was its user's last in the room, start a leave timer.
    fn drop_socket(&mut self, place: &str, socket: &str, due: Instant) {
        let Some(room) = self.rooms.get_mut(place) else {
            return;
        };
        let Some(user) = room.sockets.remove(socket) else {
            return;
        };
        if decrement(&mut room.counts, &user) {
            self.start_timer(entry(place, &user), due);
        }
    }

    fn start_timer(&mut self, timer: String, due: Instant) {
        self.next_id += 1;
        self.timers.insert(timer, (due, self.next_id));
    }

    fn take_over(&mut self, node: &str, grace: Duration) {
        let due = Instant::now() + grace;
        for (place, socket) in self.node_sockets.remove(node).unwrap_or_default() {
            self.drop_socket(&place, &socket, due);
        }
        self.heartbeats.remove(node);
    }
}

/// Decrements a user's socket count; true when it reached zero.
fn decrement(counts: &mut HashMap<String, usize>, user: &str) -> bool {
    match counts.get_mut(user) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        _ => {
            counts.remove(user);
            true
        }
    }
}

/// Presence in process, for the node `node`.
#[derive(Clone)]
pub struct MemoryPresence {
    state: Arc<Mutex<State>>,
    node: String,
}

impl MemoryPresence {
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            state: Default::default(),
            node: node.into(),
        }
    }

    /// Another node's handle on the same state.
    pub fn for_node(&self, node: impl Into<String>) -> Self {
        Self {
            state: self.state.clone(),
            node: node.into(),
        }
    }
}

impl PresenceStore for MemoryPresence {
    async fn join(
        &self,
        nsp: &str,
        room: &str,
        user: &Member,
        socket: &str,
    ) -> Result<Joined, PresenceError> {
        check_all(nsp, room, Some(&user.id))?;
        let place = place(nsp, room);
        let mut state = self.state.lock().unwrap();
        let timer = entry(&place, &user.id);
        let cancelled = state.timers.remove(&timer).is_some();
        state.claims.remove(&timer);
        let entry = state.rooms.entry(place.clone()).or_default();
        let was_online = entry
            .users
            .insert(user.id.clone(), user.name.clone())
            .is_some();
        if !entry.sockets.contains_key(socket) {
            entry.sockets.insert(socket.to_string(), user.id.clone());
            *entry.counts.entry(user.id.clone()).or_default() += 1;
            let node = self.node.clone();
            state
                .node_sockets
                .entry(node)
                .or_default()
                .insert((place, socket.to_string()));
        }
        Ok(if cancelled {
            Joined::Rejoined
        } else if was_online {
            Joined::AlreadyOnline
        } else {
            Joined::CameOnline
        })
    }

    async fn leave(
        &self,
        nsp: &str,
        room: &str,
        socket: &str,
        grace: Option<Duration>,
    ) -> Result<Left, PresenceError> {
        check_all(nsp, room, None)?;
        let place = place(nsp, room);
        let mut state = self.state.lock().unwrap();
        if let Some(sockets) = state.node_sockets.get_mut(&self.node) {
            sockets.remove(&(place.clone(), socket.to_string()));
        }
        let Some(members) = state.rooms.get_mut(&place) else {
            return Ok(Left::Absent);
        };
        let Some(user) = members.sockets.remove(socket) else {
            return Ok(Left::Absent);
        };
        if !decrement(&mut members.counts, &user) {
            return Ok(Left::StillOnline);
        }
        let timer = entry(&place, &user);
        match grace {
            Some(grace) => {
                state.start_timer(timer, Instant::now() + grace);
                Ok(Left::Pending)
            }
            None => {
                let name = members.users.remove(&user).unwrap_or_default();
                state.timers.remove(&timer);
                Ok(Left::WentOffline(Member { id: user, name }))
            }
        }
    }

    async fn online(&self, nsp: &str, room: &str) -> Result<Vec<Member>, PresenceError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .rooms
            .get(&place(nsp, room))
            .map(|r| {
                r.users
                    .iter()
                    .map(|(id, name)| Member {
                        id: id.clone(),
                        name: name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn count(&self, nsp: &str, room: &str) -> Result<usize, PresenceError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .rooms
            .get(&place(nsp, room))
            .map_or(0, |r| r.users.len()))
    }

    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Departure>, PresenceError> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        let mut out = Vec::new();
        for (entry, (lease_end, id, name)) in state.claims.iter_mut() {
            if out.len() < limit && *lease_end <= now {
                *lease_end = now + lease;
                out.extend(departure(entry, id.clone(), name.clone()));
            }
        }
        let due: Vec<(String, u64)> = state
            .timers
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(entry, (_, id))| (entry.clone(), *id))
            .take(limit.saturating_sub(out.len()))
            .collect();
        for (entry, id) in due {
            state.timers.remove(&entry);
            let Some((nsp, room_name, user)) = split_timer(&entry) else {
                continue;
            };
            let Some(room) = state.rooms.get_mut(&place(nsp, room_name)) else {
                continue;
            };
            if room.counts.get(user).copied().unwrap_or(0) > 0 {
                continue;
            }
            if let Some(name) = room.users.remove(user) {
                out.extend(departure(&entry, id.to_string(), name.clone()));
                state
                    .claims
                    .insert(entry, (now + lease, id.to_string(), name));
            }
        }
        Ok(out)
    }

    async fn settle(&self, departure: &Departure) -> Result<(), PresenceError> {
        let entry = departure.entry();
        let mut state = self.state.lock().unwrap();
        if state
            .claims
            .get(&entry)
            .is_some_and(|(_, id, _)| *id == departure.id)
        {
            state.claims.remove(&entry);
        }
        Ok(())
    }

    async fn reap(&self, node_timeout: Duration, grace: Duration) -> Result<Reap, PresenceError> {
        let mut state = self.state.lock().unwrap();
        let previous = state.heartbeats.insert(self.node.clone(), Instant::now());
        // Only a node that kept heartbeating may judge the others (see lua/reap.lua).
        let Some(previous) = previous else {
            return Ok(Reap {
                taken_over: Vec::new(),
                forgotten: true,
            });
        };
        if previous.elapsed() > node_timeout {
            return Ok(Reap::default());
        }
        let dead: Vec<String> = state
            .heartbeats
            .iter()
            .filter(|(_, at)| at.elapsed() > node_timeout)
            .map(|(node, _)| node.clone())
            .collect();
        for node in &dead {
            state.take_over(node, grace);
        }
        Ok(Reap {
            taken_over: dead,
            forgotten: false,
        })
    }

    async fn retire(&self, grace: Duration) -> Result<(), PresenceError> {
        self.state.lock().unwrap().take_over(&self.node, grace);
        Ok(())
    }
}
