//! Socket selection: socketioxide's `BroadcastOptions` ↔ the Node.js adapter's `{rooms, except, flags}`.
//!
//! socketioxide marks "the sender's socket" with `sid` and the broadcast flag; Node.js expresses
//! the same with the socket's own room (every socket is in the room named after its id), so a
//! sender to exclude goes into `except`, and a single targeted socket into `rooms`.

use std::time::Duration;

use socketioxide_core::adapter::{BroadcastFlags, BroadcastOptions};

use crate::wire::{WireFlags, WireOpts};

/// Which sockets a cluster-wide operation applies to: sockets in any of `rooms` (every socket when
/// empty) and in none of `except`. A socket id works as a room for tracked sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub rooms: Vec<String>,
    pub except: Vec<String>,
}

impl Target {
    /// Every socket of the namespace.
    pub fn all() -> Self {
        Self::default()
    }

    /// Sockets in any of `rooms`.
    pub fn rooms(rooms: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            rooms: rooms.into_iter().map(Into::into).collect(),
            except: Vec::new(),
        }
    }

    /// Leaves out sockets in any of `rooms`.
    pub fn except(mut self, rooms: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.except.extend(rooms.into_iter().map(Into::into));
        self
    }

    pub(crate) fn to_local(&self) -> BroadcastOptions {
        to_local(&self.to_wire())
    }

    pub(crate) fn to_wire(&self) -> WireOpts {
        WireOpts {
            rooms: self.rooms.clone(),
            except: self.except.clone(),
            flags: None,
        }
    }
}

/// The wire form of socketioxide's options.
pub(crate) fn to_wire(opts: &BroadcastOptions, ack_timeout: Option<Duration>) -> WireOpts {
    let mut rooms: Vec<String> = opts.rooms.iter().map(|r| r.to_string()).collect();
    let mut except: Vec<String> = opts.except.iter().map(|r| r.to_string()).collect();
    let broadcast = opts.has_flag(BroadcastFlags::Broadcast);
    if let Some(sid) = opts.sid {
        if broadcast {
            except.push(sid.to_string());
        } else if rooms.is_empty() {
            rooms.push(sid.to_string());
        }
    }
    let flag = |f| opts.has_flag(f).then_some(true);
    WireOpts {
        rooms,
        except,
        flags: Some(WireFlags {
            local: flag(BroadcastFlags::Local),
            broadcast: flag(BroadcastFlags::Broadcast),
            volatile: flag(BroadcastFlags::Volatile),
            timeout: ack_timeout.map(|t| t.as_millis() as u64),
        }),
    }
}

/// socketioxide's options for a selection received from another node.
pub(crate) fn to_local(wire: &WireOpts) -> BroadcastOptions {
    let mut opts = BroadcastOptions::default();
    opts.rooms = wire.rooms.iter().cloned().map(Into::into).collect();
    opts.except = wire.except.iter().cloned().map(Into::into).collect();
    // Without rooms, "broadcast" means every socket; with rooms it changes nothing.
    opts.add_flag(BroadcastFlags::Broadcast);
    if wire
        .flags
        .as_ref()
        .and_then(|f| f.volatile)
        .unwrap_or(false)
    {
        opts.add_flag(BroadcastFlags::Volatile);
    }
    opts
}

/// The ack timeout a remote broadcast asked for.
pub(crate) fn ack_timeout(wire: &WireOpts) -> Option<Duration> {
    wire.flags
        .as_ref()
        .and_then(|f| f.timeout)
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketioxide_core::Sid;

    #[test]
    fn sender_exclusion_becomes_its_own_room_in_except() {
        let sid = Sid::new();
        let mut opts = BroadcastOptions::new(sid);
        opts.add_flag(BroadcastFlags::Broadcast);
        opts.rooms.push("r".into());
        let wire = to_wire(&opts, None);
        assert_eq!(wire.rooms, vec!["r".to_string()]);
        assert_eq!(wire.except, vec![sid.to_string()]);
        assert_eq!(wire.flags.unwrap().broadcast, Some(true));
    }

    #[test]
    fn a_single_remote_socket_is_targeted_through_its_room() {
        let sid = Sid::new();
        let wire = to_wire(
            &BroadcastOptions::new(sid),
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(wire.rooms, vec![sid.to_string()]);
        assert!(wire.except.is_empty());
        assert_eq!(wire.flags.unwrap().timeout, Some(1500));
    }

    #[test]
    fn received_selection_targets_everyone_when_no_rooms() {
        let local = to_local(&WireOpts {
            rooms: vec![],
            except: vec!["x".into()],
            flags: Some(WireFlags {
                volatile: Some(true),
                ..Default::default()
            }),
        });
        assert!(local.has_flag(BroadcastFlags::Broadcast));
        assert!(local.has_flag(BroadcastFlags::Volatile));
        assert_eq!(local.except.len(), 1);
        assert!(local.sid.is_none());
    }
}
