//! `mex-sandbox-exec`: the sandbox launcher. Supervises a confined copy of
//! itself (rlimits, Landlock, `no_new_privs`, parent-death signal, then
//! `exec` of the target), stops it and everything below it when its parent
//! goes away or its deadline passes; see `mex_sandbox::launcher`. Does not
//! capture output: the parent (`mex_sandbox::run`) does that.

fn main() -> std::process::ExitCode {
    mex_sandbox::launcher::main_from_env()
}
