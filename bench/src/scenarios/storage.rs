//! What a stored chat message costs Redis: the real chat server (one node) posts
//! 100 messages into each of 200 rooms, every one with a `clientId`
//! (as the web client sends them) and a text that makes its JSON about 285 bytes, as a user's
//! message with a name and a UUID is. Redis's memory grows by the rooms' history lists,
//! sequences and retry records; what that is per message, next to the JSON a client receives,
//! and the Redis CPU each post costs (the whole process, and the post's own command) are the
//! figures.

use std::time::Instant;

use anyhow::Context;
use fred::{
    clients::Client as RedisClient,
    interfaces::{ClientLike, MemoryInterface},
    types::{InfoKind, Value, config::Config as RedisConfig, scan::Scanner},
};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value as Json, json};

use super::{Ctx, connect_all};
use crate::{
    conn,
    deploy::Deployment,
    report::{Run, Step},
};

/// Rooms posted to, one sender each.
const ROOMS: usize = 200;
/// Messages per room: no more than the chat server's default `HISTORY_LEN`, so all are kept.
const MESSAGES: usize = 100;

pub async fn run(ctx: &mut Ctx, run: &mut Run) -> anyhow::Result<()> {
    let deployment = Deployment::chat(&mut ctx.env, 1, false).await?;
    let redis = RedisClient::new(RedisConfig::from_url(&ctx.env.redis.url)?, None, None, None);
    redis.init().await?;
    let (rooms, messages) = if ctx.plan.smoke {
        (2, 5)
    } else {
        (ROOMS, MESSAGES)
    };
    let shared = conn::Shared::new(1);
    let auths = (0..rooms)
        .map(|i| {
            json!({ "userId": format!("4b1e0c7a-storage-user-{i:04}"), "name": format!("User number {i}") })
                .to_string()
        })
        .collect();
    let (clients, _) = connect_all(&deployment, auths, &shared, ctx.plan.concurrency).await?;
    for (i, client) in clients.iter().enumerate() {
        let join = client
            .request(
                "join",
                Some(json!({ "room": format!("room-{i}") }).to_string()),
            )
            .await?;
        anyhow::ensure!(
            memchr::memmem::find(&join.args, b"\"ok\":true").is_some(),
            "join refused"
        );
    }

    let memory_before = used_memory(&redis).await?;
    let stats_before = post_stats(&redis).await?;
    let snapshot = deployment.snapshot(&ctx.env.redis)?;
    let started = Instant::now();
    let json_bytes: Vec<usize> = stream::iter(clients.iter().enumerate())
        .map(|(i, client)| async move {
            let mut sizes = Vec::with_capacity(messages);
            for m in 0..messages {
                let text = format!("message {m:03} of room {i}: {}", "lorem ipsum ".repeat(9));
                let send = json!({
                    "room": format!("room-{i}"),
                    "text": text,
                    "clientId": format!("0d6f3b52-9c1e-4f7a-8e2b-{:012x}", i * messages + m),
                });
                let reply = client.request("message", Some(send.to_string())).await?;
                let args: Json = serde_json::from_slice(&reply.args)?;
                let message = args[0]["message"].clone();
                anyhow::ensure!(message.is_object(), "message refused: {args}");
                sizes.push(serde_json::to_vec(&message)?.len());
            }
            anyhow::Ok(sizes)
        })
        .buffer_unordered(ctx.plan.concurrency)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();
    let secs = started.elapsed().as_secs_f64();
    let usage = deployment.snapshot(&ctx.env.redis)?.since(&snapshot);
    let posted = json_bytes.len() as f64;
    let memory = (used_memory(&redis).await? - memory_before) as f64 / posted;
    let stats = post_stats(&redis).await?;
    let redis_cpu_us = usage
        .iter()
        .find(|p| p.name == "redis")
        .map_or(f64::NAN, |p| p.cpu_s * 1e6 / posted);
    let post_us = (stats.usec - stats_before.usec) / (stats.calls - stats_before.calls).max(1.0);
    let json = json_bytes.iter().sum::<usize>() as f64 / posted;
    let by_kind = bytes_by_key_kind(&redis, posted).await?;
    eprintln!(
        "  {posted} messages in {secs:.1} s: JSON {json:.0} B, Redis memory {memory:.0} B per message ({:.2}×; {}), Redis CPU {redis_cpu_us:.1} µs per message, the post's command {post_us:.1} µs",
        memory / json,
        by_kind
            .iter()
            .map(|(kind, bytes)| format!("{kind} {bytes:.0} B"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut extra: std::collections::BTreeMap<String, f64> = [
        ("json_bytes".to_string(), json),
        ("redis_bytes".to_string(), memory),
        ("ratio".to_string(), memory / json),
        ("redis_cpu_us".to_string(), redis_cpu_us),
        ("post_command_us".to_string(), post_us),
    ]
    .into();
    extra.extend(by_kind.into_iter().map(|(k, b)| (format!("{k}_bytes"), b)));
    run.steps.push(Step {
        label: "store".into(),
        secs,
        sent: posted as u64,
        sent_per_s: posted / secs,
        usage,
        extra,
        passed: true,
        ..Step::default()
    });
    Ok(())
}

async fn used_memory(redis: &RedisClient) -> anyhow::Result<i64> {
    let info: String = redis.info(Some(InfoKind::Memory)).await?;
    info_field(&info, "used_memory")?
        .parse()
        .context("used_memory")
}

/// Calls and microseconds of the command that posts (`fcall`, or `evalsha` before it).
struct PostStats {
    calls: f64,
    usec: f64,
}

async fn post_stats(redis: &RedisClient) -> anyhow::Result<PostStats> {
    let info: String = redis.info(Some(InfoKind::CommandStats)).await?;
    let mut stats = PostStats {
        calls: 0.0,
        usec: 0.0,
    };
    for line in info.lines() {
        let Some(rest) = ["cmdstat_fcall:", "cmdstat_evalsha:"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
        else {
            continue;
        };
        for field in rest.split(',') {
            match field.split_once('=') {
                Some(("calls", n)) => stats.calls += n.parse::<f64>()?,
                Some(("usec", n)) => stats.usec += n.parse::<f64>()?,
                _ => {}
            }
        }
    }
    Ok(stats)
}

fn info_field<'a>(info: &'a str, name: &str) -> anyhow::Result<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .with_context(|| format!("INFO has no {name}"))
}

/// `MEMORY USAGE` of the history's keys, summed by what they hold (the last part of their
/// name: `list`, `sequence`, and the retry records), per message.
async fn bytes_by_key_kind(redis: &RedisClient, posted: f64) -> anyhow::Result<Vec<(String, f64)>> {
    let mut sums = std::collections::BTreeMap::<String, f64>::new();
    let mut scan = redis.scan("*:history:*", Some(1000), None);
    while let Some(page) = scan.next().await {
        let mut page = page?;
        for key in page.take_results().unwrap_or_default() {
            let name = key.as_str().map(|s| s.to_string()).unwrap_or_default();
            let kind = if name.contains(":sent:") {
                "sent"
            } else {
                name.rsplit(':').next().unwrap_or("other")
            };
            let bytes: Value = redis.memory_usage(&key, Some(0)).await?;
            *sums.entry(kind.to_string()).or_default() += bytes.as_f64().unwrap_or(0.0);
        }
    }
    Ok(sums.into_iter().map(|(k, b)| (k, b / posted)).collect())
}
