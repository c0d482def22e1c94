//! The Admin UI's namespace: login, what a UI is told when it connects (`session`, `config`,
//! and in development mode `all_sockets`), and the actions it sends, carried out cluster-wide
//! through [`crate::operations`]. None of the chat's events, presence or history apply here.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
};

use serde::{
    Deserialize, Deserializer,
    de::{SeqAccess, Visitor},
};
use serde_json::Value;
use socketio_cluster::Target;
use socketioxide::{
    SocketIo,
    extract::{SocketRef, State, TryData},
    handler::ConnectHandler,
};

use super::{
    AdminUi,
    login::{Offer, Outcome},
    monitor::serialize,
};
use crate::{
    backend::Backend,
    chat::{Adapter, Chat},
    operations::{self, Selection},
    rate_limit::RateLimiter,
};

/// The UI's features, in the order it lists them; readonly drops the first seven.
const ACTIONS: [&str; 7] = [
    "EMIT",
    "JOIN",
    "LEAVE",
    "DISCONNECT",
    "MJOIN",
    "MLEAVE",
    "MDISCONNECT",
];

/// The session a login opened, kept until the connect handler hands it to the UI: sent from the
/// middleware it would precede the connect packet, and the UI, which listens for it only once
/// connected, would never see it.
#[derive(Clone)]
struct NewSession(String);

/// Who is at the console, for the log lines of what they do.
#[derive(Clone, Copy)]
struct Operator(IpAddr);

/// A refused login; its text is the connect error the UI shows.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(&'static str);

pub async fn serve<B: Backend>(io: &SocketIo<Adapter<B>>, ui: &AdminUi) -> anyhow::Result<()> {
    io.ns(ui.namespace.clone(), connected::<B>.with(login::<B>))
        .await?;
    Ok(())
}

async fn login<B: Backend>(
    socket: SocketRef<Adapter<B>>,
    TryData(auth): TryData<Value>,
    State(ui): State<Arc<AdminUi>>,
) -> Result<(), Refused> {
    let parts = socket.req_parts();
    let from = ui.gate.address_of(&parts.extensions, &parts.headers);
    let offer = Offer::of(auth.as_ref().ok());
    match ui.login.attempt(offer, from).await {
        Ok(Outcome::NewSession(id)) => {
            tracing::info!(%from, socket = %socket.id, "Admin UI login");
            socket.extensions.insert(NewSession(id));
        }
        Ok(Outcome::Resumed) => {
            tracing::info!(%from, socket = %socket.id, "Admin UI session resumed");
        }
        Ok(Outcome::Refused(message)) => {
            tracing::info!(%from, reason = message, "Admin UI login refused");
            return Err(Refused(message));
        }
        Err(err) => {
            tracing::error!(%err, %from, "Admin UI login failed");
            return Err(Refused("the session store is unavailable"));
        }
    }
    socket.extensions.insert(Operator(from));
    Ok(())
}

async fn connected<B: Backend>(
    socket: SocketRef<Adapter<B>>,
    State(ui): State<Arc<AdminUi>>,
    State(chat): State<Arc<Chat<B>>>,
) {
    if let Some(NewSession(id)) = socket.extensions.get::<NewSession>() {
        let _ = socket.emit("session", &id);
    }
    let mut features: Vec<&str> = Vec::new();
    if !ui.readonly {
        features.extend(ACTIONS);
        listen::<B>(&socket);
    }
    features.push("AGGREGATED_EVENTS");
    if ui.development {
        features.push("ALL_EVENTS");
    }
    let _ = socket.emit(
        "config",
        &serde_json::json!({ "supportedFeatures": features }),
    );
    chat.monitor.connected(&socket);
    socket.on_disconnect(
        async |s: SocketRef<Adapter<B>>,
               reason: socketioxide::socket::DisconnectReason,
               State(chat): State<Arc<Chat<B>>>| {
            chat.monitor
                .disconnected(&s, crate::chat::reason_name(reason), std::iter::empty());
        },
    );
    if ui.development {
        match all_sockets(&chat).await {
            Ok(sockets) => {
                let _ = socket.emit("all_sockets", &sockets);
            }
            Err(err) => tracing::warn!(%err, "Admin UI: cannot list the cluster's sockets"),
        }
    }
}

/// Every socket of every namespace of the cluster, with its data, handshake and rooms.
async fn all_sockets<B: Backend>(
    chat: &Chat<B>,
) -> Result<Vec<Value>, socketio_cluster::ClusterError> {
    let mut namespaces: Vec<String> = chat
        .cluster
        .nodes()
        .into_iter()
        .flat_map(|node| node.nsps)
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let mut all = Vec::new();
    for nsp in namespaces {
        for socket in chat.cluster.fetch_sockets(&nsp, &Target::all()).await? {
            let handshake = socket.handshake();
            // The transport it connected with: another node's socket may have upgraded since.
            let transport = handshake
                .query
                .get("transport")
                .and_then(Value::as_str)
                .unwrap_or("polling")
                .to_string();
            all.push(serialize(
                socket.id(),
                &nsp,
                &transport,
                socket.data(),
                handshake,
                socket.rooms(),
            ));
        }
    }
    Ok(all)
}

/// Every argument of an event: socketioxide hands a handler the first one unless its type asks
/// for a tuple, and the UI's actions take two to four.
struct Args(Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct All;
        impl<'de> Visitor<'de> for All {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the event's arguments")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Args, S::Error> {
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element()? {
                    args.push(arg);
                }
                Ok(Args(args))
            }
        }
        deserializer.deserialize_tuple(usize::MAX, All)
    }
}

/// An action the UI sent, read from its arguments.
#[derive(Debug, PartialEq)]
enum Action {
    /// `join` / `leave` `(nsp, room, filter?)`.
    Rooms {
        nsp: String,
        room: String,
        filter: Option<String>,
        join: bool,
    },
    /// `_disconnect` `(nsp, close, filter?)`.
    Disconnect {
        nsp: String,
        close: bool,
        filter: Option<String>,
    },
    /// `emit` `(nsp, filter, event, ...args)`.
    Emit {
        nsp: String,
        filter: Option<String>,
        event: String,
        args: Vec<Value>,
    },
}

impl Action {
    fn read(name: &str, args: Vec<Value>) -> Option<Self> {
        let text = |i: usize| {
            args.get(i)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let nsp = text(0)?;
        match name {
            "join" | "leave" => Some(Self::Rooms {
                nsp,
                room: text(1)?,
                filter: text(2),
                join: name == "join",
            }),
            "_disconnect" => Some(Self::Disconnect {
                nsp,
                close: args.get(1).and_then(Value::as_bool).unwrap_or(false),
                filter: text(2),
            }),
            "emit" => Some(Self::Emit {
                nsp,
                filter: text(1),
                event: text(2)?,
                args: args.into_iter().skip(3).collect(),
            }),
            _ => None,
        }
    }
}

/// Actions one admin socket may send per second, and at once: each may fetch every node's
/// sockets, so even a logged-in tab (or a stolen session) cannot make the cluster do that
/// without bound.
const ACTIONS_PER_SEC: f64 = 10.0;
const ACTIONS_BURST: f64 = 20.0;

/// The actions; registered only when not readonly, so a readonly node ignores them all.
fn listen<B: Backend>(socket: &SocketRef<Adapter<B>>) {
    let allowance = Arc::new(Mutex::new(RateLimiter::new(ACTIONS_PER_SEC, ACTIONS_BURST)));
    for name in ["join", "leave", "_disconnect", "emit"] {
        let allowance = allowance.clone();
        socket.on(
            name,
            async move |s: SocketRef<Adapter<B>>,
                        TryData(args): TryData<Args>,
                        State(chat): State<Arc<Chat<B>>>,
                        State(ui): State<Arc<AdminUi>>,
                        io: SocketIo<Adapter<B>>| {
                let operator = s.extensions.get::<Operator>().map(|Operator(ip)| ip);
                if !allowance.lock().unwrap().try_take() {
                    tracing::warn!(
                        ?operator,
                        action = name,
                        "Admin UI: ignoring an action beyond the rate limit"
                    );
                    return;
                }
                let Some(action) = args.ok().and_then(|Args(args)| Action::read(name, args)) else {
                    tracing::info!(
                        ?operator,
                        action = name,
                        "Admin UI: ignoring a malformed action"
                    );
                    return;
                };
                if action.namespace() == ui.namespace {
                    tracing::info!(
                        ?operator,
                        ?action,
                        "Admin UI: ignoring an action on its own namespace"
                    );
                    return;
                }
                tracing::info!(?operator, ?action, "Admin UI action");
                if let Err(err) = action.run(&chat, &io).await {
                    tracing::warn!(?operator, err = %err.message, "Admin UI action failed");
                }
            },
        );
    }
}

impl Action {
    fn namespace(&self) -> &str {
        match self {
            Self::Rooms { nsp, .. } | Self::Disconnect { nsp, .. } | Self::Emit { nsp, .. } => nsp,
        }
    }

    async fn run<B: Backend>(
        self,
        chat: &Chat<B>,
        io: &SocketIo<Adapter<B>>,
    ) -> Result<(), crate::protocol::ChatError> {
        match self {
            Self::Rooms {
                nsp,
                room,
                filter,
                join,
            } => {
                let selection = Selection::in_room(filter);
                operations::change_rooms(chat, io, &nsp, selection, vec![room], join).await
            }
            Self::Disconnect { nsp, close, filter } => {
                operations::disconnect(chat, &nsp, Selection::in_room(filter), close).await
            }
            Self::Emit {
                nsp,
                filter,
                event,
                args,
            } => operations::emit(chat, &nsp, Selection::in_room(filter), &event, args, None)
                .await
                .map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(name: &str, args: Value) -> Option<Action> {
        Action::read(name, serde_json::from_value(args).unwrap())
    }

    #[test]
    fn actions_are_read_as_the_ui_sends_them() {
        assert_eq!(
            read("join", json!(["/", "lobby", "sid1"])),
            Some(Action::Rooms {
                nsp: "/".into(),
                room: "lobby".into(),
                filter: Some("sid1".into()),
                join: true
            })
        );
        assert_eq!(
            read("leave", json!(["/", "lobby"])),
            Some(Action::Rooms {
                nsp: "/".into(),
                room: "lobby".into(),
                filter: None,
                join: false
            })
        );
        assert_eq!(
            read("_disconnect", json!(["/", true, "sid1"])),
            Some(Action::Disconnect {
                nsp: "/".into(),
                close: true,
                filter: Some("sid1".into())
            })
        );
        assert_eq!(
            read("emit", json!(["/", null, "notice", {"text": "hi"}, 2])),
            Some(Action::Emit {
                nsp: "/".into(),
                filter: None,
                event: "notice".into(),
                args: vec![json!({"text": "hi"}), json!(2)]
            })
        );
    }

    #[test]
    fn an_empty_room_or_a_missing_namespace_is_no_action() {
        assert_eq!(read("join", json!(["/", "", "sid1"])), None);
        assert_eq!(read("join", json!(["/", null, "sid1"])), None);
        assert_eq!(read("leave", json!([])), None);
        assert_eq!(read("emit", json!(["/", "room"])), None);
        assert_eq!(read("other", json!(["/", "room"])), None);
    }
}
