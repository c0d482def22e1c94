//! Payloads of the public contract (`shared/PROTOCOL.md`): what clients send, what acks and
//! events carry, and the error codes.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
pub use socketio_cluster::presence::Member;

/// A chat message as stored and broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `{epoch}:{seq}`: unique within the room.
    pub id: String,
    pub room: String,
    /// The message's place in the room: 1, 2, 3 … within its epoch.
    pub seq: u64,
    /// Changes only when the room's stored sequence was lost; seq restarts then.
    pub epoch: String,
    pub from: Member,
    pub text: String,
    /// Milliseconds since the epoch.
    pub ts: u64,
    /// The sender's id for the message, which makes its retries idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The last message a client holds of a room: it asks for what came after.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Since {
    pub epoch: String,
    pub seq: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub room: String,
    #[serde(default)]
    pub chatter_id: Option<String>,
    #[serde(default)]
    pub since: Option<Since>,
}

/// `history`: a page of the room's kept messages, back from `before` or on from `after` (the
/// newest without either).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRequest {
    pub room: String,
    #[serde(default)]
    pub before: Option<u64>,
    #[serde(default)]
    pub after: Option<Since>,
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub struct LeaveRequest {
    pub room: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRequest {
    pub room: String,
    pub text: String,
    #[serde(default)]
    pub client_id: Option<String>,
}

/// `notice`: a user came online in, or went offline from, a room.
#[derive(Debug, Serialize)]
pub struct Notice<'a> {
    pub room: &'a str,
    pub kind: NoticeKind,
    pub user: &'a Member,
    pub ts: u64,
    /// A leave notice is sent at least once: a repeat has the same id, for the client to drop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    Join,
    Leave,
}

/// `presence`: a change of a room's online users and their new count. It names only who changed,
/// so a room of N users costs O(N) bytes per change, not O(N²); the full list is in the `join`
/// ack and the admin API.
#[derive(Debug, Serialize)]
pub struct PresenceUpdate<'a> {
    pub room: &'a str,
    pub count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined: Option<[&'a Member; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<[&'a Member; 1]>,
}

impl<'a> PresenceUpdate<'a> {
    pub fn new(room: &'a str, count: usize, kind: NoticeKind, user: &'a Member) -> Self {
        let (joined, left) = match kind {
            NoticeKind::Join => (Some([user]), None),
            NoticeKind::Leave => (None, Some([user])),
        };
        Self {
            room,
            count,
            joined,
            left,
        }
    }
}

/// The error codes of failed acks and admin API answers (`timeout` is the admin API's only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    NotInRoom,
    TooLong,
    RateLimited,
    Unauthorized,
    Timeout,
    Internal,
}

/// A failed request, as told to the client: in an ack, or in an admin API answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ChatError {
    pub code: ErrorCode,
    pub message: String,
}

impl ChatError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_in_room(room: &str) -> Self {
        Self::new(
            ErrorCode::NotInRoom,
            format!("not in room {room}; join it first"),
        )
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// `{ ok: false, error: { code, message } }`
    pub fn to_ack(&self) -> Value {
        json!({ "ok": false, "error": { "code": self.code, "message": self.message } })
    }
}

/// A request's payload as `T`, or a `bad_request` saying what is wrong with it.
pub fn parse<T: DeserializeOwned>(payload: Value) -> Result<T, ChatError> {
    serde_json::from_value(payload)
        .map_err(|e| ChatError::bad_request(format!("invalid payload: {e}")))
}

/// `{ ok: true, ...fields }`
pub fn ok_ack(fields: Value) -> Value {
    let mut ack = json!({ "ok": true });
    if let (Some(ack), Value::Object(fields)) = (ack.as_object_mut(), fields) {
        ack.extend(fields);
    }
    ack
}

/// Room names and ids: non-empty, at most `max` characters, no control characters.
pub fn check_name(what: &str, value: &str, max: usize) -> Result<(), ChatError> {
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control)
    {
        Err(ChatError::bad_request(format!(
            "{what} must be 1 to {max} characters without control characters"
        )))
    } else {
        Ok(())
    }
}

/// Chat room names: a name (see [`check_name`]) that could never be a socket id. Every socket is
/// in a room named by its id, so a chat room named like one would reach, and hear, that socket.
pub fn check_room(room: &str) -> Result<(), ChatError> {
    check_name("room", room, MAX_ROOM_LEN)?;
    if could_be_socket_id(room) {
        return Err(ChatError::bad_request(
            "room names of 16 or 20 characters of [A-Za-z0-9_-] are reserved for socket ids",
        ));
    }
    Ok(())
}

/// socketioxide's socket ids are 16 characters of base64url, Node.js' 20.
fn could_be_socket_id(name: &str) -> bool {
    matches!(name.len(), 16 | 20)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Namespaces are `/` and `/{name}` with `name` of 1 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_namespace(nsp: &str) -> bool {
    nsp == "/"
        || nsp.strip_prefix('/').is_some_and(|name| {
            (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Longest room name.
pub const MAX_ROOM_LEN: usize = 128;
/// Longest user id.
pub const MAX_ID_LEN: usize = 128;
/// Longest display name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest `clientId` of a message (a UUID is 36 characters).
pub const MAX_CLIENT_ID_LEN: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_have_the_contract_shape() {
        assert_eq!(ok_ack(json!({ "a": 1 })), json!({ "ok": true, "a": 1 }));
        let err = ChatError::new(ErrorCode::NotInRoom, "join first");
        assert_eq!(
            err.to_ack(),
            json!({ "ok": false, "error": { "code": "not_in_room", "message": "join first" } })
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("room", "lobby", 10).is_ok());
        assert!(check_name("room", "", 10).is_err());
        assert!(check_name("room", "   ", 10).is_err());
        assert!(check_name("room", "a\nb", 10).is_err());
        assert!(check_name("room", "ééééé", 5).is_ok());
        assert!(check_name("room", "éééééé", 5).is_err());
    }

    #[test]
    fn rooms_named_like_socket_ids_are_refused() {
        let sid = socketioxide::socket::Sid::new().to_string();
        assert!(check_room(&sid).is_err(), "{sid}");
        assert!(check_room("Ab3_x-Ab3_x-Ab3_x-Ab").is_err(), "a Node.js id");
        assert!(check_room("general-discussion").is_ok());
        assert!(check_room("room with spaces!").is_ok());
    }
}
