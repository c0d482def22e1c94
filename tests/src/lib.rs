//! Test support for the cluster integration tests: a Socket.IO client, cluster nodes that can be
//! crashed, and Redis 7 in a container.

pub mod chat;
pub mod chatter;
pub mod client;
pub mod isolated;
pub mod node;
pub mod nodejs;
pub mod process;
pub mod redis;
pub mod redis_cluster;

use std::sync::Once;

pub use chat::{ADMIN_TOKEN, Admin, ChatNode, chat_config, chat_nodes};
pub use client::{Client, Received, WAIT};
pub use node::{TestNode, test_config};
pub use redis::TestRedis;

/// Logs to the test output (`RUST_LOG` selects what).
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A channel prefix unique to one test, so tests can share a Redis without hearing each other.
pub fn unique_key(test: &str) -> String {
    format!("t-{test}-{:06x}", rand_suffix())
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        & 0xff_ffff
}

/// socketioxide's errors are not `Sync`, so `?` cannot turn them into `anyhow::Error`.
pub trait Checked<T> {
    fn check(self) -> anyhow::Result<T>;
}

impl<T, E: std::fmt::Display> Checked<T> for Result<T, E> {
    fn check(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{e}"))
    }
}
