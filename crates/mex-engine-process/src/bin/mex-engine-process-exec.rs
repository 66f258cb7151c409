//! `mex-sandbox-exec` shipped with the process-engine crate (its tests and
//! benchmark start it by path). Owns nothing: it is `mex_sandbox::launcher`.

fn main() -> std::process::ExitCode {
    mex_sandbox::launcher::main_from_env()
}
