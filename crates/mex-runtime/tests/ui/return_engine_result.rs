// An engine cannot hand back a result it built itself (status, provenance,
// outputs): execute must return the completion its context issued.
use mex_envelope::EngineResult;
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};

struct Forger(EngineResult);

impl Engine for Forger {
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
        Ok(self.0.clone())
    }
}

fn main() {}
