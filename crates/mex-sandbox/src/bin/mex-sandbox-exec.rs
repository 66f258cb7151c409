//! `mex-sandbox-exec`: the sandbox launcher. Owns nothing but confining its
//! own process (rlimits, Landlock, `no_new_privs`) and then `exec`ing the
//! target; see `mex_sandbox::launcher`. Does not capture output, enforce wall
//! time or kill anything: the parent (`mex_sandbox::run`) does that.

fn main() -> std::process::ExitCode {
    mex_sandbox::launcher::main_from_env()
}
