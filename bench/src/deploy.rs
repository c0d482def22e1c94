//! Starting the servers under test: N nodes of one implementation on the run's Redis, each on
//! its own Redis key so nothing of an earlier deployment can reach it.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::Command;

use crate::{
    cli::Impl,
    conn::{self, Conn, Spec},
    procs::{self, Proc, Usage},
    redis::Redis,
};

/// The Admin UI login of chat nodes started with it: `{username, password}`.
pub const ADMIN_UI_LOGIN: &str = r#"{"username":"bench","password":"bench"}"#;
/// bcrypt of `bench` at the lowest cost: logins are not what is measured.
const ADMIN_UI_PASSWORD_HASH: &str = "$2a$04$fGCOJQEVdqFkFj8JTVR77u9k5VrLfoP3vijAQ6rfW7fbEmAOflpwO";

/// What every deployment of the run shares.
pub struct Env {
    /// Where `bench-app` and `chat-server` are: next to this binary.
    pub bin_dir: PathBuf,
    pub node_app: PathBuf,
    pub logs: PathBuf,
    pub redis: Redis,
    pub tuning: Tuning,
    /// More flags for `bench-app` on our adapter (pub/sub mode).
    pub app_flags: Vec<String>,
    deployments: u32,
}

/// Buffer sizes passed to `bench-app`; `None` keeps the library's default.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tuning {
    pub max_buffer: Option<usize>,
    pub ws_read_buffer: Option<usize>,
    pub receive_buffer: Option<usize>,
    pub stream_buffer: Option<usize>,
}

impl Env {
    pub fn new(
        node_app: PathBuf,
        logs: PathBuf,
        redis: Redis,
        tuning: Tuning,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let bin_dir = exe
            .parent()
            .context("no folder for this binary")?
            .to_path_buf();
        Ok(Self {
            bin_dir,
            node_app,
            logs,
            redis,
            tuning,
            app_flags: Vec::new(),
            deployments: 0,
        })
    }

    fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.bin_dir.join(name);
        if !path.exists() {
            bail!(
                "{} is missing: build it with `cargo build --release -p cluster-bench -p chat-server`",
                path.display()
            );
        }
        Ok(path)
    }
}

/// A running server node.
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    proc: Proc,
}

/// The nodes of one implementation.
pub struct Deployment {
    pub nodes: Vec<Node>,
}

/// CPU time and memory of one process over a step.
#[derive(Debug, Clone, Serialize)]
pub struct ProcDelta {
    pub name: String,
    pub cpu_s: f64,
    pub rss_kib_before: u64,
    pub rss_kib_after: u64,
}

/// A snapshot of every process to measure: the nodes, Redis, the generator.
pub struct Snapshot(Vec<(String, Usage)>);

impl Snapshot {
    /// The resident memory of process `name`, in KiB.
    pub fn rss_kib(&self, name: &str) -> Option<u64> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, u)| u.rss_kib)
    }

    /// What each process used since `before`.
    pub fn since(&self, before: &Snapshot) -> Vec<ProcDelta> {
        self.0
            .iter()
            .map(|(name, after)| {
                let before = before.0.iter().find(|(n, _)| n == name).map(|(_, u)| *u);
                let before = before.unwrap_or(*after);
                ProcDelta {
                    name: name.clone(),
                    cpu_s: after.cpu_s - before.cpu_s,
                    rss_kib_before: before.rss_kib,
                    rss_kib_after: after.rss_kib,
                }
            })
            .collect()
    }
}

impl Deployment {
    /// `nodes` nodes of the tiny app on `imp`.
    pub async fn start(env: &mut Env, imp: Impl, nodes: usize) -> anyhow::Result<Self> {
        let flags = env.app_flags.clone();
        Self::start_with(env, imp, nodes, &flags).await
    }

    /// As [`Deployment::start`], with these `bench-app` flags (our adapter only) instead of the
    /// run's.
    pub async fn start_with(
        env: &mut Env,
        imp: Impl,
        nodes: usize,
        flags: &[String],
    ) -> anyhow::Result<Self> {
        env.deployments += 1;
        let key = format!("bench-{}-{}", std::process::id(), env.deployments);
        let mut started = Vec::new();
        for i in 0..nodes {
            let name = format!("{imp}-{}", node_letter(i));
            let log = env.logs.join(format!("{name}-{}.log", env.deployments));
            let command = match imp {
                Impl::Node => node_command(env, &name, &key)?,
                Impl::Cluster => {
                    let mut command = app_command(env, imp, &name, &key)?;
                    command.args(flags);
                    command
                }
                Impl::SocketioxideRedis => app_command(env, imp, &name, &key)?,
            };
            let mut proc = Proc::spawn(&name, command, log)?;
            let port = proc.listening_port(Duration::from_secs(30)).await?;
            started.push(Node {
                name,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                proc,
            });
        }
        let deployment = Self { nodes: started };
        deployment.wait_serving().await?;
        Ok(deployment)
    }

    /// `nodes` nodes of the real `chat-server`, with history on and the rate limit out of the way;
    /// with `admin_ui`, the Admin UI on in production mode (login [`ADMIN_UI_LOGIN`]).
    pub async fn chat(env: &mut Env, nodes: usize, admin_ui: bool) -> anyhow::Result<Self> {
        env.deployments += 1;
        let key = format!("bench-{}-{}", std::process::id(), env.deployments);
        let binary = env.binary("chat-server")?;
        let mut started = Vec::new();
        for i in 0..nodes {
            let name = format!("chat-{}", node_letter(i));
            let port = procs::free_port()?;
            let mut command = Command::new(&binary);
            command
                .env("PORT", port.to_string())
                .env("REDIS_URL", &env.redis.url)
                .env("NODE_ID", &name)
                .env("REDIS_KEY", &key)
                .env("RATE_LIMIT_PER_SEC", "1000000")
                .env("RATE_LIMIT_BURST", "1000000")
                .env("RUST_LOG", "warn");
            if admin_ui {
                command
                    .env("ADMIN_UI_USERNAME", "bench")
                    .env("ADMIN_UI_PASSWORD_HASH", ADMIN_UI_PASSWORD_HASH);
            }
            let log = env.logs.join(format!("{name}-{}.log", env.deployments));
            started.push(Node {
                name: name.clone(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                proc: Proc::spawn(&name, command, log)?,
            });
        }
        let deployment = Self { nodes: started };
        deployment.wait_serving().await?;
        Ok(deployment)
    }

    /// Until a Socket.IO client can connect to every node.
    async fn wait_serving(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &self.nodes {
            loop {
                let spec = Spec {
                    addr: node.addr,
                    auth: "{}".into(),
                    index: u32::MAX,
                };
                match Conn::open(spec, conn::Shared::new(1)).await {
                    Ok(_) => break,
                    Err(err) if Instant::now() > deadline => {
                        return Err(err.context(format!("{} never served", node.name)));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }

    /// The node a client numbered `i` connects to: round robin.
    pub fn addr_for(&self, i: usize) -> SocketAddr {
        self.nodes[i % self.nodes.len()].addr
    }

    /// Fails if a node has died.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.nodes.iter_mut().try_for_each(|n| n.proc.check_alive())
    }

    pub fn snapshot(&self, redis: &Redis) -> anyhow::Result<Snapshot> {
        let mut all = Vec::new();
        for node in &self.nodes {
            all.push((node.name.clone(), node.proc.usage()?));
        }
        if let Some(usage) = redis.usage() {
            all.push(("redis".to_string(), usage));
        }
        all.push(("bench".to_string(), procs::usage("self")?));
        Ok(Snapshot(all))
    }
}

fn node_letter(i: usize) -> char {
    char::from(b'a' + (i % 26) as u8)
}

fn app_command(env: &Env, imp: Impl, name: &str, key: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(env.binary("bench-app")?);
    command
        .args(["--impl", &imp.to_string(), "--port", "0"])
        .args([
            "--redis-url",
            &env.redis.url,
            "--node-name",
            name,
            "--key",
            key,
        ])
        .env("RUST_LOG", "warn");
    let tuning = [
        ("--max-buffer", env.tuning.max_buffer),
        ("--ws-read-buffer", env.tuning.ws_read_buffer),
        ("--receive-buffer", env.tuning.receive_buffer),
        ("--stream-buffer", env.tuning.stream_buffer),
    ];
    for (flag, value) in tuning {
        if let Some(value) = value {
            command.args([flag, &value.to_string()]);
        }
    }
    Ok(command)
}

fn node_command(env: &Env, name: &str, key: &str) -> anyhow::Result<Command> {
    let modules = env.node_app.with_file_name("node_modules");
    if !modules.exists() {
        bail!(
            "{} is missing: run `npm ci` in {}",
            modules.display(),
            env.node_app
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let mut command = Command::new("node");
    command
        .arg(&env.node_app)
        .env("PORT", "0")
        .env("REDIS_URL", &env.redis.url)
        .env("NODE_NAME", name)
        .env("KEY", key);
    Ok(command)
}
