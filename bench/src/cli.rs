//! Command-line flags, and the plan they make (the smoke run's tiny sizes included).

use std::{fmt, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// One big room, half of it on each of 2 nodes; the message rate steps up.
    Fanout,
    /// Many rooms of 2 clients on different nodes; the message rate steps up.
    Rooms,
    /// `fetchSockets` and `allRooms` round trips with 2 and 3 nodes.
    Requests,
    /// Idle connections: memory per connection and connect rate.
    Idle,
    /// The real chat server: join, then messages with history on (our adapter only).
    Chat,
    /// Rooms of 2 clients on 2 of N nodes (N = 2, 4, 6), a fixed message rate, classic vs
    /// sharded pub/sub: what each node reads from Redis against what its rooms need, and Redis
    /// CPU per delivered message (our adapter only).
    Scaling,
    /// The real chat server through connection storms: `--idle-clients` connect and leave,
    /// three times; its memory must come back after each (our adapter only).
    Waves,
    /// The real chat server: what a stored message costs Redis, in memory and CPU, next to its
    /// JSON (our adapter only, one node).
    Storage,
    All,
}

impl Scenario {
    pub const EACH: [Self; 8] = [
        Self::Fanout,
        Self::Rooms,
        Self::Requests,
        Self::Idle,
        Self::Chat,
        Self::Scaling,
        Self::Waves,
        Self::Storage,
    ];
}

/// The Redis started for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisKind {
    /// One standalone `redis-server`.
    Single,
    /// A Redis Cluster of three masters in one container (`redis-cluster://` URL: our adapter
    /// then speaks sharded pub/sub by default).
    Cluster,
}

/// The chat nodes' Socket.IO Admin UI, in the chat scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminUi {
    /// Not configured.
    Off,
    /// Configured (production mode), nobody logged in: what instrumentation alone costs.
    On,
    /// Configured, and an admin logged in to the first node for the whole run.
    Watched,
}

/// How `bench-app` on our adapter uses pub/sub, in the scaling scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PubSubMode {
    /// `PSUBSCRIBE` to every broadcast channel of the namespace, `PUBLISH` (not sharded).
    Classic,
    /// Sharded pub/sub, dynamic subscriptions: a room's channel is `SSUBSCRIBE`d only by the
    /// nodes that host a socket of it.
    Sharded,
    /// Sharded pub/sub, one channel per namespace (every node gets every broadcast).
    ShardedStatic,
}

impl PubSubMode {
    /// `bench-app` flags for this mode.
    pub fn app_flags(self) -> Vec<String> {
        let (sharded, mode) = match self {
            Self::Classic => ("false", None),
            Self::Sharded => ("true", Some("dynamic")),
            Self::ShardedStatic => ("true", Some("static")),
        };
        let mut flags = vec!["--sharded".to_string(), sharded.to_string()];
        if let Some(mode) = mode {
            flags.extend(["--subscription-mode".to_string(), mode.to_string()]);
        }
        flags
    }
}

impl fmt::Display for PubSubMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().map(|v| v.get_name().to_string());
        f.write_str(&name.unwrap_or_default())
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().map(|v| v.get_name().to_string());
        f.write_str(&name.unwrap_or_default())
    }
}

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Impl {
    /// `bench-app` on this workspace's `socketio-cluster`.
    Cluster,
    /// `bench-app` on `socketioxide-redis` (fred driver).
    SocketioxideRedis,
    /// `bench/node/app.mjs` on socket.io + `@socket.io/redis-adapter`.
    Node,
}

impl fmt::Display for Impl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().map(|v| v.get_name().to_string());
        f.write_str(&name.unwrap_or_default())
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Load generator for socketio-cluster against socketioxide-redis and Node.js' @socket.io/redis-adapter",
    long_about = None
)]
pub struct Args {
    /// Scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub scenario: Vec<Scenario>,
    /// Implementations, comma-separated; each round runs them in this order.
    #[arg(
        long = "impl",
        value_enum,
        value_delimiter = ',',
        default_value = "cluster,socketioxide-redis,node"
    )]
    pub impls: Vec<Impl>,
    /// Rounds: every scenario runs A, B, C, A, B, C… so noise hits all implementations alike.
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// Seconds of traffic per step.
    #[arg(long, default_value_t = 5.0)]
    pub duration_secs: f64,
    /// Clients of the fanout room and of the requests scenario.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Clients of the fanout room that send.
    #[arg(long, default_value_t = 4)]
    pub senders: usize,
    /// Fanout steps: messages per second, all senders together.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,100,200,400,700,850,1000,1250,1500,2000,2500,3000"
    )]
    pub rates: Vec<f64>,
    /// Rooms of 2 clients in the rooms scenario.
    #[arg(long, default_value_t = 1000)]
    pub rooms: usize,
    /// Rooms steps: messages per second, all rooms together.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,4000,8000,12000,16000,20000,24000,28000,32000,36000,40000,48000"
    )]
    pub room_rates: Vec<f64>,
    /// Sequential requests per kind (`count`, `rooms`) in the requests scenario.
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
    /// Node counts of the requests scenario.
    #[arg(long, value_delimiter = ',', default_value = "2,3")]
    pub request_nodes: Vec<usize>,
    /// Clients of the idle scenario.
    #[arg(long, default_value_t = 10_000)]
    pub idle_clients: usize,
    /// Nodes of the chat scenario (1 with `--chat-rooms 1900` measures a full node: 19,000
    /// clients, as many as this machine's 20,000 open files per process allow).
    #[arg(long, default_value_t = 2)]
    pub chat_nodes: usize,
    /// Rooms of the chat scenario.
    #[arg(long, default_value_t = 100)]
    pub chat_rooms: usize,
    /// Users per chat room.
    #[arg(long, default_value_t = 10)]
    pub chat_room_size: usize,
    /// Chat steps: messages per second, all rooms together.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "200,500,1000,2000,3000,5000,8000,10000,12000,16000"
    )]
    pub chat_rates: Vec<f64>,
    /// The chat nodes' Admin UI: `off`, `on` (configured, nobody logged in) or `watched` (an
    /// admin logged in to the first node).
    #[arg(long, value_enum, default_value_t = AdminUi::Off)]
    pub chat_admin_ui: AdminUi,
    /// Node counts of the scaling scenario.
    #[arg(long, value_delimiter = ',', default_value = "2,4,6")]
    pub scaling_nodes: Vec<usize>,
    /// Rooms of 2 clients in the scaling scenario (room i on nodes i % N and (i + 1) % N).
    #[arg(long, default_value_t = 60)]
    pub scaling_rooms: usize,
    /// Messages per second of the scaling scenario, all rooms together (both clients of each
    /// room send).
    #[arg(long, default_value_t = 2000.0)]
    pub scaling_rate: f64,
    /// Pub/sub modes the scaling scenario compares, each on fresh nodes, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "classic,sharded"
    )]
    pub scaling_modes: Vec<PubSubMode>,
    /// Filler bytes in each message (a short chat line).
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// A step passes with no loss, no duplicate and a p99 latency up to this.
    #[arg(long, default_value_t = 250.0)]
    pub max_p99_ms: f64,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// socketioxide's per-socket buffer in bench-app (default: the library's, 128).
    #[arg(long)]
    pub max_buffer: Option<usize>,
    /// engineioxide's WebSocket read buffer in bench-app, both Rust implementations (the
    /// library's default is 4096; this bytes-per-connection cost is most of what it tunes).
    #[arg(long, default_value = "1024")]
    pub ws_read_buffer: Option<usize>,
    /// fred's receive buffer in bench-app (default: each adapter's own).
    #[arg(long)]
    pub receive_buffer: Option<usize>,
    /// socketioxide-redis' stream buffer (default: its own, 1024).
    #[arg(long)]
    pub stream_buffer: Option<usize>,
    /// Use this Redis instead of starting one in Docker (then its CPU is not measured).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// The Redis started for the run: `single` (one server) or `cluster` (3 masters; its CPU is
    /// the three servers' together).
    #[arg(long, value_enum, default_value = "single")]
    pub redis: RedisKind,
    /// `bench-app` on our adapter: sharded pub/sub on or off (unset: the library's default for
    /// the URL, sharded for a cluster). Not used by the scaling scenario, which sets its modes.
    #[arg(long)]
    pub sharded: Option<bool>,
    /// `bench-app` on our adapter with sharded pub/sub: `static`, `dynamic` or
    /// `dynamic-private` (unset: the library's default, dynamic).
    #[arg(long)]
    pub subscription_mode: Option<String>,
    /// The Docker image of the Redis started for the run.
    #[arg(long, default_value = "redis:7")]
    pub redis_image: String,
    /// The Node.js app (its node_modules installed with `npm ci`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/node/app.mjs"))]
    pub node_app: PathBuf,
    /// Where the servers' logs go (a folder per run).
    #[arg(long, default_value = "target/bench-logs")]
    pub log_dir: PathBuf,
    /// Write every measured step here, as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A few seconds of everything at tiny sizes, for CI: fails on any error, loss or duplicate
    /// (latency up to 5 s passes).
    #[arg(long)]
    pub smoke: bool,
}

/// Sizes and rates of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub duration: Duration,
    pub fanout_clients: usize,
    pub senders: usize,
    pub rates: Vec<f64>,
    pub rooms: usize,
    pub room_rates: Vec<f64>,
    pub request_clients: usize,
    pub requests: usize,
    pub request_nodes: Vec<usize>,
    pub idle_clients: usize,
    pub chat_nodes: usize,
    pub chat_rooms: usize,
    pub chat_room_size: usize,
    pub chat_rates: Vec<f64>,
    pub chat_admin_ui: AdminUi,
    pub scaling_nodes: Vec<usize>,
    pub scaling_rooms: usize,
    pub scaling_rate: f64,
    pub scaling_modes: Vec<PubSubMode>,
    pub payload_bytes: usize,
    pub max_p99_ms: f64,
    pub concurrency: usize,
    /// Run every step even after one fails (the smoke run checks them all).
    pub smoke: bool,
}

impl Args {
    pub fn scenarios(&self) -> Vec<Scenario> {
        if self.scenario.contains(&Scenario::All) {
            return Scenario::EACH.to_vec();
        }
        let mut scenarios = Vec::new();
        for s in &self.scenario {
            if !scenarios.contains(s) {
                scenarios.push(*s);
            }
        }
        scenarios
    }

    pub fn plan(&self) -> Plan {
        let plan = Plan {
            duration: Duration::from_secs_f64(self.duration_secs.max(0.1)),
            fanout_clients: self.clients,
            senders: self.senders.clamp(1, self.clients.max(1)),
            rates: self.rates.clone(),
            rooms: self.rooms,
            room_rates: self.room_rates.clone(),
            request_clients: self.clients,
            requests: self.requests,
            request_nodes: self.request_nodes.clone(),
            idle_clients: self.idle_clients,
            chat_nodes: self.chat_nodes.max(1),
            chat_rooms: self.chat_rooms,
            chat_room_size: self.chat_room_size.max(1),
            chat_rates: self.chat_rates.clone(),
            chat_admin_ui: self.chat_admin_ui,
            scaling_nodes: self.scaling_nodes.clone(),
            scaling_rooms: self.scaling_rooms.max(1),
            scaling_rate: self.scaling_rate,
            scaling_modes: self.scaling_modes.clone(),
            payload_bytes: self.payload_bytes,
            max_p99_ms: self.max_p99_ms,
            concurrency: self.connect_concurrency.max(1),
            smoke: self.smoke,
        };
        if !self.smoke {
            return plan;
        }
        Plan {
            duration: Duration::from_secs(1),
            fanout_clients: 40,
            senders: 2,
            rates: vec![50.0, 100.0],
            rooms: 20,
            room_rates: vec![100.0],
            request_clients: 20,
            requests: 20,
            idle_clients: 200,
            chat_nodes: 2,
            chat_rooms: 4,
            chat_room_size: 3,
            chat_rates: vec![20.0],
            scaling_nodes: vec![2, 3],
            scaling_rooms: 6,
            scaling_rate: 60.0,
            // A loaded CI machine running debug builds is slow; the smoke run checks that
            // everything arrives, once, not how fast.
            max_p99_ms: 5000.0,
            ..plan
        }
    }
}
