//! # mex-attest: trust that leaves the machine
//!
//! The Flight Recorder's hash chain catches edits, but it is unkeyed: whoever
//! can write the database can rewrite a suffix, recompute every hash and the
//! stored checkpoint. This crate adds evidence that a third party checks with
//! their own tools and the home's **public** key:
//!
//! * [`keys`]: the home's Ed25519 signing key (`<home>/keys/signing.pem`,
//!   PKCS#8 PEM, mode 0600) and the spellings of its public key (PEM
//!   SubjectPublicKeyInfo, C2SP signed-note verifier key, key id).
//! * [`merkle`]: the RFC 6962 Merkle tree over event hashes (leaf `i` = the
//!   hash of the event with seq `i + 1`), inclusion and consistency proofs
//!   (the `ct-merkle` crate), rebuilt from the log on demand, O(n).
//! * [`checkpoint`]: C2SP tlog-checkpoint bodies signed as C2SP signed notes
//!   (the `signed_note` crate formats and parses the note).
//! * [`log`]: checkpoint, prove and verify over any
//!   [`FlightRecorder`](mex_recorder::FlightRecorder), through its public
//!   API only (the recorder's schema is unchanged).
//! * [`dsse`] and [`provenance`]: a DSSE envelope holding an in-toto
//!   Statement v1 whose predicate is SLSA Provenance v1, built from what the
//!   runtime recorded about one operation.
//!
//! What the key protects and what a stolen key allows is in ARCHITECTURE.md
//! ("Threat model"); the meaning of the provenance fields and of the build
//! type is in `docs/attestation.md`.
//!
//! It depends on `mex-envelope` (wire types) and `mex-recorder` (events) and
//! nothing else of mex.

pub mod checkpoint;
pub mod dsse;
mod error;
pub mod keys;
pub mod log;
pub mod merkle;
pub mod provenance;

pub use checkpoint::Checkpoint;
pub use dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
pub use error::AttestError;
pub use keys::{HomeKey, PublicKey, key_path};
pub use provenance::{BUILD_TYPE, ProvenanceFacts};
