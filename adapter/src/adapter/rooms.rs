//! The room channels a namespace subscribes in the dynamic sharded modes: a node receives a
//! broadcast to one room only while it hosts a socket of that room.
//!
//! socketioxide's `SocketRef::join` writes the local room table directly: the adapter does not see
//! a room being created. So two paths keep the subscriptions right:
//!
//! * **Entering** ([`RoomChannels::enter`]): [`crate::Cluster::join`], `socketsJoin` and joins
//!   relayed by other nodes subscribe a room's channel *before* the socket enters the room, so the
//!   socket misses no broadcast. The returned [`Entering`] keeps the room from being unsubscribed
//!   until the socket is in.
//! * **Reconciling** ([`RoomChannels::reconcile`], every second): rooms with local sockets but no
//!   subscription were joined behind the adapter's back (`SocketRef::join`); they are subscribed
//!   and counted, as broadcasts to them may have been missed in between. Subscribed rooms without
//!   local sockets are unsubscribed, unless a socket is entering them or entered since the check
//!   began.

use std::{collections::HashMap, sync::Mutex};

use crate::{driver::Driver, error::DriverError};

#[derive(Default)]
pub(crate) struct RoomChannels {
    rooms: Mutex<HashMap<String, RoomState>>,
    /// Subscriptions change one batch at a time, so an unsubscription never overtakes the
    /// subscription of a socket entering the same room.
    changes: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct RoomState {
    channel: String,
    subscribed: bool,
    /// Sockets entering the room now.
    entering: u32,
    /// Bumped at every entering: a reconciliation leaves the room alone if it changed meanwhile.
    generation: u64,
}

/// Sockets entering rooms whose channels are subscribed; drop it once they are in.
pub(crate) struct Entering<'a> {
    channels: &'a RoomChannels,
    rooms: Vec<String>,
}

impl Drop for Entering<'_> {
    fn drop(&mut self) {
        let mut rooms = self.channels.rooms.lock().unwrap();
        for room in &self.rooms {
            if let Some(state) = rooms.get_mut(room) {
                state.entering -= 1;
            }
        }
    }
}

impl RoomChannels {
    /// Subscribes the channels of `rooms` (room, its channel) that are not yet subscribed.
    pub async fn enter<D: Driver>(
        &self,
        driver: &D,
        rooms: Vec<(String, String)>,
    ) -> Result<Entering<'_>, DriverError> {
        let mut missing = Vec::new();
        {
            let mut states = self.rooms.lock().unwrap();
            for (room, channel) in &rooms {
                let state = states.entry(room.clone()).or_default();
                state.channel.clone_from(channel);
                state.entering += 1;
                state.generation += 1;
                if !state.subscribed {
                    missing.push(room.clone());
                }
            }
        }
        let entering = Entering {
            channels: self,
            rooms: rooms.into_iter().map(|(room, _)| room).collect(),
        };
        if !missing.is_empty() {
            let _one_batch = self.changes.lock().await;
            let channels = self.unsubscribed(&missing);
            if !channels.is_empty() {
                driver.subscribe(channels, Vec::new()).await?;
                self.mark_subscribed(&missing);
            }
        }
        Ok(entering)
    }

    /// Subscribes the rooms `local_rooms` lists (with their channels) that are not, unsubscribes
    /// the subscribed ones it does not list. `local_rooms` is read after the check began. Returns
    /// the rooms that had local sockets but no subscription.
    pub async fn reconcile<D: Driver>(
        &self,
        driver: &D,
        local_rooms: impl FnOnce() -> HashMap<String, String>,
    ) -> Result<Vec<String>, DriverError> {
        let _one_batch = self.changes.lock().await;
        let idle: HashMap<String, u64> = {
            let mut states = self.rooms.lock().unwrap();
            states.retain(|_, s| s.subscribed || s.entering > 0);
            states
                .iter()
                .filter(|(_, s)| s.entering == 0)
                .map(|(room, s)| (room.clone(), s.generation))
                .collect()
        };
        let local = local_rooms();

        let missing: Vec<(String, String)> = {
            let states = self.rooms.lock().unwrap();
            local
                .iter()
                .filter(|(room, _)| !states.get(*room).is_some_and(|s| s.subscribed))
                .map(|(room, channel)| (room.clone(), channel.clone()))
                .collect()
        };
        if !missing.is_empty() {
            driver
                .subscribe(missing.iter().map(|(_, c)| c.clone()).collect(), Vec::new())
                .await?;
            let mut states = self.rooms.lock().unwrap();
            for (room, channel) in &missing {
                let state = states.entry(room.clone()).or_default();
                state.channel.clone_from(channel);
                state.subscribed = true;
            }
        }

        let emptied: Vec<(String, String)> = {
            let mut states = self.rooms.lock().unwrap();
            let gone: Vec<String> = idle
                .into_iter()
                .filter(|(room, generation)| {
                    !local.contains_key(room)
                        && states.get(room).is_some_and(|s| {
                            s.subscribed && s.entering == 0 && s.generation == *generation
                        })
                })
                .map(|(room, _)| room)
                .collect();
            gone.into_iter()
                .filter_map(|room| states.remove(&room).map(|s| (room, s.channel)))
                .collect()
        };
        if !emptied.is_empty() {
            let channels = emptied.iter().map(|(_, c)| c.clone()).collect();
            if let Err(err) = driver.unsubscribe(channels, Vec::new()).await {
                // Still subscribed as far as anyone knows: tried again at the next check.
                let mut states = self.rooms.lock().unwrap();
                for (room, channel) in emptied {
                    let state = states.entry(room).or_default();
                    state.channel = channel;
                    state.subscribed = true;
                }
                return Err(err);
            }
        }
        Ok(missing.into_iter().map(|(room, _)| room).collect())
    }

    /// The channels subscribed now.
    pub fn subscribed(&self) -> Vec<String> {
        let states = self.rooms.lock().unwrap();
        states
            .values()
            .filter(|s| s.subscribed)
            .map(|s| s.channel.clone())
            .collect()
    }

    fn unsubscribed(&self, rooms: &[String]) -> Vec<String> {
        let states = self.rooms.lock().unwrap();
        rooms
            .iter()
            .filter_map(|room| states.get(room))
            .filter(|s| !s.subscribed)
            .map(|s| s.channel.clone())
            .collect()
    }

    fn mark_subscribed(&self, rooms: &[String]) {
        let mut states = self.rooms.lock().unwrap();
        for room in rooms {
            if let Some(state) = states.get_mut(room) {
                state.subscribed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::MemoryHub;

    fn room(name: &str) -> (String, String) {
        (name.to_string(), format!("k#/#{name}#"))
    }

    #[tokio::test]
    async fn a_room_is_subscribed_before_entering_and_released_once_empty() {
        let hub = MemoryHub::sharded();
        let driver = hub.driver();
        let channels = RoomChannels::default();
        let entering = channels.enter(&driver, vec![room("a")]).await.unwrap();
        assert_eq!(channels.subscribed(), ["k#/#a#"]);
        // Entering, not yet in the local table: the reconciliation keeps it.
        let found = channels.reconcile(&driver, HashMap::new).await.unwrap();
        assert!(found.is_empty());
        assert_eq!(channels.subscribed().len(), 1);
        drop(entering);
        let local = || HashMap::from([room("a")]);
        assert!(channels.reconcile(&driver, local).await.unwrap().is_empty());
        assert_eq!(channels.subscribed().len(), 1);
        channels.reconcile(&driver, HashMap::new).await.unwrap();
        assert!(channels.subscribed().is_empty());
    }

    #[tokio::test]
    async fn a_room_joined_behind_the_adapters_back_is_found_and_counted() {
        let hub = MemoryHub::sharded();
        let driver = hub.driver();
        let channels = RoomChannels::default();
        let local = || HashMap::from([room("b"), room("c")]);
        let mut found = channels.reconcile(&driver, local).await.unwrap();
        found.sort();
        assert_eq!(found, ["b", "c"]);
        let mut subscribed = channels.subscribed();
        subscribed.sort();
        assert_eq!(subscribed, ["k#/#b#", "k#/#c#"]);
        assert!(channels.reconcile(&driver, local).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_entering_during_the_check_keeps_the_room() {
        let hub = MemoryHub::sharded();
        let driver = hub.driver();
        let channels = RoomChannels::default();
        drop(channels.enter(&driver, vec![room("d")]).await.unwrap());
        // The local table is read after a socket entered and before it shows up there.
        let found = channels
            .reconcile(&driver, || {
                let entering =
                    futures_util::FutureExt::now_or_never(channels.enter(&driver, vec![room("d")]));
                drop(entering);
                HashMap::new()
            })
            .await
            .unwrap();
        assert!(found.is_empty());
        assert_eq!(channels.subscribed(), ["k#/#d#"]);
    }
}
