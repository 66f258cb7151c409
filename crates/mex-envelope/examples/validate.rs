//! Validate PlannedOperation files with the strict front-door parser.
//!
//! `cargo run -p mex-envelope --example validate -- FILE...` prints, per file,
//! either the operation's canonical digest and config hash, or the error with
//! its JSON pointer and stable code. Exit code 0 when all are valid, 1 otherwise.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use mex_envelope::PlannedOperation;

fn main() -> std::process::ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: validate FILE...  (e.g. examples/ops/valid/*.json)");
        return std::process::ExitCode::from(2);
    }
    let mut failures = 0;
    for file in &files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{file}: cannot read: {e}");
                failures += 1;
                continue;
            }
        };
        match PlannedOperation::from_json_slice(&bytes) {
            Ok(op) => {
                let digest = op
                    .canonical_digest()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|e| e.to_string());
                let config = op
                    .config_hash()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|e| e.to_string());
                println!(
                    "ok      {file}\n        {} {} ({})\n        envelope sha256 {digest}\n        config   sha256 {config}",
                    op.engine_id, op.operation, op.determinism
                );
            }
            Err(e) => {
                failures += 1;
                println!("invalid {file}\n        [{}] {e}", e.code());
            }
        }
    }
    if failures == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
