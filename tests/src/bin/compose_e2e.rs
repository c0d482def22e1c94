//! End-to-end test of the compose deployment (`docker-compose.yml`: Redis, three chat nodes,
//! HAProxy), run by `scripts/compose-e2e.sh` once the cluster is up. Every client goes through
//! the load balancer, as browsers do.
//!
//! 1. Two users on different nodes chat both ways.
//! 2. `docker kill` of a node: its users are disconnected; one never comes back, the others
//!    reconnect through the load balancer (to a survivor) and rejoin. An observer sees exactly
//!    one leave notice (for the one who left, after node timeout + grace) and nothing else.
//! 3. Rolling restart: every node in turn gets SIGTERM and comes back while users chat. Users
//!    whose node stops reconnect through the load balancer. No message is lost for a user while
//!    connected, none is duplicated, and nobody sees a leave or join notice.
//! 4. Throughout 2 and 3, 30 chatters in 3 rooms (`cluster_tests::chatter`) send with
//!    retry-until-acked and rejoin with `since`: at the end each holds exactly its room's
//!    messages 1..n, every send once, and the history agrees.
//!
//! Before those, the image serves the Admin UI's page, and an Admin UI login through the load
//! balancer hears every node's statistics.
//!
//! Environment: `E2E_LB_PORT`, `E2E_ADMIN_PORT` (the admin API through the load balancer),
//! `E2E_ADMIN_TOKEN`, `E2E_ADMIN_UI_LOGIN` (`user:password`), `E2E_COMPOSE` (the compose command with its
//! project option, e.g. `docker-compose -p chat-e2e`), `E2E_GRACE_MS`, `E2E_NODE_TIMEOUT_MS` (as
//! given to the nodes).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use cluster_tests::{
    Client, Received,
    chatter::{Chatter, ChatterStats, check_room},
};
use serde_json::{Value, json};

struct Deployment {
    lb_port: u16,
    admin_port: u16,
    admin_token: String,
    /// `user:password` of the Admin UI.
    admin_ui_login: String,
    compose: Vec<String>,
    grace: Duration,
    node_timeout: Duration,
    http: reqwest::Client,
}

impl Deployment {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        let ms = |name: &str| -> anyhow::Result<Duration> {
            Ok(Duration::from_millis(var(name)?.parse()?))
        };
        Ok(Self {
            lb_port: var("E2E_LB_PORT")?.parse()?,
            admin_port: var("E2E_ADMIN_PORT")?.parse()?,
            admin_token: var("E2E_ADMIN_TOKEN")?,
            admin_ui_login: var("E2E_ADMIN_UI_LOGIN")?,
            compose: var("E2E_COMPOSE")?
                .split_whitespace()
                .map(String::from)
                .collect(),
            grace: ms("E2E_GRACE_MS")?,
            node_timeout: ms("E2E_NODE_TIMEOUT_MS")?,
            http: reqwest::Client::new(),
        })
    }

    /// Runs a compose command (`kill chat-2`, `restart chat-1`, …).
    fn compose(&self, args: &[&str]) -> anyhow::Result<()> {
        let (program, base) = self.compose.split_first().context("empty E2E_COMPOSE")?;
        let status = std::process::Command::new(program)
            .args(base)
            .args(args)
            .status()?;
        ensure!(
            status.success(),
            "{} {args:?} failed",
            self.compose.join(" ")
        );
        Ok(())
    }

    async fn admin(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_port);
        let res = self
            .http
            .get(url)
            .bearer_auth(&self.admin_token)
            .send()
            .await?;
        ensure!(res.status().is_success(), "GET {path}: {}", res.status());
        Ok(res.json().await?)
    }

    /// Which node holds each socket.
    async fn nodes_of_sockets(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let sockets = self.admin("/api/sockets").await?;
        Ok(sockets
            .as_array()
            .context("sockets")?
            .iter()
            .filter_map(|s| Some((s["id"].as_str()?.into(), s["node"].as_str()?.into())))
            .collect())
    }

    async fn node_of(&self, client: &Client) -> anyhow::Result<String> {
        self.nodes_of_sockets()
            .await?
            .remove(&client.id)
            .with_context(|| format!("socket {} is on no node", client.id))
    }

    /// Waits until `n` nodes are live and each answers through the load balancer.
    async fn wait_nodes(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let live = match self.admin("/api/nodes").await {
                Ok(nodes) => nodes.as_array().map_or(0, Vec::len),
                Err(_) => 0,
            };
            if live == n && self.reachable_nodes().await == n {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "{n} nodes never came up");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// How many different nodes a burst of new connections reaches through the load balancer.
    async fn reachable_nodes(&self) -> usize {
        let mut probes = Vec::new();
        for i in 0..6 {
            if let Ok(probe) = self.connect(&format!("probe-{i}")).await {
                probes.push(probe);
            }
        }
        let Ok(nodes) = self.nodes_of_sockets().await else {
            return 0;
        };
        let reached: BTreeSet<&String> = probes.iter().filter_map(|p| nodes.get(&p.id)).collect();
        reached.len()
    }

    async fn connect(&self, user: &str) -> anyhow::Result<Client> {
        let auth = json!({ "userId": user, "name": user });
        Client::connect(self.lb_port, "/", auth, json!(user)).await
    }

    /// A user in `room`, through the load balancer.
    async fn user(&self, user: &str, room: &str) -> anyhow::Result<Client> {
        let mut client = self.connect(user).await?;
        let ack = client
            .emit_with_ack("join", &[json!({ "room": room })])
            .await?;
        ensure!(
            ack[0]["ok"] == json!(true),
            "{user} could not join: {ack:?}"
        );
        Ok(client)
    }

    /// Reconnects `user` to `room` through the load balancer, retrying while nodes come and go.
    async fn rejoin(&self, user: &str, room: &str) -> anyhow::Result<Client> {
        let deadline = Instant::now() + self.grace;
        loop {
            match self.user(user, room).await {
                Ok(client) => return Ok(client),
                Err(err) if Instant::now() < deadline => {
                    eprintln!("[e2e] {user} reconnecting: {err:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => bail!("{user} could not come back within the grace: {err:#}"),
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let deployment = Deployment::from_env()?;
    deployment.wait_nodes(3).await?;
    operator_paths_are_private(&deployment).await?;
    eprintln!(
        "[e2e] 0/4 the public port serves no admin API and no metrics, and the Socket.IO client: ok"
    );
    admin_ui_through_the_balancer(&deployment).await?;
    eprintln!("[e2e] 0/4 the Admin UI's page, a login and every node's statistics: ok");
    messages_cross_nodes(&deployment).await?;
    eprintln!("[e2e] 1/4 a message crosses nodes through the load balancer: ok");
    let (stop, until) = tokio::sync::watch::channel(false);
    let chatters: Vec<_> = (0..30)
        .map(|i| tokio::spawn(recovering_chatter(deployment.lb_port, i, until.clone())))
        .collect();
    killed_node(&deployment).await?;
    eprintln!("[e2e] 2/4 a killed node: users reconnect, one leave notice: ok");
    rolling_restart(&deployment).await?;
    eprintln!("[e2e] 3/4 rolling restart: no message lost, no spurious notice: ok");
    let _ = stop.send(true);
    let mut done = Vec::new();
    for chatter in futures_util::future::join_all(chatters).await {
        done.push(chatter??);
    }
    chatters_hold_every_message(&deployment, &done).await?;
    eprintln!("[e2e] 4/4 through the kill and the restarts, chatters lost and doubled nothing: ok");
    Ok(())
}

const RECOVERY_ROOMS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Chatter `i` of a recovery room sends about once a second until told to stop, then catches up.
async fn recovering_chatter(
    lb_port: u16,
    i: usize,
    until: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Chatter> {
    let room = RECOVERY_ROOMS[i / 10];
    let mut chatter = Chatter::join(&format!("rc{i}"), room, vec![lb_port]).await?;
    let mut m = 0;
    while !*until.borrow() {
        m += 1;
        chatter.send(&format!("{room} rc{i} m{m}")).await?;
        chatter.listen(Duration::from_millis(1000)).await?;
    }
    chatter.listen(Duration::from_millis(500)).await?;
    chatter.catch_up().await?;
    Ok(chatter)
}

async fn chatters_hold_every_message(
    deployment: &Deployment,
    chatters: &[Chatter],
) -> anyhow::Result<()> {
    let total = ChatterStats::total(chatters);
    let mut messages = 0;
    for (r, room) in RECOVERY_ROOMS.into_iter().enumerate() {
        let mut reader = deployment.connect(&format!("reader-{room}")).await?;
        let ack = reader
            .emit_with_ack("join", &[json!({ "room": room })])
            .await?;
        let history = ack[0]["history"].as_array().context("a history")?;
        let members: Vec<&Chatter> = chatters[r * 10..(r + 1) * 10].iter().collect();
        messages += check_room(room, &members, history)?;
    }
    eprintln!(
        "[e2e] {messages} messages in 3 rooms held exactly once, in order, by all 30 chatters; {total}"
    );
    ensure!(total.reconnects > 0, "no chatter was ever disconnected");
    ensure!(total.unrecovered_joins == 0, "a rejoin could not recover");
    Ok(())
}

/// `/api` and `/metrics` answer on the admin port only, never through the public one.
async fn operator_paths_are_private(deployment: &Deployment) -> anyhow::Result<()> {
    for path in ["/api/nodes", "/metrics"] {
        let public = format!("http://127.0.0.1:{}{path}", deployment.lb_port);
        let res = deployment
            .http
            .get(public)
            .bearer_auth(&deployment.admin_token)
            .send()
            .await?;
        ensure!(res.status() == 404, "public {path}: {}", res.status());
    }
    deployment.admin("/api/nodes").await?;
    // The image carries the Socket.IO client it serves (SERVE_CLIENT), as Node's socket.io does.
    let bundle = deployment
        .http
        .get(format!(
            "http://127.0.0.1:{}/socket.io/socket.io.min.js",
            deployment.lb_port
        ))
        .send()
        .await?;
    ensure!(
        bundle.status().is_success(),
        "/socket.io/socket.io.min.js: {}",
        bundle.status()
    );
    ensure!(
        bundle.text().await?.contains("Socket.IO"),
        "/socket.io/socket.io.min.js is not the client"
    );
    Ok(())
}

/// The image serves the Admin UI's page, and a login through the balancer hears from all three
/// nodes.
async fn admin_ui_through_the_balancer(deployment: &Deployment) -> anyhow::Result<()> {
    let page = deployment
        .http
        .get(format!("http://127.0.0.1:{}/admin-ui/", deployment.lb_port))
        .send()
        .await?;
    ensure!(page.status().is_success(), "/admin-ui/: {}", page.status());
    ensure!(
        page.text().await?.contains("Socket.IO Admin UI"),
        "/admin-ui/ is not the Admin UI"
    );
    let (username, password) = deployment
        .admin_ui_login
        .split_once(':')
        .context("E2E_ADMIN_UI_LOGIN is user:password")?;
    let auth = json!({ "username": username, "password": password });
    let mut admin = Client::connect(deployment.lb_port, "/admin", auth, Value::Null).await?;
    admin.event("session").await?;
    let mut servers = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(6);
    while servers.len() < 3 && Instant::now() < deadline {
        if let Ok(stats) = admin
            .event_within("server_stats", Duration::from_secs(3))
            .await
        {
            servers.insert(
                stats[0]["serverId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    ensure!(servers.len() == 3, "statistics from {servers:?} only");
    admin.close();
    Ok(())
}

/// Users of `room` (named after it), by node: nine new connections through the load balancer.
async fn spread_users(
    deployment: &Deployment,
    room: &str,
) -> anyhow::Result<BTreeMap<String, Vec<(String, Client)>>> {
    let mut by_node: BTreeMap<String, Vec<(String, Client)>> = BTreeMap::new();
    for i in 0..9 {
        let name = format!("{room}-{i}");
        let client = deployment.user(&name, room).await?;
        let node = deployment.node_of(&client).await?;
        by_node.entry(node).or_default().push((name, client));
    }
    ensure!(
        by_node.len() >= 2,
        "the load balancer sent every client to one node: {:?}",
        by_node.keys()
    );
    Ok(by_node)
}

async fn messages_cross_nodes(deployment: &Deployment) -> anyhow::Result<()> {
    let room = "crossing";
    let mut by_node = spread_users(deployment, room).await?;
    let mut nodes = by_node.values_mut();
    let (_, a) = nodes.next().unwrap().first_mut().unwrap();
    let (_, b) = nodes.next().unwrap().first_mut().unwrap();
    send_and_receive(a, b, room, "a to b").await?;
    send_and_receive(b, a, room, "b to a").await
}

async fn send_and_receive(
    from: &mut Client,
    to: &mut Client,
    room: &str,
    text: &str,
) -> anyhow::Result<()> {
    let ack = from
        .emit_with_ack("message", &[json!({ "room": room, "text": text })])
        .await?;
    ensure!(ack[0]["ok"] == json!(true), "message refused: {ack:?}");
    loop {
        let message = to.event("message").await?;
        if message[0]["text"] == json!(text) {
            return Ok(());
        }
    }
}

async fn killed_node(deployment: &Deployment) -> anyhow::Result<()> {
    let room = "killing";
    let mut by_node = spread_users(deployment, room).await?;
    let victim = by_node
        .iter()
        .find(|(_, users)| users.len() >= 2)
        .map(|(node, _)| node.clone())
        .context("no node with two users")?;
    // On the victim: the first user never comes back, the others reconnect at once.
    let mut on_victim = by_node.remove(&victim).unwrap();
    // Kept open until the kill: its socket must die with the node, not disconnect first.
    let (leaver, mut leaver_client) = on_victim.remove(0);
    let mut survivors: Vec<(String, Client)> = by_node.into_values().flatten().collect();
    let observer = &mut survivors[0].1;
    observer.drain(Duration::from_millis(200)).await;

    eprintln!("[e2e] docker kill {victim}");
    deployment.compose(&["kill", &victim])?;
    leaver_client.disconnected().await?;
    let mut returned = Vec::new();
    for (name, mut client) in on_victim {
        client.disconnected().await?;
        let client = deployment.rejoin(&name, room).await?;
        let node = deployment.node_of(&client).await?;
        ensure!(node != victim, "{name} came back on the killed node");
        eprintln!("[e2e] {name} reconnected on {node}");
        returned.push((name, client));
    }

    // The survivors notice the death after the node timeout, then the grace runs.
    let wait = deployment.node_timeout + deployment.grace + Duration::from_secs(5);
    let notices = notices_within(observer, wait, 1).await;
    let later = notices_within(observer, deployment.grace + Duration::from_secs(1), 0).await;
    ensure!(
        notices.len() == 1
            && later.is_empty()
            && notices[0]["kind"] == "leave"
            && notices[0]["user"]["id"] == json!(leaver),
        "expected one leave notice, for {leaver}; got {notices:?} then {later:?}"
    );
    let presence = deployment
        .admin(&format!("/api/rooms/{room}/presence"))
        .await?;
    let online: BTreeSet<&str> = presence["online"]
        .as_array()
        .context("online")?
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    let expected: BTreeSet<&str> = survivors
        .iter()
        .chain(&returned)
        .map(|(name, _)| name.as_str())
        .collect();
    ensure!(
        online == expected,
        "online {online:?}, expected {expected:?}"
    );

    deployment.compose(&["start", &victim])?;
    deployment.wait_nodes(3).await
}

/// Notices received within `wait`, returning early once `enough` arrived.
async fn notices_within(client: &mut Client, wait: Duration, enough: usize) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut notices = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if enough > 0 && notices.len() >= enough {
            break;
        }
        match client.event_within("notice", left).await {
            Ok(args) => notices.push(args[0].clone()),
            Err(_) => break,
        }
    }
    notices
}

/// A message a chatter sent and got an ok ack for.
struct Sent {
    text: String,
    at: Instant,
    acked: Instant,
}

/// What one chatter saw during the rolling restart.
#[derive(Default)]
struct Log {
    sent: Vec<Sent>,
    /// Message texts received, with how often.
    received: BTreeMap<String, usize>,
    /// When the user was in the room: from a join ack to a disconnect.
    connected: Vec<(Instant, Instant)>,
    notices: Vec<Value>,
}

async fn chatter(
    deployment: &Deployment,
    name: String,
    all_joined: &tokio::sync::Barrier,
    until: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Log> {
    let room = "rolling";
    let mut log = Log::default();
    let mut client = deployment.user(&name, room).await?;
    // The others' first joins are announced, rightly: only what comes after counts.
    all_joined.wait().await;
    client.drain(Duration::from_millis(500)).await;
    let mut since = Instant::now();
    let mut seq = 0;
    while !*until.borrow() {
        seq += 1;
        let text = format!("{name}#{seq}");
        let at = Instant::now();
        let ack = client
            .emit_with_ack("message", &[json!({ "room": room, "text": text })])
            .await;
        if let Ok(ack) = &ack
            && ack[0]["ok"] == json!(true)
        {
            log.sent.push(Sent {
                text,
                at,
                acked: Instant::now(),
            });
        }
        for received in client.drain(Duration::from_millis(150)).await {
            if let Received::Event { name, args } = received {
                match name.as_str() {
                    "message" => {
                        let text = args[0]["text"].as_str().unwrap_or_default().to_string();
                        *log.received.entry(text).or_default() += 1;
                    }
                    "notice" => log.notices.push(args[0].clone()),
                    _ => {}
                }
            }
        }
        if let Some(closed) = client.disconnected_at() {
            log.connected.push((since, closed));
            client = deployment.rejoin(&name, room).await?;
            since = Instant::now();
        }
    }
    for received in client.drain(Duration::from_secs(1)).await {
        if let Received::Event { name, args } = received {
            if name == "message" {
                let text = args[0]["text"].as_str().unwrap_or_default().to_string();
                *log.received.entry(text).or_default() += 1;
            } else if name == "notice" {
                log.notices.push(args[0].clone());
            }
        }
    }
    log.connected.push((since, Instant::now()));
    Ok(log)
}

async fn rolling_restart(deployment: &Deployment) -> anyhow::Result<()> {
    let (stop, until) = tokio::sync::watch::channel(false);
    let all_joined = tokio::sync::Barrier::new(6);
    let chatters: Vec<_> = (0..6)
        .map(|i| chatter(deployment, format!("roll-{i}"), &all_joined, until.clone()))
        .collect();
    let restarts = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for node in ["chat-1", "chat-2", "chat-3"] {
            eprintln!("[e2e] restarting {node} (SIGTERM)");
            deployment.compose(&["restart", node])?;
            deployment.wait_nodes(3).await?;
        }
        // Past the grace, so a spurious leave notice would have been sent by now.
        tokio::time::sleep(deployment.grace + Duration::from_secs(1)).await;
        let _ = stop.send(true);
        anyhow::Ok(())
    };
    let (logs, restarted) = tokio::join!(futures_util::future::join_all(chatters), restarts);
    restarted?;
    let logs: Vec<Log> = logs.into_iter().collect::<anyhow::Result<_>>()?;

    let sent: Vec<&Sent> = logs.iter().flat_map(|l| &l.sent).collect();
    let reconnects: usize = logs.iter().map(|l| l.connected.len() - 1).sum();
    ensure!(reconnects > 0, "no chatter was ever disconnected");
    let delivery = Duration::from_secs(1);
    let mut checked = 0;
    for (i, log) in logs.iter().enumerate() {
        ensure!(
            log.notices.is_empty(),
            "roll-{i} saw notices: {:?}",
            log.notices
        );
        if let Some((text, n)) = log.received.iter().find(|(_, n)| **n > 1) {
            bail!("roll-{i} got {text} {n} times");
        }
        for message in &sent {
            let connected_throughout = log
                .connected
                .iter()
                .any(|(from, to)| *from <= message.at && message.acked + delivery <= *to);
            if connected_throughout {
                checked += 1;
                ensure!(
                    log.received.contains_key(&message.text),
                    "roll-{i} was connected but never got {}",
                    message.text
                );
            }
        }
    }
    eprintln!(
        "[e2e] {} messages sent, {checked} deliveries to connected users checked, {reconnects} reconnects",
        sent.len()
    );
    Ok(())
}
