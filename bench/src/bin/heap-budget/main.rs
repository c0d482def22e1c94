//! `heap-budget`: where the heap of an idle `chat-server` connection goes, by crate.
//!
//! ```text
//! cargo build --release --locked -p cluster-bench --bin heap-budget
//! target/release/heap-budget [--clients 2000]
//! ```
//!
//! The binary runs in three roles, all started by the one command:
//! - the driver (no subcommand) profiles a node twice, with no client and with `--clients`,
//!   and prints their difference per connection: by category (ours, each upstream crate) and by
//!   allocation site;
//! - `profile` is one profiled node: `chat-server` in process, under dhat, whose profile is
//!   written while its clients are still connected;
//! - `clients` holds the idle clients in a process of their own. dhat's allocator records only
//!   while a `dhat::Profiler` exists, so there it allocates as the system allocator does.
//!
//! Both profiles stay in `--out-dir`, for dhat's viewer (`dh_view.html`).

mod client;
mod profile;
mod report;
mod split;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[derive(Debug, Parser)]
#[command(
    name = "heap-budget",
    about = "Heap of an idle chat-server connection, by crate and site (dhat)"
)]
struct Args {
    /// Idle connections profiled (against none).
    #[arg(long, default_value_t = 2000)]
    clients: usize,
    /// How long they stay idle before the heap is read; default: the node's ping interval and
    /// two seconds, so that every connection answered a ping.
    #[arg(long)]
    idle_secs: Option<u64>,
    /// Where the two dhat profiles are written.
    #[arg(long, default_value = "target/heap-budget")]
    out_dir: PathBuf,
    /// Allocation sites listed.
    #[arg(long, default_value_t = 15)]
    top: usize,
    #[command(subcommand)]
    role: Option<Role>,
}

/// The roles the driver starts this binary in.
#[derive(Debug, Subcommand)]
enum Role {
    /// One profiled node with `clients` idle clients.
    #[command(hide = true)]
    Profile {
        #[arg(long)]
        clients: usize,
        #[arg(long)]
        idle_secs: u64,
        #[arg(long)]
        file: PathBuf,
    },
    /// The idle clients of a profiled node.
    #[command(hide = true)]
    Clients {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        clients: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.role {
        None => drive(&args),
        Some(Role::Profile {
            clients,
            idle_secs,
            file,
        }) => profile::run(*clients, Duration::from_secs(*idle_secs), file),
        Some(Role::Clients { addr, clients }) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(client::hold(*addr, *clients)),
    }
}

/// Profiles no client, then `--clients`, and prints the budget.
fn drive(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clients > 0,
        "--clients must be at least 1: figures are per client"
    );
    let idle_secs = args.idle_secs.unwrap_or_else(|| {
        chat_server::Config::defaults()
            .ping_interval()
            .as_secs()
            .saturating_add(2)
    });
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let mut runs = Vec::new();
    for clients in [0, args.clients] {
        let file = args.out_dir.join(format!("dhat-{clients}.json"));
        eprintln!("heap-budget: profiling {clients} idle clients for {idle_secs} s…");
        let heap = profile_in_child(clients, idle_secs, &file)?;
        let sites = split::read(&file)?;
        runs.push(report::Run { heap, sites });
    }
    report::print(&runs[0], &runs[1], idle_secs, args.top);
    println!(
        "\nProfiles: {}/dhat-0.json and dhat-{}.json (dhat's dh_view.html).",
        args.out_dir.display(),
        args.clients
    );
    Ok(())
}

/// Runs the `profile` role in a process of its own, so each profile starts from a fresh heap.
fn profile_in_child(clients: usize, idle_secs: u64, file: &Path) -> anyhow::Result<profile::Heap> {
    let output = Command::new(std::env::current_exe()?)
        .arg("profile")
        .args(["--clients", &clients.to_string()])
        .args(["--idle-secs", &idle_secs.to_string()])
        .arg("--file")
        .arg(file)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the profiled node")?;
    anyhow::ensure!(
        output.status.success(),
        "the profiled node with {clients} clients failed ({})",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .context("the profiled node printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("unexpected result line: {line}"))
}
