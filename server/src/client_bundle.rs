//! The Socket.IO JS client, served as Node's socket.io serves it (`serveClient`): pages written
//! for Node servers load `/socket.io/socket.io.js` and work unchanged. The files come from the
//! `socket.io-client` package the web build installs (`SOCKETIO_CLIENT_DIR`).

use std::path::Path;

use axum::{
    Router,
    http::{HeaderValue, header},
    middleware,
    response::Response,
};
use tower_http::services::ServeFile;

/// The bundles Node's socket.io serves, each with its source map.
const BUNDLES: [&str; 3] = ["socket.io.js", "socket.io.min.js", "socket.io.esm.min.js"];

/// Routes `{path}/{bundle}` and `{path}/{bundle}.map` to the files of `dir`.
pub fn routes(path: &str, dir: &Path) -> Router {
    let missing: Vec<String> = BUNDLES
        .iter()
        .filter(|b| !dir.join(b).is_file())
        .map(|b| b.to_string())
        .collect();
    if missing.is_empty() {
        tracing::info!(dir = %dir.display(), "serving the Socket.IO client at {path}/socket.io.js");
    } else {
        tracing::warn!(dir = %dir.display(), ?missing, "SERVE_CLIENT: the Socket.IO client is missing (run `cd web && npm ci`, or set SOCKETIO_CLIENT_DIR); those paths answer 404");
    }
    let mut router = Router::new();
    for bundle in BUNDLES {
        for file in [bundle.to_string(), format!("{bundle}.map")] {
            router =
                router.route_service(&format!("{path}/{file}"), ServeFile::new(dir.join(&file)));
        }
    }
    router.layer(middleware::map_response(revalidate))
}

/// Browsers may keep the file but must ask again (a cheap 304 on its Last-Modified), so an
/// upgraded server's client is picked up: Node sends `max-age=0` with an ETag for the same reason.
async fn revalidate(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=0, must-revalidate"),
    );
    response
}
