//! Build a large store, or run gc or verify over one, to measure their
//! memory (`/usr/bin/time -v`, "Maximum resident set size"):
//!
//! ```text
//! cargo run -p mex-artifacts --example walk -- build <root> <records>
//! /usr/bin/time -v target/debug/examples/walk gc <root>
//! /usr/bin/time -v target/debug/examples/walk verify <root>
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a measuring tool: a failure panics, results go to stdout"
)]

#[path = "../tests/support/bulk.rs"]
mod bulk;

use mex_artifacts::{ArtifactStore, GcOptions};
use mex_envelope::UtcTimestamp;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = std::path::Path::new(&args[1]);
    match args[0].as_str() {
        "build" => bulk::fill(root, args[2].parse().unwrap(), 1),
        "gc" => {
            let store = ArtifactStore::at(root).unwrap();
            let now = UtcTimestamp::now();
            let report = store.gc_with(&GcOptions::at(now)).unwrap();
            println!(
                "gc: {} records and {} payloads listed as deleted, {} bytes freed, {} bytes left",
                report.deleted.len(),
                report.blobs_deleted.len(),
                report.bytes_freed,
                report.total_bytes_after
            );
        }
        "verify" => {
            let store = ArtifactStore::at(root).unwrap();
            let report = store.verify().unwrap();
            println!(
                "verify: {} records, {} payloads hashed, {} problems listed",
                report.records,
                report.blobs,
                report.problems.len()
            );
        }
        other => {
            println!("unknown command {other:?}: build, gc or verify");
            std::process::exit(2);
        }
    }
}
