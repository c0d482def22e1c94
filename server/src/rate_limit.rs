//! A token bucket per socket: `burst` events at once, `per_sec` sustained.

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
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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
        assert!((0..3).all(|_| limiter.take_at(start)));
        assert!(!limiter.take_at(start));
        assert!(limiter.take_at(start + Duration::from_millis(100)));
        assert!(!limiter.take_at(start + Duration::from_millis(150)));
    }
}
