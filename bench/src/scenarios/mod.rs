//! The scenarios, and what they share: the run's context and opening many clients.

mod chat;
mod fanout;
mod idle;
mod requests;
mod rooms;
mod scaling;
mod storage;
mod traffic;
mod waves;

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::{
    cli::{Impl, Plan, Scenario},
    conn::{self, Conn, Spec},
    deploy::{Deployment, Env},
    report::Run,
};

/// What every scenario run uses.
pub struct Ctx {
    pub env: Env,
    pub plan: Plan,
    /// Steps so far: each step's messages carry its number, so late ones are told apart.
    steps: u32,
}

impl Ctx {
    pub fn new(env: Env, plan: Plan) -> Self {
        Self {
            env,
            plan,
            steps: 0,
        }
    }

    fn next_step(&mut self) -> u32 {
        self.steps += 1;
        self.steps
    }
}

/// The node counts a scenario runs with.
pub fn node_counts(scenario: Scenario, plan: &Plan) -> Vec<usize> {
    match scenario {
        Scenario::Requests => plan.request_nodes.clone(),
        Scenario::Scaling => plan.scaling_nodes.clone(),
        Scenario::Storage => vec![1],
        Scenario::Chat => vec![plan.chat_nodes],
        _ => vec![2],
    }
}

/// The implementations a scenario compares, by name: the chat scenario is our chat server.
pub fn implementations(scenario: Scenario, impls: &[Impl]) -> Vec<Option<Impl>> {
    match scenario {
        Scenario::Chat | Scenario::Waves | Scenario::Storage if impls.contains(&Impl::Cluster) => {
            vec![None]
        }
        Scenario::Chat | Scenario::Waves | Scenario::Storage => Vec::new(),
        // Sharded pub/sub is our adapter's: the others have no such modes.
        Scenario::Scaling if impls.contains(&Impl::Cluster) => vec![Some(Impl::Cluster)],
        Scenario::Scaling => Vec::new(),
        _ => impls.iter().copied().map(Some).collect(),
    }
}

/// Runs `scenario` on `imp` (`None`: the chat server) with `nodes` nodes, adding each measured
/// step to `run` as it completes so that an error keeps what was measured before it.
pub async fn run(
    ctx: &mut Ctx,
    scenario: Scenario,
    imp: Option<Impl>,
    nodes: usize,
    run: &mut Run,
) -> anyhow::Result<()> {
    match (scenario, imp) {
        (Scenario::Chat, _) => chat::run(ctx, nodes, run).await,
        (Scenario::Waves, _) => waves::run(ctx, nodes, run).await,
        (Scenario::Storage, _) => storage::run(ctx, run).await,
        (Scenario::Fanout, Some(imp)) => fanout::run(ctx, imp, nodes, run).await,
        (Scenario::Rooms, Some(imp)) => rooms::run(ctx, imp, nodes, run).await,
        (Scenario::Requests, Some(imp)) => requests::run(ctx, imp, nodes, run).await,
        (Scenario::Idle, Some(imp)) => idle::run(ctx, imp, nodes, run).await,
        (Scenario::Scaling, _) => scaling::run(ctx, nodes, run).await,
        _ => anyhow::bail!("{scenario} needs an implementation"),
    }
}

/// Opens a client per handshake `auth` (client `i` on node `i % nodes`), `concurrency` at a
/// time; returns them in order, with how long it took.
async fn connect_all(
    deployment: &Deployment,
    auths: Vec<String>,
    shared: &conn::Shared,
    concurrency: usize,
) -> anyhow::Result<(Vec<Conn>, Duration)> {
    let n = deployment.nodes.len();
    let placed = auths.into_iter().enumerate().map(|(i, a)| (i % n, a));
    connect_placed(deployment, placed.collect(), shared, concurrency).await
}

/// As [`connect_all`], each client on the node (index) it is given with.
async fn connect_placed(
    deployment: &Deployment,
    placed: Vec<(usize, String)>,
    shared: &conn::Shared,
    concurrency: usize,
) -> anyhow::Result<(Vec<Conn>, Duration)> {
    let started = Instant::now();
    let specs = placed
        .into_iter()
        .enumerate()
        .map(|(i, (node, auth))| Spec {
            addr: deployment.addr_for(node),
            auth,
            index: i as u32,
        });
    let clients = stream::iter(specs)
        .map(|spec| Conn::open(spec, shared.clone()))
        .buffered(concurrency)
        .try_collect()
        .await?;
    Ok((clients, started.elapsed()))
}
