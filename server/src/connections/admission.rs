//! How many Socket.IO sessions a node holds, and whether it takes another.
//!
//! A session is admitted when its first request (an Engine.IO handshake: no `sid`) arrives, and
//! counted until Engine.IO forgets it: the [`Permit`] rides in that request's extensions, which
//! Engine.IO keeps as the session's request parts, so dropping the session drops the permit.
//! Nothing has to be told when a session ends, and nothing can forget to.
//!
//! Readiness follows the count with hysteresis: not ready above the high-water mark, ready again
//! only below the low one, so a balancer sees no flapping around a single threshold.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
};

use super::Phase;
use crate::metrics::Metrics;

/// Why a session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `MAX_CONNECTIONS` sessions.
    Full,
    /// The client's address holds `MAX_CONNECTIONS_PER_IP` sessions.
    PerIp,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::PerIp => "per_ip",
        }
    }
}

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max: usize,
    pub per_ip: Option<usize>,
    /// Not ready at or above this many sessions…
    pub high_water: usize,
    /// …and ready again at or below this many.
    pub low_water: usize,
}

/// The sessions of one node.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    ready: AtomicBool,
    refused_full: AtomicU64,
    refused_per_ip: AtomicU64,
    metrics: Arc<Metrics>,
}

/// One admitted session; dropping it releases its place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
    connected: AtomicBool,
}

impl Permit {
    /// The session connected to a namespace: it ends later as a client, not as a silent one.
    pub fn connected(&self) {
        self.connected.store(true, Relaxed);
    }
}

impl Admission {
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(true),
            refused_full: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            metrics,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Sessions held now.
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Sessions refused so far, by reason.
    pub fn refused(&self, reason: Refusal) -> u64 {
        match reason {
            Refusal::Full => self.refused_full.load(Relaxed),
            Refusal::PerIp => self.refused_per_ip.load(Relaxed),
        }
    }

    /// Admits one more session from `ip`, or says why not. Exact under concurrency: the count
    /// never exceeds the maximum.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let taken = self
            .open
            .fetch_update(Relaxed, Relaxed, |n| (n < self.limits.max).then_some(n + 1));
        if taken.is_err() {
            self.refused_full.fetch_add(1, Relaxed);
            return Err(Refusal::Full);
        }
        // From here a dropped permit gives the place back.
        let mut permit = Permit {
            admission: self.clone(),
            ip: None,
            // A refused permit is no session.
            connected: AtomicBool::new(true),
        };
        if let Some(per_ip) = self.limits.per_ip {
            let mut counts = self.per_ip.lock().unwrap();
            let count = counts.entry(ip).or_default();
            if *count >= per_ip {
                drop(counts);
                self.refused_per_ip.fetch_add(1, Relaxed);
                return Err(Refusal::PerIp);
            }
            *count += 1;
            permit.ip = Some(ip);
        }
        permit.connected.store(false, Relaxed);
        self.update_readiness();
        Ok(permit)
    }

    /// Whether the node takes new sessions gladly: below the high-water mark, or back below
    /// the low one after crossing it.
    pub fn ready(&self) -> bool {
        self.update_readiness();
        self.ready.load(Relaxed)
    }

    fn update_readiness(&self) {
        let open = self.open();
        if open >= self.limits.high_water {
            self.ready.store(false, Relaxed);
        } else if open <= self.limits.low_water {
            self.ready.store(true, Relaxed);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let admission = &self.admission;
        if let Some(ip) = self.ip {
            let mut counts = admission.per_ip.lock().unwrap();
            if let Some(count) = counts.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&ip);
                }
            }
        }
        admission.open.fetch_sub(1, Relaxed);
        admission.update_readiness();
        if !self.connected.load(Relaxed) {
            admission.metrics.count_timeout(Phase::Connect);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, per_ip: Option<usize>) -> Arc<Admission> {
        Admission::new(
            Limits {
                max,
                per_ip,
                high_water: max * 9 / 10,
                low_water: max * 7 / 10,
            },
            Arc::default(),
        )
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn admits_exactly_the_maximum_and_gives_places_back() {
        let admission = admission(10, None);
        let permits: Vec<_> = (0..10).map(|_| admission.admit(A).unwrap()).collect();
        assert_eq!(admission.admit(A).unwrap_err(), Refusal::Full);
        assert_eq!(admission.refused(Refusal::Full), 1);
        drop(permits);
        assert_eq!(admission.open(), 0);
        assert!(admission.admit(A).is_ok());
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_maximum() {
        let admission = admission(1000, None);
        let admitted: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    let admission = admission.clone();
                    s.spawn(move || {
                        (0..500)
                            .filter_map(|_| admission.admit(A).ok())
                            .map(std::mem::forget)
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1000);
        assert_eq!(admission.refused(Refusal::Full), 3000);
    }

    #[test]
    fn each_address_gets_its_share() {
        let admission = admission(10, Some(2));
        let a: Vec<_> = (0..2).map(|_| admission.admit(A).unwrap()).collect();
        assert_eq!(admission.admit(A).unwrap_err(), Refusal::PerIp);
        assert_eq!(admission.open(), 2, "a refused address holds no place");
        let _b = admission.admit(B).unwrap();
        drop(a);
        assert!(admission.admit(A).is_ok());
        assert!(admission.per_ip.lock().unwrap().len() <= 2);
    }

    #[test]
    fn readiness_has_hysteresis() {
        let admission = admission(10, None);
        let mut permits: Vec<_> = (0..8).map(|_| admission.admit(A).unwrap()).collect();
        assert!(admission.ready());
        permits.push(admission.admit(A).unwrap());
        assert!(!admission.ready(), "9 of 10 is the high-water mark");
        permits.pop();
        assert!(!admission.ready(), "not ready until the low-water mark");
        permits.pop();
        assert!(admission.ready(), "7 of 10 is below the low-water mark");
    }
}
