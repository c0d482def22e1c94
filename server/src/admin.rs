//! The admin HTTP API (`/api/*`, bearer token), health and metrics endpoints.

use std::{collections::HashSet, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request, State},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use socketio_cluster::{ClusterError, RemoteSocket, Target, presence::PresenceStore};
use socketioxide::SocketIo;
use subtle::ConstantTimeEq;

use crate::{
    backend::Backend,
    chat::{Adapter, Chat},
    connections::Refusal,
    metrics::{self, Snapshot},
    operations::{self, Selection},
    protocol::{ChatError, ErrorCode, check_room},
};

/// What the handlers reach: the chat, and the node's sockets (admin room changes apply the
/// chat's join and leave to them).
pub struct AdminState<B: Backend> {
    chat: Arc<Chat<B>>,
    io: SocketIo<Adapter<B>>,
}

impl<B: Backend> Clone for AdminState<B> {
    fn clone(&self) -> Self {
        Self {
            chat: self.chat.clone(),
            io: self.io.clone(),
        }
    }
}

impl<B: Backend> FromRef<AdminState<B>> for Arc<Chat<B>> {
    fn from_ref(state: &AdminState<B>) -> Self {
        state.chat.clone()
    }
}

impl<B: Backend> FromRef<AdminState<B>> for SocketIo<Adapter<B>> {
    fn from_ref(state: &AdminState<B>) -> Self {
        state.io.clone()
    }
}

/// `/healthz`, `/readyz`, `/metrics`, and `/api/*` when an admin token is configured (a 404
/// otherwise).
pub fn routes<B: Backend>(chat: Arc<Chat<B>>, io: SocketIo<Adapter<B>>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready::<B>))
        .route("/metrics", get(metrics::<B>));
    if chat.config.admin_token.is_some() {
        router = router
            .route("/api/sockets", get(list_sockets::<B>))
            .route("/api/rooms", get(list_rooms::<B>))
            .route("/api/rooms/{room}/presence", get(room_presence::<B>))
            .route("/api/sockets/join", post(join::<B>))
            .route("/api/sockets/leave", post(leave::<B>))
            .route("/api/sockets/disconnect", post(disconnect::<B>))
            .route("/api/emit", post(emit::<B>))
            .route("/api/nodes", get(nodes::<B>));
    }
    // Whatever else is under `/api` stays a 404 of its own, never a file of the web client, which
    // serves every other path.
    let not_found = || async { StatusCode::NOT_FOUND };
    router
        .route("/api", any(not_found))
        .route("/api/{*rest}", any(not_found))
        .with_state(AdminState { chat, io })
}

/// An admin API failure: the error envelope of the chat's acks, with an HTTP status.
#[derive(Debug)]
pub struct ApiError(ChatError);

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self(ChatError::bad_request(message))
    }

    fn status(&self) -> StatusCode {
        match self.0.code {
            ErrorCode::BadRequest | ErrorCode::NotInRoom | ErrorCode::TooLong => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(err: ChatError) -> Self {
        Self(err)
    }
}

impl From<ClusterError> for ApiError {
    fn from(err: ClusterError) -> Self {
        Self(operations::failed(err))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.0.to_ack())).into_response()
    }
}

/// A JSON body whose rejection is a `bad_request` in the API's error shape.
pub struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(body)) => Ok(Body(body)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// Proof that the request carries the admin bearer token.
pub struct Admin;

impl<B: Backend> FromRequestParts<AdminState<B>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState<B>,
    ) -> Result<Self, ApiError> {
        let chat = &state.chat;
        let expected = chat.config.admin_token.as_deref().unwrap_or_default();
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(Admin)
        } else {
            tracing::info!("admin request refused: bad or missing token");
            Err(ApiError(ChatError::new(
                ErrorCode::Unauthorized,
                "missing or invalid bearer token",
            )))
        }
    }
}

#[derive(Deserialize)]
struct NsQuery {
    #[serde(default = "root")]
    ns: String,
    #[serde(default)]
    room: Option<String>,
}

fn root() -> String {
    "/".into()
}

fn describe(s: &RemoteSocket) -> Value {
    let rooms: Vec<&String> = s.rooms().iter().filter(|r| *r != s.id()).collect();
    let handshake = s.handshake();
    let data = s.data();
    json!({
        "id": s.id(),
        "node": s.node(),
        "rooms": rooms,
        "data": { "userId": data["userId"], "name": data["name"] },
        "handshake": { "address": handshake.address, "time": handshake.time, "query": handshake.query },
    })
}

async fn list_sockets<B: Backend>(
    _: Admin,
    State(chat): State<Arc<Chat<B>>>,
    Query(q): Query<NsQuery>,
) -> Result<Json<Value>, ApiError> {
    operations::check_namespace(&q.ns)?;
    let target = Target {
        rooms: q.room.into_iter().collect(),
        except: Vec::new(),
    };
    let sockets = chat
        .metrics
        .time("fetch_sockets", chat.cluster.fetch_sockets(&q.ns, &target))
        .await?;
    Ok(Json(Value::Array(sockets.iter().map(describe).collect())))
}

async fn list_rooms<B: Backend>(
    _: Admin,
    State(chat): State<Arc<Chat<B>>>,
    Query(q): Query<NsQuery>,
) -> Result<Json<Value>, ApiError> {
    operations::check_namespace(&q.ns)?;
    let everyone = Target::all();
    let (rooms, sockets) = tokio::try_join!(
        chat.metrics.time("rooms", chat.cluster.rooms(&q.ns)),
        chat.metrics.time(
            "fetch_sockets",
            chat.cluster.fetch_sockets(&q.ns, &everyone)
        ),
    )?;
    let socket_rooms: HashSet<&str> = sockets.iter().map(RemoteSocket::id).collect();
    let mut rooms: Vec<String> = rooms
        .into_iter()
        .filter(|r| !socket_rooms.contains(r.as_str()))
        .collect();
    rooms.sort();
    Ok(Json(json!(rooms)))
}

async fn room_presence<B: Backend>(
    _: Admin,
    State(chat): State<Arc<Chat<B>>>,
    Path(room): Path<String>,
    Query(q): Query<NsQuery>,
) -> Result<Json<Value>, ApiError> {
    operations::check_namespace(&q.ns)?;
    check_room(&room)?;
    let online = chat
        .presence
        .online(&q.ns, &room)
        .await
        .map_err(ChatError::internal)?;
    Ok(Json(json!({ "room": room, "online": online })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomsBody {
    #[serde(default)]
    target: Selection,
    rooms: Vec<String>,
}

async fn join<B: Backend>(
    _: Admin,
    State(chat): State<Arc<Chat<B>>>,
    State(io): State<SocketIo<Adapter<B>>>,
    Query(q): Query<NsQuery>,
    Body(body): Body<RoomsBody>,
) -> Result<Json<Value>, ApiError> {
    operations::change_rooms(&chat, &io, &q.ns, body.target, body.rooms, true).await?;
    Ok(Json(json!({ "ok": true })))
}

async fn leave<B: Backend>(
    _: Admin,
    State(chat): State<Arc<Chat<B>>>,
    State(io): State<SocketIo<Adapter<B>>>,
    Query(q): Query<NsQuery>,
    Body(body): Body<RoomsBody>,
) -> Result<Json<Value>, ApiError> {
    operations::change_rooms(&chat, &io, &q.ns, body.target, body.rooms, false).await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    #[serde(default)]
    target: Selection,
    #[serde(default)]
    close: bool,
}

async fn disconnect<B: Backend>(
    _: Admin,
    State(chat): State<Arc<Chat<B>>>,
    Query(q): Query<NsQuery>,
    Body(body): Body<DisconnectBody>,
) -> Result<Json<Value>, ApiError> {
    operations::disconnect(&chat, &q.ns, body.target, body.close).await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AckSpec {
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitBody {
    #[serde(default)]
    target: Selection,
    event: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    ack: Option<AckSpec>,
}

async fn emit<B: Backend>(
    _: Admin,
    State(chat): State<Arc<Chat<B>>>,
    Query(q): Query<NsQuery>,
    Body(body): Body<EmitBody>,
) -> Result<Json<Value>, ApiError> {
    let timeout = body
        .ack
        .map(|ack| Duration::from_millis(ack.timeout_ms.clamp(1, 60_000)));
    let args = vec![body.data];
    let acks = operations::emit(&chat, &q.ns, body.target, &body.event, args, timeout).await?;
    Ok(Json(match acks {
        Some(acks) => json!({ "ok": true, "acks": acks }),
        None => json!({ "ok": true }),
    }))
}

async fn nodes<B: Backend>(_: Admin, State(chat): State<Arc<Chat<B>>>) -> Json<Value> {
    let nodes: Vec<Value> = chat
        .cluster
        .nodes()
        .into_iter()
        .map(|n| json!({ "id": n.name, "uid": n.uid, "sockets": n.sockets, "lastHeartbeatMs": n.last_heartbeat_ms }))
        .collect();
    Json(Value::Array(nodes))
}

/// How long Redis may take to answer the readiness probe's `PING`.
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

async fn ready<B: Backend>(State(chat): State<Arc<Chat<B>>>) -> Response {
    let started = chat.cluster.uid().is_some();
    if !chat.admission.ready() {
        // Existing clients stay; the balancer sends new ones elsewhere.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: near MAX_CONNECTIONS",
        )
            .into_response()
    } else if started && B::is_ready(chat.cluster.driver(), READY_DEADLINE).await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shared state unreachable",
        )
            .into_response()
    }
}

async fn metrics<B: Backend>(State(chat): State<Arc<Chat<B>>>) -> Response {
    let me = chat.cluster.nodes().into_iter().next();
    let body = chat.metrics.render(Snapshot {
        node: &chat.cluster.config().node_name,
        sockets: me.map_or(0, |n| n.sockets),
        rooms: chat.local_room_count(),
        cluster: chat.cluster.stats(),
        admin_ui_dropped: chat.monitor.dropped(),
        connections: {
            let a = &chat.admission;
            metrics::Connections {
                open: a.open(),
                max: a.limits().max,
                ready: a.ready(),
                refused_full: a.refused(Refusal::Full),
                refused_per_ip: a.refused(Refusal::PerIp),
            }
        },
    });
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
