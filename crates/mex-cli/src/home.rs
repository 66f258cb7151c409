//! The mex home on disk and the objects opened from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mex_artifacts::ArtifactStore;
use mex_gates::{CapabilityPolicy, MAX_POLICY_BYTES};
use mex_recorder::{FlightRecorder, SqliteRecorder};
use mex_registry::Registry;
use mex_runtime::{Engine, MexRuntime};

use crate::CliError;
use crate::cli::Cli;

/// Paths and opened stores of one invocation.
pub struct Home {
    pub root: PathBuf,
    pub registry_path: PathBuf,
    /// Overlay directories (`--registry-dir`), after `registry.d/`.
    pub registry_dirs: Vec<PathBuf>,
    pub policy_path: PathBuf,
    /// True when the policy was named (`--policy`, `MEX_POLICY`): then it
    /// must exist. Otherwise a home without `policy.json` (a read-only
    /// command on a home not created yet) reads as the default policy.
    pub policy_named: bool,
}

/// The shipped registry: `./mechanical_engines.json` when run from a
/// checkout, else the one next to this crate's workspace.
fn default_registry() -> PathBuf {
    let local = PathBuf::from(mex_registry::REGISTRY_FILE_NAME);
    if local.is_file() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(mex_registry::REGISTRY_FILE_NAME)
}

impl Home {
    /// Resolve the paths of the home without touching the disk: what
    /// read-only commands use, so that they never create a home.
    pub fn locate(cli: &Cli) -> Self {
        let root = cli.home.clone();
        let policy_path = cli
            .policy
            .clone()
            .unwrap_or_else(|| root.join("policy.json"));
        let registry_path = cli.registry.clone().unwrap_or_else(default_registry);
        Self {
            root,
            registry_path,
            registry_dirs: cli.registry_dirs.clone(),
            policy_path,
            policy_named: cli.policy.is_some(),
        }
    }

    /// For a read-only command: refuse, in plain words, when `what` (a part
    /// of the home: the recorder database, the artifact store) does not
    /// exist, instead of creating an empty one to read.
    pub fn require(&self, path: &Path, what: &str, command: &str) -> Result<(), CliError> {
        if path.exists() {
            return Ok(());
        }
        let message = if self.root.is_dir() {
            format!(
                "the mex home {} has no {what} yet ({} does not exist), so `mex {command}` has nothing to read; nothing was created. Run an operation with this home first, or pass --home DIR (or set MEX_HOME) to the home you used",
                self.root.display(),
                path.display()
            )
        } else {
            format!(
                "there is no mex home at {}, so `mex {command}` has nothing to read; nothing was created. Pass --home DIR (or set MEX_HOME) to the home you used; a home is created by the first `mex run`, `mex validate`, `mex artifacts put` or `mex demo`",
                self.root.display()
            )
        };
        Err(CliError::usage(message))
    }

    /// The Flight Recorder database file.
    pub fn recorder_path(&self) -> PathBuf {
        self.root.join(mex_recorder::DB_FILE_NAME)
    }

    /// The artifact store directory.
    pub fn store_path(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// Resolve paths and create the home (with a default policy) if needed.
    pub fn prepare(cli: &Cli) -> Result<Self, CliError> {
        let root = cli.home.clone();
        std::fs::create_dir_all(&root)
            .map_err(|e| CliError::usage(format!("cannot create the mex home {}: {e}; pass --home DIR or set MEX_HOME to a writable directory", root.display())))?;
        let policy_path = cli
            .policy
            .clone()
            .unwrap_or_else(|| root.join("policy.json"));
        if cli.policy.is_none() && !policy_path.exists() {
            let text = serde_json::to_string_pretty(&CapabilityPolicy::default_non_sensitive())
                .map_err(|e| {
                    CliError::internal(format!("cannot render the default policy: {e}"))
                })?;
            std::fs::write(&policy_path, text + "\n").map_err(|e| {
                CliError::usage(format!(
                    "cannot write the default policy {}: {e}",
                    policy_path.display()
                ))
            })?;
            tracing::info!(
                "created {} with a default policy (non-sensitive capabilities only)",
                policy_path.display()
            );
        }
        let registry_path = cli.registry.clone().unwrap_or_else(default_registry);
        Ok(Self {
            root,
            registry_path,
            registry_dirs: cli.registry_dirs.clone(),
            policy_path,
            policy_named: cli.policy.is_some(),
        })
    }

    pub fn registry(&self) -> Result<Arc<Registry>, CliError> {
        Registry::load_with_overlays(&self.registry_path, &self.registry_dirs)
            .map(Arc::new)
            .map_err(|e| {
                CliError::usage(format!(
                    "the registry {} does not load:\n{e}",
                    self.registry_path.display()
                ))
            })
    }

    pub fn policy(&self) -> Result<CapabilityPolicy, CliError> {
        let path = &self.policy_path;
        if !self.policy_named && !path.exists() {
            // A home not created yet (read-only commands never create one):
            // the policy a new home would get, without writing it.
            return Ok(CapabilityPolicy::default_non_sensitive());
        }
        let unreadable = |e: std::io::Error| {
            CliError::usage(format!(
                "cannot read the policy {}: {e}; check that it is a readable JSON file (schema: schemas/capability-policy.schema.json), or remove it from the home to get the default policy",
                path.display()
            ))
        };
        let bytes = match mex_envelope::json::read_file_at_most(path, MAX_POLICY_BYTES) {
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(CliError::usage(format!(
                    "the policy {} is larger than {MAX_POLICY_BYTES} bytes, so it is not read; a policy is a small JSON file: check the path",
                    path.display()
                )));
            }
            other => other.map_err(unreadable)?,
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            CliError::usage(format!(
                "the policy {} is not UTF-8 (invalid byte at offset {}); save it as UTF-8 JSON",
                path.display(),
                e.utf8_error().valid_up_to()
            ))
        })?;
        CapabilityPolicy::from_json_str(&text)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
    }

    pub fn store(&self) -> Result<Arc<ArtifactStore>, CliError> {
        let dir = self.store_path();
        ArtifactStore::at(&dir).map(Arc::new).map_err(|e| {
            CliError::internal(format!(
                "cannot open the artifact store {}: {e}",
                dir.display()
            ))
        })
    }

    /// The recorder, keyed with the home's writer key when it has one
    /// (read-only commands never create the key).
    pub fn recorder(&self) -> Result<Arc<dyn FlightRecorder>, CliError> {
        let keyed = self.root.join(mex_recorder::tag::KEY_FILE_NAME).exists();
        self.open_recorder(keyed)
    }

    /// The recorder as the runtime's writer: the home's writer key is
    /// created if missing, and every event written is tagged.
    pub fn writer_recorder(&self) -> Result<Arc<dyn FlightRecorder>, CliError> {
        self.open_recorder(true)
    }

    fn open_recorder(&self, keyed: bool) -> Result<Arc<dyn FlightRecorder>, CliError> {
        // Every held key, in every form, is removed before anything is recorded.
        let mut redactor = mex_recorder::Redactor::new();
        for value in crate::secrets::redaction_values(&self.root) {
            redactor = redactor.with_secret_value(value.as_str());
        }
        std::fs::create_dir_all(&self.root).map_err(|e| {
            CliError::internal(format!(
                "cannot create the home {}: {e}",
                self.root.display()
            ))
        })?;
        let opened = if keyed {
            SqliteRecorder::open_keyed_with(&self.root, redactor)
        } else {
            SqliteRecorder::open_file_with(self.root.join(mex_recorder::DB_FILE_NAME), redactor)
        };
        opened
            .map(|r| Arc::new(r) as Arc<dyn FlightRecorder>)
            .map_err(|e| CliError::internal(format!("cannot open the Flight Recorder: {e}")))
    }

    /// Where this home's runtime makes shadow workspaces (a root off the
    /// home, from which the home cannot be derived); the conformance harness
    /// runs engines under the same root.
    pub fn workspace_root(&self) -> PathBuf {
        mex_runtime::reclaim::default_workspace_root(&self.store_path())
    }

    /// The runtime with every engine this binary ships.
    pub fn runtime(&self) -> Result<MexRuntime, CliError> {
        let policy = self.policy()?;
        let registry = self.registry()?;
        let (engines, gates) = mex_cli::process_engines::engines_with_secrets(
            &policy,
            &registry,
            Some(crate::secrets::dir(&self.root)),
        );
        let mut builder = MexRuntime::builder()
            .registry(registry)
            .policy(policy)
            .store(self.store()?)
            .recorder(self.writer_recorder()?)
            .certifier(Arc::new(self.certifier()));
        for engine in engines {
            builder = builder.engine(engine);
        }
        for gate in gates {
            builder = builder.engine_gate(gate);
        }
        builder
            .build()
            .map_err(|e| CliError::internal(format!("cannot build the runtime: {e}")))
    }
}

impl Home {
    /// Where certificates live.
    pub fn certificates(&self) -> PathBuf {
        self.root.join("certificates")
    }

    /// Certificates in the home, checked against the registry in use.
    pub fn certifier(&self) -> mex_conformance::CertificateCertifier {
        mex_conformance::CertificateCertifier::new(&self.registry_path, self.certificates())
            .with_registry_dirs(self.registry_dirs.clone())
            .with_trusted_key(crate::trust::trusted_certificate_key(self))
    }
}

/// The engines this binary ships (see `mex_cli::shipped_engines`).
pub fn engines() -> Vec<Arc<dyn Engine>> {
    mex_cli::shipped_engines()
}
