//! Code identity: which code an engine runs, as a digest a certificate can
//! name and the runtime can check at every dispatch.
//!
//! An engine reports *what kind of code* it runs with
//! [`Engine::code_identity`](crate::Engine::code_identity):
//!
//! - [`CodeIdentity::Host`] (the default): code compiled into the running
//!   executable (a builtin engine, or the host binary run as a process
//!   engine). Its code is identified by the **host identity**: the SHA-256
//!   of the running executable's bytes, computed once per process
//!   ([`host_identity`], read through `/proc/self/exe` on Linux, so a binary
//!   replaced on disk while running is still identified by what runs).
//!   Rebuilding the host, in any way that changes its bytes, invalidates
//!   every builtin certificate.
//! - [`CodeIdentity::External`]: code outside the host binary, identified
//!   by a digest over what it runs (a process engine: its pinned program,
//!   files and interpreter name; a WebAssembly module: the module's
//!   SHA-256). `kind` names the implementation kind (`process`, `wasm`).
//!
//! The runtime turns that into a [`CodeDigest`] with [`code_digest`]: the
//! SHA-256 of the RFC 8785 form of `{"adapter": <the engine's Rust type>,
//! "code": <host identity or external digest>, "kind": <kind>}`. The
//! adapter type comes from a sealed trait method no engine can override, so
//! two engine structs never share a code digest even when both report the
//! same implementation id, version and code: an impostor struct reporting an
//! honest engine's names does not run under its certificate.
//!
//! What this cannot stop: a builtin engine is trusted code in the host's
//! address space; with `unsafe` it can do anything the host can. The digest
//! binds a certificate to *a build*, not to the good behaviour of that build.

use std::io::Read as _;
use std::sync::OnceLock;

use mex_envelope::Sha256Digest;
use sha2::{Digest as _, Sha256};

use crate::engine::Engine;

/// What kind of code an engine runs (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeIdentity {
    /// Code compiled into the running executable: identified by the host
    /// identity ([`host_identity`]).
    Host,
    /// Code the host was not built with, identified by `digest`.
    External {
        /// The implementation kind (`process`, `wasm`, ...).
        kind: String,
        /// A digest over everything that decides what the code does.
        digest: Sha256Digest,
    },
}

/// The code digest a certificate names and the runtime checks at dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeDigest {
    /// `builtin` for host code, else the external kind.
    pub kind: String,
    /// See the module docs for what it covers.
    pub digest: Sha256Digest,
}

/// The kind a [`CodeIdentity::Host`] engine's digest carries.
pub const HOST_CODE_KIND: &str = "builtin";

/// Longest executable hashed for the host identity (1 GiB).
const MAX_EXECUTABLE_BYTES: u64 = 1 << 30;

/// The host identity: SHA-256 of the running executable, computed once per
/// process (streamed, 64 KiB at a time). `Err` says why it is unavailable
/// (then no builtin engine can be certified or dispatched under a
/// certificate).
pub fn host_identity() -> Result<Sha256Digest, String> {
    static HOST: OnceLock<Result<Sha256Digest, String>> = OnceLock::new();
    HOST.get_or_init(hash_running_executable).clone()
}

fn hash_running_executable() -> Result<Sha256Digest, String> {
    // `/proc/self/exe` is the image that runs, even if the file was replaced.
    let path = if std::path::Path::new("/proc/self/exe").exists() {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(|e| {
            format!("the host identity is unavailable: cannot locate the running executable: {e}")
        })?
    };
    let file = std::fs::File::open(&path).map_err(|e| {
        format!(
            "the host identity is unavailable: cannot open the running executable {}: {e}",
            path.display()
        )
    })?;
    let mut reader = file.take(MAX_EXECUTABLE_BYTES + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = reader.read(&mut buf).map_err(|e| {
            format!(
                "the host identity is unavailable: cannot read the running executable {}: {e}",
                path.display()
            )
        })?;
        if n == 0 {
            break;
        }
        total = total.saturating_add(n as u64);
        if total > MAX_EXECUTABLE_BYTES {
            return Err(format!(
                "the host identity is unavailable: the running executable is larger than {MAX_EXECUTABLE_BYTES} bytes"
            ));
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
}

/// The code digest of `engine` (see the module docs).
pub fn code_digest(engine: &dyn Engine) -> Result<CodeDigest, String> {
    let adapter = engine.adapter_type(crate::engine::sealed::Token);
    let (kind, code) = match engine.code_identity() {
        CodeIdentity::Host => (HOST_CODE_KIND.to_owned(), host_identity()?),
        CodeIdentity::External { kind, digest } => (kind, digest),
    };
    let digest = mex_envelope::canonical::digest(&serde_json::json!({
        "adapter": adapter,
        "code": code.to_string(),
        "kind": kind,
    }))
    .map_err(|e| {
        format!(
            "cannot compute the code digest of {}: {e}",
            engine.engine_id()
        )
    })?;
    Ok(CodeDigest { kind, digest })
}
