//! The fan-out budget: what one socket may make the cluster send per second, in bytes times
//! recipients. The event rate limit counts messages, so within it one sender of long messages
//! to a large room made its node write hundreds of MB/s and every other room waited behind it.
//! A message's cost is its size times the room's recipients; a socket whose budget is spent
//! gets `rate_limited` until it refills (never a silent drop).
//!
//! Recipients are the larger of the room's sockets on this node and its online users cluster-
//! wide (presence), the latter read at most once a second per room.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long a room's cluster-wide size is reused.
const SIZE_TTL: Duration = Duration::from_secs(1);

/// Rooms whose size is remembered at most; beyond, the oldest half is forgotten.
const MAX_SIZES: usize = 10_000;

/// Bytes a message costs on the wire besides its text: ids, names, room, seq, epoch, framing.
pub const MESSAGE_OVERHEAD_BYTES: usize = 256;

/// Cluster-wide room sizes, recently read.
#[derive(Default)]
pub struct RoomSizes {
    sizes: Mutex<HashMap<String, (Instant, usize)>>,
}

impl RoomSizes {
    /// The size of `place` if read within the last second.
    pub fn recent(&self, place: &str) -> Option<usize> {
        let sizes = self.sizes.lock().unwrap();
        let (read, size) = sizes.get(place)?;
        (read.elapsed() < SIZE_TTL).then_some(*size)
    }

    pub fn remember(&self, place: &str, size: usize) {
        let mut sizes = self.sizes.lock().unwrap();
        if sizes.len() >= MAX_SIZES {
            sizes.retain(|_, (read, _)| read.elapsed() < SIZE_TTL);
        }
        sizes.insert(place.to_string(), (Instant::now(), size));
    }
}

/// What sending `text_bytes` to `recipients` costs, in budget bytes.
pub fn cost(text_bytes: usize, recipients: usize) -> f64 {
    (text_bytes + MESSAGE_OVERHEAD_BYTES) as f64 * recipients.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_reused_for_a_second() {
        let sizes = RoomSizes::default();
        assert_eq!(sizes.recent("/|a"), None);
        sizes.remember("/|a", 7);
        assert_eq!(sizes.recent("/|a"), Some(7));
        sizes.sizes.lock().unwrap().get_mut("/|a").unwrap().0 -= SIZE_TTL;
        assert_eq!(sizes.recent("/|a"), None);
    }

    #[test]
    fn a_message_costs_its_size_times_its_recipients() {
        assert_eq!(cost(744, 1000), 1_000_000.0);
        assert_eq!(cost(0, 0), 256.0, "the sender itself at least");
    }
}
