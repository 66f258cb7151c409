//! The global gates, one module each.

pub mod cap;
