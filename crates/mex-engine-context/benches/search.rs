//! Benchmark: context.search over 10^4 files.
fn main() {}
