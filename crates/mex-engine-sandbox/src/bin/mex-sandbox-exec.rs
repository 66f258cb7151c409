//! `mex-sandbox-exec` shipped with the engine crate, so that a host that
//! installs mex-engine-sandbox gets the launcher next to its binaries. Owns
//! nothing: it is `mex_sandbox::launcher` (a supervisor and its confined
//! copy: rlimits, Landlock, parent-death signal, then exec).

fn main() -> std::process::ExitCode {
    mex_sandbox::launcher::main_from_env()
}
