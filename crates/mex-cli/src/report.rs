//! What `mex ... --json` prints, for the commands whose output is a report or
//! a listing of the CLI's own making. Each type has a published JSON Schema
//! (see [`crate::published_schemas`]); reports the library crates already
//! publish (EngineResult, recorder events, problems, the recorder's verify
//! report, conformance reports) are printed as they are.
//!
//! Reports are JSON objects; listings are JSON arrays.

use mex_envelope::{ArtifactHandle, GateDenial, GateId, Sha256Digest, UtcTimestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `mex artifacts verify --json`: the outcome of a walk over the whole store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsVerifyReport {
    /// True when no problem was found.
    pub ok: bool,
    /// The store's root directory.
    pub store: String,
    /// Artifact records examined.
    pub records: u64,
    /// Payload files hashed.
    pub payloads: u64,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// The problems found, the first 1,000 of the store's own (then any
    /// the Flight Recorder adds); empty when the store is sound.
    pub problems: Vec<StoreProblem>,
    /// Problems found beyond those listed (a store's report stays bounded).
    #[serde(default)]
    pub problems_omitted: u64,
}

/// One problem in the artifact store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreProblem {
    /// What kind of problem.
    pub kind: StoreProblemKind,
    /// The artifact concerned, when a record is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<Uuid>,
    /// The file concerned.
    pub path: String,
    /// What is wrong, in plain words.
    pub message: String,
    /// What to do about it.
    pub action: String,
}

/// The kinds of store problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreProblemKind {
    /// A record's manifest is missing, unreadable or invalid.
    ManifestInvalid,
    /// A record's payload file is missing.
    PayloadMissing,
    /// A payload has the wrong size.
    SizeMismatch,
    /// A payload has the right size but the wrong hash.
    HashMismatch,
    /// A bundle's index is not a canonical bundle index.
    BundleInvalid,
    /// A file that does not belong in the store.
    Stray,
    /// A payload could not be read.
    Unreadable,
    /// A record no `artifact_written` event in the Flight Recorder accounts
    /// for: it appeared behind the runtime's back.
    Unaccounted,
    /// A kind this version of mex does not name yet.
    Other,
}

/// `mex artifacts gc --json`: what gc removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsGcReport {
    /// The time expiry was judged against.
    pub now: UtcTimestamp,
    /// Artifact records removed, with reasons (the first 1,000; see
    /// `deleted_count`).
    pub deleted: Vec<GcDeleted>,
    /// How many artifact records were removed in all.
    #[serde(default)]
    pub deleted_count: u64,
    /// Payloads removed because nothing referenced them any more (the first
    /// 1,000; see `payloads_deleted_count`).
    pub payloads_deleted: Vec<GcPayload>,
    /// How many payloads were removed in all.
    #[serde(default)]
    pub payloads_deleted_count: u64,
    /// Payload bytes freed.
    pub bytes_freed: u64,
    /// Leftovers of interrupted puts removed.
    pub temp_entries_removed: u64,
    /// Payload bytes still referenced after gc.
    pub total_bytes_after: u64,
    /// Whether a size quota was asked for and could not be met.
    pub quota_unmet: bool,
    /// Notes, e.g. why payload deletion was skipped (the first 1,000).
    pub notes: Vec<String>,
    /// Notes beyond those listed.
    #[serde(default)]
    pub notes_omitted: u64,
    /// The gc-report artifact gc stored.
    pub report: ArtifactHandle,
}

/// One artifact record gc removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcDeleted {
    /// The artifact.
    pub artifact_id: Uuid,
    /// Its content hash.
    pub content_hash: Sha256Digest,
    /// Its size.
    pub size_bytes: u64,
    /// When it was created.
    pub created_at: UtcTimestamp,
    /// Why it was removed.
    pub reason: String,
}

/// One payload gc removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcPayload {
    /// Its hash.
    pub content_hash: Sha256Digest,
    /// Its size.
    pub size_bytes: u64,
}

/// `mex engines --json`: one entry per engine in the registry.
pub type EnginesListing = Vec<EngineListing>;

/// One engine and whether it can be called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineListing {
    /// The engine id.
    pub engine_id: String,
    /// The MEX interface version it declares.
    pub interface_version: String,
    /// Its determinism ceiling (D0..D3).
    pub determinism_ceiling: String,
    /// Whether it can be called here.
    pub availability: Availability,
    /// Why, in plain words.
    pub detail: String,
}

/// Whether an engine can be called by this binary with this home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Implemented, shipped in this binary and certified.
    Callable,
    /// Shipped in this binary, but without a valid certificate.
    Uncertified,
    /// The registry names an implementation this binary does not ship.
    NotInThisBinary,
    /// The registry declares the engine without an implementation.
    DeclaredOnly,
}

/// `mex validate --json`: one entry per gate, in pipeline order.
pub type ValidateListing = Vec<GateVerdict>;

/// What one admission gate decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateVerdict {
    /// The gate.
    pub gate: GateId,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its findings (denials and degradations); empty when it passed.
    pub findings: Vec<GateDenial>,
}

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No findings.
    Passed,
    /// At least one finding of severity `deny`.
    Denied,
    /// Findings, none of which denies.
    Degraded,
}

/// `mex registry check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryCheckReport {
    /// The file checked.
    pub file: String,
    /// True when it loads.
    pub ok: bool,
    /// Engines declared (when it loads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engines: Option<u64>,
    /// Operations declared (when it loads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<u64>,
    /// Every problem found, in file and position order.
    pub problems: Vec<RegistryProblem>,
}

/// One problem in a registry file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryProblem {
    /// The file it is in (the registry, or a file it references).
    pub file: String,
    /// 1-based line (0 when the problem has no position, e.g. unreadable).
    pub line: u64,
    /// 1-based column, in characters (0 when none).
    pub column: u64,
    /// JSON pointer of the offending value; empty for the root.
    pub pointer: String,
    /// What kind of problem.
    pub kind: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// `mex conformance --json`: one entry per engine the suite ran against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConformanceRun {
    /// True when every engine was certified.
    pub ok: bool,
    /// Each engine's outcome.
    pub engines: Vec<ConformanceOutcome>,
}

/// The outcome of the suite against one engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConformanceOutcome {
    /// True when it passed and a certificate was written.
    pub certified: bool,
    /// Where the certificate was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The full report.
    pub report: mex_conformance::ConformanceReport,
}

/// `mex gc --json`: what dead runs left behind and was removed (never a
/// live run's), then the artifact store's gc.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcRunReport {
    /// Shadow workspaces of dead runs removed (paths).
    pub workspaces_removed: Vec<String>,
    /// Sandbox jails of dead runs removed (paths).
    pub jails_removed: Vec<String>,
    /// Temp entries of interrupted store puts removed (names under the
    /// store's `tmp/`).
    pub store_temp_entries_removed: Vec<String>,
    /// Run directories left alone because a live process holds them.
    pub live_left_alone: u64,
    /// Directories that could not be reclaimed, with why.
    pub failed: Vec<String>,
    /// The artifact store's gc.
    pub store: ArtifactsGcReport,
}

/// `mex cache stats --json`: the home's D3 action cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheStatsReport {
    /// The cache file.
    pub path: String,
    /// Entries held.
    pub entries: u64,
    /// Bytes of entries held (their stored JSON; the artifacts are in the store).
    pub bytes: u64,
    /// Bound on entries (least recently used go first).
    pub max_entries: u64,
    /// Bound on bytes.
    pub max_bytes: u64,
    /// Hits served.
    pub hits: u64,
    /// Misses whose result was stored.
    pub misses: u64,
    /// Entries removed to stay within the bounds.
    pub evictions: u64,
    /// Entries dropped because an artifact no longer verified.
    pub stale: u64,
    /// Hits re-executed to check the engine's determinism.
    pub reexecutions: u64,
    /// Re-executions whose outputs differed (entry dropped, Problem recorded).
    pub mismatches: u64,
}

/// `mex cache clear --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheClearReport {
    /// The cache file.
    pub path: String,
    /// Entries removed.
    pub removed: u64,
}

/// `mex bench --json`: one benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchReport {
    /// Operations run (each a cache miss).
    pub ops: u64,
    /// Threads calling the runtime at once.
    pub concurrency: u64,
    /// Events appended to the recorder before the run.
    pub preloaded_events: u64,
    /// The directory whose filesystem held the temporary home.
    pub dir: String,
    /// Operations per second over the run.
    pub ops_per_s: f64,
    /// Median latency of one operation, microseconds.
    pub latency_p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub latency_p99_us: u64,
    /// Median latency of a D3 cache hit, microseconds.
    pub cache_hit_p50_us: u64,
    /// Median fsync of a 200-byte write on the same filesystem, microseconds.
    pub fsync_p50_us: u64,
    /// Median cost of making one new small file durable on the same
    /// filesystem (create, write 200 bytes, fsync it, fsync its directory),
    /// microseconds: the floor of storing one new artifact.
    pub new_file_p50_us: u64,
}

/// `(schema name, schema)` for every type above that is printed.
pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
    vec![
        (
            "artifacts-verify-report",
            schemars::schema_for!(ArtifactsVerifyReport),
        ),
        (
            "artifacts-gc-report",
            schemars::schema_for!(ArtifactsGcReport),
        ),
        ("gc-report", schemars::schema_for!(GcRunReport)),
        (
            "cache-stats-report",
            schemars::schema_for!(CacheStatsReport),
        ),
        (
            "cache-clear-report",
            schemars::schema_for!(CacheClearReport),
        ),
        ("bench-report", schemars::schema_for!(BenchReport)),
        ("artifact-handle", schemars::schema_for!(ArtifactHandle)),
        ("engines-listing", schemars::schema_for!(EnginesListing)),
        ("validate-listing", schemars::schema_for!(ValidateListing)),
        (
            "registry-check-report",
            schemars::schema_for!(RegistryCheckReport),
        ),
        ("conformance-run", schemars::schema_for!(ConformanceRun)),
        (
            "problems-listing",
            schemars::schema_for!(Vec<mex_recorder::Problem>),
        ),
    ]
}
