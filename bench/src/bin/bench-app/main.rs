//! `bench-app`: the tiny Socket.IO app the benchmark drives, on our adapter (`--impl cluster`) or
//! on socketioxide's own Redis adapter (`--impl socketioxide-redis`). `bench/node/app.mjs` is the
//! same app on Node.js. Prints `listening <port>` once it serves.
//!
//! What a client can do (namespace `/`):
//! - handshake `auth: { rooms: [..], i: n }`: join those rooms (`i` becomes the socket data; on
//!   our adapter with `Cluster::join`, which subscribes a room's channel first in sharded dynamic
//!   modes);
//! - `m` with `{ r: room, .. }`: the payload is broadcast as `m` to the room, the sender included;
//! - `count` (ack): the number of sockets of the namespace on every node, read with their data
//!   where the adapter ships it;
//! - `rooms` (ack): the number of rooms of the namespace on every node;
//! - `stats` (ack): this node's counters of what it dropped or failed to send, and the adapter's
//!   own (`adapter.received`: every pub/sub message it read from Redis, heartbeats included).

// The allocator `chat-server` ships. A fetchSockets of 1000 sockets allocates and frees a few
// thousand small blocks and some large buffers; glibc's malloc spent half of it consolidating and
// faulting pages back in (count p50 3.4 → 1.5 ms on 3 nodes; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod app;
mod backends;
mod warnings;

use std::net::SocketAddr;

use axum::serve::ListenerExt;
use clap::{Parser, ValueEnum};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::warnings::WarningCounter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Impl {
    /// `socketio-cluster`, this workspace's adapter.
    Cluster,
    /// `socketioxide-redis` with its fred driver.
    SocketioxideRedis,
}

#[derive(Debug, Parser)]
#[command(name = "bench-app", about = "The benchmark's tiny Socket.IO app")]
struct Args {
    #[arg(long, value_enum)]
    r#impl: Impl,
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value = "bench")]
    node_name: String,
    /// Prefix of the Redis channels.
    #[arg(long, default_value = "socket.io")]
    key: String,
    /// socketioxide's per-socket packet buffer (`max_buffer_size`; its default is 128).
    #[arg(long)]
    max_buffer: Option<usize>,
    /// engineioxide's per-connection WebSocket read buffer (`ws_read_buffer_size`; default 4096).
    #[arg(long)]
    ws_read_buffer: Option<usize>,
    /// How many received Redis messages may wait to be read (fred's broadcast channel capacity;
    /// the defaults are 8192 in our adapter, fred's 32 in socketioxide-redis).
    #[arg(long)]
    receive_buffer: Option<usize>,
    /// socketioxide-redis only: the per-channel stream buffer (its default is 1024).
    #[arg(long)]
    stream_buffer: Option<usize>,
    /// Our adapter only: sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7) or classic
    /// (`PSUBSCRIBE`/`PUBLISH`); unset: the library's default for the URL (sharded for
    /// `redis-cluster://`, classic otherwise).
    #[arg(long)]
    sharded: Option<bool>,
    /// Our adapter only, with sharded pub/sub: `static`, `dynamic` or `dynamic-private`
    /// (unset: the library's default, dynamic).
    #[arg(long)]
    subscription_mode: Option<socketio_cluster::SubscriptionMode>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let warnings = WarningCounter::default();
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(warnings.clone())
        .init();
    let settings = backends::Settings {
        redis_url: args.redis_url,
        node_name: args.node_name,
        key: args.key,
        max_buffer: args.max_buffer,
        ws_read_buffer: args.ws_read_buffer,
        receive_buffer: args.receive_buffer,
        stream_buffer: args.stream_buffer,
        sharded: args.sharded,
        subscription_mode: args.subscription_mode,
    };
    let router = match args.r#impl {
        Impl::Cluster => backends::cluster(&settings, warnings).await?,
        Impl::SocketioxideRedis => backends::socketioxide_redis(&settings, warnings).await?,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    println!("listening {}", listener.local_addr()?.port());
    // Node.js servers disable Nagle's algorithm by default, axum does not: left on, small
    // broadcasts wait for the client's delayed ACK (40 ms) and the comparison measures that.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY");
        }
    });
    // Both Rust apps free hyper's read buffer of each upgraded connection (see the function).
    let router = router.layer(axum::middleware::map_request(
        chat_server::request_parts::compact_request_parts,
    ));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
