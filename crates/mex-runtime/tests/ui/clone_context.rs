// The context is bound to one run and cannot be duplicated.
fn keep<'run>(ctx: &mex_runtime::ExecutionContext<'run>) -> mex_runtime::ExecutionContext<'run> {
    ctx.clone()
}

fn main() {}
