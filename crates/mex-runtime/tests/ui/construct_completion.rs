// An engine cannot forge a completion: its fields are private.
fn main() {
    let _done = mex_runtime::Completion { run_token: uuid::Uuid::nil() };
}
