//! One Socket.IO client connection: a task that reads every frame a read brings, counts tagged
//! deliveries into its [`Tally`], answers pings, sends paced messages and requests with acks,
//! and never blocks its reads on its writes (a sender that stopped reading while the server
//! pushes to it would measure the generator).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::{Interval, MissedTickBehavior},
};

use crate::{
    sio::{self, Emit, Packet, Tag},
    stats::{Latencies, Tally, now_us},
    ws,
};

/// What connections share with the scenario that runs them.
#[derive(Clone)]
pub struct Shared {
    pub latencies: Arc<Latencies>,
    /// Unique deliveries of all connections, to see when traffic has drained.
    pub delivered: Arc<AtomicU64>,
}

impl Shared {
    /// `shards` latency histograms: a few per core keeps receivers from queueing on one lock.
    pub fn new(shards: usize) -> Self {
        Self {
            latencies: Arc::new(Latencies::new(shards)),
            delivered: Arc::default(),
        }
    }
}

/// How to open a connection.
#[derive(Clone)]
pub struct Spec {
    pub addr: SocketAddr,
    /// What follows `40` in the connect packet: the handshake `auth` object as JSON, after
    /// `/name,` for a namespace other than `/`.
    pub auth: String,
    /// The client's number, its sender id in tags.
    pub index: u32,
}

/// A steady stream of messages from one client.
#[derive(Debug, Clone)]
pub struct Pacing {
    pub per_sec: f64,
    pub step: u32,
    pub emit: Emit,
    /// Bytes of filler in each message.
    pub pad: usize,
}

/// The answer to a request.
pub struct Reply {
    /// The ack's argument array, as JSON.
    pub args: Vec<u8>,
    /// From the write of the request to the read of its ack.
    pub rtt: Duration,
}

enum Command {
    /// Start (or stop, with `None`) sending; answered with how many messages the previous
    /// pacing sent.
    Pace(Option<Pacing>, oneshot::Sender<u64>),
    Request {
        event: String,
        args: Option<String>,
        reply: oneshot::Sender<Reply>,
    },
}

/// A connected client; its task ends when this is dropped.
pub struct Conn {
    index: u32,
    pub tally: Arc<Mutex<Tally>>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Free space for each read: enough for a burst of broadcasts, small enough for 10,000 idle
/// clients.
const READ_CHUNK: usize = 8 << 10;

/// How long a request or a connection attempt may take.
const TIMEOUT: Duration = Duration::from_secs(30);

impl Conn {
    /// Connects, joins namespace `/` and starts the connection's task.
    pub async fn open(spec: Spec, shared: Shared) -> anyhow::Result<Self> {
        tokio::time::timeout(TIMEOUT, Self::connect(spec, shared))
            .await
            .context("connection timed out")?
    }

    async fn connect(spec: Spec, shared: Shared) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(spec.addr).await?;
        stream.set_nodelay(true)?;
        let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
        let host = spec.addr.to_string();
        let path = "/socket.io/?EIO=4&transport=websocket";
        ws::handshake(&mut stream, &host, path, &mut inbuf).await?;
        let mut task = Task {
            stream,
            inbuf,
            out: BytesMut::with_capacity(4 << 10),
            decoder: ws::Decoder::default(),
            mask: Mask::new(spec.index),
            scratch: Vec::with_capacity(256),
            pacer: None,
            next_ack: 1,
            pending: HashMap::new(),
            unacked: HashMap::new(),
            tally: Arc::default(),
            shared,
            index: spec.index,
            latencies: Vec::new(),
        };
        task.send_packet(&sio::connect(&spec.auth));
        task.flush().await?;
        task.await_connected().await?;
        let tally = task.tally.clone();
        let (commands, rx) = mpsc::unbounded_channel();
        Ok(Self {
            index: spec.index,
            tally,
            commands,
            task: tokio::spawn(task.run(rx)),
        })
    }

    /// Starts sending at `pacing` (or stops, with `None`); returns how many messages were sent
    /// since the previous call.
    pub async fn pace(&self, pacing: Option<Pacing>) -> anyhow::Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Pace(pacing, tx))
            .map_err(|_| anyhow::anyhow!("client {} is closed", self.index))?;
        rx.await
            .with_context(|| format!("client {} is closed", self.index))
    }

    /// Emits `event` with `args` (JSON values, comma-separated) and waits for the ack.
    pub async fn request(&self, event: &str, args: Option<String>) -> anyhow::Result<Reply> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Request {
                event: event.to_string(),
                args,
                reply,
            })
            .map_err(|_| anyhow::anyhow!("client {} is closed", self.index))?;
        tokio::time::timeout(TIMEOUT, rx)
            .await
            .with_context(|| format!("no ack to {event} in {TIMEOUT:?}"))?
            .with_context(|| format!("client {} closed before the ack to {event}", self.index))
    }
}

/// Masking keys: a xorshift per connection. Servers do not check them; they only must not be
/// constant for a browser's sake, which costs nothing to honour.
struct Mask(u32);

impl Mask {
    fn new(seed: u32) -> Self {
        Self(seed.wrapping_mul(2_654_435_761) | 1)
    }

    fn next(&mut self) -> [u8; 4] {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0.to_ne_bytes()
    }
}

struct Pacer {
    pacing: Pacing,
    started: Instant,
    sent: u64,
    /// Staggers senders inside one period, so they do not all send on the same tick.
    phase: f64,
    tick: Interval,
}

impl Pacer {
    fn new(pacing: Pacing, index: u32) -> Self {
        let period = Duration::from_secs_f64(1.0 / pacing.per_sec.max(1e-3))
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Self {
            pacing,
            started: Instant::now(),
            sent: 0,
            phase: f64::from(index % 1024) / 1024.0,
            tick,
        }
    }

    /// How many messages are due by now.
    fn due(&self) -> u64 {
        (self.started.elapsed().as_secs_f64() * self.pacing.per_sec + self.phase) as u64
    }
}

struct Task {
    stream: TcpStream,
    inbuf: BytesMut,
    out: BytesMut,
    decoder: ws::Decoder,
    mask: Mask,
    scratch: Vec<u8>,
    pacer: Option<Pacer>,
    next_ack: u64,
    pending: HashMap<u64, (oneshot::Sender<Reply>, Instant)>,
    /// Paced messages that asked for an ack (the chat's `message`) and did not get it yet: an
    /// error ack names only its id.
    unacked: HashMap<u64, Tag>,
    tally: Arc<Mutex<Tally>>,
    shared: Shared,
    index: u32,
    /// Latencies of the read being processed, recorded in one go.
    latencies: Vec<u64>,
}

/// What the frames of one read amounted to, for the caller to act on.
#[derive(Default)]
struct Outcome {
    connected: Option<Result<(), String>>,
    closed: bool,
}

impl Task {
    async fn await_connected(&mut self) -> anyhow::Result<()> {
        loop {
            let outcome = self.read_once().await?;
            self.flush().await?;
            if let Some(result) = outcome.connected {
                return result.map_err(|e| anyhow::anyhow!("connect refused: {e}"));
            }
            if outcome.closed {
                bail!("closed before connecting");
            }
        }
    }

    async fn read_once(&mut self) -> anyhow::Result<Outcome> {
        self.stream.readable().await?;
        self.read_available()
    }

    /// Reads whatever the socket holds and processes every complete frame in it.
    fn read_available(&mut self) -> anyhow::Result<Outcome> {
        let mut eof = false;
        loop {
            self.inbuf.reserve(READ_CHUNK);
            match self.stream.try_read_buf(&mut self.inbuf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) if self.inbuf.len() < 256 << 10 => continue,
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        let mut outcome = self.process()?;
        outcome.closed |= eof;
        Ok(outcome)
    }

    fn process(&mut self) -> anyhow::Result<Outcome> {
        let now = Instant::now();
        let now_us = now_us();
        let mut outcome = Outcome::default();
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let mut tally = self.tally.lock().unwrap();
        let mut fresh = 0;
        let used = self.decoder.decode(&inbuf, |message| match message {
            ws::Message::Ping(payload) => ws::pong(&mut self.out, payload, self.mask.next()),
            ws::Message::Close => outcome.closed = true,
            ws::Message::Text(text) => match sio::classify(text) {
                Packet::Ping => ws::text(&mut self.out, b"3", self.mask.next()),
                Packet::Connected => outcome.connected = Some(Ok(())),
                Packet::ConnectError(body) => {
                    outcome.connected = Some(Err(String::from_utf8_lossy(body).into_owned()));
                }
                Packet::Disconnect => outcome.closed = true,
                Packet::Event { name, rest } if name == b"m" || name == b"message" => {
                    match Tag::find(rest) {
                        // Late messages of an earlier step and duplicates would skew this
                        // step's latency: only first deliveries count.
                        Some(tag) if tally.record(tag) => {
                            fresh += 1;
                            self.latencies.push(now_us.saturating_sub(tag.sent_us));
                        }
                        Some(_) => {}
                        None => tally.malformed += 1,
                    }
                }
                Packet::Ack { id, args } => match self.pending.remove(&id) {
                    Some((reply, sent)) => {
                        let _ = reply.send(Reply {
                            args: args.to_vec(),
                            rtt: now.duration_since(sent),
                        });
                    }
                    None => {
                        let tag = self.unacked.remove(&id);
                        if memchr::memmem::find(args, b"\"ok\":true").is_some() {
                            tally.acks_ok += 1;
                        } else {
                            tally.acks_failed += 1;
                            tag.into_iter().for_each(|tag| tally.refuse(tag));
                        }
                    }
                },
                Packet::Event { name, rest } if name == b"refused" => match Tag::find(rest) {
                    Some(tag) => tally.refuse(tag),
                    None => tally.malformed += 1,
                },
                Packet::Open | Packet::Event { .. } | Packet::Other => {}
            },
        });
        tally.closed |= outcome.closed;
        drop(tally);
        let used = match used {
            Ok(used) => used,
            Err(err) => {
                self.inbuf = inbuf;
                return Err(err);
            }
        };
        inbuf.advance(used);
        self.inbuf = inbuf;
        self.shared.delivered.fetch_add(fresh, Relaxed);
        self.shared
            .latencies
            .record(self.index as usize, &self.latencies);
        self.latencies.clear();
        Ok(outcome)
    }

    fn send_packet(&mut self, packet: &[u8]) {
        ws::text(&mut self.out, packet, self.mask.next());
    }

    /// Writes all that is queued (during the handshake only: the loop never waits on writes).
    async fn flush(&mut self) -> anyhow::Result<()> {
        while !self.out.is_empty() {
            self.stream.writable().await?;
            self.write_available()?;
        }
        Ok(())
    }

    /// Writes what the socket takes without waiting.
    fn write_available(&mut self) -> anyhow::Result<()> {
        while !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        if let Err(err) = self.serve(&mut commands).await {
            // Counted as a closed connection in the step's losses.
            tracing::warn!(client = self.index, %err, "connection failed");
        }
        self.tally.lock().unwrap().closed = true;
        if !self.out.is_empty() {
            tracing::warn!(
                client = self.index,
                bytes = self.out.len(),
                "closed with unsent data"
            );
        }
        // A closed sender still tells how many messages it sent, so the step can settle what
        // its receivers lost; requests go unanswered.
        while let Some(command) = commands.recv().await {
            if let Command::Pace(_, done) = command {
                let _ = done.send(self.pacer.take().map_or(0, |p| p.sent));
            }
        }
    }

    async fn serve(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                ready = self.stream.readable() => {
                    ready?;
                    if self.read_available()?.closed {
                        return Ok(());
                    }
                }
                ready = self.stream.writable(), if !self.out.is_empty() => ready?,
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return Ok(()),
                },
                _ = tick(&mut self.pacer) => self.send_due(),
            }
            self.write_available()?;
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Pace(pacing, done) => {
                let sent = self.pacer.take().map_or(0, |p| p.sent);
                self.pacer = pacing.map(|p| Pacer::new(p, self.index));
                let _ = done.send(sent);
            }
            Command::Request { event, args, reply } => {
                let id = self.next_ack;
                self.next_ack += 1;
                self.scratch.clear();
                sio::request(&mut self.scratch, id, &event, args.as_deref());
                let packet = std::mem::take(&mut self.scratch);
                self.send_packet(&packet);
                self.scratch = packet;
                self.pending.insert(id, (reply, Instant::now()));
            }
        }
    }

    /// Queues every message due by now.
    fn send_due(&mut self) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        let due = pacer.due();
        while pacer.sent < due {
            let tag = Tag {
                step: pacer.pacing.step,
                sender: self.index,
                seq: pacer.sent,
                sent_us: now_us(),
            };
            self.scratch.clear();
            let ack = self.next_ack;
            self.next_ack += 1;
            pacer
                .pacing
                .emit
                .write(&mut self.scratch, tag, pacer.pacing.pad, ack);
            if pacer.pacing.emit.is_acked() {
                self.unacked.insert(ack, tag);
            }
            ws::text(&mut self.out, &self.scratch, self.mask.next());
            pacer.sent += 1;
        }
    }
}

/// The pacer's next tick; never, when not sending.
async fn tick(pacer: &mut Option<Pacer>) {
    match pacer {
        Some(pacer) => {
            pacer.tick.tick().await;
        }
        None => std::future::pending().await,
    }
}
