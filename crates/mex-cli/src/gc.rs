//! `mex gc`: reclaim what crashed runs left behind, then run the artifact
//! store's gc, and report everything removed.
//!
//! Leftovers of a run killed at any instant: its shadow workspace under
//! `<home>/runs`, its sandbox jail under the jail root, and temp files of
//! interrupted puts in the store's `tmp/`. A directory is removed only when
//! no live run holds its lock (see `mex_runtime::reclaim`), so `mex gc` is
//! safe while other `mex` processes run. The same reclaim happens whenever
//! the runtime, the sandbox engine or the store is opened; this command
//! makes it explicit and says what it removed.

use mex_runtime::reclaim::Reclaimed;

use crate::home::Home;
use crate::out::outln;
use crate::{CliError, exit};

/// Run `mex gc`; `json` prints the report as one JSON object.
pub fn run(home: &Home, json: bool) -> Result<u8, CliError> {
    let runs = mex_runtime::reclaim::default_workspace_root(&home.store_path());
    let workspaces = mex_runtime::reclaim::reclaim_workspaces(&runs).map_err(|e| {
        CliError::internal(format!(
            "cannot examine the shadow workspaces in {}: {e}; check its permissions",
            runs.display()
        ))
    })?;
    let jail_root = mex_engine_sandbox::SandboxEngineConfig::default().jail_root;
    let jails = mex_engine_sandbox::reclaim_jails(&jail_root).map_err(|e| {
        CliError::internal(format!(
            "cannot examine the sandbox jails in {}: {e}; check its permissions",
            jail_root.display()
        ))
    })?;
    // Opening the store reclaims its temp files; gc then does the rest.
    let store = home.store()?;
    let mut temp: Vec<String> = store.reclaimed_at_open().to_vec();
    let now = mex_envelope::UtcTimestamp::now();
    let report = store
        .gc(now)
        .map_err(|e| CliError::internal(format!("the artifact store's gc failed: {e}")))?;
    temp.extend(report.temp_entries.iter().cloned());
    let failed: Vec<String> = workspaces
        .failed
        .iter()
        .chain(&jails.failed)
        .map(|(p, why)| format!("{}: {why}", p.display()))
        .collect();
    let paths = |r: &Reclaimed| -> Vec<String> {
        r.removed.iter().map(|p| p.display().to_string()).collect()
    };
    if json {
        let doc = mex_cli::report::GcRunReport {
            workspaces_removed: paths(&workspaces),
            jails_removed: paths(&jails),
            store_temp_entries_removed: temp.clone(),
            live_left_alone: u64::try_from(workspaces.live + jails.live).unwrap_or(u64::MAX),
            failed: failed.clone(),
            store: crate::render::gc_report(&report, now),
        };
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| CliError::internal(format!("cannot render JSON: {e}")))?;
        outln!("{text}");
    } else {
        for p in paths(&workspaces) {
            outln!("removed shadow workspace of a dead run: {p}");
        }
        for p in paths(&jails) {
            outln!("removed sandbox jail of a dead run: {p}");
        }
        for name in &temp {
            outln!(
                "removed store temp entry of an interrupted put: {}",
                store.root().join("tmp").join(name).display()
            );
        }
        for d in &report.deleted {
            outln!("deleted artifact {}: {}", d.artifact_id, d.reason);
        }
        for f in &failed {
            outln!("could not reclaim {f}");
        }
        outln!(
            "gc: {} workspace(s), {} jail(s), {} temp entr(ies) removed; {} live run director(ies) left alone; {} artifact(s) deleted, {} payload bytes freed; report artifact {}",
            workspaces.removed.len(),
            jails.removed.len(),
            temp.len(),
            workspaces.live + jails.live,
            report.deleted_count,
            report.bytes_freed,
            report.report.artifact_id
        );
    }
    if failed.is_empty() {
        Ok(exit::OK)
    } else {
        Err(CliError::internal(format!(
            "{} director(ies) could not be reclaimed (listed above); fix their permissions and run `mex gc` again",
            failed.len()
        )))
    }
}
