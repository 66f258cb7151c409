//! Certificates and the certificate-backed [`Certifier`].
//!
//! A passing run writes `<dir>/<engine_id>/<implementation_id>-<version>.json`
//! (a [`Certificate`]) and, next to it, `<...>.report.json` (the report it
//! certifies). [`CertificateCertifier`] reads the certificate at dispatch and
//! refuses (the runtime then answers `RUNTIME.ENGINE_NOT_CERTIFIED`) when it
//! is missing, unreadable, for another engine, implementation or version,
//! from another suite version, or when the engine's registry entry has
//! changed since (its digest differs).
//!
//! Signatures: when the home has a signing key, the certificate file is
//! signed as a detached DSSE envelope `<...>.json.sig` (payload type
//! [`CERTIFICATE_PAYLOAD_TYPE`], payload = the exact bytes of the
//! certificate file). A certifier given the home's public key
//! ([`CertificateCertifier::with_trusted_key`]) refuses a certificate whose
//! signature is missing, by another key, or over other bytes (one flipped
//! byte is enough). Without a key, certificates are unsigned, as before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mex_envelope::{EngineId, Sha256Digest, UtcTimestamp};
use mex_runtime::{Certifier, CodeDigest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::harness::SuiteOutcome;
use crate::report::ConformanceReport;
use crate::{ConformanceError, SUITE_VERSION};

/// The certificate format version.
pub const CERTIFICATE_VERSION: &str = "mex-certificate-2";

/// DSSE payload type of a certificate's detached signature.
pub const CERTIFICATE_PAYLOAD_TYPE: &str = "application/vnd.mex.certificate+json";

/// The detached signature of the certificate at `certificate`:
/// `<certificate>.sig` (a DSSE envelope).
pub fn signature_path(certificate: &Path) -> PathBuf {
    let mut name = certificate.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Proof that one engine implementation passed the suite against one
/// registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Always [`CERTIFICATE_VERSION`].
    pub certificate_version: String,
    /// Engine id.
    pub engine_id: String,
    /// Implementation id.
    pub implementation_id: String,
    /// Implementation version.
    pub implementation_version: String,
    /// Digest of the engine's registry entry at certification.
    pub registry_entry_digest: Sha256Digest,
    /// The kind of code certified (`builtin`, `process`, ...).
    pub code_kind: String,
    /// The code digest of the engine that passed (`mex_runtime::code_digest`).
    pub code_digest: Sha256Digest,
    /// Suite version that passed.
    pub suite_version: String,
    /// Digest (RFC 8785) of the passing report.
    pub report_digest: Sha256Digest,
    /// When it was issued (informational; not part of any check).
    pub issued_at: UtcTimestamp,
}

/// The certificate path for an implementation under `dir`.
pub fn certificate_path(
    dir: &Path,
    engine: &str,
    implementation_id: &str,
    version: &semver::Version,
) -> PathBuf {
    dir.join(engine)
        .join(format!("{implementation_id}-{version}.json"))
}

/// The digest of an engine's registry entry: SHA-256 of the RFC 8785 form of
/// `{"entry": <the engine's object in the registry file>, "files": {<path>:
/// <sha256 of its bytes>}}`, where `files` covers every file the entry
/// references (params schemas, vector operation files, payloads). Editing the
/// entry or any file it references therefore invalidates a certificate.
///
/// The entry is read from the file that declares the engine in effect: an
/// overlay (`registry.d/*.json` beside `registry_file`) when one declares
/// it, else `registry_file`; file paths resolve against that file's
/// directory.
pub fn registry_entry_digest(
    registry_file: &Path,
    engine: &str,
) -> Result<Sha256Digest, ConformanceError> {
    registry_entry_digest_with(registry_file, &[], engine)
}

/// [`registry_entry_digest`], with overlays also read from `extra_dirs`
/// (as `Registry::load_with_overlays` does).
pub fn registry_entry_digest_with(
    registry_file: &Path,
    extra_dirs: &[PathBuf],
    engine: &str,
) -> Result<Sha256Digest, ConformanceError> {
    let overlays =
        mex_registry::internal::overlay_files(registry_file, extra_dirs).map_err(|e| {
            ConformanceError::Registry {
                path: registry_file.to_path_buf(),
                message: e.to_string(),
            }
        })?;
    for overlay in overlays {
        if let Ok(digest) = entry_digest_in(&overlay, engine) {
            return Ok(digest);
        }
    }
    entry_digest_in(registry_file, engine)
}

/// The files an engine's registry entry references (params schemas,
/// operation files), as paths, from the overlay or registry file that holds
/// the entry: what [`registry_entry_digest_with`] hashes besides the entry.
pub(crate) fn registry_entry_files(
    registry_file: &Path,
    extra_dirs: &[PathBuf],
    engine: &str,
) -> Vec<PathBuf> {
    let overlays =
        mex_registry::internal::overlay_files(registry_file, extra_dirs).unwrap_or_default();
    for file in overlays
        .iter()
        .chain(std::iter::once(&registry_file.to_path_buf()))
    {
        if let Ok((entry, base)) = entry_in(file, engine) {
            let mut refs = Vec::new();
            collect_files(&entry, &mut refs);
            return refs.iter().map(|rel| base.join(rel)).collect();
        }
    }
    Vec::new()
}

/// The raw entry of `engine` in `registry_file`, and the directory its
/// referenced files are relative to.
fn entry_in(registry_file: &Path, engine: &str) -> Result<(Value, PathBuf), ConformanceError> {
    let text = std::fs::read_to_string(registry_file)
        .map_err(|e| ConformanceError::io("read registry", registry_file, e))?;
    let doc: Value =
        mex_envelope::json::from_str(&text).map_err(|e| ConformanceError::Registry {
            path: registry_file.to_path_buf(),
            message: e.to_string(),
        })?;
    let entry = doc
        .get("engines")
        .and_then(Value::as_array)
        .and_then(|engines| {
            engines
                .iter()
                .find(|e| e.get("engine_id").and_then(Value::as_str) == Some(engine))
        })
        .cloned()
        .ok_or_else(|| ConformanceError::Registry {
            path: registry_file.to_path_buf(),
            message: format!("no engine {engine} in this file"),
        })?;
    let base = registry_file
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok((entry, base))
}

fn entry_digest_in(registry_file: &Path, engine: &str) -> Result<Sha256Digest, ConformanceError> {
    let (entry, base) = entry_in(registry_file, engine)?;
    let entry = &entry;
    let mut refs = Vec::new();
    collect_files(entry, &mut refs);
    let mut files = BTreeMap::new();
    for rel in refs {
        let path = base.join(&rel);
        let bytes = std::fs::read(&path)
            .map_err(|e| ConformanceError::io("read registry file", &path, e))?;
        files.insert(rel, Sha256Digest::of(&bytes).to_string());
    }
    mex_envelope::canonical::digest(&serde_json::json!({"entry": entry, "files": files})).map_err(
        |e| ConformanceError::Format {
            what: format!("registry entry of {engine}"),
            message: e.to_string(),
        },
    )
}

fn collect_files(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("file" | "operation_file", Value::String(s)) => out.push(s.clone()),
                    _ => collect_files(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_files(i, out)),
        _ => {}
    }
}

/// Write the certificate of a suite run that passed (and its report next to
/// it); refuses one that failed. Only the harness makes a [`SuiteOutcome`],
/// so no other report can become a certificate.
///
/// With `key` (the home's), the certificate is also signed: a detached DSSE
/// envelope at [`signature_path`] over the certificate's exact bytes, which
/// name the report's digest, so the signature covers the report too.
/// Without a key, a stale signature is removed.
pub fn write_certificate(
    dir: &Path,
    outcome: &SuiteOutcome,
    key: Option<&mex_attest::HomeKey>,
) -> Result<(Certificate, PathBuf), ConformanceError> {
    let report = outcome.report();
    if !report.passed {
        return Err(ConformanceError::Subject {
            engine: report.engine_id.clone(),
            message: format!(
                "the report has {} failed case(s); fix them and run the suite again (no certificate written)",
                report.summary.failed
            ),
        });
    }
    let version = semver::Version::parse(&report.implementation_version).map_err(|e| {
        ConformanceError::Format {
            what: "report.implementation_version".into(),
            message: e.to_string(),
        }
    })?;
    let cert = Certificate {
        certificate_version: CERTIFICATE_VERSION.into(),
        engine_id: report.engine_id.clone(),
        implementation_id: report.implementation_id.clone(),
        implementation_version: report.implementation_version.clone(),
        registry_entry_digest: report.registry_entry_digest,
        code_kind: outcome.code().kind.clone(),
        code_digest: outcome.code().digest,
        suite_version: report.suite_version.clone(),
        report_digest: report.digest()?,
        issued_at: UtcTimestamp::now(),
    };
    let path = certificate_path(dir, &report.engine_id, &report.implementation_id, &version);
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)
        .map_err(|e| ConformanceError::io("create certificate directory", parent, e))?;
    let json = |v: &dyn erased::Json| v.pretty();
    let report_path = report_path(&path);
    write_atomic(&report_path, json(report)?.as_bytes())?;
    let cert_text = json(&cert)?;
    write_atomic(&path, cert_text.as_bytes())?;
    let sig_path = signature_path(&path);
    match key {
        Some(key) => {
            let envelope =
                mex_attest::Envelope::sign(CERTIFICATE_PAYLOAD_TYPE, cert_text.as_bytes(), key);
            let text = envelope.to_json().map_err(|e| ConformanceError::Format {
                what: "certificate signature".into(),
                message: e.to_string(),
            })?;
            write_atomic(&sig_path, text.as_bytes())?;
        }
        None => match std::fs::remove_file(&sig_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ConformanceError::io("remove stale signature", &sig_path, e));
            }
            _ => {}
        },
    }
    Ok((cert, path))
}

/// The report written next to the certificate at `certificate`:
/// `<...>.report.json`.
pub fn report_path(certificate: &Path) -> PathBuf {
    certificate.with_extension("report.json")
}

mod erased {
    use crate::ConformanceError;

    /// Pretty JSON for the two document types.
    pub(super) trait Json {
        fn pretty(&self) -> Result<String, ConformanceError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn pretty(&self) -> Result<String, ConformanceError> {
            serde_json::to_string_pretty(self)
                .map(|mut s| {
                    s.push('\n');
                    s
                })
                .map_err(|e| ConformanceError::Format {
                    what: "certificate".into(),
                    message: e.to_string(),
                })
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ConformanceError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| ConformanceError::io("create temporary file in", dir, e))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .map_err(|e| ConformanceError::io("write", tmp.path().to_path_buf(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| ConformanceError::io("sync", path, e))?;
    tmp.persist(path)
        .map_err(|e| ConformanceError::io("write", path, e.error))?;
    Ok(())
}

/// Read a certificate file, through the strict JSON reader
/// (`mex_envelope::json`): a duplicate member (two `registry_entry_digest`s,
/// say) is refused with its pointer and line instead of the last one winning.
pub fn read_certificate(path: &Path) -> Result<Certificate, ConformanceError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConformanceError::io("read certificate", path, e))?;
    let format = |message: String| ConformanceError::Format {
        what: format!("certificate {}", path.display()),
        message,
    };
    let value = mex_envelope::json::from_str(&text).map_err(|e| format(e.to_string()))?;
    serde_json::from_value(value).map_err(|e| format(e.to_string()))
}

/// A [`Certifier`] backed by certificate files. Give it to the runtime with
/// `MexRuntime::builder().certifier(Arc::new(CertificateCertifier::new(..)))`.
///
/// A full check reads the certificate, its signature and report, the
/// registry file and its overlays (a few milliseconds). A check that passed
/// is remembered while none of those files (and overlay directories) has
/// changed by `stat`, so a registry or certificate edited while the runtime
/// runs is still noticed at the next dispatch (see the `memo` module for
/// the rule and its window for files changed moments ago).
#[derive(Debug, Clone)]
pub struct CertificateCertifier {
    registry_file: PathBuf,
    registry_dirs: Vec<PathBuf>,
    dir: PathBuf,
    trusted_key: Option<mex_attest::PublicKey>,
    memo: std::sync::Arc<crate::memo::Memo>,
}

impl CertificateCertifier {
    /// Certificates under `dir`, checked against the registry file
    /// `registry_file` (the `mechanical_engines.json` the runtime loaded).
    pub fn new(registry_file: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Self {
            registry_file: registry_file.into(),
            registry_dirs: Vec::new(),
            dir: dir.into(),
            trusted_key: None,
            memo: std::sync::Arc::default(),
        }
    }

    /// Every file and overlay directory a check of this certificate reads.
    fn read_by_check(&self, certificate: &Path) -> Vec<PathBuf> {
        let mut paths = vec![certificate.to_path_buf(), report_path(certificate)];
        if self.trusted_key.is_some() {
            paths.push(signature_path(certificate));
        }
        paths.push(self.registry_file.clone());
        let beside = match self.registry_file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join(mex_registry::OVERLAY_DIR_NAME),
            _ => PathBuf::from(mex_registry::OVERLAY_DIR_NAME),
        };
        paths.push(beside);
        paths.extend(self.registry_dirs.iter().cloned());
        paths.extend(
            mex_registry::internal::overlay_files(&self.registry_file, &self.registry_dirs)
                .unwrap_or_default(),
        );
        paths
    }

    /// Also read overlays from these directories (`mex --registry-dir`), as
    /// the runtime's registry was loaded.
    pub fn with_registry_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.registry_dirs = dirs;
        // What passed under other settings proves nothing under these.
        self.memo = std::sync::Arc::default();
        self
    }

    /// Accept only certificates signed by `key` (the home's public key);
    /// `None` accepts unsigned certificates, as a home without a key does.
    pub fn with_trusted_key(mut self, key: Option<mex_attest::PublicKey>) -> Self {
        self.trusted_key = key;
        // What passed without this key (or with another) proves nothing now.
        self.memo = std::sync::Arc::default();
        self
    }

    /// Remember passed checks only once the files they read are `window`
    /// old (default 2 s). For tests, which cannot age a file's ctime.
    #[doc(hidden)]
    pub fn with_memo_window(mut self, window: std::time::Duration) -> Self {
        self.memo = std::sync::Arc::new(crate::memo::Memo::with_window(window));
        self
    }

    /// The certificate directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn verify(
        &self,
        engine: &EngineId,
        implementation_id: &str,
        version: &semver::Version,
        code: &CodeDigest,
    ) -> Result<(), String> {
        let path = certificate_path(&self.dir, engine.as_str(), implementation_id, version);
        let rerun = format!(
            "re-certify with `mex conformance --engine {engine}` (with the same --registry and --registry-dir)"
        );
        if !path.exists() {
            return Err(format!(
                "{engine} ({implementation_id} {version}) has no conformance certificate at {}; run `mex conformance --engine {engine}` (with the same --registry and --registry-dir) to certify it",
                path.display()
            ));
        }
        if let Some(key) = &self.trusted_key {
            check_signature(&path, key).map_err(|e| format!("{e}; {rerun}"))?;
        }
        let cert = read_certificate(&path).map_err(|e| format!("{e}; {rerun}"))?;
        if cert.certificate_version != CERTIFICATE_VERSION {
            return Err(format!(
                "certificate {} has format {}, this runtime reads {CERTIFICATE_VERSION}; {rerun}",
                path.display(),
                cert.certificate_version
            ));
        }
        if cert.engine_id != engine.as_str()
            || cert.implementation_id != implementation_id
            || cert.implementation_version != version.to_string()
        {
            return Err(format!(
                "certificate {} is for {} ({} {}), not {engine} ({implementation_id} {version}); {rerun}",
                path.display(),
                cert.engine_id,
                cert.implementation_id,
                cert.implementation_version
            ));
        }
        if cert.suite_version != SUITE_VERSION {
            return Err(format!(
                "certificate {} was issued by suite {}, the current suite is {SUITE_VERSION}; {rerun}",
                path.display(),
                cert.suite_version
            ));
        }
        let current =
            registry_entry_digest_with(&self.registry_file, &self.registry_dirs, engine.as_str())
                .map_err(|e| format!("{e}; {rerun}"))?;
        if cert.registry_entry_digest != current {
            return Err(format!(
                "the registry entry of {engine} changed since certification (certified {}, now {current}); {rerun}",
                cert.registry_entry_digest
            ));
        }
        if cert.code_kind != code.kind || cert.code_digest != code.digest {
            return Err(format!(
                "certificate {} was issued for other code than the engine about to run: it certifies {} code {}, this engine is {} code {} (a rebuilt host, changed pinned files, or another engine reporting the same implementation id and version); {rerun}",
                path.display(),
                cert.code_kind,
                cert.code_digest,
                code.kind,
                code.digest
            ));
        }
        check_report(&path, &cert).map_err(|e| format!("{e}; {rerun}"))
    }
}

/// The report next to the certificate must be the one it certifies (its
/// RFC 8785 digest is the certificate's `report_digest`), must have passed
/// with no failed case, and must name what the certificate names.
fn check_report(path: &Path, cert: &Certificate) -> Result<(), String> {
    let report_file = report_path(path);
    let text = std::fs::read_to_string(&report_file).map_err(|e| {
        format!(
            "the report of certificate {} is unreadable at {}: {e}",
            path.display(),
            report_file.display()
        )
    })?;
    let value = mex_envelope::json::from_str(&text)
        .map_err(|e| format!("report {}: {e}", report_file.display()))?;
    let report: ConformanceReport = serde_json::from_value(value)
        .map_err(|e| format!("report {}: {e}", report_file.display()))?;
    let digest = report
        .digest()
        .map_err(|e| format!("report {}: {e}", report_file.display()))?;
    if digest != cert.report_digest {
        return Err(format!(
            "report {} is not the report certificate {} certifies (its digest is {digest}, the certificate names {}): it was edited after certification",
            report_file.display(),
            path.display(),
            cert.report_digest
        ));
    }
    let failed = report
        .cases
        .iter()
        .filter(|c| c.verdict == crate::Verdict::Fail)
        .count();
    let names_same = report.engine_id == cert.engine_id
        && report.implementation_id == cert.implementation_id
        && report.implementation_version == cert.implementation_version
        && report.suite_version == cert.suite_version
        && report.registry_entry_digest == cert.registry_entry_digest
        && report.code_kind == cert.code_kind
        && report.code_digest == cert.code_digest;
    if !report.passed || report.summary.failed != 0 || failed != 0 || !names_same {
        return Err(format!(
            "report {} does not back certificate {}: it must have passed with no failed case and name the same engine, implementation, suite, registry entry and code",
            report_file.display(),
            path.display()
        ));
    }
    Ok(())
}

/// The certificate file's detached signature must be by `key` and over its
/// exact bytes.
fn check_signature(path: &Path, key: &mex_attest::PublicKey) -> Result<(), String> {
    let sig_path = signature_path(path);
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read certificate {}: {e}", path.display()))?;
    let sig = std::fs::read(&sig_path).map_err(|e| {
        format!(
            "certificate {} is unsigned ({} unreadable: {e}), and this home has a signing key, so only certificates it signed are accepted",
            path.display(),
            sig_path.display()
        )
    })?;
    let payload = mex_attest::Envelope::from_json(&sig)
        .and_then(|env| env.verify(CERTIFICATE_PAYLOAD_TYPE, key))
        .map_err(|e| {
            format!(
                "certificate signature {} does not verify with this home's key {}: {e}",
                sig_path.display(),
                key.key_id()
            )
        })?;
    if payload != bytes {
        return Err(format!(
            "certificate {} differs from the bytes its signature covers: it was edited after signing",
            path.display()
        ));
    }
    Ok(())
}

impl Certifier for CertificateCertifier {
    fn check(
        &self,
        engine: &EngineId,
        implementation_id: &str,
        version: &semver::Version,
        code: &CodeDigest,
    ) -> Result<(), String> {
        let key = (
            engine.to_string(),
            implementation_id.to_owned(),
            version.to_string(),
            code.kind.clone(),
            code.digest.to_string(),
        );
        if self.memo.still_passes(&key) {
            return Ok(());
        }
        let started = std::time::SystemTime::now();
        self.verify(engine, implementation_id, version, code)?;
        let path = certificate_path(&self.dir, engine.as_str(), implementation_id, version);
        let mut read = self.read_by_check(&path);
        read.extend(registry_entry_files(
            &self.registry_file,
            &self.registry_dirs,
            engine.as_str(),
        ));
        self.memo.remember(key, read, started);
        Ok(())
    }
}

#[cfg(test)]
mod strict_reading_tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn a_certificate_naming_a_member_twice_is_refused_with_pointer_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.json");
        let digest = "0".repeat(64);
        let other = "1".repeat(64);
        let text = format!(
            "{{\"certificate_version\": \"mex-certificate-2\", \"engine_id\": \"engine.physics\",\n\"implementation_id\": \"x\", \"implementation_version\": \"0.1.0\",\n\"code_kind\": \"builtin\", \"code_digest\": \"{digest}\",\n\"registry_entry_digest\": \"{digest}\",\n\"registry_entry_digest\": \"{other}\",\n\"suite_version\": \"s\", \"report_digest\": \"{digest}\", \"issued_at\": \"2026-01-01T00:00:00Z\"}}"
        );
        std::fs::write(&path, &text).unwrap();
        let err = read_certificate(&path).unwrap_err().to_string();
        assert!(
            err.contains("duplicate key \"registry_entry_digest\""),
            "{err}"
        );
        assert!(err.contains("/registry_entry_digest"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        // Without the duplicate it reads.
        let once = text.replace(&format!("\"registry_entry_digest\": \"{other}\",\n"), "");
        std::fs::write(&path, once).unwrap();
        assert_eq!(
            read_certificate(&path)
                .unwrap()
                .registry_entry_digest
                .to_string(),
            digest
        );
    }

    #[test]
    fn a_registry_naming_a_member_twice_has_no_entry_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mechanical_engines.json");
        std::fs::write(
            &path,
            r#"{"engines": [{"engine_id": "engine.a", "engine_id": "engine.b"}]}"#,
        )
        .unwrap();
        let err = registry_entry_digest(&path, "engine.b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/engines/0/engine_id"), "{err}");
    }
}
