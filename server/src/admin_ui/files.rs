//! The Admin UI's page: the built files of the `@socket.io/admin-ui` package the web build
//! installs from its lockfile (`ADMIN_UI_DIR`), at `ADMIN_UI_PATH`. Its assets are relative and
//! its routes are in the URL's fragment, so the page needs the path's trailing slash, which the
//! path without it redirects to.

use std::path::Path;

use axum::{
    Router,
    extract::Request,
    middleware::{self, Next},
    response::{IntoResponse, Redirect},
};
use tower_http::services::ServeDir;

/// Routes `path` (ending with a slash) to the files of `dir`.
pub fn routes(path: &str, dir: &Path) -> Router {
    if dir.join("index.html").is_file() {
        tracing::info!(dir = %dir.display(), "serving the Admin UI at {path}");
    } else {
        tracing::warn!(dir = %dir.display(), "no Admin UI files (run `cd web && npm ci`, or set ADMIN_UI_DIR); {path} answers 404, the hosted UI still works");
    }
    let bare = path.trim_end_matches('/').to_string();
    let slashed = path.to_string();
    let page = bare.clone();
    Router::new()
        .nest_service(&bare, ServeDir::new(dir))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let bare = req.uri().path() == page;
            let slashed = slashed.clone();
            async move {
                if bare {
                    Redirect::permanent(&slashed).into_response()
                } else {
                    next.run(req).await
                }
            }
        }))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    async fn get_path(router: &Router, path: &str) -> (u16, Option<String>, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn serves_the_page_and_its_assets_under_the_path_with_its_slash() {
        let dir = std::env::temp_dir().join(format!("admin-ui-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("js")).unwrap();
        std::fs::write(dir.join("index.html"), "<html>ui</html>").unwrap();
        std::fs::write(dir.join("js/app.js"), "app()").unwrap();
        let router = routes("/admin-ui/", &dir);
        let (status, location, _) = get_path(&router, "/admin-ui").await;
        assert_eq!((status, location.as_deref()), (308, Some("/admin-ui/")));
        let (status, _, body) = get_path(&router, "/admin-ui/").await;
        assert_eq!((status, body.as_str()), (200, "<html>ui</html>"));
        let (status, _, body) = get_path(&router, "/admin-ui/js/app.js").await;
        assert_eq!((status, body.as_str()), (200, "app()"));
        assert_eq!(get_path(&router, "/admin-ui/missing.js").await.0, 404);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
