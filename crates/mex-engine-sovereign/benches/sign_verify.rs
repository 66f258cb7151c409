//! sign and verify of a 1 MiB input through the handler (request in a temp
//! dir laid out like the jail).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

fn main() {}
