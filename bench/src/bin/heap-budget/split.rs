//! Reads a dhat profile and attributes each program point's live heap at the profile's end
//! (`eb`, `ebk`) to a category by its backtrace.
//!
//! The frames are walked from the allocation site outward, and the first one of a crate that
//! owns a piece of a connection decides. Helper crates (`alloc`, `hashbrown`, `bytes`, `serde`,
//! …) own nothing: a `HashMap` grows for whoever inserted into it. tokio is a special case: a
//! spawned task's future, a channel, a lock, a cancellation token and a timer belong to whoever
//! spawned or created them, so past a spawn or such a constructor the walk goes on to the first
//! crate outside tokio. What stays tokio's is its own per-connection state (I/O registrations).

use std::{collections::HashMap, path::Path};

use anyhow::Context;
use serde::Deserialize;

/// Who a piece of heap belongs to, in the order the budget lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    ChatServer,
    SocketioCluster,
    Socketioxide,
    Engineioxide,
    Tungstenite,
    Hyper,
    AxumTower,
    Tokio,
    Other,
}

impl Category {
    pub const ALL: [Self; 9] = [
        Self::ChatServer,
        Self::SocketioCluster,
        Self::Socketioxide,
        Self::Engineioxide,
        Self::Tungstenite,
        Self::Hyper,
        Self::AxumTower,
        Self::Tokio,
        Self::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ChatServer => "ours: chat_server",
            Self::SocketioCluster => "ours: socketio_cluster",
            Self::Socketioxide => "socketioxide",
            Self::Engineioxide => "engineioxide",
            Self::Tungstenite => "tungstenite / tokio-tungstenite",
            Self::Hyper => "hyper / hyper-util",
            Self::AxumTower => "axum / tower",
            Self::Tokio => "tokio",
            Self::Other => "other",
        }
    }

    /// This workspace's crates.
    pub fn is_ours(self) -> bool {
        matches!(self, Self::ChatServer | Self::SocketioCluster)
    }

    /// The category of a crate; `None` for helpers, whose allocations are their caller's.
    fn of_crate(name: &str) -> Option<Self> {
        Some(match name {
            "chat_server" => Self::ChatServer,
            "socketio_cluster" => Self::SocketioCluster,
            "socketioxide" | "socketioxide_core" | "socketioxide_parser_common" => {
                Self::Socketioxide
            }
            "engineioxide" | "engineioxide_core" => Self::Engineioxide,
            "tungstenite" | "tokio_tungstenite" => Self::Tungstenite,
            "hyper" | "hyper_util" | "httparse" => Self::Hyper,
            "axum" | "axum_core" | "tower" | "tower_http" | "tower_layer" | "tower_service" => {
                Self::AxumTower
            }
            "tokio" | "tokio_util" => Self::Tokio,
            _ if HELPERS.contains(&name) => return None,
            _ => Self::Other,
        })
    }
}

/// Crates whose allocations are made for their caller: collections, buffers, encodings, locks,
/// the allocator and the profiler themselves.
const HELPERS: &[&str] = &[
    "__rustc",
    "alloc",
    "core",
    "std",
    "dhat",
    "backtrace",
    "hashbrown",
    "indexmap",
    "smallvec",
    "bytes",
    "slab",
    "serde",
    "serde_json",
    "rmp",
    "rmp_serde",
    "rmpv",
    "http",
    "futures_util",
    "futures_core",
    "futures_channel",
    "futures_task",
    "parking_lot",
    "parking_lot_core",
    "lock_api",
    "pin_project_lite",
    "once_cell",
    "matchit",
    "tracing",
    "tracing_core",
    "tracing_subscriber",
    "sharded_slab",
];

/// Where a program point's heap is attributed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Site {
    pub category: Category,
    /// The deciding frame: function and line, without generics.
    pub place: String,
    /// What the deciding frame called to allocate: `Vec::with_capacity`, `Arc::new`,
    /// `tokio::task::spawn`…
    pub what: String,
    /// The nearest frame of ours further out, when the site is upstream's: the call of ours
    /// that made upstream allocate.
    pub via: Option<String>,
}

/// Live heap at the profile's end, per site.
#[derive(Debug, Default, Clone, Copy)]
pub struct Live {
    pub bytes: u64,
    pub blocks: u64,
    /// The bytes jemalloc would hand out for them, from the average block of each program
    /// point rounded up to a size class.
    pub classed: u64,
}

impl Live {
    fn add(&mut self, other: Live) {
        self.bytes += other.bytes;
        self.blocks += other.blocks;
        self.classed += other.classed;
    }
}

#[derive(Deserialize)]
struct Profile {
    pps: Vec<ProgramPoint>,
    ftbl: Vec<String>,
}

#[derive(Deserialize)]
struct ProgramPoint {
    eb: u64,
    ebk: u64,
    fs: Vec<usize>,
}

/// The live heap at the end of the dhat profile in `file`, per site.
pub fn read(file: &Path) -> anyhow::Result<HashMap<Site, Live>> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let profile: Profile = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a dhat profile", file.display()))?;
    let frames: Vec<Frame> = profile.ftbl.iter().map(|f| Frame::parse(f)).collect();
    let mut sites = HashMap::<Site, Live>::new();
    for pp in profile.pps.iter().filter(|pp| pp.ebk > 0) {
        let stack: Vec<&Frame> = pp.fs.iter().map(|&i| &frames[i]).collect();
        let live = Live {
            bytes: pp.eb,
            blocks: pp.ebk,
            classed: jemalloc_class(pp.eb.div_ceil(pp.ebk)) * pp.ebk,
        };
        sites.entry(attribute(&stack)).or_default().add(live);
    }
    Ok(sites)
}

/// One frame of dhat's table: `0x…: symbol (file:line:column)`.
struct Frame {
    /// The function, generics removed.
    function: String,
    /// `file.rs:line`.
    line: String,
    /// The crate it belongs to, when the symbol names one.
    krate: Option<String>,
}

impl Frame {
    fn parse(entry: &str) -> Self {
        let entry = entry.split_once(": ").map_or(entry, |(_, rest)| rest);
        let (symbol, place) = entry.rsplit_once(" (").unwrap_or((entry, ""));
        let file = place.split(':').next().unwrap_or_default();
        let file = file.rsplit('/').next().unwrap_or_default();
        let line = place.split(':').nth(1).unwrap_or_default();
        Self {
            function: without_generics(symbol),
            line: format!("{file}:{line}"),
            krate: crate_of(symbol).map(str::to_string),
        }
    }

    fn category(&self) -> Option<Category> {
        self.krate.as_deref().and_then(Category::of_crate)
    }

    fn is_tokio(&self) -> bool {
        self.category() == Some(Category::Tokio)
    }

    /// A tokio frame past which the heap is the caller's: spawning a task, or creating a
    /// channel, a lock, a cancellation token or a timer.
    fn hands_over(&self) -> bool {
        const MADE_FOR_THE_CALLER: [&str; 3] =
            ["tokio::sync::", "tokio::time::", "tokio_util::sync::"];
        self.is_tokio()
            && (self.function.contains("spawn")
                || MADE_FOR_THE_CALLER
                    .iter()
                    .any(|module| self.function.starts_with(module)))
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.function, self.line)
    }
}

/// The site of a backtrace, innermost frame first.
fn attribute(stack: &[&Frame]) -> Site {
    let Some(owner) = owner(stack) else {
        return Site {
            category: Category::Other,
            place: "(no crate in the backtrace)".into(),
            what: String::new(),
            via: None,
        };
    };
    let what = match owner.checked_sub(1).map(|i| stack[i]) {
        Some(callee) if !is_allocator(callee) => callee.function.clone(),
        _ => "(directly)".into(),
    };
    let category = stack[owner].category().unwrap_or(Category::Other);
    let via = (!category.is_ours())
        .then(|| {
            stack[owner..]
                .iter()
                .find(|f| f.category().is_some_and(Category::is_ours))
        })
        .flatten()
        .map(|f| f.describe());
    Site {
        category,
        place: stack[owner].describe(),
        what,
        via,
    }
}

/// The index of the frame that decides: the first of a crate that is no helper, or past a
/// spawn or a constructor of tokio's made for the caller the first outside tokio.
fn owner(stack: &[&Frame]) -> Option<usize> {
    let first = stack.iter().position(|f| f.category().is_some())?;
    let tokio_run = stack[first..]
        .iter()
        .take_while(|f| f.is_tokio() || f.category().is_none());
    if tokio_run.clone().any(|f| f.hands_over()) {
        let past = first + tokio_run.count();
        if stack.get(past).is_some_and(|f| f.category().is_some()) {
            return Some(past);
        }
    }
    Some(first)
}

/// The profiler's and the global allocator's own frames, above every allocation.
fn is_allocator(frame: &Frame) -> bool {
    let f = frame.function.as_str();
    matches!(frame.krate.as_deref(), Some("dhat" | "backtrace") | None)
        || f.starts_with("alloc::alloc::")
        || f.starts_with("<alloc::alloc::")
        || f.starts_with("__rustc::")
}

/// The crate a demangled symbol belongs to: the first path segment of the function, or of the
/// type of an `<T as Trait>::f` (of the trait when `T` is a bare generic parameter).
fn crate_of(symbol: &str) -> Option<&str> {
    let s = symbol.trim_start_matches(['<', '&', '*', '[', '(']);
    let s = ["mut ", "const ", "dyn "]
        .iter()
        .fold(s, |s, prefix| s.strip_prefix(prefix).unwrap_or(s));
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    if end > 0 && s[end..].starts_with("::") {
        return Some(&s[..end]);
    }
    symbol
        .split_once(" as ")
        .and_then(|(_, trait_path)| crate_of(trait_path))
}

/// `<a::B<T> as c::D<U>>::f::{{closure}}` as `<a::B as c::D>::f::{{closure}}`.
fn without_generics(symbol: &str) -> String {
    let mut out = String::with_capacity(symbol.len());
    let mut depth = 0usize;
    for (i, c) in symbol.char_indices() {
        match c {
            // A generic list follows a path segment; a `<` that opens a qualified path (at the
            // start, or after `<` or a space) is kept.
            '<' if depth > 0 || is_generic_open(&symbol[..i]) => depth += 1,
            '>' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

fn is_generic_open(before: &str) -> bool {
    before
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The size class jemalloc serves `size` bytes from: multiples of 16 up to 128, then four
/// classes per doubling.
pub fn jemalloc_class(size: u64) -> u64 {
    match size {
        0..=8 => 8,
        9..=128 => size.div_ceil(16) * 16,
        _ => {
            let step = size.next_power_of_two() / 8;
            size.div_ceil(step) * step
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_name_their_crate() {
        assert_eq!(
            crate_of("engineioxide::socket::Socket<D>::new"),
            Some("engineioxide")
        );
        assert_eq!(
            crate_of("<alloc::vec::Vec<T> as core::clone::Clone>::clone"),
            Some("alloc")
        );
        assert_eq!(
            crate_of("<F as socketioxide::handler::ConnectHandler<A, T>>::call"),
            Some("socketioxide")
        );
        assert_eq!(
            crate_of("<&mut T as core::fmt::Write>::write_str"),
            Some("core")
        );
        assert_eq!(crate_of("__rg_alloc"), None);
    }

    #[test]
    fn generics_are_dropped_but_qualified_paths_kept() {
        assert_eq!(
            without_generics("<alloc::sync::Arc<T, A> as core::clone::Clone>::clone"),
            "<alloc::sync::Arc as core::clone::Clone>::clone"
        );
        assert_eq!(
            without_generics("tokio::runtime::task::core::Cell<T,S>::new"),
            "tokio::runtime::task::core::Cell::new"
        );
    }

    /// The site of a backtrace given innermost frame first, as dhat's table lists them.
    fn site(symbols: &[&str]) -> Site {
        let frames: Vec<Frame> = symbols
            .iter()
            .map(|s| Frame::parse(&format!("0x1: {s} (src/lib.rs:7:9)")))
            .collect();
        attribute(&frames.iter().collect::<Vec<_>>())
    }

    #[test]
    fn a_spawned_task_is_the_spawners() {
        let site = site(&[
            "<dhat::Alloc as core::alloc::global::GlobalAlloc>::alloc",
            "alloc::boxed::Box<T>::new",
            "tokio::runtime::task::core::Cell<T,S>::new",
            "core::option::Option<T>::map",
            "tokio::task::spawn::spawn",
            "engineioxide::socket::Socket<D>::spawn_heartbeat",
            "tokio::runtime::task::harness::poll_future",
        ]);
        assert_eq!(site.category, Category::Engineioxide);
        assert_eq!(site.what, "tokio::task::spawn::spawn");
        assert_eq!(
            site.place,
            "engineioxide::socket::Socket::spawn_heartbeat (lib.rs:7)"
        );
    }

    #[test]
    fn a_collection_grows_for_its_caller_named_with_ours_further_out() {
        let site = site(&[
            "alloc::alloc::alloc",
            "hashbrown::raw::RawTable<T>::reserve_rehash",
            "std::collections::hash::map::HashMap<K,V,S>::insert",
            "socketioxide::socket::Socket<A>::on",
            "chat_server::chat::listen",
        ]);
        assert_eq!(site.category, Category::Socketioxide);
        assert_eq!(site.what, "std::collections::hash::map::HashMap::insert");
        assert_eq!(
            site.via.as_deref(),
            Some("chat_server::chat::listen (lib.rs:7)")
        );
    }

    #[test]
    fn a_timer_is_its_creators() {
        let site = site(&[
            "alloc::boxed::Box<T>::pin",
            "tokio::time::interval::internal_interval_at",
            "tokio::time::interval::interval",
            "engineioxide::socket::Socket<D>::heartbeat_job_v4::{{closure}}",
        ]);
        assert_eq!(site.category, Category::Engineioxide);
        assert_eq!(site.what, "tokio::time::interval::interval");
    }

    #[test]
    fn tokio_keeps_its_own_io_registrations() {
        let site = site(&[
            "alloc::sync::Arc<T>::new",
            "tokio::runtime::io::registration_set::RegistrationSet::allocate",
            "tokio::net::tcp::stream::TcpStream::new",
            "chat_server::connections::serve::serve",
        ]);
        assert_eq!(site.category, Category::Tokio);
    }

    #[test]
    fn jemalloc_size_classes() {
        assert_eq!(jemalloc_class(1), 8);
        assert_eq!(jemalloc_class(24), 32);
        assert_eq!(jemalloc_class(129), 160);
        assert_eq!(jemalloc_class(1024), 1024);
        assert_eq!(jemalloc_class(1025), 1280);
        assert_eq!(jemalloc_class(4900), 5120);
    }
}
