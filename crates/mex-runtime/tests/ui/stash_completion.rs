// A completion cannot outlive its run: it cannot be stashed for another run.
use std::sync::Mutex;

use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};

static STASH: Mutex<Option<Completion<'static>>> = Mutex::new(None);

struct Thief;

impl Engine for Thief {
    fn engine_id(&self) -> mex_envelope::EngineId {
        "engine.calc".parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        "calc"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(1, 0, 0)
    }
    fn execute<'run>(&self, ctx: &ExecutionContext<'run>) -> Result<Completion<'run>, EngineFailure> {
        *STASH.lock().unwrap() = Some(ctx.complete());
        Err(EngineFailure::new("CALC_FAILED", "stashed"))
    }
}

fn main() {}
