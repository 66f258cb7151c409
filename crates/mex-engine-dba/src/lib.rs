//! # mex-engine-dba: `engine.dba`
//!
//! Work in progress: the operations land in the next commits.

use mex_engine_sdk::{Fail, Request};

/// The engine this crate implements.
pub const ENGINE_ID: &str = "engine.dba";

/// The engine's entry point: dispatch on the operation.
pub fn handle(req: &mut Request) -> Result<(), Fail> {
    Err(Fail::new(
        "DBA_SQL_ERROR",
        format!("{} is not implemented yet", req.operation()),
    ))
}
