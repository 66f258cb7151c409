//! profile_dataset over 10^5 CSV rows (the figure docs/engines/wrangler.md quotes).
#![allow(clippy::unwrap_used, missing_docs, reason = "bench")]
fn main() {}
