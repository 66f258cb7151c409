//! `mex cache stats` and `mex cache clear`: the home's D3 action cache
//! (`<home>/action-cache.sqlite3`, see `mex_runtime::ActionCache`).

use mex_runtime::{ActionCache, CacheLimits};

use crate::cli::CacheCommand;
use crate::home::Home;
use crate::out::outln;
use crate::{CliError, exit};

/// Run `mex cache ...`.
pub fn run(home: &Home, cmd: &CacheCommand) -> Result<u8, CliError> {
    let path = home.root.join(mex_runtime::CACHE_FILE_NAME);
    if matches!(cmd, CacheCommand::Stats { .. }) && !path.exists() {
        // Read-only: report an empty cache without creating the file.
        let limits = CacheLimits::default();
        let empty = mex_cli::report::CacheStatsReport {
            path: path.display().to_string(),
            entries: 0,
            bytes: 0,
            max_entries: limits.max_entries,
            max_bytes: limits.max_bytes,
            hits: 0,
            misses: 0,
            evictions: 0,
            stale: 0,
            reexecutions: 0,
            mismatches: 0,
        };
        return print_stats(&empty, matches!(cmd, CacheCommand::Stats { json: true }));
    }
    let cache = ActionCache::open(&path, CacheLimits::default())
        .map_err(|e| CliError::internal(e.to_string()))?;
    match cmd {
        CacheCommand::Stats { json } => {
            let s = cache
                .stats()
                .map_err(|e| CliError::internal(e.to_string()))?;
            let report = mex_cli::report::CacheStatsReport {
                path: s.path.display().to_string(),
                entries: s.entries,
                bytes: s.bytes,
                max_entries: s.max_entries,
                max_bytes: s.max_bytes,
                hits: s.hits,
                misses: s.misses,
                evictions: s.evictions,
                stale: s.stale,
                reexecutions: s.reexecutions,
                mismatches: s.mismatches,
            };
            print_stats(&report, *json)
        }
        CacheCommand::Clear { json } => {
            let removed = cache
                .clear()
                .map_err(|e| CliError::internal(e.to_string()))?;
            let report = mex_cli::report::CacheClearReport {
                path: path.display().to_string(),
                removed,
            };
            if *json {
                print(&report)?;
            } else {
                outln!("removed {removed} cache entries from {}", report.path);
            }
            Ok(exit::OK)
        }
    }
}

fn print<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::internal(format!("cannot print the report: {e}")))?;
    outln!("{text}");
    Ok(())
}

fn print_stats(r: &mex_cli::report::CacheStatsReport, json: bool) -> Result<u8, CliError> {
    if json {
        print(r)?;
    } else {
        outln!("action cache   {}", r.path);
        outln!(
            "entries        {} of at most {} ({} of at most {} bytes)",
            r.entries,
            r.max_entries,
            r.bytes,
            r.max_bytes
        );
        outln!(
            "hits {}  misses {}  evictions {}  stale {}",
            r.hits,
            r.misses,
            r.evictions,
            r.stale
        );
        outln!(
            "re-executions {}  mismatches {} (see `mex problems`)",
            r.reexecutions,
            r.mismatches
        );
    }
    Ok(exit::OK)
}
