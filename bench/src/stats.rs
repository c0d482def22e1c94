//! What receivers count: unique deliveries per (sender, seq), duplicates and strays, and the
//! latency histogram they share.

use std::{
    sync::{Mutex, OnceLock},
    time::Instant,
};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::sio::Tag;

/// Microseconds since the generator started: senders stamp messages with it and receivers
/// subtract it, on the same clock.
pub fn now_us() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Sequence numbers above this are garbage, not a reason to allocate.
const MAX_SEQ: u64 = 1 << 28;

/// One receiver's count of the current step.
#[derive(Debug, Default)]
pub struct Tally {
    step: u32,
    /// The senders whose messages this receiver must get, with a bit per sequence number.
    expected: Vec<(u32, Vec<u64>)>,
    /// Deliveries counted once each.
    pub unique: u64,
    pub duplicates: u64,
    /// Tagged messages from a sender it should not hear, or from another step (late).
    pub stray: u64,
    /// Tagged events whose tag could not be read.
    pub malformed: u64,
    /// Acks of fire-and-forget messages (the chat's `message`): `ok` or not.
    pub acks_ok: u64,
    pub acks_failed: u64,
    /// This connection's own messages of the step that the server refused (an error ack, or
    /// the app's `refused` event), a bit per sequence number: their sender was told, so none of
    /// their deliveries is expected.
    refused: Vec<u64>,
    /// Whether the server closed the connection.
    pub closed: bool,
}

/// What a step lost, summed over receivers.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Losses {
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Lost by receivers the server did not disconnect: silent losses, which must never happen
    /// (a server may only drop a client's messages by disconnecting it).
    pub lost_open: u64,
    pub duplicates: u64,
    pub stray: u64,
    pub malformed: u64,
    pub acks_ok: u64,
    pub acks_failed: u64,
    /// Messages the server refused, telling their sender; their deliveries are not expected.
    pub refused: u64,
    pub closed: u64,
}

impl Tally {
    pub fn expect(&mut self, senders: impl IntoIterator<Item = u32>) {
        self.expected = senders.into_iter().map(|s| (s, Vec::new())).collect();
    }

    /// Starts counting `step` from zero.
    pub fn begin(&mut self, step: u32) {
        for (_, bits) in &mut self.expected {
            bits.clear();
        }
        let expected = std::mem::take(&mut self.expected);
        let closed = self.closed;
        *self = Self {
            step,
            expected,
            closed,
            ..Self::default()
        };
    }

    /// Counts one delivery; `false` when it does not count towards the step.
    pub fn record(&mut self, tag: Tag) -> bool {
        let slot = self.expected.iter_mut().find(|(s, _)| *s == tag.sender);
        let (Some((_, bits)), true, true) = (slot, tag.step == self.step, tag.seq < MAX_SEQ) else {
            self.stray += 1;
            return false;
        };
        if !set_bit(bits, tag.seq) {
            self.duplicates += 1;
            return false;
        }
        self.unique += 1;
        true
    }

    /// Notes that the server refused this connection's own message `tag`.
    pub fn refuse(&mut self, tag: Tag) {
        if tag.step == self.step && tag.seq < MAX_SEQ {
            set_bit(&mut self.refused, tag.seq);
        }
    }

    /// The refused messages of this connection, a bit per sequence number.
    pub fn refused(&self) -> &[u64] {
        &self.refused
    }

    /// One past the highest sequence number received from `sender` in this step (0: none).
    pub fn heard(&self, sender: u32) -> u64 {
        let Some((_, bits)) = self.expected.iter().find(|(s, _)| *s == sender) else {
            return 0;
        };
        bits.iter()
            .enumerate()
            .rev()
            .find(|(_, word)| **word != 0)
            .map_or(0, |(i, word)| {
                i as u64 * 64 + 64 - u64::from(word.leading_zeros())
            })
    }

    /// Adds this receiver's count to `losses`, given how many messages each sender sent
    /// (`sent[sender]`) and which of them the server refused (`refused[sender]`).
    pub fn settle(&self, sent: &[u64], refused: &[Vec<u64>], losses: &mut Losses) {
        for (sender, bits) in &self.expected {
            let sent = sent.get(*sender as usize).copied().unwrap_or(0);
            let refused = refused.get(*sender as usize).map_or(&[][..], Vec::as_slice);
            let (mut got, mut excused) = (0, 0);
            for i in 0..bits.len().max(refused.len()) {
                let valid = match sent.saturating_sub(i as u64 * 64) {
                    n if n >= 64 => u64::MAX,
                    n => (1u64 << n) - 1,
                };
                let word = bits.get(i).copied().unwrap_or(0) & valid;
                let refused = refused.get(i).copied().unwrap_or(0) & valid;
                got += u64::from(word.count_ones());
                excused += u64::from((refused & !word).count_ones());
            }
            let expected = sent - excused.min(sent);
            let lost = expected - got.min(expected);
            losses.expected += expected;
            losses.lost += lost;
            if !self.closed {
                losses.lost_open += lost;
            }
        }
        losses.refused += self
            .refused
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>();
        losses.delivered += self.unique;
        losses.duplicates += self.duplicates;
        losses.stray += self.stray;
        losses.malformed += self.malformed;
        losses.acks_ok += self.acks_ok;
        losses.acks_failed += self.acks_failed;
        losses.closed += u64::from(self.closed);
    }
}

/// Sets bit `n` of a growable bitset; `false` if it was set already.
fn set_bit(bits: &mut Vec<u64>, n: u64) -> bool {
    let (word, bit) = ((n / 64) as usize, n % 64);
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    let fresh = bits[word] & (1 << bit) == 0;
    bits[word] |= 1 << bit;
    fresh
}

/// Latencies in microseconds, in shards so that receivers seldom wait for each other.
pub struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

/// Up to a minute, at 0.1 % precision.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_max(60_000_000, 3).expect("valid histogram bounds")
}

impl Latencies {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards).map(|_| Mutex::new(histogram())).collect(),
        }
    }

    pub fn record(&self, shard: usize, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let mut h = self.shards[shard % self.shards.len()].lock().unwrap();
        for &v in values {
            h.saturating_record(v);
        }
    }

    pub fn reset(&self) {
        for shard in &self.shards {
            shard.lock().unwrap().reset();
        }
    }

    pub fn summary(&self) -> Summary {
        let mut all = histogram();
        for shard in &self.shards {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*shard.lock().unwrap());
        }
        Summary::of(&all)
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }

    /// Of a list of durations in microseconds.
    pub fn of_values(values: &[u64]) -> Self {
        let mut h = histogram();
        for &v in values {
            h.saturating_record(v);
        }
        Self::of(&h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(step: u32, sender: u32, seq: u64) -> Tag {
        Tag {
            step,
            sender,
            seq,
            sent_us: 0,
        }
    }

    #[test]
    fn counts_losses_duplicates_and_strays() {
        let mut tally = Tally::default();
        tally.expect([1, 2]);
        tally.begin(7);
        for seq in [0, 1, 2, 70] {
            assert!(tally.record(tag(7, 1, seq)));
        }
        assert!(!tally.record(tag(7, 1, 2)), "duplicate");
        assert!(!tally.record(tag(6, 1, 3)), "late, from the step before");
        assert!(!tally.record(tag(7, 9, 0)), "not a sender of its room");
        assert!(tally.record(tag(7, 2, 0)));
        let mut sent = vec![0; 3];
        sent[1] = 100;
        sent[2] = 1;
        let mut losses = Losses::default();
        tally.settle(&sent, &[], &mut losses);
        assert_eq!(losses.expected, 101);
        assert_eq!(losses.delivered, 5);
        assert_eq!(losses.lost, 96);
        assert_eq!(losses.duplicates, 1);
        assert_eq!(losses.stray, 2);
        assert_eq!(losses.lost_open, 96, "the receiver is still connected");
        assert_eq!((tally.heard(1), tally.heard(2), tally.heard(5)), (71, 1, 0));
        tally.closed = true;
        let mut losses = Losses::default();
        tally.settle(&sent, &[], &mut losses);
        assert_eq!((losses.lost, losses.lost_open), (96, 0));
    }

    #[test]
    fn refused_messages_are_not_expected_and_counted_once_at_their_sender() {
        let (mut sender, mut receiver) = (Tally::default(), Tally::default());
        sender.begin(3);
        receiver.expect([0]);
        receiver.begin(3);
        // Of 100 messages the server refused 10 and 80 (and told the sender), 1 (delivered
        // anyway: not excused twice) and one of an earlier step (ignored).
        for seq in [1, 10, 80] {
            sender.refuse(tag(3, 0, seq));
        }
        sender.refuse(tag(2, 0, 5));
        for seq in (0..100).filter(|s| ![5, 10, 80].contains(s)) {
            receiver.record(tag(3, 0, seq));
        }
        let refused = vec![sender.refused().to_vec()];
        let mut losses = Losses::default();
        for tally in [&sender, &receiver] {
            tally.settle(&[100], &refused, &mut losses);
        }
        assert_eq!(losses.refused, 3);
        assert_eq!(losses.expected, 98);
        assert_eq!(
            (losses.delivered, losses.lost, losses.lost_open),
            (97, 1, 1)
        );
    }

    #[test]
    fn a_new_step_starts_from_zero() {
        let mut tally = Tally::default();
        tally.expect([0]);
        tally.begin(1);
        tally.record(tag(1, 0, 0));
        tally.begin(2);
        assert!(tally.record(tag(2, 0, 0)));
        let mut losses = Losses::default();
        tally.settle(&[1], &[], &mut losses);
        assert_eq!((losses.lost, losses.delivered), (0, 1));
    }

    #[test]
    fn latency_percentiles() {
        let latencies = Latencies::new(2);
        latencies.record(0, &[1000, 2000]);
        latencies.record(1, &[3000, 250_000]);
        let s = latencies.summary();
        assert_eq!(s.count, 4);
        assert!((s.p50_ms - 2.0).abs() < 0.01);
        assert!((s.max_ms - 250.0).abs() < 0.5);
    }
}
