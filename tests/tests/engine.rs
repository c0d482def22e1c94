//! What a reader of the Node.js posts expects of the server's HTTP side (`shared/PROTOCOL.md`,
//! "Configuration"): CORS for listed origins only (never on `/api`), a custom Socket.IO path, the
//! served client bundle, engine timings that notice a dead link, percent-decoded query values, and
//! disconnect reasons counted by name.

use std::time::{Duration, Instant};

use cluster_tests::{ADMIN_TOKEN, ChatNode, Client, TestRedis, chat_config, chat_nodes};
use serde_json::{Value, json};

async fn solo(
    tweak: impl FnOnce(&mut chat_server::Config),
) -> anyhow::Result<ChatNode<chat_server::backend::Memory>> {
    let mut config = chat_config("engine", None, "engine");
    tweak(&mut config);
    ChatNode::solo(config).await
}

async fn join(client: &mut Client, room: &str) -> anyhow::Result<Value> {
    let ack = client
        .emit_with_ack("join", &[json!({ "room": room })])
        .await?;
    anyhow::ensure!(ack[0]["ok"] == json!(true), "join: {ack:?}");
    Ok(ack[0].clone())
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn cors_answers_listed_origins_only_and_never_on_the_admin_api() -> anyhow::Result<()> {
    let allowed = "http://localhost:5173";
    let node =
        solo(|c| c.cors_origins = Some(format!("{allowed}, https://app.example.com"))).await?;
    let http = reqwest::Client::new();
    let polling = node.url("/socket.io/?EIO=4&transport=polling");
    for (origin, expected) in [(allowed, Some(allowed)), ("http://evil.example", None)] {
        let preflight = http
            .request(reqwest::Method::OPTIONS, &polling)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
            .await?;
        assert_eq!(
            header(&preflight, "access-control-allow-origin"),
            expected,
            "preflight from {origin}"
        );
        let open = http.get(&polling).header("Origin", origin).send().await?;
        assert_eq!(
            header(&open, "access-control-allow-origin"),
            expected,
            "polling from {origin}"
        );
        if expected.is_some() {
            assert_eq!(
                header(&open, "access-control-allow-credentials"),
                Some("true")
            );
            assert!(
                open.text().await?.starts_with("0{"),
                "an engine.io open packet"
            );
        }
    }
    let admin = http
        .get(node.url("/api/nodes"))
        .bearer_auth(ADMIN_TOKEN)
        .header("Origin", allowed)
        .send()
        .await?;
    assert!(admin.status().is_success());
    assert_eq!(
        header(&admin, "access-control-allow-origin"),
        None,
        "/api never gets CORS"
    );

    let same_origin_only = solo(|_| ()).await?;
    let open = http
        .get(same_origin_only.url("/socket.io/?EIO=4&transport=polling"))
        .header("Origin", allowed)
        .send()
        .await?;
    assert_eq!(
        header(&open, "access-control-allow-origin"),
        None,
        "unset: no CORS"
    );
    println!("CORS: {allowed} allowed with credentials, http://evil.example and /api refused");
    Ok(())
}

#[tokio::test]
async fn a_client_connects_on_a_custom_socketio_path() -> anyhow::Result<()> {
    let node = solo(|c| c.socketio_path = "/chat".into()).await?;
    let auth = json!({ "userId": "u1" });
    let mut client =
        Client::connect_at(node.port, "/chat", "/", auth.clone(), json!(1), "").await?;
    join(&mut client, "lobby").await?;
    let ack = client
        .emit_with_ack("message", &[json!({ "room": "lobby", "text": "hi" })])
        .await?;
    assert_eq!(ack[0]["ok"], json!(true));
    assert!(
        Client::connect(node.port, "/", auth, json!(1))
            .await
            .is_err(),
        "/socket.io is not served any more"
    );
    let bundle = reqwest::get(node.url("/chat/socket.io.js")).await?;
    assert!(
        bundle.status().is_success(),
        "the client is served under the path"
    );
    Ok(())
}

#[tokio::test]
async fn the_socketio_client_bundles_are_served_as_node_serves_them() -> anyhow::Result<()> {
    let node = solo(|_| ()).await?;
    let dist = cluster_tests::process::workspace().join("web/node_modules/socket.io-client/dist");
    for file in [
        "socket.io.js",
        "socket.io.js.map",
        "socket.io.min.js",
        "socket.io.min.js.map",
        "socket.io.esm.min.js",
        "socket.io.esm.min.js.map",
    ] {
        let res = reqwest::get(node.url(&format!("/socket.io/{file}"))).await?;
        assert!(res.status().is_success(), "{file}: {}", res.status());
        assert_eq!(
            header(&res, "cache-control"),
            Some("public, max-age=0, must-revalidate")
        );
        assert!(
            header(&res, "last-modified").is_some(),
            "{file} can be revalidated"
        );
        let body = res.bytes().await?;
        assert_eq!(
            body,
            std::fs::read(dist.join(file))?,
            "{file} is the package's file"
        );
    }
    let off = solo(|c| c.serve_client = false).await?;
    let res = reqwest::get(off.url("/socket.io/socket.io.js")).await?;
    assert!(
        !res.status().is_success(),
        "SERVE_CLIENT=false serves no bundle: {}",
        res.status()
    );
    Ok(())
}

/// A client that stops answering pings is disconnected within interval + timeout, counted as a
/// `ping timeout`, and announced after the grace.
#[tokio::test]
async fn a_silent_client_is_disconnected_after_the_ping_timeout_and_then_announced()
-> anyhow::Result<()> {
    let node = solo(|c| {
        c.ping_interval_ms = 300;
        c.ping_timeout_ms = 200;
        c.leave_grace_ms = 300;
    })
    .await?;
    let mut alice = Client::connect(node.port, "/", json!({ "userId": "alice" }), json!(1)).await?;
    let mut bob = Client::connect(node.port, "/", json!({ "userId": "bob" }), json!(1)).await?;
    join(&mut alice, "r").await?;
    join(&mut bob, "r").await?;
    bob.drain(Duration::from_millis(200)).await;
    let silent_since = Instant::now();
    alice.pause_reading();
    let notice = bob.event_within("notice", Duration::from_secs(5)).await?;
    let after = silent_since.elapsed();
    assert_eq!(notice[0]["kind"], json!("leave"));
    assert_eq!(notice[0]["user"]["id"], json!("alice"));
    assert!(
        after < Duration::from_millis(300 + 200 + 300 + 1000),
        "announced {after:?} after going silent"
    );
    let metrics = reqwest::get(node.url("/metrics")).await?.text().await?;
    assert!(
        metrics.contains(r#"chat_disconnects_total{node="engine",reason="ping timeout"} 1"#),
        "{metrics}"
    );
    println!(
        "a silent client was announced gone {after:?} after its last pong (interval 300 ms + timeout 200 ms + grace 300 ms)"
    );
    Ok(())
}

/// `?userId=김재환` arrives percent-encoded and is decoded once, everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_encoded_user_id_round_trips_through_acks_notices_presence_and_admin()
-> anyhow::Result<()> {
    let redis = TestRedis::start().await?;
    let nodes = chat_nodes(&redis.url(), "query", 2, |_| ()).await?;
    let mut observer = Client::connect(
        nodes[1].port,
        "/",
        json!({ "userId": "observer" }),
        json!(1),
    )
    .await?;
    join(&mut observer, "r").await?;
    let mut kim = Client::connect_query(
        nodes[0].port,
        "/",
        json!({}),
        json!(1),
        "userId=%EA%B9%80%EC%9E%AC%ED%99%98",
    )
    .await?;
    let ack = join(&mut kim, "r").await?;
    assert_eq!(ack["chatter"]["id"], json!("김재환"));
    let notice = observer.event("notice").await?;
    assert_eq!(notice[0]["user"]["id"], json!("김재환"));
    let presence = observer.event("presence").await?;
    assert_eq!(presence[0]["joined"][0]["id"], json!("김재환"));
    let sockets: Value = reqwest::Client::new()
        .get(nodes[1].url("/api/sockets?room=r"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let kim_socket = sockets
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == json!(kim.id))
        .cloned()
        .unwrap_or_default();
    assert_eq!(kim_socket["data"]["userId"], json!("김재환"));
    assert_eq!(kim_socket["handshake"]["query"]["userId"], json!("김재환"));
    Ok(())
}
