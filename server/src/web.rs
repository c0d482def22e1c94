//! The browser chat client: the static folder built from `web/` (`WEB_DIR`), served at `/`.
//!
//! It is the router's fallback, so `/socket.io/` (the Socket.IO layer), `/healthz`, `/readyz`,
//! `/metrics` and `/api/*` (see `admin::routes`) keep their handlers whatever the folder holds.

use std::path::{Path, PathBuf};

use axum::{
    Router,
    handler::HandlerWithoutStateExt,
    http::{HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
};
use tower_http::services::ServeDir;

/// How to get a client when there is none.
const BUILD_HINT: &str = "cd web && npm ci && npm run build";

/// Serves `dir`; while it holds no `index.html`, every page answers 503 with how to build it.
pub fn routes(dir: &Path) -> Router {
    let missing = {
        let dir = dir.to_path_buf();
        move || async move { not_found(&dir).await }
    };
    Router::new()
        .fallback_service(ServeDir::new(dir).fallback(missing.into_service()))
        .layer(middleware::map_response(revalidate))
}

/// Logs where the client comes from, or that it has not been built.
pub fn report(dir: &Path) {
    if index(dir).is_file() {
        tracing::info!(dir = %dir.display(), "serving the web client at /");
    } else {
        tracing::warn!(
            dir = %dir.display(),
            "no web client: build it with `{BUILD_HINT}` or set WEB_DIR; / explains this meanwhile"
        );
    }
}

fn index(dir: &Path) -> PathBuf {
    dir.join("index.html")
}

/// No such file: a plain 404 once the client is built, the build instructions until then. Looked
/// up on each request, so a client built while the server runs is served without a restart.
async fn not_found(dir: &Path) -> Response {
    if tokio::fs::metadata(index(dir))
        .await
        .is_ok_and(|m| m.is_file())
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = format!(
        "chat-server: the web client has not been built.\n\n\
         Build it (Node.js 20+) from the repository root with\n\n    {BUILD_HINT}\n\n\
         or point WEB_DIR (now {}) at a built client folder.\n\
         Socket.IO clients can connect meanwhile: see README.md.\n",
        dir.display()
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The bundle's file names do not change between builds, so browsers must ask again (a cheap
/// 304) rather than keep running an old client against an upgraded server.
async fn revalidate(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
