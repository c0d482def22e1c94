//! One profiled run: a `chat-server` node in this process at its default configuration, under
//! dhat, and a client process holding `clients` idle connections to it. The node's backend is
//! chosen as `chat-server` chooses it: Redis with `REDIS_URL` in the environment, else memory.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use chat_server::{
    Config, Server,
    backend::{Backend, Memory, Redis},
};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    process::{Child, Command},
};

/// What a profiled run tells the driver, as one JSON line on its standard output.
#[derive(Debug, Serialize, Deserialize)]
pub struct Heap {
    pub backend: String,
    pub clients: usize,
    /// Live heap when the profile was taken (`dhat::HeapStats::curr_bytes`).
    pub bytes: usize,
    pub blocks: usize,
}

/// Profiles a node holding `clients` connections that stayed idle for `idle`, writes the dhat
/// profile to `file` and the [`Heap`] line to standard output, and exits.
pub fn run(clients: usize, idle: Duration, file: &Path) -> anyhow::Result<()> {
    let profiler = dhat::Profiler::builder()
        .file_name(file)
        .trim_backtraces(None)
        .build();
    let config = Config::defaults();
    init_logs(&config);
    // Multi-threaded with a worker per core, as `chat-server`'s `#[tokio::main]`.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match config.redis_url {
            Some(_) => profile::<Redis>(config, clients, idle, profiler).await,
            None => profile::<Memory>(config, clients, idle, profiler).await,
        }
    })
}

/// `chat-server`'s logs, on standard error (standard output carries the result).
fn init_logs(config: &Config) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.rust_log)
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn profile<B: Backend>(
    config: Config,
    clients: usize,
    idle: Duration,
    profiler: dhat::Profiler,
) -> anyhow::Result<()> {
    let backend = if config.redis_url.is_some() {
        "redis"
    } else {
        "memory"
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let server = Server::<B>::start_on(config, listener).await?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
    let _clients = spawn_clients(addr, clients).await?;
    tokio::time::sleep(idle).await;
    let open = server.chat().admission.open();
    anyhow::ensure!(
        open == clients,
        "the node holds {open} sessions, not {clients}: a client was lost (see above)"
    );
    let stats = dhat::HeapStats::get();
    // Dropping the profiler writes the profile: its end ("t-end") is now, with every client
    // still connected.
    drop(profiler);
    let heap = Heap {
        backend: backend.into(),
        clients,
        bytes: stats.curr_bytes,
        blocks: stats.curr_blocks,
    };
    println!("{}", serde_json::to_string(&heap)?);
    // Exit with the node and the clients still up: a graceful shutdown measures nothing and
    // would log a line per disconnect. The clients end when their standard input closes.
    std::process::exit(0)
}

/// Starts the client process (this binary's `clients` mode) and waits until every client is
/// connected. It lives as long as the returned handle's standard input stays open.
async fn spawn_clients(addr: SocketAddr, clients: usize) -> anyhow::Result<Child> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["clients", "--addr", &addr.to_string()])
        .args(["--clients", &clients.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the client process")?;
    let stdout = child.stdout.take().context("no stdout")?;
    match BufReader::new(stdout).lines().next_line().await? {
        Some(line) if line == "ready" => Ok(child),
        _ => bail!("the client process failed (its errors are above)"),
    }
}
