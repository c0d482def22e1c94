//! `/` serves the web client folder (`WEB_DIR`) next to Socket.IO and the HTTP endpoints, and says
//! how to build the client while the folder has none.

use std::path::PathBuf;

use chat_server::backend::Memory;
use cluster_tests::{ADMIN_TOKEN, ChatNode, chat_config, init_tracing, unique_key};

/// A fresh folder for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique_key(test));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn node(test: &str, web_dir: PathBuf) -> anyhow::Result<ChatNode<Memory>> {
    init_tracing();
    let mut config = chat_config(test, None, &unique_key(test));
    config.web_dir = web_dir;
    ChatNode::solo(config).await
}

async fn get(url: String) -> anyhow::Result<(u16, String, String)> {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    Ok((status, kind, response.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_client_is_served_at_the_root_without_shadowing_anything() -> anyhow::Result<()> {
    let dir = TempDir::new("web-built")?;
    std::fs::write(
        dir.0.join("index.html"),
        "<!doctype html><title>chat</title>",
    )?;
    std::fs::write(dir.0.join("app.js"), "console.log('chat')")?;
    // Files a careless build could leave in the folder must not hide the server's own routes.
    std::fs::write(dir.0.join("healthz"), "shadow")?;
    std::fs::create_dir_all(dir.0.join("api"))?;
    std::fs::write(dir.0.join("api").join("rooms"), "shadow")?;
    std::fs::write(dir.0.join("api").join("unknown"), "shadow")?;
    let node = node("web-built", dir.0.clone()).await?;

    let (status, kind, body) = get(node.url("/")).await?;
    assert_eq!((status, kind.as_str()), (200, "text/html"));
    assert_eq!(body, "<!doctype html><title>chat</title>");
    let (status, kind, _) = get(node.url("/app.js")).await?;
    assert_eq!((status, kind.as_str()), (200, "text/javascript"));
    assert_eq!(get(node.url("/missing.js")).await?.0, 404);

    assert_eq!(get(node.url("/healthz")).await?.2, "ok");
    assert_eq!(get(node.url("/api/rooms")).await?.2, "[]");
    assert_eq!(get(node.url("/api/unknown")).await?.0, 404);
    let (status, _, body) = get(node.url("/socket.io/?EIO=4&transport=polling")).await?;
    assert_eq!(status, 200);
    assert!(body.starts_with("0{\"sid\""), "Socket.IO handshake: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_built_client_the_root_says_how_to_build_it() -> anyhow::Result<()> {
    let dir = TempDir::new("web-missing")?;
    let node = node("web-missing", dir.0.join("dist")).await?;

    let (status, kind, body) = get(node.url("/")).await?;
    assert_eq!((status, kind.as_str()), (503, "text/plain; charset=utf-8"));
    assert!(body.contains("cd web && npm ci && npm run build"), "{body}");
    assert!(body.contains("WEB_DIR"), "{body}");
    assert_eq!(get(node.url("/healthz")).await?.0, 200);
    assert_eq!(get(node.url("/api/unknown")).await?.0, 404);

    // Built while the server runs: served at once.
    std::fs::create_dir_all(dir.0.join("dist"))?;
    std::fs::write(dir.0.join("dist").join("index.html"), "<p>built</p>")?;
    assert_eq!(
        get(node.url("/")).await?,
        (200, "text/html".into(), "<p>built</p>".into())
    );
    assert_eq!(get(node.url("/missing.js")).await?.0, 404);
    Ok(())
}
