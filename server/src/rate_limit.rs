//! A token bucket: `burst` at once, `per_sec` sustained. Per socket, it counts events (the rate
//! limit) and bytes × recipients (the fan-out budget, see [`crate::fanout`]).

use std::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    tokens: f64,
    last: Instant,
    per_sec: f64,
    burst: f64,
}

impl RateLimiter {
    pub fn new(per_sec: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            per_sec,
            burst,
        }
    }

    /// Takes a token if one is left.
    pub fn try_take(&mut self) -> bool {
        self.try_take_amount(1.0)
    }

    /// Takes `amount` tokens if that many are left. An amount beyond the burst is taken from a
    /// full bucket, leaving a debt the sustained rate pays back: nothing is refused for ever,
    /// the largest things only wait longest.
    pub fn try_take_amount(&mut self, amount: f64) -> bool {
        self.take_at(Instant::now(), amount)
    }

    /// Whether the bucket has refilled to its burst: nothing recent is left to remember.
    pub fn is_full(&self) -> bool {
        let elapsed = self.last.elapsed().as_secs_f64();
        self.tokens + elapsed * self.per_sec >= self.burst
    }

    fn take_at(&mut self, now: Instant, amount: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.last = now;
        if self.tokens >= amount.min(self.burst) {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10.0, 3.0);
        limiter.last = start;
        assert!((0..3).all(|_| limiter.take_at(start, 1.0)));
        assert!(!limiter.take_at(start, 1.0));
        assert!(limiter.take_at(start + Duration::from_millis(100), 1.0));
        assert!(!limiter.take_at(start + Duration::from_millis(150), 1.0));
    }

    #[test]
    fn an_amount_beyond_the_burst_waits_for_a_full_bucket_and_leaves_a_debt() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(100.0, 100.0);
        limiter.last = start;
        assert!(limiter.take_at(start, 10.0));
        assert!(
            !limiter.take_at(start, 300.0),
            "not from a bucket that is not full"
        );
        let full = start + Duration::from_millis(100);
        assert!(limiter.take_at(full, 300.0));
        // 200 owed: two seconds at 100 a second before anything fits again.
        assert!(!limiter.take_at(full + Duration::from_millis(1900), 1.0));
        assert!(limiter.take_at(full + Duration::from_millis(2100), 1.0));
    }
}
