// An engine cannot answer its run with a completion issued for another run.
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};

struct Impostor;

fn other_run<'other>(ctx: &ExecutionContext<'other>) -> Completion<'other> {
    ctx.complete()
}

impl Engine for Impostor {
    fn engine_id(&self) -> mex_envelope::EngineId {
        "engine.calc".parse().unwrap()
    }
    fn implementation_id(&self) -> &str {
        "calc"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(1, 0, 0)
    }
    fn execute<'run>(&self, _ctx: &ExecutionContext<'run>) -> Result<Completion<'run>, EngineFailure> {
        let stolen: Option<&ExecutionContext<'static>> = None;
        Ok(other_run(stolen.unwrap()))
    }
}

fn main() {}
