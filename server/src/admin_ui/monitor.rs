//! What the chat tells the Admin UI as it happens: counts for the statistics every node sends
//! (`aggregatedEvents`), and, in development mode, a notification per socket, room and event.
//!
//! The chat calls these hooks on its hot paths, so with the Admin UI off they return at once, in
//! production mode they add to a counter, and in development mode a notification is queued only
//! within `ADMIN_UI_EVENTS_PER_SEC` (a burst of one second's worth); the rest is dropped and
//! counted. Queued notifications are emitted by [`forward`] (to every admin socket of the
//! cluster), never on the caller's task.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::SystemTime,
};

use serde_json::{Value, json};
use socketioxide::{TransportType, adapter::Adapter, extract::SocketRef};
use tokio::sync::mpsc;

use super::settings::AdminUiSettings;
use crate::rate_limit::RateLimiter;

/// The notifications the UI's development mode shows.
#[derive(Debug)]
pub enum Notice {
    Connected {
        socket: Value,
        at: String,
    },
    /// A socket left: `socket_disconnected`, then `room_left` for each of its rooms.
    Disconnected {
        nsp: String,
        id: String,
        reason: &'static str,
        rooms: Vec<String>,
        at: String,
    },
    Room {
        nsp: String,
        room: String,
        id: String,
        joined: bool,
        at: String,
    },
    /// `args` is `[event, ...arguments]`.
    Received {
        nsp: String,
        id: String,
        args: Value,
        at: String,
    },
}

impl Notice {
    /// The events this notice is, each as its name and arguments.
    pub fn into_events(self) -> Vec<(&'static str, Vec<Value>)> {
        match self {
            Notice::Connected { socket, at } => vec![("socket_connected", vec![socket, at.into()])],
            Notice::Disconnected {
                nsp,
                id,
                reason,
                rooms,
                at,
            } => {
                let mut events = vec![("socket_disconnected", strings([&nsp, &id, reason, &at]))];
                events.extend(
                    rooms
                        .iter()
                        .map(|room| ("room_left", strings([&nsp, room, &id, &at]))),
                );
                events
            }
            Notice::Room {
                nsp,
                room,
                id,
                joined,
                at,
            } => {
                let name = if joined { "room_joined" } else { "room_left" };
                vec![(name, strings([&nsp, &room, &id, &at]))]
            }
            Notice::Received { nsp, id, args, at } => {
                vec![(
                    "event_received",
                    vec![nsp.into(), id.into(), args, at.into()],
                )]
            }
        }
    }
}

fn strings<const N: usize>(args: [&str; N]) -> Vec<Value> {
    args.into_iter().map(Value::from).collect()
}

/// Counts since the node started (the statistics send differences).
#[derive(Default)]
pub struct Counts {
    pub connections: AtomicU64,
    pub packets_in: AtomicU64,
    /// By Node's reason names.
    pub disconnections: Mutex<HashMap<&'static str, u64>>,
}

pub struct Monitor {
    on: bool,
    pub counts: Counts,
    notices: Option<Notices>,
}

struct Notices {
    queue: mpsc::Sender<Notice>,
    receiver: Mutex<Option<mpsc::Receiver<Notice>>>,
    allowance: Mutex<RateLimiter>,
    dropped: AtomicU64,
}

impl Monitor {
    pub fn new(settings: &AdminUiSettings) -> Self {
        if settings.credentials().is_none() {
            return Self {
                on: false,
                counts: Counts::default(),
                notices: None,
            };
        }
        let per_sec = settings.admin_ui_events_per_sec as usize;
        let notices = settings.development().then(|| {
            let (queue, receiver) = mpsc::channel(per_sec);
            Notices {
                queue,
                receiver: Mutex::new(Some(receiver)),
                allowance: Mutex::new(RateLimiter::new(per_sec as f64, per_sec as f64)),
                dropped: AtomicU64::new(0),
            }
        });
        Self {
            on: true,
            counts: Counts::default(),
            notices,
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Development-mode notifications dropped beyond the allowance.
    pub fn dropped(&self) -> u64 {
        self.notices.as_ref().map_or(0, |n| n.dropped.load(Relaxed))
    }

    /// The queue's receiving end, for [`forward`]; `None` outside development mode or once taken.
    pub fn take_notices(&self) -> Option<mpsc::Receiver<Notice>> {
        self.notices.as_ref()?.receiver.lock().unwrap().take()
    }

    /// A socket connected to a namespace (the chat's or the Admin UI's).
    pub fn connected<A: Adapter>(&self, socket: &SocketRef<A>) {
        if !self.is_on() {
            return;
        }
        self.counts.connections.fetch_add(1, Relaxed);
        self.notify(|| Notice::Connected {
            socket: serialize_local(socket),
            at: now_iso(),
        });
    }

    /// A socket left `rooms` (its own room is added) by disconnecting.
    pub fn disconnected<'a, A: Adapter>(
        &self,
        socket: &SocketRef<A>,
        reason: &'static str,
        rooms: impl IntoIterator<Item = &'a String>,
    ) {
        if !self.is_on() {
            return;
        }
        *self
            .counts
            .disconnections
            .lock()
            .unwrap()
            .entry(reason)
            .or_default() += 1;
        self.notify(|| {
            let id = socket.id.to_string();
            let mut rooms: Vec<String> = rooms.into_iter().cloned().collect();
            rooms.push(id.clone());
            Notice::Disconnected {
                nsp: socket.ns().to_string(),
                id,
                reason,
                rooms,
                at: now_iso(),
            }
        });
    }

    /// The socket `id` of `nsp` joined or left `room`.
    pub fn room(&self, nsp: &str, room: &str, id: &str, joined: bool) {
        self.notify(|| Notice::Room {
            nsp: nsp.to_string(),
            room: room.to_string(),
            id: id.to_string(),
            joined,
            at: now_iso(),
        });
    }

    /// A socket sent `event` with `payload` (its one argument, if it could be read).
    pub fn received<A: Adapter>(
        &self,
        socket: &SocketRef<A>,
        event: &str,
        payload: Option<&Value>,
    ) {
        if !self.is_on() {
            return;
        }
        self.counts.packets_in.fetch_add(1, Relaxed);
        self.notify(|| {
            let mut args = vec![Value::from(event)];
            args.extend(payload.cloned());
            Notice::Received {
                nsp: socket.ns().to_string(),
                id: socket.id.to_string(),
                args: Value::Array(args),
                at: now_iso(),
            }
        });
    }

    /// Queues a notification within the allowance; only then is it built.
    fn notify(&self, notice: impl FnOnce() -> Notice) {
        let Some(notices) = &self.notices else {
            return;
        };
        let allowed = notices.allowance.lock().unwrap().try_take();
        if !allowed || notices.queue.try_send(notice()).is_err() {
            notices.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// A socket of this node as the UI shows it; `transport` is the one it uses now.
fn serialize_local<A: Adapter>(socket: &SocketRef<A>) -> Value {
    let transport = match socket.transport_type() {
        TransportType::Polling => "polling",
        TransportType::Websocket => "websocket",
    };
    let id = socket.id.to_string();
    let mut rooms: Vec<String> = socket.rooms().into_iter().map(|r| r.to_string()).collect();
    if !rooms.contains(&id) {
        rooms.push(id.clone());
    }
    serialize(
        &id,
        socket.ns(),
        transport,
        &socketio_cluster::data(socket),
        &socketio_cluster::handshake(socket),
        &rooms,
    )
}

/// `@socket.io/admin-ui`'s serialized socket. `clientId` is the start of the Engine.IO session
/// id, which socketioxide uses as the socket id: a client's sockets of several namespaces group
/// together, as in Node.
pub fn serialize(
    id: &str,
    nsp: &str,
    transport: &str,
    data: &Value,
    handshake: &socketio_cluster::Handshake,
    rooms: &[String],
) -> Value {
    let client_id: String = id.chars().take(12).collect();
    json!({
        "id": id,
        "clientId": client_id,
        "transport": transport,
        "nsp": nsp,
        "data": data,
        "handshake": {
            "address": handshake.address,
            "headers": handshake.headers,
            "query": handshake.query,
            "issued": handshake.issued,
            "secure": handshake.secure,
            "time": handshake.time,
            "url": handshake.url,
            "xdomain": handshake.xdomain,
        },
        "rooms": rooms,
    })
}

/// Now, as the UI's timestamps are written (JSON of a JavaScript `Date`).
pub fn now_iso() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: &str, per_sec: &str) -> AdminUiSettings {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            admin_ui: AdminUiSettings,
        }
        Cli::parse_from([
            "t",
            "--admin-ui-username",
            "ops",
            "--admin-ui-password-hash",
            "$2b$04$abcdefghijklmnopqrstuu9ZtS5Nw2QmrqPDTRbW07tVThL5Y5d2a",
            "--admin-ui-mode",
            mode,
            "--admin-ui-events-per-sec",
            per_sec,
        ])
        .admin_ui
    }

    #[test]
    fn development_notices_beyond_the_allowance_are_dropped_and_counted() {
        let monitor = Monitor::new(&settings("development", "10"));
        let mut queue = monitor
            .take_notices()
            .expect("development mode queues notices");
        for i in 0..25 {
            monitor.room("/", &format!("r{i}"), "sid", true);
        }
        let mut queued = 0;
        while queue.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!((queued, monitor.dropped()), (10, 15));
    }

    #[test]
    fn production_mode_counts_but_queues_nothing() {
        let monitor = Monitor::new(&settings("production", "10"));
        assert!(monitor.is_on());
        assert!(monitor.take_notices().is_none());
        monitor.room("/", "r", "sid", true);
        assert_eq!(monitor.dropped(), 0);
    }

    #[test]
    fn a_disconnect_is_followed_by_leaving_each_room_and_the_sockets_own() {
        let events = Notice::Disconnected {
            nsp: "/".into(),
            id: "s1".into(),
            reason: "transport close",
            rooms: vec!["lobby".into(), "s1".into()],
            at: "t".into(),
        }
        .into_events();
        let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["socket_disconnected", "room_left", "room_left"]);
        assert_eq!(json!(events[1].1), json!(["/", "lobby", "s1", "t"]));
    }
}
