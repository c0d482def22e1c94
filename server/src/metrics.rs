//! Prometheus metrics: counters kept by the chat, and the cluster layer's counters read at scrape.

use std::{future::Future, time::Instant};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use socketio_cluster::ClusterStats;

use crate::protocol::ErrorCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveredLabel {
    recovered: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    op: String,
}

/// A phase of a connection that a slow or silent client can stretch, as `http_timeouts` counts
/// them (see [`crate::connections`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The request line and headers (`HTTP_HEADER_TIMEOUT_MS`), idle keep-alive included.
    Headers,
    /// A request body, e.g. a long-polling POST (`HTTP_BODY_TIMEOUT_MS`).
    Body,
    /// A session that ended without connecting to any namespace: `CONNECT_TIMEOUT_MS` passed,
    /// its connects were refused (bad credentials, bad namespace), or the client gave up.
    Connect,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Headers => "headers",
            Phase::Body => "body",
            Phase::Connect => "connect",
        }
    }
}

/// The chat's own counters.
#[derive(Debug)]
pub struct Metrics {
    pub messages_in: Counter,
    pub messages_out: Counter,
    /// Bytes read from and written to the node's connections (see `connections::counted`).
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub retries_deduplicated: Counter,
    joins_since: Family<RecoveredLabel, Counter>,
    disconnects: Family<ReasonLabel, Counter>,
    pub namespaces_released: Counter,
    pub departures_retried: Counter,
    pub presence_reregistered: Counter,
    rejected: Family<CodeLabel, Counter>,
    requests: Family<OpLabel, Counter>,
    request_seconds: Family<OpLabel, Histogram>,
    timeouts: Family<PhaseLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            retries_deduplicated: Counter::default(),
            joins_since: Family::default(),
            disconnects: Family::default(),
            namespaces_released: Counter::default(),
            departures_retried: Counter::default(),
            presence_reregistered: Counter::default(),
            rejected: Family::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0002, 2.0, 16))
            }),
            timeouts: Family::default(),
        }
    }
}

/// What a scrape reads from the rest of the node.
pub struct Snapshot<'a> {
    pub node: &'a str,
    pub sockets: u64,
    pub rooms: usize,
    pub cluster: ClusterStats,
    pub connections: Connections,
    pub admin_ui_dropped: u64,
}

/// The admission of sessions, read at scrape (see [`crate::connections`]).
pub struct Connections {
    pub open: usize,
    pub max: usize,
    pub ready: bool,
    pub refused_full: u64,
    pub refused_per_ip: u64,
}

impl Metrics {
    pub fn rejected(&self, code: ErrorCode) {
        let code = serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        self.rejected.get_or_create(&CodeLabel { code }).inc();
    }

    /// A socket disconnected, for `reason` (Node's names: `transport close`, `ping timeout`, …).
    pub fn count_disconnect(&self, reason: &str) {
        let reason = reason.to_string();
        self.disconnects
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A client was cut off in `phase` for being too slow or silent.
    pub fn count_timeout(&self, phase: Phase) {
        let phase = phase.as_str();
        self.timeouts.get_or_create(&PhaseLabel { phase }).inc();
    }

    /// A join with `since`, and whether it recovered everything after it.
    pub fn count_recovery(&self, recovered: bool) {
        let recovered = recovered.to_string();
        self.joins_since
            .get_or_create(&RecoveredLabel { recovered })
            .inc();
    }

    /// Runs a cluster request, counting it and timing it under `op`.
    pub async fn time<T>(&self, op: &str, request: impl Future<Output = T>) -> T {
        let label = OpLabel { op: op.to_string() };
        let started = Instant::now();
        let out = request.await;
        self.requests.get_or_create(&label).inc();
        self.request_seconds
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        out
    }

    /// The Prometheus text exposition.
    pub fn render(&self, snap: Snapshot<'_>) -> String {
        let mut registry =
            Registry::with_labels([("node".into(), snap.node.to_string().into())].into_iter());
        registry.register(
            "chat_sockets",
            "Sockets connected to this node",
            ConstGauge::new(snap.sockets as i64),
        );
        registry.register(
            "chat_rooms",
            "Chat rooms with members on this node",
            ConstGauge::new(snap.rooms as i64),
        );
        registry.register(
            "chat_messages_in",
            "Chat messages received from clients",
            self.messages_in.clone(),
        );
        registry.register(
            "chat_messages_out",
            "Chat messages broadcast to rooms",
            self.messages_out.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Bytes read from client connections (HTTP, long-polling and WebSocket)",
            self.bytes_in.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Bytes written to client connections (HTTP, long-polling and WebSocket)",
            self.bytes_out.clone(),
        );
        registry.register(
            "chat_retries_deduplicated",
            "Messages sent again with a clientId already stored: answered with the stored message, not posted again",
            self.retries_deduplicated.clone(),
        );
        registry.register(
            "chat_joins_since",
            "Joins with `since`, by whether everything after it could be recovered",
            self.joins_since.clone(),
        );
        registry.register(
            "chat_disconnects",
            "Sockets disconnected, by reason as Node's socket.io names them",
            self.disconnects.clone(),
        );
        registry.register(
            "chat_requests_rejected",
            "Client requests answered with an error",
            self.rejected.clone(),
        );
        registry.register(
            "cluster_requests",
            "Cluster requests made by the chat and admin API",
            self.requests.clone(),
        );
        registry.register(
            "cluster_request_duration_seconds",
            "Latency of cluster requests",
            self.request_seconds.clone(),
        );
        registry.register(
            "chat_namespaces_released",
            "Empty dynamic namespaces released",
            self.namespaces_released.clone(),
        );
        registry.register(
            "chat_departures_retried",
            "Leave notices that could not be sent when claimed, left for a later claim",
            self.departures_retried.clone(),
        );
        registry.register(
            "chat_presence_reregistered",
            "Sockets registered again in presence after the store forgot this node",
            self.presence_reregistered.clone(),
        );
        let conns = snap.connections;
        registry.register(
            "http_connections_open",
            "Socket.IO sessions this node holds (counted against MAX_CONNECTIONS)",
            ConstGauge::new(conns.open as i64),
        );
        registry.register(
            "http_connections_max",
            "MAX_CONNECTIONS of this node",
            ConstGauge::new(conns.max as i64),
        );
        registry.register(
            "http_ready",
            "1 while /readyz reports ready (below the high-water mark, or back below the low one)",
            ConstGauge::new(i64::from(conns.ready)),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        for (reason, n) in [
            ("full", conns.refused_full),
            ("per_ip", conns.refused_per_ip),
        ] {
            refused
                .get_or_create(&ReasonLabel {
                    reason: reason.into(),
                })
                .inc_by(n);
        }
        registry.register(
            "http_connections_refused",
            "New sessions refused with 503: the node was full, or the address held MAX_CONNECTIONS_PER_IP",
            refused,
        );
        registry.register(
            "http_timeouts",
            "Connections cut off for being slow or silent, by phase: request headers (slowloris), request body, or a session that ended without connecting to a namespace (timed out, refused or abandoned)",
            self.timeouts.clone(),
        );
        let c = snap.cluster;
        registry.register(
            "cluster_messages_published",
            "Messages published to other nodes",
            ConstCounter::new(c.published),
        );
        registry.register(
            "cluster_messages_received",
            "Messages received from other nodes",
            ConstCounter::new(c.received),
        );
        registry.register(
            "packets_delivered",
            "Broadcast packets handed to this node's clients",
            ConstCounter::new(c.delivered),
        );
        registry.register(
            "cluster_malformed_messages",
            "Undecodable messages ignored",
            ConstCounter::new(c.malformed),
        );
        registry.register(
            "cluster_request_timeouts",
            "Cluster requests that timed out",
            ConstCounter::new(c.request_timeouts),
        );
        registry.register(
            "redis_reconnects",
            "Reconnections to Redis",
            ConstCounter::new(c.reconnects),
        );
        registry.register(
            "dropped_messages_lost",
            "Messages from other nodes lost because they came faster than read",
            ConstCounter::new(c.lost),
        );
        registry.register(
            "dropped_messages_undelivered",
            "Packets a local client did not get: its buffer was full, it was closing, or it was being disconnected as too slow",
            ConstCounter::new(c.undelivered),
        );
        registry.register(
            "dropped_messages_rejected",
            "Broadcasts refused because too many already waited for Redis (the sender got an error)",
            ConstCounter::new(c.rejected),
        );
        registry.register(
            "slow_clients_disconnected",
            "Clients disconnected because they could not keep up (their packet buffer was full) or this node lost messages they may have needed",
            ConstCounter::new(c.evicted),
        );
        registry.register(
            "cluster_namespace_races",
            "Concurrent first connects to a new namespace beyond the first (their clients connect again after the connect timeout)",
            ConstCounter::new(c.namespace_races),
        );
        registry.register(
            "cluster_rooms_reconciled",
            "Rooms found with sockets but no subscription of their channel (sharded dynamic modes): joined without Cluster::join, their sockets may have missed broadcasts",
            ConstCounter::new(c.rooms_reconciled),
        );
        registry.register(
            "admin_ui_notifications_dropped",
            "Admin UI development-mode notifications beyond ADMIN_UI_EVENTS_PER_SEC, not sent",
            ConstCounter::new(snap.admin_ui_dropped),
        );
        let mut out = String::new();
        let _ = encode(&mut out, &registry);
        out
    }
}
