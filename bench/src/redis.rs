//! Redis 7 in a container started for the run (or one given by URL), removed when dropped: one
//! standalone server, or a Redis Cluster of three masters in one container.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::procs::{self, Usage};

pub struct Redis {
    pub url: String,
    container: Option<String>,
    /// The `redis-server` processes on this host, to measure (three in a cluster).
    pids: Vec<u32>,
}

/// What the cluster's container prints once every node reports `cluster_state:ok`.
const CLUSTER_READY: &str = "CLUSTER READY";

/// Starts the three nodes and the cluster in the container (shared with the tests).
const NODES_SCRIPT: &str = include_str!("../../scripts/redis-cluster-nodes.sh");

/// `docker run -d --rm --network host` of `args` (the image, then its command): its container id.
fn run_on_host_network(args: &[&str]) -> anyhow::Result<String> {
    let mut run = vec!["run", "-d", "--rm", "--network", "host"];
    run.extend_from_slice(args);
    docker(&run)
}

impl Redis {
    /// `docker run` of `image` in the host's network namespace, on a free loopback port: a
    /// published port would put Docker's userland proxy, copying every byte, between Redis and
    /// the nodes, and measure the proxy as much as the adapters.
    pub fn start(image: &str) -> anyhow::Result<Self> {
        let port = procs::free_port()?.to_string();
        let out = run_on_host_network(&[
            image,
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--save",
            "",
            "--appendonly",
            "no",
        ])?;
        let mut redis = Self {
            url: format!("redis://127.0.0.1:{port}"),
            container: Some(out.trim().to_string()),
            pids: Vec::new(),
        };
        redis.wait_ready(&port)?;
        redis.pids = redis
            .inspect("{{.State.Pid}}")?
            .trim()
            .parse()
            .ok()
            .into_iter()
            .collect();
        Ok(redis)
    }

    /// A Redis Cluster of three masters (no replicas, the 16384 slots split by `redis-cli
    /// --cluster create`) in one container of `image`, in the host's network namespace: each
    /// node on a free loopback port `P`, its cluster bus on `P + 10000`, announcing
    /// `127.0.0.1:P`. The same start as the tests' `RedisCluster`, with the docker CLI.
    pub fn start_cluster(image: &str) -> anyhow::Result<Self> {
        let [p0, p1, p2] = cluster_ports()?;
        let out = run_on_host_network(&[
            image,
            "sh",
            "-c",
            NODES_SCRIPT,
            "redis-cluster-nodes",
            &p0.to_string(),
            &p1.to_string(),
            &p2.to_string(),
            "127.0.0.1",
        ])?;
        let mut redis = Self {
            url: format!("redis-cluster://127.0.0.1:{p0}?node=127.0.0.1:{p1}&node=127.0.0.1:{p2}"),
            container: Some(out.trim().to_string()),
            pids: Vec::new(),
        };
        let id = redis.container.clone().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = Command::new("docker").args(["logs", &id]).output()?;
            if String::from_utf8_lossy(&logs.stdout).contains(CLUSTER_READY) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the redis cluster in container {id} was not ready in 60 s: {}",
                    String::from_utf8_lossy(&logs.stderr).trim()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // `docker top` shows host PIDs.
        let top = docker(&["top", &id, "-eo", "pid,comm"])?;
        redis.pids = top
            .lines()
            .filter(|line| line.contains("redis-server"))
            .filter_map(|line| line.split_whitespace().next()?.parse().ok())
            .collect();
        if redis.pids.len() != 3 {
            bail!("expected 3 redis-server processes in {id}, found {top}");
        }
        Ok(redis)
    }

    /// A Redis someone else runs: nothing to start, stop or measure.
    pub fn external(url: &str) -> Self {
        Self {
            url: url.to_string(),
            container: None,
            pids: Vec::new(),
        }
    }

    fn wait_ready(&self, port: &str) -> anyhow::Result<()> {
        let Some(id) = &self.container else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if docker(&["exec", id, "redis-cli", "-p", port, "ping"])
                .is_ok_and(|out| out.contains("PONG"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("redis in container {id} did not answer PING")
    }

    fn inspect(&self, format: &str) -> anyhow::Result<String> {
        let id = self.container.as_deref().context("no container")?;
        docker(&["inspect", "--format", format, id])
    }

    /// CPU and memory of `redis-server` (of the three together in a cluster), when it runs in
    /// our container.
    pub fn usage(&self) -> Option<Usage> {
        if self.pids.is_empty() {
            return None;
        }
        let mut sum = Usage::default();
        for pid in &self.pids {
            let usage = procs::usage(&pid.to_string()).ok()?;
            sum.cpu_s += usage.cpu_s;
            sum.rss_kib += usage.rss_kib;
        }
        Some(sum)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(id) = &self.container {
            if let Err(err) = docker(&["rm", "-f", id]) {
                eprintln!("could not remove the redis container {id}: {err:#}");
            }
        }
    }
}

/// Three distinct free loopback ports whose cluster bus ports (`P + 10000`) exist and are free.
fn cluster_ports() -> anyhow::Result<[u16; 3]> {
    let mut ports = Vec::new();
    for _ in 0..200 {
        let port = procs::free_port()?;
        let bus_free = port < u16::MAX - 10_000
            && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
        if bus_free && !ports.contains(&port) {
            ports.push(port);
        }
        if let [p0, p1, p2] = ports[..] {
            return Ok([p0, p1, p2]);
        }
    }
    bail!("no three free ports below {}", u16::MAX - 10_000)
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
