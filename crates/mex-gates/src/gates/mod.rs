//! The global gates' rules, one module each, as functions over the operation
//! and the trusted facts that bind it. The [`crate::pipeline`] wraps them in
//! [`crate::Gate`] values that hold their context (catalog, policy, store).

pub mod budget;
pub mod cap;
pub mod det;
pub mod integrity;
pub mod provenance;
pub mod schema;
