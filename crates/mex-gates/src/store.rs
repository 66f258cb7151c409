//! The artifact store as the gates' [`InputVerifier`].

use mex_artifacts::{ArtifactError, ArtifactStore};
use mex_envelope::ArtifactHandle;

use crate::codes::{Finding, deny};
use crate::gates::integrity::InputVerifier;

impl InputVerifier for ArtifactStore {
    /// The handle must match its stored record field for field, and the
    /// stored bytes must hash to it (a full verified read, or the store's
    /// verification cache, whose trade-off the store documents).
    fn verify_input(&self, handle: &ArtifactHandle) -> Result<(), Finding> {
        let result = self.open(handle).map(|_| ());
        result.map_err(|e| {
            let (code, rule) = match &e {
                ArtifactError::NotFound { .. } => {
                    ("G-INTEGRITY.ARTIFACT_MISSING", "integrity.input_resolves")
                }
                ArtifactError::HandleMismatch {
                    field: "content_hash",
                    ..
                }
                | ArtifactError::Integrity { .. } => {
                    ("G-INTEGRITY.HASH_MISMATCH", "integrity.input_hash")
                }
                ArtifactError::HandleMismatch {
                    field: "size_bytes",
                    ..
                } => ("G-INTEGRITY.SIZE_MISMATCH", "integrity.input_size"),
                ArtifactError::HandleMismatch { .. } => {
                    ("G-INTEGRITY.HANDLE_MISMATCH", "integrity.input_handle")
                }
                _ => ("G-INTEGRITY.ARTIFACT_MISSING", "integrity.input_resolves"),
            };
            deny(code, rule, e.to_string(), None)
        })
    }
}
