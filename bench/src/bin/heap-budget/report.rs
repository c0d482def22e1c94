//! The budget: the heap of `clients` idle connections less that of none, per connection, by
//! category and by site, printed as Markdown.

use std::collections::{BTreeMap, HashMap};

use crate::{
    profile::Heap,
    split::{Category, Live, Site},
};

/// One run's figures.
pub struct Run {
    pub heap: Heap,
    pub sites: HashMap<Site, Live>,
}

/// Per connection: the difference between the two runs, divided by the connections.
#[derive(Debug, Default, Clone, Copy)]
struct PerConnection {
    bytes: f64,
    blocks: f64,
    classed: f64,
}

impl PerConnection {
    fn between(base: Live, loaded: Live, clients: usize) -> Self {
        let per = |a: u64, b: u64| (b as f64 - a as f64) / clients as f64;
        Self {
            bytes: per(base.bytes, loaded.bytes),
            blocks: per(base.blocks, loaded.blocks),
            classed: per(base.classed, loaded.classed),
        }
    }

    fn add(&mut self, other: Self) {
        self.bytes += other.bytes;
        self.blocks += other.blocks;
        self.classed += other.classed;
    }
}

/// Prints the budget of `loaded` (its clients connected) against `base` (none): the heap per
/// connection by category, the `top` sites, and every site of ours.
pub fn print(base: &Run, loaded: &Run, idle_secs: u64, top: usize) {
    let clients = loaded.heap.clients;
    let stats = PerConnection::between(heap_stats(&base.heap), heap_stats(&loaded.heap), clients);
    println!(
        "One chat-server node at its default configuration ({} backend), {clients} idle \
         WebSocket clients on `/`, idle {idle_secs} s; heap with them less heap with none.\n",
        loaded.heap.backend
    );
    println!(
        "Live heap per connection (dhat::HeapStats): {:.0} bytes in {:.1} blocks.\n",
        stats.bytes, stats.blocks
    );
    let sites = per_site(base, loaded, clients);
    print_categories(&sites);
    println!("\nTop {top} sites per connection:\n");
    print_sites(sites.iter().take(top));
    let rest = sites
        .iter()
        .skip(top)
        .fold(PerConnection::default(), |mut sum, (_, per)| {
            sum.add(*per);
            sum
        });
    println!(
        "| {:.0} | {:.1} | | the other {} sites | | |",
        rest.bytes,
        rest.blocks,
        sites.len().saturating_sub(top)
    );
    println!("\nEvery site of ours:\n");
    print_sites(sites.iter().filter(|(site, _)| site.category.is_ours()));
}

fn heap_stats(heap: &Heap) -> Live {
    Live {
        bytes: heap.bytes as u64,
        blocks: heap.blocks as u64,
        classed: 0,
    }
}

fn print_categories(sites: &[(Site, PerConnection)]) {
    let mut categories = BTreeMap::<Category, PerConnection>::new();
    let mut total = PerConnection::default();
    for (site, per) in sites {
        categories.entry(site.category).or_default().add(*per);
        total.add(*per);
    }
    println!("| category | bytes per connection | blocks | ≈ bytes in jemalloc's size classes |");
    println!("| --- | ---: | ---: | ---: |");
    for category in Category::ALL {
        let per = categories.get(&category).copied().unwrap_or_default();
        println!(
            "| {} | {:.0} | {:.1} | {:.0} |",
            category.name(),
            per.bytes,
            per.blocks,
            per.classed
        );
    }
    println!(
        "| **total** | **{:.0}** | **{:.1}** | **{:.0}** |",
        total.bytes, total.blocks, total.classed
    );
}

fn print_sites<'a>(sites: impl Iterator<Item = &'a (Site, PerConnection)>) {
    println!("| bytes | blocks | category | where | allocated by | via ours |");
    println!("| ---: | ---: | --- | --- | --- | --- |");
    for (site, per) in sites {
        let via = site
            .via
            .as_deref()
            .map_or_else(String::new, |v| format!("`{v}`"));
        println!(
            "| {:.0} | {:.1} | {} | `{}` | `{}` | {via} |",
            per.bytes,
            per.blocks,
            site.category.name(),
            site.place,
            site.what,
        );
    }
}

/// Every site whose heap differs between the runs (by half a byte or a twentieth of a block per
/// connection at least), the largest first.
fn per_site(base: &Run, loaded: &Run, clients: usize) -> Vec<(Site, PerConnection)> {
    let keys: std::collections::HashSet<&Site> =
        base.sites.keys().chain(loaded.sites.keys()).collect();
    let mut sites: Vec<(Site, PerConnection)> = keys
        .into_iter()
        .map(|site| {
            let of = |run: &Run| run.sites.get(site).copied().unwrap_or_default();
            (
                site.clone(),
                PerConnection::between(of(base), of(loaded), clients),
            )
        })
        .filter(|(_, per)| per.bytes.abs() >= 0.5 || per.blocks.abs() >= 0.05)
        .collect();
    sites.sort_by(|a, b| b.1.bytes.total_cmp(&a.1.bytes));
    sites
}
