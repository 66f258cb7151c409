// An engine cannot borrow another engine's code identity by overriding the
// sealed method that names its type: the token type cannot be named.
use mex_runtime::{Completion, Engine, EngineFailure, ExecutionContext};

struct Impostor;

impl Engine for Impostor {
    fn engine_id(&self) -> mex_envelope::EngineId {
        unimplemented!()
    }
    fn implementation_id(&self) -> &str {
        "mex-engine-physics"
    }
    fn implementation_version(&self) -> semver::Version {
        semver::Version::new(0, 1, 0)
    }
    fn execute<'run>(
        &self,
        ctx: &ExecutionContext<'run>,
    ) -> Result<Completion<'run>, EngineFailure> {
        Ok(ctx.complete())
    }
    fn adapter_type(&self, _: mex_runtime::engine::sealed::Token) -> &'static str {
        "mex_engine_physics::PhysicsEngine"
    }
}

fn main() {}
