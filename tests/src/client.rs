//! A small Socket.IO v5 client over WebSocket, enough to drive the cluster from tests: connect to
//! a namespace with an auth payload, emit with or without ack, receive events, answer the
//! server's ack requests, and notice disconnects.

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{
    sync::{mpsc, oneshot},
    time::timeout,
};
use tokio_tungstenite::tungstenite::Message;

/// Something the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Event { name: String, args: Vec<Value> },
    Disconnected,
}

enum Command {
    Send(String),
    Ack {
        id: u64,
        reply: oneshot::Sender<Vec<Value>>,
    },
    /// Stop (`true`) or resume reading from the connection, as a client that cannot keep up.
    Pause(bool),
    Close,
}

/// A connected socket.
pub struct Client {
    /// The socket id the server assigned.
    pub id: String,
    nsp: String,
    commands: mpsc::UnboundedSender<Command>,
    received: mpsc::UnboundedReceiver<Received>,
    next_ack: u64,
    closed_at: Arc<OnceLock<Instant>>,
}

/// How long tests wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

impl Client {
    /// Connects to `nsp` on the server at `port`. The client answers every ack request of the
    /// server with `ack_reply`.
    pub async fn connect(
        port: u16,
        nsp: &str,
        auth: Value,
        ack_reply: Value,
    ) -> anyhow::Result<Self> {
        Self::connect_query(port, nsp, auth, ack_reply, "").await
    }

    /// Like [`connect`](Self::connect) with extra query string parameters (`a=1&b=2`).
    pub async fn connect_query(
        port: u16,
        nsp: &str,
        auth: Value,
        ack_reply: Value,
        query: &str,
    ) -> anyhow::Result<Self> {
        Self::connect_at(port, "/socket.io", nsp, auth, ack_reply, query).await
    }

    /// Like [`connect_query`](Self::connect_query) on a server whose Socket.IO path is `path`.
    pub async fn connect_at(
        port: u16,
        path: &str,
        nsp: &str,
        auth: Value,
        ack_reply: Value,
        query: &str,
    ) -> anyhow::Result<Self> {
        let sep = if query.is_empty() { "" } else { "&" };
        let url = format!("ws://127.0.0.1:{port}{path}/?EIO=4&transport=websocket{sep}{query}");
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .context("websocket connect")?;
        let open = next_text(&mut ws).await?;
        if !open.starts_with('0') {
            bail!("expected an engine.io open packet, got {open}");
        }
        let prefix = nsp_prefix(nsp);
        ws.send(Message::text(format!("40{prefix}{auth}"))).await?;
        let id = loop {
            let text = next_text(&mut ws).await?;
            if text == "2" {
                ws.send(Message::text("3")).await?;
                continue;
            }
            let body = text
                .strip_prefix("4")
                .and_then(|t| t.strip_prefix(|c| c == '0' || c == '4'))
                .map(|b| b.strip_prefix(&prefix).unwrap_or(b));
            match (text.as_bytes().get(1), body) {
                (Some(b'0'), Some(body)) => {
                    let v: Value = serde_json::from_str(body)?;
                    break v["sid"].as_str().context("no sid")?.to_string();
                }
                (Some(b'4'), Some(body)) => bail!("connect error: {body}"),
                _ => continue,
            }
        };
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (received_tx, received) = mpsc::unbounded_channel();
        let closed_at = Arc::new(OnceLock::new());
        let connection = Connection {
            prefix,
            ack_reply,
            received: received_tx,
            closed_at: closed_at.clone(),
        };
        tokio::spawn(connection.run(ws, commands_rx));
        Ok(Self {
            id,
            nsp: nsp.to_string(),
            commands,
            received,
            next_ack: 0,
            closed_at,
        })
    }

    /// Emits an event.
    pub fn emit(&self, event: &str, args: &[Value]) {
        let _ = self
            .commands
            .send(Command::Send(self.event_packet(None, event, args)));
    }

    /// Emits an event and waits for the server's ack arguments.
    pub async fn emit_with_ack(
        &mut self,
        event: &str,
        args: &[Value],
    ) -> anyhow::Result<Vec<Value>> {
        self.next_ack += 1;
        let id = self.next_ack;
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Ack { id, reply: tx });
        let _ = self
            .commands
            .send(Command::Send(self.event_packet(Some(id), event, args)));
        Ok(timeout(WAIT, rx).await.context("ack timeout")??)
    }

    /// Waits for the next event named `name`, skipping others.
    pub async fn event(&mut self, name: &str) -> anyhow::Result<Vec<Value>> {
        self.event_within(name, WAIT).await
    }

    /// Waits up to `wait` for the next event named `name`, skipping others.
    pub async fn event_within(&mut self, name: &str, wait: Duration) -> anyhow::Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some(Received::Event { name: n, args })) if n == name => return Ok(args),
                Ok(Some(_)) => continue,
                Ok(None) => bail!("connection closed while waiting for {name}"),
                Err(_) => bail!("no {name} event within {wait:?}"),
            }
        }
    }

    /// Everything received within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(r)) = tokio::time::timeout_at(deadline, self.received.recv()).await {
            out.push(r);
        }
        out
    }

    /// Events named `name` received within `wait`.
    pub async fn events_within(&mut self, name: &str, wait: Duration) -> Vec<Vec<Value>> {
        self.drain(wait)
            .await
            .into_iter()
            .filter_map(|r| match r {
                Received::Event { name: n, args } if n == name => Some(args),
                _ => None,
            })
            .collect()
    }

    /// `notice` events received within `wait`, as `(kind, user id)`.
    pub async fn notices(&mut self, wait: Duration) -> Vec<(String, String)> {
        self.events_within("notice", wait)
            .await
            .iter()
            .map(|n| {
                let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (field(&n[0]["kind"]), field(&n[0]["user"]["id"]))
            })
            .collect()
    }

    /// Waits until the server disconnects this socket.
    pub async fn disconnected(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some(Received::Disconnected)) | Ok(None) => return Ok(()),
                Ok(Some(_)) => continue,
                Err(_) => bail!("still connected"),
            }
        }
    }

    /// When the connection ended (server disconnect or closed transport), if it did.
    pub fn disconnected_at(&self) -> Option<Instant> {
        self.closed_at.get().copied()
    }

    /// Stops reading from the connection: what the server sends piles up in the kernel's
    /// buffers, then in the server's, as with a client on a link too slow for its traffic.
    pub fn pause_reading(&self) {
        let _ = self.commands.send(Command::Pause(true));
    }

    /// Reads again after [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&self) {
        let _ = self.commands.send(Command::Pause(false));
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    fn event_packet(&self, ack: Option<u64>, event: &str, args: &[Value]) -> String {
        let mut items = vec![Value::from(event)];
        items.extend(args.iter().cloned());
        let ack = ack.map(|a| a.to_string()).unwrap_or_default();
        format!("42{}{ack}{}", nsp_prefix(&self.nsp), Value::Array(items))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

fn nsp_prefix(nsp: &str) -> String {
    if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match timeout(WAIT, ws.next())
            .await
            .context("websocket read timeout")?
        {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("websocket closed"),
        }
    }
}

/// The reading side of a client's connection.
struct Connection {
    prefix: String,
    ack_reply: Value,
    received: mpsc::UnboundedSender<Received>,
    closed_at: Arc<OnceLock<Instant>>,
}

impl Connection {
    /// Reads frames, answers pings and ack requests, and routes events and ack responses.
    async fn run(self, mut ws: Ws, mut commands: mpsc::UnboundedReceiver<Command>) {
        let Self {
            prefix,
            ack_reply,
            received,
            closed_at,
        } = self;
        let mut pending_acks: std::collections::HashMap<u64, oneshot::Sender<Vec<Value>>> =
            Default::default();
        let mut paused = false;
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Send(text)) => { if ws.send(Message::text(text)).await.is_err() { break } }
                    Some(Command::Ack { id, reply }) => { pending_acks.insert(id, reply); }
                    Some(Command::Pause(pause)) => paused = pause,
                    Some(Command::Close) | None => { let _ = ws.close(None).await; break }
                },
                frame = ws.next(), if !paused => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t.to_string(),
                        Some(Ok(_)) => continue,
                        _ => break,
                    };
                    if text == "2" {
                        if ws.send(Message::text("3")).await.is_err() { break }
                        continue;
                    }
                    let Some(packet) = text.strip_prefix('4') else { continue };
                    let (kind, rest) = packet.split_at(1.min(packet.len()));
                    let rest = rest.strip_prefix(prefix.as_str()).unwrap_or(rest);
                    let digits = rest.chars().take_while(char::is_ascii_digit).count();
                    let (id, body) = rest.split_at(digits);
                    let id: Option<u64> = id.parse().ok();
                    match kind {
                        "1" => break,
                        "2" => {
                            let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(body) else { continue };
                            if items.is_empty() { continue }
                            let name = items.remove(0).as_str().unwrap_or_default().to_string();
                            if let Some(id) = id {
                                let reply = format!("43{prefix}{id}{}", Value::Array(vec![ack_reply.clone()]));
                                if ws.send(Message::text(reply)).await.is_err() { break }
                            }
                            let _ = received.send(Received::Event { name, args: items });
                        }
                        "3" => {
                            let Ok(Value::Array(items)) = serde_json::from_str::<Value>(body) else { continue };
                            if let Some(reply) = id.and_then(|id| pending_acks.remove(&id)) {
                                let _ = reply.send(items);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let _ = closed_at.set(Instant::now());
        let _ = received.send(Received::Disconnected);
    }
}
