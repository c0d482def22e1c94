//! `server_stats`: what each node tells every Admin UI of the cluster every 2 s. The UI lists
//! servers by `serverId` (the node's `NODE_ID`) and marks one unhealthy after 10 s without its
//! statistics, so a dead node shows as down there as it does in Node.
//!
//! `aggregatedEvents` are this node's counts since its previous statistics, in one bucket (the UI
//! regroups them by 10 s): Socket.IO connections and disconnections by reason, events received,
//! broadcast packets delivered, and bytes in and out of its connections.

use std::{collections::HashSet, time::Instant};

use serde::Serialize;
use serde_json::{Value, json};
use socketio_cluster::ClusterStats;
use socketioxide::{SocketIo, TransportType, adapter::Adapter};

use super::monitor::Counts;
use crate::chat::now_ms;

/// One `aggregatedEvents` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregate {
    pub timestamp: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(rename = "subType", skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<&'static str>,
    pub count: u64,
}

/// Monotonic totals, read at each tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub connections: u64,
    pub disconnections: Vec<(&'static str, u64)>,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Totals {
    pub fn read(counts: &Counts, cluster: &ClusterStats, bytes_in: u64, bytes_out: u64) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let mut disconnections: Vec<(&'static str, u64)> = counts
            .disconnections
            .lock()
            .unwrap()
            .iter()
            .map(|(reason, n)| (*reason, *n))
            .collect();
        disconnections.sort();
        Self {
            connections: counts.connections.load(Relaxed),
            disconnections,
            packets_in: counts.packets_in.load(Relaxed),
            packets_out: cluster.delivered,
            bytes_in,
            bytes_out,
        }
    }

    /// What happened between `before` and `self`, stamped `timestamp`; nothing that stayed the
    /// same.
    pub fn since(&self, before: &Totals, timestamp: u64) -> Vec<Aggregate> {
        let entry = |kind, sub_type, now: u64, then: u64| {
            (now > then).then_some(Aggregate {
                timestamp,
                kind,
                sub_type,
                count: now - then,
            })
        };
        let mut out: Vec<Aggregate> = [
            entry("rawConnection", None, self.connections, before.connections),
            entry("packetsIn", None, self.packets_in, before.packets_in),
            entry("packetsOut", None, self.packets_out, before.packets_out),
            entry("bytesIn", None, self.bytes_in, before.bytes_in),
            entry("bytesOut", None, self.bytes_out, before.bytes_out),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (reason, n) in &self.disconnections {
            let then = before
                .disconnections
                .iter()
                .find(|(r, _)| r == reason)
                .map_or(0, |(_, n)| *n);
            out.extend(entry("rawDisconnection", Some(*reason), *n, then));
        }
        out
    }
}

/// Who this node is, as the statistics say it.
pub struct Identity {
    pub server_id: String,
    pub hostname: String,
    pub started: Instant,
}

impl Identity {
    pub fn new(server_id: &str) -> Self {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_else(|| server_id.to_string());
        Self {
            server_id: server_id.to_string(),
            hostname,
            started: Instant::now(),
        }
    }
}

/// The `server_stats` payload. `clientsCount` is the node's Engine.IO sessions; polling clients
/// and namespace sizes are counted over its sockets.
pub fn server_stats<A: Adapter>(
    me: &Identity,
    io: &SocketIo<A>,
    sessions: usize,
    aggregated: &[Aggregate],
) -> Value {
    let mut polling = HashSet::new();
    let namespaces: Vec<Value> = io
        .nsps()
        .into_iter()
        .map(|ns| {
            let name = ns.ns_path().to_string();
            let sockets = ns.sockets();
            for socket in &sockets {
                if socket.transport_type() == TransportType::Polling {
                    polling.insert(socket.id);
                }
            }
            json!({ "name": name, "socketsCount": sockets.len() })
        })
        .collect();
    json!({
        "serverId": me.server_id,
        "hostname": me.hostname,
        "pid": std::process::id(),
        "uptime": me.started.elapsed().as_secs_f64(),
        "clientsCount": sessions,
        "pollingClientsCount": polling.len(),
        "aggregatedEvents": aggregated,
        "namespaces": namespaces,
    })
}

/// The start of the current second, in ms (the buckets Node's statistics use).
pub fn this_second() -> u64 {
    now_ms() / 1000 * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_are_what_changed_since_the_last_tick() {
        let before = Totals {
            connections: 3,
            disconnections: vec![("transport close", 1)],
            bytes_in: 100,
            ..Totals::default()
        };
        let now = Totals {
            connections: 5,
            disconnections: vec![("ping timeout", 2), ("transport close", 1)],
            bytes_in: 160,
            ..Totals::default()
        };
        let aggregates = now.since(&before, 7000);
        let json = serde_json::to_value(&aggregates).unwrap();
        assert_eq!(
            json,
            json!([
                { "timestamp": 7000, "type": "rawConnection", "count": 2 },
                { "timestamp": 7000, "type": "bytesIn", "count": 60 },
                { "timestamp": 7000, "type": "rawDisconnection", "subType": "ping timeout", "count": 2 },
            ])
        );
        assert!(now.since(&now, 9000).is_empty());
    }
}
