//! Message traffic between clients, measured a step at a time: senders emit at a fixed total
//! rate for the step's duration, then the generator waits for the last deliveries and settles
//! who lost or got twice what.

use std::{
    collections::BTreeMap,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{Ctx, connect_placed};
use crate::{
    conn::{self, Conn, Pacing, Spec},
    deploy::Deployment,
    report::{Run, Step},
    sio::Emit,
    stats::Losses,
};

/// How long deliveries may trickle in after the senders stop.
const DRAIN_MAX: Duration = Duration::from_secs(15);
/// Deliveries are over once none came for this long.
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// Warm-up steps tried before going on regardless.
const WARM_UP_TRIES: usize = 5;
/// Messages per second of the warm-up, all senders together.
const WARM_UP_RATE: f64 = 100.0;

pub struct Traffic {
    pub clients: Vec<Conn>,
    /// Where to ask each node for its counters (`stats`), on a connection of its own each
    /// time: a node that lost messages disconnects every client; none for servers without
    /// that event.
    controls: Vec<(String, Spec)>,
    shared: conn::Shared,
    /// Sending clients, by index, and what they send.
    senders: Vec<(usize, Emit)>,
}

impl Traffic {
    /// Connects a client per handshake `auth` (client `i` on node `i % nodes`); with `stats`,
    /// each node's counters are read.
    pub async fn open(
        ctx: &Ctx,
        deployment: &Deployment,
        auths: Vec<String>,
        stats: bool,
    ) -> anyhow::Result<Self> {
        let nodes = deployment.nodes.len();
        let placed = auths.into_iter().enumerate().map(|(i, a)| (i % nodes, a));
        Self::open_placed(ctx, deployment, placed.collect(), stats).await
    }

    /// As [`Traffic::open`], each client on the node (index) it is given with.
    pub async fn open_placed(
        ctx: &Ctx,
        deployment: &Deployment,
        placed: Vec<(usize, String)>,
        stats: bool,
    ) -> anyhow::Result<Self> {
        let shared = conn::Shared::new(32);
        let n = placed.len();
        let (clients, _) =
            connect_placed(deployment, placed, &shared, ctx.plan.concurrency).await?;
        let mut controls = Vec::new();
        for (k, node) in deployment.nodes.iter().enumerate().filter(|_| stats) {
            let spec = Spec {
                addr: node.addr,
                auth: "{}".into(),
                index: (n + k) as u32,
            };
            controls.push((node.name.clone(), spec));
        }
        Ok(Self {
            clients,
            controls,
            shared,
            senders: Vec::new(),
        })
    }

    /// Client `client` must receive every message of `senders`.
    pub fn expect(&self, client: usize, senders: impl IntoIterator<Item = usize>) {
        let senders = senders.into_iter().map(|s| s as u32);
        self.clients[client].tally.lock().unwrap().expect(senders);
    }

    pub fn send_from(&mut self, senders: Vec<(usize, Emit)>) {
        self.senders = senders;
    }

    /// Short steps at a low rate until one delivers everything: some adapters complete their
    /// Redis subscriptions after the server already accepts clients. A deployment that keeps
    /// losing even then goes on to the measured steps, which will show it.
    pub async fn warm_up(
        &self,
        ctx: &mut Ctx,
        deployment: &mut Deployment,
        first_rate: f64,
    ) -> anyhow::Result<()> {
        let rate = first_rate.min(WARM_UP_RATE);
        let mut losses = None;
        for _ in 0..WARM_UP_TRIES {
            let (step, _) = self
                .measure(ctx, deployment, "warm-up", rate, Duration::from_millis(500))
                .await?;
            if step.passed {
                return Ok(());
            }
            losses = Some(step.losses);
        }
        eprintln!("  warm-up at {rate} msgs/s never delivered everything: {losses:?}");
        Ok(())
    }

    /// A step per rate, in order, until one fails (every one of them in a smoke run).
    pub async fn climb(
        &self,
        ctx: &mut Ctx,
        deployment: &mut Deployment,
        rates: &[f64],
        run: &mut Run,
    ) -> anyhow::Result<()> {
        for &rate in rates {
            let (step, _) = self
                .step(ctx, deployment, format!("{rate} msg/s"), rate)
                .await?;
            let passed = step.passed;
            run.steps.push(step);
            if !passed && !ctx.plan.smoke {
                break;
            }
        }
        Ok(())
    }

    /// One step at `rate` messages per second, all senders together; with what each client
    /// sent (and the server did not refuse), by index.
    pub async fn step(
        &self,
        ctx: &mut Ctx,
        deployment: &mut Deployment,
        label: String,
        rate: f64,
    ) -> anyhow::Result<(Step, Vec<u64>)> {
        let duration = ctx.plan.duration;
        let (step, sent) = self
            .measure(ctx, deployment, &label, rate, duration)
            .await?;
        eprintln!(
            "  {label:>16}: {:>9.0} msgs/s {:>10.0} deliveries/s, refused {}, lost {} ({} while connected), dup {}, closed {}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
            step.sent_per_s,
            step.delivered_per_s,
            step.losses.refused,
            step.losses.lost,
            step.losses.lost_open,
            step.losses.duplicates,
            step.losses.closed,
            step.latency.p50_ms,
            step.latency.p99_ms,
            step.latency.max_ms,
            if step.passed { "" } else { "  (fails)" },
        );
        Ok((step, sent))
    }

    async fn measure(
        &self,
        ctx: &mut Ctx,
        deployment: &mut Deployment,
        label: &str,
        rate: f64,
        duration: Duration,
    ) -> anyhow::Result<(Step, Vec<u64>)> {
        if self.senders.is_empty() {
            bail!("no senders");
        }
        let step = ctx.next_step();
        for client in &self.clients {
            client.tally.lock().unwrap().begin(step);
        }
        self.shared.latencies.reset();
        let counters_before = self.counters().await?;
        let before = deployment.snapshot(&ctx.env.redis)?;
        let per_sender = rate / self.senders.len() as f64;
        let started = Instant::now();
        for (i, emit) in &self.senders {
            let pacing = Pacing {
                per_sec: per_sender,
                step,
                emit: emit.clone(),
                pad: ctx.plan.payload_bytes,
            };
            self.clients[*i].pace(Some(pacing)).await?;
        }
        tokio::time::sleep(duration).await;
        let mut sent = vec![0u64; self.clients.len()];
        for (i, _) in &self.senders {
            sent[*i] = self.clients[*i].pace(None).await?;
        }
        let secs = started.elapsed().as_secs_f64();
        self.drain().await;
        let after = deployment.snapshot(&ctx.env.redis)?;
        let counters_after = self.counters().await?;
        deployment.check_alive()?;
        self.discount_unheard(&mut sent);
        let refused: Vec<Vec<u64>> = self
            .clients
            .iter()
            .map(|c| c.tally.lock().unwrap().refused().to_vec())
            .collect();
        let mut losses = Losses::default();
        for client in &self.clients {
            client
                .tally
                .lock()
                .unwrap()
                .settle(&sent, &refused, &mut losses);
        }
        let latency = self.shared.latencies.summary();
        // What each client sent and the server did not refuse (a refused broadcast is neither
        // published nor delivered).
        let accepted: Vec<u64> = sent
            .iter()
            .zip(&refused)
            .map(|(&n, refused)| {
                let words = refused.iter().enumerate();
                let excused: u64 = words
                    .map(|(i, word)| match n.saturating_sub(i as u64 * 64) {
                        0 => 0,
                        k if k >= 64 => u64::from(word.count_ones()),
                        k => u64::from((word & ((1u64 << k) - 1)).count_ones()),
                    })
                    .sum();
                n - excused.min(n)
            })
            .collect();
        let total: u64 = sent.iter().sum();
        let passed = total > 0
            && losses.lost == 0
            && losses.duplicates == 0
            && losses.acks_failed == 0
            && losses.refused == 0
            && losses.closed == 0
            && latency.p99_ms <= ctx.plan.max_p99_ms;
        let step = Step {
            label: label.to_string(),
            rate,
            secs,
            sent: total,
            sent_per_s: total as f64 / secs,
            delivered_per_s: losses.delivered as f64 / secs,
            losses,
            latency,
            usage: after.since(&before),
            server: growth(&counters_before, &counters_after),
            extra: BTreeMap::new(),
            passed,
        };
        Ok((step, accepted))
    }

    /// A sender the server disconnected goes on sending until it reads the disconnect, and the
    /// server broadcasts none of that: its messages count only up to the last one anybody got.
    fn discount_unheard(&self, sent: &mut [u64]) {
        for (i, _) in &self.senders {
            if !self.clients[*i].tally.lock().unwrap().closed {
                continue;
            }
            let heard = self
                .clients
                .iter()
                .map(|c| c.tally.lock().unwrap().heard(*i as u32))
                .max()
                .unwrap_or(0);
            sent[*i] = sent[*i].min(heard);
        }
    }

    /// Until deliveries stop coming.
    async fn drain(&self) {
        let deadline = Instant::now() + DRAIN_MAX;
        let mut last = self.shared.delivered.load(Relaxed);
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline && quiet_since.elapsed() < DRAIN_QUIET {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.shared.delivered.load(Relaxed);
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
    }

    /// Each node's numeric counters, flattened (`adapter.lost`, `warnings.socketioxide_redis`…).
    pub async fn counters(&self) -> anyhow::Result<BTreeMap<String, BTreeMap<String, f64>>> {
        let mut all = BTreeMap::new();
        for (node, spec) in &self.controls {
            let control = Conn::open(spec.clone(), self.shared.clone()).await?;
            let reply = control.request("stats", None).await?;
            let args: Value = serde_json::from_slice(&reply.args)
                .with_context(|| format!("stats of {node} are not JSON"))?;
            let mut flat = BTreeMap::new();
            flatten("", &args[0], &mut flat);
            all.insert(node.clone(), flat);
        }
        Ok(all)
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
    match value {
        Value::Number(n) => {
            out.insert(prefix.to_string(), n.as_f64().unwrap_or(0.0));
        }
        Value::Object(map) => {
            for (key, value) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, value, out);
            }
        }
        _ => {}
    }
}

/// What grew between two readings of the counters; unchanged ones are left out.
fn growth(
    before: &BTreeMap<String, BTreeMap<String, f64>>,
    after: &BTreeMap<String, BTreeMap<String, f64>>,
) -> BTreeMap<String, BTreeMap<String, f64>> {
    after
        .iter()
        .map(|(node, counters)| {
            let grown = counters
                .iter()
                .map(|(name, v)| {
                    let was = before.get(node).and_then(|b| b.get(name)).copied();
                    (name.clone(), v - was.unwrap_or(0.0))
                })
                .filter(|(_, d)| *d != 0.0)
                .collect();
            (node.clone(), grown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_are_flattened_and_compared() {
        let mut before = BTreeMap::new();
        flatten(
            "",
            &json!({ "emit_errors": 1, "adapter": { "lost": 2, "published": 5 } }),
            &mut before,
        );
        let mut after = BTreeMap::new();
        flatten(
            "",
            &json!({ "emit_errors": 1, "adapter": { "lost": 7, "published": 9 }, "warnings": { "x": 3 } }),
            &mut after,
        );
        let grown = growth(
            &BTreeMap::from([("a".to_string(), before)]),
            &BTreeMap::from([("a".to_string(), after)]),
        );
        let expected = BTreeMap::from([
            ("adapter.lost".to_string(), 5.0),
            ("adapter.published".to_string(), 4.0),
            ("warnings.x".to_string(), 3.0),
        ]);
        assert_eq!(grown["a"], expected);
    }
}
