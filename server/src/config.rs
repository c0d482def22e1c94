//! Configuration: every option is a CLI flag and an environment variable of the same name.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::Parser;
use socketio_cluster::SubscriptionMode;

use crate::{
    admin_ui::settings::AdminUiSettings,
    connections::{Limits, sizing},
};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-server",
    version,
    about = "A clustered Socket.IO chat server"
)]
pub struct Config {
    /// HTTP + Socket.IO port (binds 0.0.0.0).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// `redis://host:port`, `rediss://host:port` for TLS, `redis-cluster://host:port?node=…` for
    /// a Redis Cluster, `redis-sentinel://…` behind Sentinel. Unset: a single node with in-memory
    /// adapter, presence and history.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Sharded pub/sub (SPUBLISH/SSUBSCRIBE), the protocol of Node's `createShardedAdapter`.
    /// A `redis-cluster://` URL implies it.
    #[arg(long, env = "REDIS_SHARDED", default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_sharded: bool,
    /// Sharded mode only: `static`, `dynamic` or `dynamic-private`, as Node's sharded adapter.
    #[arg(long, env = "SUBSCRIPTION_MODE", default_value = "dynamic")]
    pub subscription_mode: SubscriptionMode,
    /// Shards of presence and leave timers, each in a hash slot of its own; unset: 16 in sharded
    /// mode, 1 otherwise (every presence key in the slot of `{REDIS_KEY}`).
    #[arg(long, env = "PRESENCE_SHARDS")]
    pub presence_shards: Option<u16>,
    /// The CA of a `rediss://` Redis's certificate (PEM); unset: the system's roots.
    #[arg(long, env = "REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for a Redis that authenticates clients (`tls-auth-clients`).
    #[arg(long, env = "REDIS_TLS_CERT_FILE")]
    pub redis_tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `REDIS_TLS_CERT_FILE`.
    #[arg(long, env = "REDIS_TLS_KEY_FILE")]
    pub redis_tls_key_file: Option<PathBuf>,
    /// Stable node name shown in logs, metrics and admin output (random when unset).
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,
    /// How long a disconnected user stays online before others are told they left.
    #[arg(long, env = "LEAVE_GRACE_MS", default_value_t = 5000)]
    pub leave_grace_ms: u64,
    /// After this long without a heartbeat a node is dead and survivors take over its users.
    #[arg(long, env = "NODE_TIMEOUT_MS", default_value_t = 10000)]
    pub node_timeout_ms: u64,
    /// Cluster request timeout (fetch sockets, rooms, acks).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    pub request_timeout_ms: u64,
    /// Messages kept per room (0 disables history).
    #[arg(long, env = "HISTORY_LEN", default_value_t = 100)]
    pub history_len: usize,
    /// Max characters of a chat message.
    #[arg(long, env = "MAX_MESSAGE_LEN", default_value_t = 2000)]
    pub max_message_len: usize,
    /// Bearer token for `/api/*`. Unset: the admin API is disabled (404).
    #[arg(long, env = "ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// If set, `auth.token` must be an HS256 JWT signed with it whose `sub` is the user id.
    #[arg(long, env = "AUTH_SECRET")]
    pub auth_secret: Option<String>,
    /// Tracing filter.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
    /// Events a socket may send per second, sustained.
    #[arg(long, env = "RATE_LIMIT_PER_SEC", default_value_t = 10.0)]
    pub rate_limit_per_sec: f64,
    /// Events a socket may send in a burst.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 20.0)]
    pub rate_limit_burst: f64,
    /// Bytes times recipients one socket's messages may cost per second, sustained (the fan-out
    /// budget): a message's size times the room's size. Beyond it, `rate_limited`.
    #[arg(long, env = "FANOUT_BYTES_PER_SEC", default_value_t = 8_000_000.0)]
    pub fanout_bytes_per_sec: f64,
    /// The fan-out budget one socket may spend at once.
    #[arg(long, env = "FANOUT_BURST_BYTES", default_value_t = 32_000_000.0)]
    pub fanout_burst_bytes: f64,
    /// Prefix of Redis channels and keys (the Node.js adapter's `key`).
    #[arg(long, env = "REDIS_KEY", default_value = "socket.io")]
    pub redis_key: String,
    /// Answer cluster requests on the requester's own response channel (the Node.js adapter's
    /// `publishOnSpecificResponseChannel`); `false` answers on the shared one.
    #[arg(long, env = "REDIS_SPECIFIC_RESPONSE_CHANNEL", default_value_t = true, action = clap::ArgAction::Set)]
    pub redis_specific_response_channel: bool,
    /// Packets that may wait for one slow client; a client whose queue is full is disconnected
    /// (counted and logged) rather than left with a gap. The queue grows on demand, so idle
    /// sockets do not pay for the size.
    #[arg(long, env = "SOCKET_BUFFER", default_value_t = 1024)]
    pub socket_buffer: usize,
    /// Broadcasts this node may have sent to Redis without its confirmation. Beyond that a
    /// `join`, `leave` or `message` is refused with `rate_limited` before it changes anything,
    /// instead of queueing without bound in memory and latency.
    #[arg(long, env = "MAX_PENDING_BROADCASTS", default_value_t = 8192)]
    pub max_pending_broadcasts: usize,
    /// Bytes each WebSocket reads at once. Allocated per connection, idle or not: 1024 instead
    /// of engineioxide's 4096 saves 3 KiB per connection; a bigger message takes more reads.
    #[arg(long, env = "WS_READ_BUFFER", default_value_t = 1024)]
    pub ws_read_buffer: usize,
    /// Largest packet a client may send, in bytes (Node's `maxHttpBufferSize`), over WebSocket
    /// and polling alike; a client sending more is disconnected.
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = 1_000_000)]
    pub max_payload_bytes: u64,
    /// Most history, in bytes of JSON, that a `join` ack carries: the latest messages that fit.
    /// With `SOCKET_BUFFER`, it bounds what a client that never reads can make a node hold.
    #[arg(long, env = "HISTORY_ACK_BYTES", default_value_t = 65_536)]
    pub history_ack_bytes: usize,
    /// Messages a `history` page carries when the request names no `limit`.
    #[arg(long, env = "HISTORY_PAGE_LEN", default_value_t = 50)]
    pub history_page_len: usize,
    /// Most messages a `history` page carries, whatever `limit` asks for.
    #[arg(long, env = "HISTORY_PAGE_MAX_LEN", default_value_t = 500)]
    pub history_page_max_len: usize,
    /// A room's history expires this long after its last message.
    #[arg(long, env = "HISTORY_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub history_ttl_secs: u64,
    /// Rooms one socket may be in at once; a `join` beyond is a `bad_request`. Each room a socket
    /// is in costs presence entries in Redis and, in sharded mode, may cost its node a
    /// subscription.
    #[arg(long, env = "MAX_ROOMS_PER_SOCKET", default_value_t = 100)]
    pub max_rooms_per_socket: usize,
    /// Namespaces this node serves at most (`/` included); a connect to one more is refused.
    #[arg(long, env = "MAX_NAMESPACES", default_value_t = 1000)]
    pub max_namespaces: usize,
    /// An empty dynamic namespace is released (unsubscribed, forgotten) after this long.
    #[arg(long, env = "NAMESPACE_IDLE_SECS", default_value_t = 300)]
    pub namespace_idle_secs: u64,
    /// The built web client (`cd web && npm ci && npm run build`), served at `/`; relative paths
    /// are relative to the working directory.
    #[arg(long, env = "WEB_DIR", default_value = "web/dist")]
    pub web_dir: PathBuf,
    /// Origins allowed to use Socket.IO from another origin, comma-separated, credentials
    /// included; `*` allows any origin, without credentials. Unset: same origin only. Never
    /// applies to `/api/*`.
    #[arg(long, env = "CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    #[command(flatten)]
    pub admin_ui: AdminUiSettings,
    /// The Socket.IO endpoint path, as Node's `path` option.
    #[arg(long, env = "SOCKETIO_PATH", default_value = "/socket.io")]
    pub socketio_path: String,
    /// Serve the Socket.IO JS client at `{SOCKETIO_PATH}/socket.io.js`, `.min.js`,
    /// `.esm.min.js` and their `.map`s, as Node's socket.io does.
    #[arg(long, env = "SERVE_CLIENT", default_value_t = true, action = clap::ArgAction::Set)]
    pub serve_client: bool,
    /// Where the `socket.io-client` package's `dist` folder is (installed by the web build).
    #[arg(
        long,
        env = "SOCKETIO_CLIENT_DIR",
        default_value = "web/node_modules/socket.io-client/dist"
    )]
    pub socketio_client_dir: PathBuf,
    /// Engine.IO heartbeat: a ping every this long.
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,
    /// A client that does not answer a ping within this is disconnected.
    #[arg(long, env = "PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub ping_timeout_ms: u64,
    /// A client that does not connect to a namespace within this is closed.
    #[arg(long, env = "CONNECT_TIMEOUT_MS", default_value_t = 45_000)]
    pub connect_timeout_ms: u64,
    /// A connection must send a request's complete headers within this, or it is closed
    /// (slowloris); an idle keep-alive connection is closed after the same time.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,
    /// A request body (a long-polling POST) must arrive within this.
    #[arg(long, env = "HTTP_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_body_timeout_ms: u64,
    /// A polling session upgrading to WebSocket must finish the upgrade within this.
    #[arg(long, env = "WS_UPGRADE_TIMEOUT_MS", default_value_t = 10_000)]
    pub ws_upgrade_timeout_ms: u64,
    /// Socket.IO sessions this node holds at once; beyond it a new one is refused before the
    /// upgrade (HTTP 503, `Retry-After`). Unset: what 75 % of the memory limit holds at 32 KiB a
    /// connection, and at most the open-file limit less 256.
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Sessions one client address may hold; unset: no limit. Behind a load balancer, list its
    /// addresses in `TRUSTED_PROXIES`, or every client counts as the balancer.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Comma-separated addresses of proxies whose `X-Forwarded-For` names the client.
    #[arg(long, env = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// `/readyz` turns not-ready when the node holds this percentage of `MAX_CONNECTIONS`…
    #[arg(long, env = "READY_HIGH_WATER_PERCENT", default_value_t = 90)]
    pub ready_high_water_percent: u64,
    /// …and ready again once it holds no more than this percentage.
    #[arg(long, env = "READY_LOW_WATER_PERCENT", default_value_t = 80)]
    pub ready_low_water_percent: u64,
}

/// Who may use Socket.IO from another origin (`CORS_ORIGINS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// `*`: any origin, without credentials (browsers refuse credentials with a wildcard).
    Any,
    /// These origins, credentials included.
    Origins(Vec<String>),
}

impl Config {
    pub fn leave_grace(&self) -> Duration {
        Duration::from_millis(self.leave_grace_ms)
    }

    /// Whether nodes use sharded pub/sub.
    pub fn sharded(&self) -> bool {
        self.redis_sharded
            || self
                .redis_url
                .as_deref()
                .is_some_and(socketio_cluster::RedisDriverConfig::is_cluster_url)
    }

    pub fn presence_shards(&self) -> u16 {
        self.presence_shards
            .unwrap_or(if self.sharded() { 16 } else { 1 })
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// A configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        Self::parse_from(["chat-server"])
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn http_header_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_timeout_ms)
    }

    pub fn http_body_timeout(&self) -> Duration {
        Duration::from_millis(self.http_body_timeout_ms)
    }

    pub fn ws_upgrade_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_upgrade_timeout_ms)
    }

    /// The admission limits: `MAX_CONNECTIONS` or its default from the memory and open-file
    /// limits (the soft file limit is raised to the hard one first), and the water marks.
    pub fn connection_limits(&self) -> Limits {
        let files = sizing::raise_file_limit();
        let max = self
            .max_connections
            .unwrap_or_else(|| sizing::default_max_connections(sizing::memory_limit(), files));
        let mark = |percent: u64| (max as u64 * percent / 100) as usize;
        Limits {
            max,
            per_ip: self.max_connections_per_ip,
            high_water: mark(self.ready_high_water_percent).max(1),
            low_water: mark(self.ready_low_water_percent),
        }
    }

    /// The addresses of `TRUSTED_PROXIES`.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<IpAddr>> {
        self.trusted_proxies
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse()
                    .map_err(|_| anyhow::anyhow!("TRUSTED_PROXIES: {a} is not an IP address"))
            })
            .collect()
    }

    pub fn namespace_idle(&self) -> Duration {
        Duration::from_secs(self.namespace_idle_secs)
    }

    /// Flags and environment, where an empty value counts as unset: compose files and Kubernetes
    /// Secrets write `AUTH_SECRET=""` for "no secret", which must not demand tokens signed with
    /// an empty key (nor enable the admin API with an empty token). Values out of range are
    /// refused with a message naming the variable.
    pub fn load() -> anyhow::Result<Self> {
        let config = Self::parse().without_empty_values();
        config.check()?;
        Ok(config)
    }

    /// Refuses values the node cannot work with, naming the variable.
    pub fn check(&self) -> anyhow::Result<()> {
        let ranges: [(&str, u64, u64, u64); 25] = [
            (
                "HTTP_HEADER_TIMEOUT_MS",
                self.http_header_timeout_ms,
                50,
                3_600_000,
            ),
            (
                "HTTP_BODY_TIMEOUT_MS",
                self.http_body_timeout_ms,
                50,
                3_600_000,
            ),
            (
                "WS_UPGRADE_TIMEOUT_MS",
                self.ws_upgrade_timeout_ms,
                50,
                3_600_000,
            ),
            (
                "MAX_CONNECTIONS",
                self.max_connections.unwrap_or(1) as u64,
                1,
                10_000_000,
            ),
            (
                "MAX_CONNECTIONS_PER_IP",
                self.max_connections_per_ip.unwrap_or(1) as u64,
                1,
                10_000_000,
            ),
            (
                "READY_HIGH_WATER_PERCENT",
                self.ready_high_water_percent,
                1,
                100,
            ),
            (
                "READY_LOW_WATER_PERCENT",
                self.ready_low_water_percent,
                0,
                self.ready_high_water_percent.saturating_sub(1),
            ),
            (
                "MAX_ROOMS_PER_SOCKET",
                self.max_rooms_per_socket as u64,
                1,
                100_000,
            ),
            (
                "PRESENCE_SHARDS",
                u64::from(self.presence_shards()),
                1,
                1024,
            ),
            ("LEAVE_GRACE_MS", self.leave_grace_ms, 0, 3_600_000),
            ("NODE_TIMEOUT_MS", self.node_timeout_ms, 200, 600_000),
            ("REQUEST_TIMEOUT_MS", self.request_timeout_ms, 10, 600_000),
            ("HISTORY_LEN", self.history_len as u64, 0, 100_000),
            ("HISTORY_PAGE_LEN", self.history_page_len as u64, 1, 100_000),
            (
                "HISTORY_PAGE_MAX_LEN",
                self.history_page_max_len as u64,
                1,
                100_000,
            ),
            ("MAX_MESSAGE_LEN", self.max_message_len as u64, 1, 1_000_000),
            ("SOCKET_BUFFER", self.socket_buffer as u64, 1, 1_000_000),
            (
                "MAX_PENDING_BROADCASTS",
                self.max_pending_broadcasts as u64,
                1,
                10_000_000,
            ),
            ("WS_READ_BUFFER", self.ws_read_buffer as u64, 64, 16 << 20),
            ("MAX_PAYLOAD_BYTES", self.max_payload_bytes, 1024, 64 << 20),
            ("MAX_NAMESPACES", self.max_namespaces as u64, 1, 100_000),
            ("PING_INTERVAL_MS", self.ping_interval_ms, 50, 3_600_000),
            ("PING_TIMEOUT_MS", self.ping_timeout_ms, 50, 3_600_000),
            ("CONNECT_TIMEOUT_MS", self.connect_timeout_ms, 50, 3_600_000),
            (
                "HISTORY_TTL_SECS",
                self.history_ttl_secs,
                1,
                10 * 365 * 24 * 3600,
            ),
        ];
        for (name, value, min, max) in ranges {
            anyhow::ensure!(
                (min..=max).contains(&value),
                "{name}={value} is out of range: it must be between {min} and {max}"
            );
        }
        anyhow::ensure!(
            self.rate_limit_per_sec > 0.0 && self.rate_limit_burst >= 1.0,
            "RATE_LIMIT_PER_SEC must be above 0 and RATE_LIMIT_BURST at least 1"
        );
        anyhow::ensure!(
            self.fanout_bytes_per_sec > 0.0 && self.fanout_burst_bytes >= 1.0,
            "FANOUT_BYTES_PER_SEC must be above 0 and FANOUT_BURST_BYTES at least 1"
        );
        let path = &self.socketio_path;
        anyhow::ensure!(
            path.len() > 1
                && path.starts_with('/')
                && !path.ends_with('/')
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
                && !path.starts_with("/api"),
            "SOCKETIO_PATH={path} is not a path like /socket.io: it must start with /, not end \
             with /, hold only letters, digits and /-_.~, and stay out of /api"
        );
        self.cors()?;
        self.trusted_proxies()?;
        self.admin_ui.check(&self.socketio_path)?;
        Ok(())
    }

    /// The origins of `CORS_ORIGINS`, checked.
    pub fn cors(&self) -> anyhow::Result<Option<Cors>> {
        let Some(list) = self.cors_origins.as_deref() else {
            return Ok(None);
        };
        if list.trim() == "*" {
            return Ok(Some(Cors::Any));
        }
        let origins = list
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|origin| {
                let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.trim_end_matches('/').contains(['?', '#', ' '])
                    && origin.split('/').count() == 3;
                anyhow::ensure!(
                    valid,
                    "CORS_ORIGINS: {origin} is not an origin like https://app.example.com or http://localhost:5173"
                );
                Ok(origin.to_string())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!origins.is_empty(), "CORS_ORIGINS names no origin");
        Ok(Some(Cors::Origins(origins)))
    }

    fn without_empty_values(mut self) -> Self {
        for value in [
            &mut self.redis_url,
            &mut self.node_id,
            &mut self.admin_token,
            &mut self.auth_secret,
            &mut self.cors_origins,
            &mut self.trusted_proxies,
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                *value = None;
            }
        }
        for path in [
            &mut self.redis_tls_ca_file,
            &mut self.redis_tls_cert_file,
            &mut self.redis_tls_key_file,
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                *path = None;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_unset() {
        let config = Config::parse_from(["chat-server", "--auth-secret", "", "--admin-token", ""])
            .without_empty_values();
        assert_eq!(config.auth_secret, None);
        assert_eq!(config.admin_token, None);
        let config =
            Config::parse_from(["chat-server", "--admin-token", "t"]).without_empty_values();
        assert_eq!(config.admin_token.as_deref(), Some("t"));
    }

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        assert!(Config::defaults().check().is_ok());
        let err = Config::parse_from(["chat-server", "--socket-buffer", "0"])
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("SOCKET_BUFFER=0"), "{err}");
        let err = Config::parse_from(["chat-server", "--max-payload-bytes", "10"])
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("MAX_PAYLOAD_BYTES"), "{err}");
        for (flag, value, name) in [
            ("--ping-interval-ms", "0", "PING_INTERVAL_MS"),
            ("--socketio-path", "chat", "SOCKETIO_PATH"),
            ("--socketio-path", "/chat/", "SOCKETIO_PATH"),
            ("--cors-origins", "localhost:3000", "CORS_ORIGINS"),
        ] {
            let err = Config::parse_from(["chat-server", flag, value])
                .check()
                .unwrap_err();
            assert!(err.to_string().contains(name), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn cors_origins_are_a_list_or_any() {
        let cors = |v: &str| Config::parse_from(["chat-server", "--cors-origins", v]).cors();
        assert_eq!(cors("*").unwrap(), Some(Cors::Any));
        assert_eq!(
            cors("http://localhost:5173, https://app.example.com").unwrap(),
            Some(Cors::Origins(vec![
                "http://localhost:5173".into(),
                "https://app.example.com".into()
            ]))
        );
        assert_eq!(Config::defaults().cors().unwrap(), None);
    }
}
