//! The global gates' rules, one module each, as functions over the operation
//! and the trusted facts that bind it. The [`crate::pipeline`] wraps them in
//! `Gate` values that hold their context (registry, policy, store).

pub mod budget;
pub mod cap;
pub mod det;
