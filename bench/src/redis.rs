//! Redis 7 in a container started for the run (or one given by URL), removed when dropped.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::procs::{self, Usage};

pub struct Redis {
    pub url: String,
    container: Option<String>,
    /// The `redis-server` process on this host, to measure.
    pid: Option<u32>,
}

impl Redis {
    /// `docker run` of `image` in the host's network namespace, on a free loopback port: a
    /// published port would put Docker's userland proxy, copying every byte, between Redis and
    /// the nodes, and measure the proxy as much as the adapters.
    pub fn start(image: &str) -> anyhow::Result<Self> {
        let port = procs::free_port()?.to_string();
        let out = docker(&[
            "run",
            "-d",
            "--rm",
            "--network",
            "host",
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
            pid: None,
        };
        redis.wait_ready(&port)?;
        redis.pid = redis.inspect("{{.State.Pid}}")?.trim().parse().ok();
        Ok(redis)
    }

    /// A Redis someone else runs: nothing to start, stop or measure.
    pub fn external(url: &str) -> Self {
        Self {
            url: url.to_string(),
            container: None,
            pid: None,
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

    /// CPU and memory of `redis-server`, when it runs in our container.
    pub fn usage(&self) -> Option<Usage> {
        procs::usage(&self.pid?.to_string()).ok()
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
