//! What an operator does to sockets anywhere in the cluster: make them join or leave rooms (as
//! the chat's own `join` and `leave`, with presence and notices), disconnect them, emit to them.
//! The admin HTTP API ([`crate::admin`]) and the Admin UI ([`crate::admin_ui`]) both act
//! through these.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use socketio_cluster::{ClusterError, Target};
use socketioxide::SocketIo;

use crate::{
    backend::Backend,
    chat::{Adapter, Chat, ROOM_CHANGE_EVENT, RoomChange},
    protocol::{ChatError, ErrorCode, MAX_ROOM_LEN, check_name, check_room, valid_namespace},
};

/// Which sockets an operation reaches; every given field must match.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selection {
    /// In this room (a socket id names its socket: every socket is in the room of its id).
    pub room: Option<String>,
    pub socket_id: Option<String>,
    pub user_id: Option<String>,
    /// Not in any of these rooms.
    #[serde(default)]
    pub except: Vec<String>,
}

impl Selection {
    /// The sockets in `room`, or every socket.
    pub fn in_room(room: Option<String>) -> Self {
        Self {
            room,
            ..Self::default()
        }
    }
}

/// A cluster failure as the operator sees it, logged once here.
pub fn failed(err: ClusterError) -> ChatError {
    tracing::warn!(%err, "admin operation failed");
    let code = match err {
        ClusterError::Timeout { .. } => ErrorCode::Timeout,
        _ => ErrorCode::Internal,
    };
    ChatError::new(code, err.to_string())
}

pub fn check_namespace(ns: &str) -> Result<(), ChatError> {
    if valid_namespace(ns) {
        Ok(())
    } else {
        Err(ChatError::bad_request(format!("invalid namespace {ns}")))
    }
}

/// The [`Target`] of `selection`; with `by_ids` (or a socket or user to match) the ids of the
/// selected sockets, fetched from every node. `None`: nothing is selected.
async fn resolve<B: Backend>(
    chat: &Chat<B>,
    ns: &str,
    selection: Selection,
    by_ids: bool,
) -> Result<Option<Target>, ChatError> {
    let base = Target {
        rooms: selection.room.into_iter().collect(),
        except: selection.except,
    };
    if !by_ids && selection.socket_id.is_none() && selection.user_id.is_none() {
        return Ok(Some(base));
    }
    let sockets = chat
        .metrics
        .time("fetch_sockets", chat.cluster.fetch_sockets(ns, &base))
        .await
        .map_err(failed)?;
    let ids: Vec<String> = sockets
        .into_iter()
        .filter(|s| selection.socket_id.as_ref().is_none_or(|id| s.id() == id))
        .filter(|s| {
            selection
                .user_id
                .as_ref()
                .is_none_or(|u| s.data()["userId"].as_str() == Some(u))
        })
        .map(|s| s.id().to_owned())
        .collect();
    Ok((!ids.is_empty()).then(|| Target::rooms(ids)))
}

/// `socketsJoin` (`join`) or `socketsLeave` of the selected sockets: each joins or leaves as if
/// it had sent the chat's `join` / `leave` (presence, notices), on whichever node it is.
pub async fn change_rooms<B: Backend>(
    chat: &Chat<B>,
    io: &SocketIo<Adapter<B>>,
    ns: &str,
    selection: Selection,
    rooms: Vec<String>,
    join: bool,
) -> Result<(), ChatError> {
    check_namespace(ns)?;
    for room in &rooms {
        check_room(room)?;
    }
    let Some(target) = resolve(chat, ns, selection, true).await? else {
        return Ok(());
    };
    let change = RoomChange {
        nsp: ns.to_string(),
        sockets: target.rooms.clone(),
        rooms,
        join,
    };
    let (op, event) = if join {
        ("sockets_join", "chat_join")
    } else {
        ("sockets_leave", "chat_leave")
    };
    chat.change_rooms(io, &change).await;
    let others = chat.cluster.server_side_emit_with_ack_of_own_nodes(
        ns,
        ROOM_CHANGE_EVENT,
        vec![serde_json::to_value(&change).map_err(ChatError::internal)?],
    );
    chat.metrics.time(event, others).await.map_err(failed)?;
    // Sockets of other kinds of node (Node.js peers) follow the adapter's own socketsJoin.
    let adapter = async {
        if join {
            chat.cluster.add_sockets(ns, &target, change.rooms).await
        } else {
            chat.cluster.del_sockets(ns, &target, change.rooms).await
        }
    };
    chat.metrics.time(op, adapter).await.map_err(failed)
}

/// `disconnectSockets`: with `close`, their whole connections (every namespace) too.
pub async fn disconnect<B: Backend>(
    chat: &Chat<B>,
    ns: &str,
    selection: Selection,
    close: bool,
) -> Result<(), ChatError> {
    check_namespace(ns)?;
    if let Some(target) = resolve(chat, ns, selection, false).await? {
        let op = chat.cluster.disconnect_sockets(ns, &target, close);
        chat.metrics
            .time("disconnect_sockets", op)
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// Emits `event` to the selected sockets; with `ack_timeout`, the acks that came back within it.
pub async fn emit<B: Backend>(
    chat: &Chat<B>,
    ns: &str,
    selection: Selection,
    event: &str,
    args: Vec<Value>,
    ack_timeout: Option<Duration>,
) -> Result<Option<Vec<Value>>, ChatError> {
    check_namespace(ns)?;
    check_name("event", event, MAX_ROOM_LEN)?;
    let Some(target) = resolve(chat, ns, selection, false).await? else {
        return Ok(ack_timeout.map(|_| Vec::new()));
    };
    match ack_timeout {
        Some(timeout) => {
            let op = chat
                .cluster
                .emit_with_ack(ns, &target, event, args, timeout);
            let acks = chat.metrics.time("emit_with_ack", op).await;
            acks.map(Some).map_err(failed)
        }
        None => {
            let op = chat.cluster.emit(ns, &target, event, args);
            chat.metrics.time("emit", op).await.map_err(failed)?;
            Ok(None)
        }
    }
}
