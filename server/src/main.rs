//! `chat-server` binary: configuration from flags and environment, logs, signals.

use chat_server::{
    Config, Server,
    backend::{Backend, Memory, Redis},
};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.rust_log)
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match config.redis_url {
        Some(_) => run::<Redis>(config).await,
        None => run::<Memory>(config).await,
    }
}

/// Serves until SIGTERM or SIGINT, then shuts down gracefully.
async fn run<B: Backend>(config: Config) -> anyhow::Result<()> {
    let server = Server::<B>::start(config).await?;
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
