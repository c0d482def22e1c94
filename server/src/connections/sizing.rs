//! The default of `MAX_CONNECTIONS`: what the process's memory and file descriptors allow.

/// Memory a connection is budgeted for: an idle one costs about 21 KiB (BENCHMARKS.md, "idle"),
/// and a busy one holds its send queue and read buffers on top.
pub const BYTES_PER_CONNECTION: u64 = 32 * 1024;

/// Share of the memory limit connections may take; the rest is the node's own (rooms, history
/// of the single node, allocator slack).
const MEMORY_SHARE_PERCENT: u64 = 75;

/// File descriptors kept for everything but client connections (Redis, listeners, files).
const RESERVED_FILES: u64 = 256;

/// Raises the soft limit of open files to the hard one and returns it (None where unknown).
pub fn raise_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(err) => {
            tracing::warn!(%err, "cannot read or raise the open-file limit");
            None
        }
    }
}

/// The memory this process may use: its cgroup's limit (a container's), else the machine's.
pub fn memory_limit() -> Option<u64> {
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    .find_map(|text| text.trim().parse::<u64>().ok())
    // cgroup v1 writes "no limit" as a huge number.
    .filter(|&bytes| bytes < (1 << 60));
    cgroup.or_else(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    })
}

/// The default maximum: as many connections as the memory share holds at
/// [`BYTES_PER_CONNECTION`] and the open-file limit leaves room for, at least 1.
pub fn default_max_connections(memory: Option<u64>, files: Option<u64>) -> usize {
    let by_memory =
        memory.map(|m| m.saturating_mul(MEMORY_SHARE_PERCENT) / 100 / BYTES_PER_CONNECTION);
    let by_files = files.map(|f| f.saturating_sub(RESERVED_FILES));
    let max = match (by_memory, by_files) {
        (Some(m), Some(f)) => m.min(f),
        (Some(n), None) | (None, Some(n)) => n,
        (None, None) => 10_000,
    };
    usize::try_from(max.max(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tighter_of_memory_and_files_decides() {
        const GIB: u64 = 1 << 30;
        assert_eq!(default_max_connections(Some(GIB), Some(1 << 20)), 24_576);
        assert_eq!(default_max_connections(Some(GIB), Some(20_000)), 19_744);
        assert_eq!(default_max_connections(None, Some(1024)), 768);
        assert_eq!(default_max_connections(Some(0), Some(0)), 1);
    }
}
