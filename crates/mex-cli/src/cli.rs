//! Arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The MEX runtime: validate, run and audit mechanical operations.
#[derive(Debug, Parser)]
#[command(
    name = "mex",
    version,
    about,
    after_help = "Exit codes: 0 succeeded, 1 internal error, 2 usage or input error, 3 denied, 4 failed, 5 budget exceeded."
)]
pub struct Cli {
    /// The mex home (artifacts, recorder, policy). Created on first use by a
    /// command that writes; read-only commands never create it.
    #[arg(long, global = true, env = "MEX_HOME", default_value = ".mex")]
    pub home: PathBuf,
    /// Registry file (default: the shipped mechanical_engines.json).
    #[arg(long, global = true, env = "MEX_REGISTRY")]
    pub registry: Option<PathBuf>,
    /// A directory of registry overlays (`*.json`, each declaring engines
    /// of its own), merged after `registry.d/` beside the registry file.
    /// Repeatable; MEX_REGISTRY_DIR takes a `:`-separated list.
    #[arg(
        long = "registry-dir",
        global = true,
        env = "MEX_REGISTRY_DIR",
        value_delimiter = ':'
    )]
    pub registry_dirs: Vec<PathBuf>,
    /// Policy file (default: <home>/policy.json).
    #[arg(long, global = true, env = "MEX_POLICY")]
    pub policy: Option<PathBuf>,
    /// More logging on stderr (-v, -vv, -vvv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an operation (a file, or - for stdin) and print its EngineResult.
    Run {
        /// The PlannedOperation file, or `-`.
        op: PathBuf,
        /// Print the exact EngineResult JSON (schema: engine-result).
        #[arg(long)]
        json: bool,
        /// Also write a signed in-toto/SLSA provenance envelope (DSSE) to
        /// <home>/attestations/<op_id>.intoto.json (needs `mex keys init`).
        #[arg(long)]
        attest: bool,
        /// Check determinism: run a D3 operation twice in fresh workspaces
        /// (never from the cache) and fail with RUNTIME.NONDETERMINISTIC
        /// when the outputs differ. Refused for an operation below D3.
        #[arg(long)]
        check: bool,
    },
    /// Admission only: run every gate, execute nothing, print every denial.
    Validate {
        /// The PlannedOperation file, or `-`.
        op: PathBuf,
        /// Print the gate outcomes as JSON (schema: validate-listing).
        #[arg(long)]
        json: bool,
    },
    /// Artifacts: put, get, verify, gc.
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),
    /// The Flight Recorder: events, verify, export.
    #[command(subcommand)]
    Recorder(RecorderCommand),
    /// The Problems list (denials, failures, degradations, grouped).
    Problems {
        /// Print as JSON (schema: problems-listing).
        #[arg(long)]
        json: bool,
    },
    /// The registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Every engine and whether it is callable, declared only, or uncertified.
    Engines {
        /// Print as JSON (schema: engines-listing).
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance suite and certify every engine this binary can
    /// run: the shipped ones and the process engines the registry (and its
    /// overlays) declare.
    Conformance {
        /// Only this engine.
        #[arg(long)]
        engine: Option<String>,
        /// Print the outcome as JSON (schema: conformance-run).
        #[arg(long)]
        json: bool,
    },
    /// Ingest the example inputs, certify the shipped engines, and run a set
    /// of example operations through the real runtime: successes, one denial
    /// per gate, a budget overrun. Prints a summary and where to look next.
    Demo,
    /// Reclaim what crashed runs left behind (shadow workspaces, sandbox
    /// jails, store temp files; never those of live runs), then run the
    /// artifact store's gc. Prints everything removed.
    Gc {
        /// Print the report as JSON (schema: gc-report).
        #[arg(long)]
        json: bool,
    },
    /// The D3 action cache in the home: stats, clear.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Benchmark trivial D3 operations through the real runtime in a
    /// temporary home: ops/s, latency p50/p99, cache-hit p50, fsync p50.
    Bench(BenchArgs),
    /// The home's signing key (Ed25519): init, show.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The host secret store (`<home>/secrets`): keys that operations use
    /// through `secrets.use:<key_id>`; never prints a secret.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Print a signed in-toto/SLSA provenance envelope (DSSE) for an operation.
    Attest {
        /// The op id.
        op_id: String,
        /// The PlannedOperation file that ran, to include its params and
        /// resolved budget (checked against the recorded config hash).
        #[arg(long)]
        op: Option<PathBuf>,
        /// Write the envelope to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Serve every callable operation as an MCP tool (Model Context Protocol).
    Serve(crate::serve::ServeArgs),
    /// Print a JSON Schema (planned-operation, engine-result, artifact-manifest,
    /// mechanical-engines, capability-policy, recorder-event, ...).
    Schema {
        /// Schema name.
        name: String,
    },
}

/// `mex artifacts ...`
#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Store files; prints each ArtifactHandle.
    Put(PutArgs),
    /// Write an artifact's verified bytes to stdout or a file.
    Get {
        /// Artifact id.
        id: String,
        /// Output file (default: stdout).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Verify every artifact in the store.
    Verify {
        /// Print the report as JSON (schema: artifacts-verify-report).
        #[arg(long)]
        json: bool,
    },
    /// Delete expired, unpinned artifacts; prints the gc report.
    Gc {
        /// Print the report as JSON (schema: artifacts-gc-report).
        #[arg(long)]
        json: bool,
    },
}

/// `mex artifacts put`
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Files to store.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Media type (e.g. text/plain, application/json).
    #[arg(long)]
    pub media_type: Option<String>,
    /// Artifact kind (file, report, dataset_slice, ...).
    #[arg(long, default_value = "file")]
    pub kind: String,
    /// Print handles as JSON, one per line (schema: artifact-handle).
    #[arg(long)]
    pub json: bool,
}

/// `mex recorder ...`
#[derive(Debug, Subcommand)]
pub enum RecorderCommand {
    /// List events.
    Events {
        /// Only this operation.
        #[arg(long)]
        op: Option<String>,
        /// Only this engine.
        #[arg(long)]
        engine: Option<String>,
        /// Only this kind (op_received, gate_denied, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Print as JSON lines (schema: recorder-event).
        #[arg(long)]
        json: bool,
    },
    /// Verify the hash chain, say whether the home signs, and with
    /// --checkpoint check that the log still extends an earlier checkpoint.
    Verify {
        /// A signed checkpoint printed earlier by `mex recorder checkpoint`.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The public key to check it with (PEM or verifier key file);
        /// default: the home's key.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Print the report as JSON (schema: recorder-verify-report).
        #[arg(long)]
        json: bool,
    },
    /// Print a C2SP signed checkpoint (tree size, RFC 6962 root) of the log.
    Checkpoint,
    /// Print an RFC 6962 inclusion proof of one event (JSON).
    Prove {
        /// The event's seq.
        #[arg(long)]
        seq: u64,
    },
    /// Export events as JSON Lines.
    Export {
        /// JSON Lines (the only format).
        #[arg(long)]
        jsonl: bool,
    },
}

/// `mex cache ...`
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Entries, bytes, bounds, hits, misses, evictions, re-executions.
    Stats {
        /// Print the report as JSON (schema: cache-stats-report).
        #[arg(long)]
        json: bool,
    },
    /// Remove every entry (the artifacts stay in the store).
    Clear {
        /// Print the report as JSON (schema: cache-clear-report).
        #[arg(long)]
        json: bool,
    },
}

/// `mex bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Operations to run (each a cache miss).
    #[arg(long, default_value_t = 1000)]
    pub ops: usize,
    /// Threads calling the runtime at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Events appended to the recorder before the run.
    #[arg(long, default_value_t = 0)]
    pub preload_events: u64,
    /// Where the temporary home is made (default: the home's directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the report as JSON (schema: bench-report).
    #[arg(long)]
    pub json: bool,
}

/// `mex keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the home's signing key and print its public key.
    Init,
    /// Print the public key (PEM, signed-note verifier key, key id).
    Show,
}

/// `mex secrets ...`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create a key and print its public half (minisign public key or age
    /// recipient).
    Generate {
        /// The key id (what `secrets.use:<key_id>` and params.key_id name).
        key_id: String,
        /// ed25519 (sign) or age (encrypt, decrypt, sync_push).
        #[arg(long, default_value = "ed25519")]
        kind: String,
    },
    /// Store an existing key (MEX-ED25519-SECRET-KEY-… or AGE-SECRET-KEY-1…)
    /// read from --file or stdin.
    Add {
        /// The key id.
        key_id: String,
        /// Read the key from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List key ids and kinds.
    List,
    /// Print a key's public half.
    Public {
        /// The key id.
        key_id: String,
    },
    /// Delete a key.
    Remove {
        /// The key id.
        key_id: String,
    },
}

/// `mex registry ...`
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Load and validate a registry file, printing every problem.
    Check {
        /// The file (default: the registry in use).
        file: Option<PathBuf>,
        /// Print the report as JSON (schema: registry-check-report).
        #[arg(long)]
        json: bool,
    },
    /// Print the SHA-256 of engine files, as a process or wasm
    /// implementation pins them; with --overlay, rewrite the pins of that
    /// overlay file's process and wasm implementations to the files'
    /// current digests.
    Pin(crate::vector::PinArgs),
    /// Conformance vectors: `new` writes a golden vector.
    #[command(subcommand)]
    Vector(crate::vector::VectorCommand),
}

impl Command {
    /// Commands that only read: they never create a home (nor anything in
    /// it), and say so when what they would read does not exist.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Self::Schema { .. }
                | Self::Engines { .. }
                | Self::Registry(RegistryCommand::Check { .. } | RegistryCommand::Pin(_))
                | Self::Recorder(_)
                | Self::Problems { .. }
                | Self::Cache(CacheCommand::Stats { .. })
                | Self::Artifacts(ArtifactsCommand::Verify { .. } | ArtifactsCommand::Get { .. })
        )
    }
}
