//! # mex-envelope: the poe-1.0 wire contract
//!
//! This crate owns every type that crosses a trust boundary in mex: the
//! [`PlannedOperation`] a planner writes, the [`EngineResult`] the runtime
//! returns, [`ArtifactHandle`]s and their sidecar [`ArtifactManifest`], the
//! [`GateDenial`] and [`EngineError`] records, and the validated identifiers
//! they are built from ([`EngineId`], [`OperationName`], [`Capability`],
//! [`Sha256Digest`], [`SchemaVersion`]). It also owns canonical JSON
//! (RFC 8785, see [`canonical`]) and the SHA-256 digests computed over it, and
//! the JSON Schemas generated from these types (see [`schema`]).
//!
//! It does **not** own I/O, the registry, gates, engines or the runtime: it
//! knows nothing of them, and no other mex crate is a dependency (a workspace
//! test enforces that).
//!
//! ## Parsing at the trust boundary
//!
//! [`PlannedOperation::from_json_slice`] / [`PlannedOperation::from_json_str`]
//! are the front door for untrusted input. They read the bytes with the strict
//! reader of [`json`] (duplicate member names, numbers beyond ±(2^53-1) in
//! any spelling and a byte-order mark are refused; integral numbers such as
//! `5000.0` are the integer they denote, as in JSON Schema), within the size
//! cap [`MAX_ENVELOPE_BYTES`] and the memory budget
//! [`MAX_ENVELOPE_VALUE_BYTES`]. They reject unknown fields, non-UTC
//! timestamps, UUIDs in any spelling but lowercase 8-4-4-4-12, and every
//! malformed identifier, and each error carries the JSON pointer of the
//! offending value and what was expected ([`EnvelopeError`]). Deserializing
//! through plain `serde_json` applies the same type-level rules (the validated
//! newtypes and cross-field checks live in the `Deserialize` impls), but only
//! the front door refuses duplicate keys, gives pointers on every error and
//! enforces the size and memory bounds. Read envelopes with
//! [`read_envelope_bytes`], which stops after the cap plus one byte.
//!
//! ## Text forms
//!
//! * SHA-256 digests: exactly 64 lowercase hex characters, no prefix.
//! * Timestamps: RFC 3339 in UTC with a `Z` suffix.
//! * Capabilities: `kind` or `kind:scope`, see [`Capability`].
//! * UUIDs: 36 lowercase characters, 8-4-4-4-12 with hyphens ([`UUID_PATTERN`]).

mod artifact;
mod budget;
pub mod canonical;
mod capability;
mod determinism;
mod digest;
mod error;
mod ids;
#[doc(hidden)]
pub mod json;
mod operation;
pub mod pointer;
pub mod protocol;
mod result;
#[doc(hidden)]
pub mod schema;
mod timestamp;
mod uuid_text;

pub use artifact::{
    ArtifactHandle, ArtifactKind, ArtifactManifest, ArtifactProducer, BundleEntry, BundleIndex,
    Classification, EntityRef, Input, MANIFEST_SCHEMA_VERSION, MediaType,
};
pub use budget::{BudgetSpec, EvidencePolicy, OutputSpec};
pub use capability::{Capability, CapabilityKind};
pub use determinism::DeterminismLevel;
pub use digest::{Sha256Digest, Sha256Writer};
pub use error::{EnvelopeError, excerpt};
pub use ids::{EngineId, ErrorCode, GateId, OperationName, SchemaVersion};
pub use operation::{
    MAX_CAPABILITIES, MAX_ENVELOPE_BYTES, MAX_ENVELOPE_VALUE_BYTES, MAX_INLINE_PARAMS_BYTES,
    MAX_INPUTS, PlannedOperation, read_envelope_bytes,
};
pub use result::{
    DenialSeverity, EngineError, EngineResult, GateDenial, ProvenanceRecord, ResultStatus,
};
pub use timestamp::UtcTimestamp;
pub use uuid_text::{UUID_PATTERN, parse_uuid};

/// The largest integer that survives a round trip through RFC 8785 (an IEEE 754
/// double): 2^53 - 1. Every integer in a wire document must be at most this.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
