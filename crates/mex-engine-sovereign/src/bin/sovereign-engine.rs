//! engine.sovereign as a stand-alone `mex-engine-1` process engine (for a
//! `process` declaration by overlay; the shipped form is `host_process`).

fn main() -> std::process::ExitCode {
    mex_engine_sdk::run(mex_engine_sovereign::handle)
}
