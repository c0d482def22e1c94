//! The idle clients: a process of their own, so that their allocations stay out of the
//! profile. Each is a WebSocket Socket.IO client on namespace `/` with a user id and a name, as
//! the web client connects before it joins a room; after that it only answers pings.

use std::{io::Write, net::SocketAddr};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt, TryStreamExt, stream};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::WebSocketConfig},
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Handshakes in flight at once.
const CONCURRENCY: usize = 64;

/// Opens `clients` connections to the node at `addr`, prints `ready` once all are connected,
/// and keeps them (answering pings) until standard input closes, that is until the profiling
/// process is gone.
pub async fn hold(addr: SocketAddr, clients: usize) -> anyhow::Result<()> {
    // Each connection is a file descriptor here and one on the node.
    rlimit::increase_nofile_limit(u64::MAX).context("cannot raise the open-file limit")?;
    let sockets: Vec<Ws> = stream::iter(0..clients)
        .map(|i| open(addr, i))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    for ws in sockets {
        tokio::spawn(answer_pings(ws));
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    Ok(())
}

/// Connects client `i`: Engine.IO open, then the Socket.IO connect to `/` with its `auth`.
async fn open(addr: SocketAddr, i: usize) -> anyhow::Result<Ws> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    // tungstenite reads in chunks of 128 KiB by default: too much for thousands of clients.
    let config = WebSocketConfig::default().read_buffer_size(4 << 10);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("client {i}: WebSocket upgrade"))?;
    expect_text(&mut ws, "0").await?;
    let auth = json!({ "userId": format!("idle-user-{i}"), "name": format!("Idle user {i}") });
    ws.send(Message::text(format!("40{auth}"))).await?;
    let reply = expect_text(&mut ws, "4").await?;
    if !reply.starts_with("40") {
        bail!("client {i}: connect refused: {reply}");
    }
    Ok(ws)
}

/// The next text message, which must start with `prefix`; pings are answered meanwhile
/// (engineioxide sends its first one as soon as the session opens).
async fn expect_text(ws: &mut Ws, prefix: &str) -> anyhow::Result<String> {
    loop {
        match ws.next().await.context("closed during the handshake")?? {
            Message::Text(text) if text.starts_with(prefix) => return Ok(text.to_string()),
            Message::Text(text) if text == "2" => ws.send(Message::text("3")).await?,
            Message::Text(text) => bail!("expected a packet starting with {prefix}, got {text}"),
            Message::Close(_) => bail!("closed during the handshake"),
            _ => {}
        }
    }
}

/// Answers the node's Engine.IO pings until the connection ends. A client lost earlier is
/// noticed on the node's side: the profiled process counts its sessions.
async fn answer_pings(mut ws: Ws) {
    while let Some(Ok(message)) = ws.next().await {
        let answered = match message {
            Message::Text(text) if text == "2" => ws.send(Message::text("3")).await,
            Message::Close(_) => break,
            _ => Ok(()),
        };
        if answered.is_err() {
            break;
        }
    }
}
