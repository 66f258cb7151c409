//! Every engine a registry makes runnable by the `mex` binary: the shipped
//! builtin engines, plus one process-engine adapter (mex-engine-process) per
//! implementation of kind `process` in the loaded registry and its overlays
//! and per `host_process` implementation this binary hosts (see
//! `host_engines`), with the `G-SAFETY.PROCESS` gate, and (with the
//! default-on cargo feature `wasm`) one mex-engine-wasm adapter per
//! implementation of kind `wasm`. A new process or wasm engine therefore
//! needs no new binary: declare it (an overlay), certify it, run it.

use std::sync::Arc;

use mex_gates::{CapabilityPolicy, Gate};
use mex_registry::Registry;

use crate::EnginesAndGates;

/// The shipped engines and gates, and the process engines `registry`
/// declares (skipped with a warning when their jail root cannot be made).
pub fn engines_with_gates(policy: &CapabilityPolicy, registry: &Registry) -> EnginesAndGates {
    engines_with_secrets(policy, registry, None)
}

/// [`engines_with_gates`], delivering held keys from the host secret store
/// `secrets_dir` (`<home>/secrets`) to runs granted `secrets.use:<key_id>`.
pub fn engines_with_secrets(
    policy: &CapabilityPolicy,
    registry: &Registry,
    secrets_dir: Option<std::path::PathBuf>,
) -> EnginesAndGates {
    let (mut engines, mut gates) = crate::shipped_engines_with_gates(policy);
    let mut config = mex_engine_process::ProcessEngineConfig::default().with_policy(policy);
    config.sandbox.launcher = crate::launcher();
    config.secrets_dir = secrets_dir;
    config.host_program = crate::host_engines::host_program();
    let (process, gate, errors) = mex_engine_process::process_engines(registry, config);
    for e in errors {
        tracing::warn!("process engine unavailable: {e}");
    }
    if !process.is_empty() {
        gates.push(gate as Arc<dyn Gate>);
    }
    engines.extend(process);
    #[cfg(feature = "wasm")]
    {
        let (wasm, errors) =
            mex_engine_wasm::wasm_engines(registry, mex_engine_wasm::WasmEngineConfig::default());
        for e in errors {
            tracing::warn!("wasm engine unavailable: {e}");
        }
        engines.extend(wasm);
    }
    (engines, gates)
}
