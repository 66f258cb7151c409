// Outside code cannot build an execution context: no public constructor.
fn main() {
    let _ctx = mex_runtime::ExecutionContext::new();
}
