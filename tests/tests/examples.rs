//! The programs of `adapter/examples/` (one per source post) do what their docs say. Each runs
//! as a child process, built by `cargo build -p socketio-cluster --examples` (`scripts/test.sh`
//! does it), on free ports, with a Redis container when it shows a cluster.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, ensure};
use cluster_tests::{
    Client, TestRedis,
    process::{free_port, target_dir, workspace},
};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A running example; killed when dropped.
struct Example {
    port: u16,
    port2: u16,
    _child: Child,
}

impl Example {
    /// Starts example `name` on `PORT` and `PORT2` with extra environment, and waits until both
    /// ports accept connections (a single-node example listens on `PORT` only).
    async fn start(name: &str, nodes: usize, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let binary = binary(name);
        ensure!(
            binary.is_file(),
            "{} is missing: build the examples first (`cargo build -p socketio-cluster --examples`, as scripts/test.sh does)",
            binary.display()
        );
        let (port, port2) = (free_port()?, free_port()?);
        let mut child = Command::new(&binary)
            .env("PORT", port.to_string())
            .env("PORT2", port2.to_string())
            .env_remove("REDIS_URL")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let ports = [port, port2];
        for port in &ports[..nodes] {
            wait_listening(&mut child, *port).await?;
        }
        Ok(Self {
            port,
            port2,
            _child: child,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn binary(name: &str) -> PathBuf {
    target_dir().join("debug").join("examples").join(name)
}

async fn wait_listening(child: &mut Child, port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the example exited ({status}) before listening on {port}");
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the example never listened on {port}")
}

/// One Redis per test, and its URL for the example.
async fn redis() -> anyhow::Result<(TestRedis, (&'static str, String))> {
    let redis = TestRedis::start().await?;
    let url = redis.url();
    Ok((redis, ("REDIS_URL", url)))
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn query_to_data_keeps_the_decoded_user_id_as_socket_data() -> anyhow::Result<()> {
    let ex = Example::start("query_to_data", 1, &[]).await?;
    let query = "userId=%EA%B9%80%EC%9E%AC%ED%99%98";
    let mut kim = Client::connect_at(ex.port, "/chat", "/", json!({}), Value::Null, query).await?;
    let mut bob =
        Client::connect_at(ex.port, "/chat", "/", json!({}), Value::Null, "userId=bob").await?;

    assert_eq!(
        kim.emit_with_ack("whoami", &[]).await?,
        [json!({ "userId": "김재환" })]
    );
    let online = bob.emit_with_ack("online", &[]).await?;
    let mut users: Vec<&str> = online[0]
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    users.sort();
    assert_eq!(users, ["bob", "김재환"]);

    // The disconnect handler knows who left from the data stored at connect.
    kim.close();
    let left = bob.event("user left").await?;
    assert_eq!(left[0]["userId"], "김재환");
    // The default `/socket.io` path is not served: the example moved it to `/chat`.
    let moved = Client::connect(ex.port, "/", json!({}), Value::Null).await;
    assert!(moved.is_err());
    Ok(())
}

#[tokio::test]
async fn socket_api_checks_every_packet_and_sees_rooms_on_disconnect() -> anyhow::Result<()> {
    let ex = Example::start("socket_api", 1, &[]).await?;
    // The connect middleware (`io.use`) refuses a client without a name.
    let refused = Client::connect(ex.port, "/", json!({}), Value::Null).await;
    assert!(
        refused
            .err()
            .is_some_and(|e| e.to_string().contains("unknown user"))
    );

    let mut ann = Client::connect(ex.port, "/", json!({ "name": "ann" }), Value::Null).await?;
    let mut bob = Client::connect(ex.port, "/", json!({ "name": "bob" }), Value::Null).await?;
    let rooms = ann.emit_with_ack("join", &[json!("r1")]).await?;
    assert!(
        rooms[0]
            .as_array()
            .is_some_and(|r| r.contains(&json!("r1")))
    );
    bob.emit_with_ack("join", &[json!("r1")]).await?;

    let info = ann.emit_with_ack("info", &[]).await?.remove(0);
    assert_eq!(info["id"], ann.id.as_str());
    assert_eq!(info["data"], json!({ "name": "ann" }));
    assert_eq!(info["transport"], "Websocket");
    assert_eq!(info["handshake"]["query"]["EIO"], "4");
    let rooms = info["rooms"].as_array().context("rooms")?;
    assert!(rooms.contains(&json!("r1")) && rooms.contains(&json!(ann.id)));

    // The packet middleware keeps the `admin:` handler from running and says so.
    ann.emit("admin:shutdown", &[]);
    let refusal = ann.event("refused").await?;
    assert_eq!(refusal[0]["event"], "admin:shutdown");
    ann.emit("nothing-handles-this", &[]);
    assert_eq!(ann.event("unknown").await?, [json!("nothing-handles-this")]);

    // The disconnect handler still sees the rooms, as Node's `disconnecting`.
    ann.close();
    let left = bob.event("user has left").await?.remove(0);
    assert_eq!(left["id"], ann.id.as_str());
    assert_eq!(left["name"], "ann");
    assert!(
        left["rooms"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("r1")))
    );
    assert_eq!(left["reason"], "TransportClose");
    Ok(())
}

#[tokio::test]
async fn leave_grace_hides_a_refresh_and_announces_a_leave_once() -> anyhow::Result<()> {
    const GRACE: Duration = Duration::from_millis(1000);
    let (_redis, url) = redis().await?;
    let grace = ("GRACE_MS", GRACE.as_millis().to_string());
    let ex = Example::start("leave_grace", 2, &[url, grace]).await?;
    let join = |user: &str| json!({ "room": "lobby", "userId": user, "name": user.to_uppercase() });

    let mut bea = Client::connect(ex.port2, "/", json!({}), Value::Null).await?;
    bea.emit_with_ack("join", &[join("bea")]).await?;
    let mut ann = Client::connect(ex.port, "/", json!({}), Value::Null).await?;
    let online = ann.emit_with_ack("join", &[join("ann")]).await?;
    assert_eq!(online[0].as_array().map(Vec::len), Some(2));
    assert_eq!(
        bea.notices(Duration::from_millis(500)).await,
        [("join".into(), "ann".into())]
    );

    // A refresh: Ann's page reconnects, to the other node, within the grace.
    ann.close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ann = Client::connect(ex.port2, "/", json!({}), Value::Null).await?;
    ann.emit_with_ack("join", &[join("ann")]).await?;
    assert_eq!(bea.notices(GRACE + Duration::from_millis(800)).await, []);

    // A real leave: announced once, by one of the two nodes, after the grace.
    ann.close();
    let notices = bea.notices(GRACE + Duration::from_millis(2000)).await;
    assert_eq!(notices, [("leave".into(), "ann".into())]);

    // An explicit leave is announced at once.
    let mut cy = Client::connect(ex.port, "/", json!({}), Value::Null).await?;
    cy.emit_with_ack("join", &[join("cy")]).await?;
    cy.emit("leave", &[json!("lobby")]);
    let notices = bea.notices(Duration::from_millis(1000)).await;
    assert_eq!(
        notices,
        [("join".into(), "cy".into()), ("leave".into(), "cy".into())]
    );
    Ok(())
}

#[tokio::test]
async fn server_api_acts_on_the_sockets_of_both_nodes() -> anyhow::Result<()> {
    let (_redis, url) = redis().await?;
    let ex = Example::start("server_api", 2, &[url]).await?;
    let http = http();
    let mut ann =
        Client::connect(ex.port, "/", json!({ "name": "ann" }), json!("ann here")).await?;
    let mut bob =
        Client::connect(ex.port2, "/", json!({ "name": "bob" }), json!("bob here")).await?;
    let mut oli =
        Client::connect(ex.port2, "/orders", json!({ "name": "oli" }), Value::Null).await?;
    let get = async |path: &str| -> anyhow::Result<Value> {
        Ok(http
            .get(ex.url(path))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    };
    let post = async |path: &str, body: &str| -> anyhow::Result<Value> {
        let response = http
            .post(ex.url(path))
            .body(body.to_string())
            .send()
            .await?;
        Ok(response.error_for_status()?.json().await?)
    };
    let names = |sockets: Value| -> Vec<String> {
        let mut names: Vec<String> = sockets
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["data"]["name"].as_str().map(String::from))
            .collect();
        names.sort();
        names
    };

    // Both nodes answer requests once they heard each other's heartbeats.
    let mut count = Value::Null;
    for _ in 0..50 {
        count = get("/count").await?;
        if count == json!(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, json!(2));
    assert_eq!(names(get("/sockets").await?), ["ann", "bob"]);
    assert_eq!(names(get("/sockets?nsp=/orders").await?), ["oli"]);

    // socketsJoin with except, then an emit to the room: Bob (node 2) only.
    post(&format!("/join?room=vip&except={}", ann.id), "").await?;
    assert_eq!(names(get("/sockets?in=vip").await?), ["bob"]);
    post("/emit?event=hi&in=vip", r#""hello""#).await?;
    assert_eq!(bob.event("hi").await?, [json!("hello")]);
    assert_eq!(
        ann.events_within("hi", Duration::from_millis(300))
            .await
            .len(),
        0
    );

    // A fetched socket's emit with ack reaches it on its node.
    let asked = post(&format!("/sockets/{}/ask?event=ping", bob.id), "").await?;
    assert_eq!(asked["ack"], "bob here");

    // serverSideEmit from node 1 reaches the other node only.
    post("/server-emit?event=refresh", r#"{"v":1}"#).await?;
    let heard = bob.event("server-event").await?.remove(0);
    assert_eq!(
        (&heard["event"], &heard["args"]),
        (&json!("refresh"), &json!([{ "v": 1 }]))
    );
    assert_eq!(
        ann.events_within("server-event", Duration::from_millis(300))
            .await
            .len(),
        0
    );

    // socketsLeave, a fetched socket's disconnect, disconnectSockets in another namespace.
    post("/leave?room=vip&in=vip", "").await?;
    assert_eq!(names(get("/sockets?in=vip").await?), Vec::<String>::new());
    post(&format!("/sockets/{}/disconnect", bob.id), "").await?;
    bob.disconnected().await?;
    post("/disconnect?nsp=/orders", "").await?;
    oli.disconnected().await?;
    assert_eq!(names(get("/sockets").await?), ["ann"]);
    Ok(())
}

#[tokio::test]
async fn minimal_chat_serves_its_page_and_chats_across_nodes() -> anyhow::Result<()> {
    const ORIGIN: &str = "http://chat.example";
    let (_redis, url) = redis().await?;
    let mut env = vec![url, ("CORS_ORIGIN", ORIGIN.to_string())];
    let bundled = workspace().join("web/node_modules/socket.io-client/dist/socket.io.js");
    let stand_in = std::env::temp_dir().join(format!("socket.io-{}.js", std::process::id()));
    if !bundled.is_file() {
        // Without the web client's packages, any file stands in for the bundle.
        std::fs::write(&stand_in, "/* socket.io client */")?;
        env.push(("SOCKETIO_CLIENT_JS", stand_in.display().to_string()));
    }
    let ex = Example::start("minimal_chat", 2, &env).await?;
    let http = http();

    let page = http.get(ex.url("/room.html")).send().await?;
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await?
            .contains(r#"src="/socket.io/socket.io.js""#)
    );
    let js = format!("http://127.0.0.1:{}/socket.io/socket.io.js", ex.port2);
    assert_eq!(http.get(js).send().await?.status(), 200);

    // The preflight of a page from the allowed origin, and from another one.
    let preflight = async |origin: &str| -> anyhow::Result<Option<String>> {
        let response = http
            .request(
                reqwest::Method::OPTIONS,
                ex.url("/socket.io/?EIO=4&transport=polling"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await?;
        let allowed = response.headers().get("access-control-allow-origin");
        Ok(allowed.and_then(|v| v.to_str().ok()).map(String::from))
    };
    assert_eq!(preflight(ORIGIN).await?.as_deref(), Some(ORIGIN));
    assert_eq!(preflight("http://elsewhere.example").await?, None);

    let mut ann = Client::connect(ex.port, "/", json!({}), Value::Null).await?;
    let mut bob = Client::connect(ex.port2, "/", json!({}), Value::Null).await?;
    ann.emit("join", &[json!({ "name": "ann", "room": "r" })]);
    assert_eq!(ann.event("join").await?, [json!("ann")]);
    bob.emit("join", &[json!({ "name": "bob", "room": "r" })]);
    // Ann's own join may still be on its way to node 2 as Bob enters: he may hear it first.
    while bob.event("join").await? != [json!("bob")] {}
    assert_eq!(ann.event("join").await?, [json!("bob")]);
    bob.emit("chat", &[json!("hi ann")]);
    let line = json!({ "name": "bob", "msg": "hi ann" });
    assert_eq!(ann.event("chat").await?, std::slice::from_ref(&line));
    assert_eq!(bob.event("chat").await?, [line]);
    bob.emit("leave", &[]);
    assert_eq!(ann.event("leave").await?, [json!("bob")]);
    let _ = std::fs::remove_file(stand_in);
    Ok(())
}
