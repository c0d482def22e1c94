//! Configuration: every option is a CLI flag and an environment variable of the same name.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

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
    /// `redis://host:port`. Unset: a single node with in-memory adapter, presence and history.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
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
    /// The built web client (`cd web && npm ci && npm run build`), served at `/`; relative paths
    /// are relative to the working directory.
    #[arg(long, env = "WEB_DIR", default_value = "web/dist")]
    pub web_dir: PathBuf,
}

impl Config {
    pub fn leave_grace(&self) -> Duration {
        Duration::from_millis(self.leave_grace_ms)
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

    /// Flags and environment, where an empty value counts as unset: compose files and Kubernetes
    /// Secrets write `AUTH_SECRET=""` for "no secret", which must not demand tokens signed with
    /// an empty key (nor enable the admin API with an empty token).
    pub fn load() -> Self {
        Self::parse().without_empty_values()
    }

    fn without_empty_values(mut self) -> Self {
        for value in [
            &mut self.redis_url,
            &mut self.node_id,
            &mut self.admin_token,
            &mut self.auth_secret,
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                *value = None;
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
}
