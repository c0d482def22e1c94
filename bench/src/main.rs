//! `bench`: the load generator of the workspace. It starts Redis 7 (Docker), the servers under
//! test and its own Socket.IO v5 clients (WebSocket framing done here, every frame of a read
//! parsed in place), and measures, per step: messages sent/s, deliveries/s, lost and duplicated
//! deliveries, latency p50/p95/p99/max (sender timestamp, same clock), CPU seconds of every
//! server, of Redis and of itself, and resident memory.
//!
//! Implementations: `cluster` (`bench-app` on our adapter), `socketioxide-redis` (`bench-app` on
//! socketioxide's own Redis adapter), `node` (`bench/node/app.mjs` on `@socket.io/redis-adapter`);
//! the `chat` scenario drives the real `chat-server`. Each round runs every implementation in
//! turn (A, B, C, A, B, C…); the tables give medians over rounds and our ratio to each baseline.
//!
//! ```text
//! cargo build --release -p cluster-bench -p chat-server
//! (cd bench/node && npm ci)
//! target/release/bench --scenario all --rounds 3 --json target/bench.json
//! target/release/bench --scenario fanout --impl cluster,node --rates 100,200,400 --duration-secs 10
//! target/release/bench --scenario scaling --impl cluster --redis cluster --scaling-modes sharded
//! target/release/bench --smoke          # seconds, tiny sizes: fails on any error or loss
//! ```
//!
//! Server logs go to `target/bench-logs/<run>/`. See BENCHMARKS.md for the method and results.

mod cli;
mod conn;
mod deploy;
mod procs;
mod redis;
mod report;
mod scenarios;
mod sio;
mod stats;
mod ws;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::{
    cli::{Args, RedisKind},
    deploy::{Env, Tuning},
    redis::Redis,
    report::Run,
    scenarios::Ctx,
};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Dropping the run on Ctrl-C kills the servers and removes the Redis container.
    let outcome = tokio::select! {
        outcome = run(&args) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything asked; `false` when a run failed (or, in a smoke run, any step did).
async fn run(args: &Args) -> anyhow::Result<bool> {
    let plan = args.plan();
    // Each client is a socket here and on a node; children inherit the raised limit.
    let files = rlimit::increase_nofile_limit(u64::MAX).context("raising the open files limit")?;
    let needed = (plan
        .idle_clients
        .max(plan.fanout_clients)
        .max(plan.rooms * 2)
        + 1000) as u64;
    if files < needed {
        anyhow::bail!("the open files limit is {files}; this run needs about {needed}");
    }
    let logs = procs::log_dir(&args.log_dir)?;
    let redis = match &args.redis_url {
        Some(url) => Redis::external(url),
        None if args.redis == RedisKind::Cluster => Redis::start_cluster(&args.redis_image)?,
        None => Redis::start(&args.redis_image)?,
    };
    let tuning = Tuning {
        max_buffer: args.max_buffer,
        ws_read_buffer: args.ws_read_buffer,
        receive_buffer: args.receive_buffer,
        stream_buffer: args.stream_buffer,
    };
    eprintln!("bench: redis {}, logs in {}", redis.url, logs.display());
    let mut env = Env::new(args.node_app.clone(), logs, redis, tuning)?;
    if let Some(sharded) = args.sharded {
        env.app_flags
            .extend(["--sharded".to_string(), sharded.to_string()]);
    }
    if let Some(mode) = &args.subscription_mode {
        env.app_flags
            .extend(["--subscription-mode".to_string(), mode.clone()]);
    }
    let mut ctx = Ctx::new(env, plan.clone());
    let mut runs = Vec::new();
    for scenario in args.scenarios() {
        for round in 1..=args.rounds {
            for imp in scenarios::implementations(scenario, &args.impls) {
                for nodes in scenarios::node_counts(scenario, &plan) {
                    let implementation = imp.map_or("chat-server".to_string(), |i| i.to_string());
                    eprintln!("== {scenario} · {implementation} · {nodes} nodes · round {round}");
                    let mut run = Run {
                        scenario,
                        implementation,
                        round,
                        nodes,
                        steps: Vec::new(),
                        error: None,
                    };
                    if let Err(err) = scenarios::run(&mut ctx, scenario, imp, nodes, &mut run).await
                    {
                        eprintln!("  failed: {err:#}");
                        run.error = Some(format!("{err:#}"));
                    }
                    runs.push(run);
                }
            }
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "tuning": ctx.env.tuning, "runs": runs });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", report::details(&runs));
    println!("{}", report::summary(&runs, plan.max_p99_ms));
    let failed_runs = runs.iter().filter(|r| r.error.is_some()).count();
    let failed_steps = runs
        .iter()
        .flat_map(|r| &r.steps)
        .filter(|s| !s.passed)
        .count();
    if plan.smoke {
        println!(
            "smoke: {} runs, {failed_runs} failed; {failed_steps} steps failed",
            runs.len()
        );
        return Ok(failed_runs == 0 && failed_steps == 0 && !runs.is_empty());
    }
    Ok(failed_runs == 0)
}
