//! Checkpoints, inclusion proofs and consistency checks over a Flight
//! Recorder, read through its public API (`FlightRecorder::events`, paged by
//! seq). Nothing is stored: the tree is rebuilt on each call (see
//! [`crate::merkle`] for the cost).

use mex_recorder::{EventQuery, FlightRecorder};
use serde::Serialize;

use crate::AttestError;
use crate::checkpoint::Checkpoint;
use crate::keys::{HomeKey, PublicKey};
use crate::merkle::{self, Hash, LogTree};

/// Events read per page.
const PAGE: u64 = 1024;

/// Build the tree over every event hash in seq order. When `snapshot` is
/// given, also return the root of the first `snapshot` leaves (`None` if the
/// log is shorter).
pub fn tree(
    recorder: &dyn FlightRecorder,
    snapshot: Option<u64>,
) -> Result<(LogTree, Option<Hash>), AttestError> {
    let mut tree = LogTree::new();
    let mut old_root = (snapshot == Some(0)).then(merkle::empty_root);
    let mut after = 0u64;
    loop {
        let page = recorder.events(&EventQuery {
            after_seq: Some(after),
            limit: Some(PAGE),
            ..EventQuery::default()
        })?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in &page {
            let expected = tree.size() + 1;
            if event.seq != expected {
                return Err(AttestError::OutOfRange(format!(
                    "the log jumps from seq {} to seq {}: events were deleted; run `mex recorder verify` to see the damage",
                    expected - 1,
                    event.seq
                )));
            }
            tree.push(*event.hash.as_bytes());
            if snapshot == Some(tree.size()) {
                old_root = Some(tree.root());
            }
        }
        if (page.len() as u64) < PAGE {
            break;
        }
    }
    Ok((tree, old_root))
}

/// A fresh checkpoint of the whole log, signed with the home key: the
/// checkpoint and its signed note.
pub fn checkpoint(
    recorder: &dyn FlightRecorder,
    key: &HomeKey,
) -> Result<(Checkpoint, String), AttestError> {
    let (tree, _) = tree(recorder, None)?;
    let cp = Checkpoint {
        origin: key.public().note_name().to_owned(),
        size: tree.size(),
        root: tree.root(),
    };
    let note = cp.sign(key)?;
    Ok((cp, note))
}

/// An inclusion proof of one event, printed by `mex recorder prove`.
/// Hashes are lowercase hex; `checkpoint` is a signed note of the tree the
/// proof is against (absent when the home has no key).
#[derive(Debug, Clone, Serialize)]
pub struct InclusionProofDoc {
    /// The event's seq.
    pub seq: u64,
    /// Its leaf index (seq − 1).
    pub leaf_index: u64,
    /// The event's hash: the leaf data.
    pub event_hash: String,
    /// `SHA-256(0x00 || event hash)`.
    pub leaf_hash: String,
    /// Leaves in the tree.
    pub tree_size: u64,
    /// The tree's root.
    pub root_hash: String,
    /// The audit path, leaf to root (RFC 6962 `PATH`).
    pub proof: Vec<String>,
    /// The signed checkpoint of the same tree, when the home has a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// Prove that the event with `seq` is in the current log.
pub fn prove(
    recorder: &dyn FlightRecorder,
    seq: u64,
    key: Option<&HomeKey>,
) -> Result<InclusionProofDoc, AttestError> {
    let (tree, _) = tree(recorder, None)?;
    if seq == 0 || seq > tree.size() {
        return Err(AttestError::OutOfRange(format!(
            "--seq {seq} is not in the log, which holds seq 1..={}",
            tree.size()
        )));
    }
    let index = seq - 1;
    let path = tree.prove_inclusion(index)?;
    let leaf = tree
        .leaf(index)
        .copied()
        .ok_or_else(|| AttestError::OutOfRange(format!("seq {seq} vanished")))?;
    let checkpoint = match key {
        Some(key) => Some(
            Checkpoint {
                origin: key.public().note_name().to_owned(),
                size: tree.size(),
                root: tree.root(),
            }
            .sign(key)?,
        ),
        None => None,
    };
    Ok(InclusionProofDoc {
        seq,
        leaf_index: index,
        event_hash: hex::encode(leaf),
        leaf_hash: hex::encode(merkle::leaf_hash(&leaf)),
        tree_size: tree.size(),
        root_hash: hex::encode(tree.root()),
        proof: path.iter().map(hex::encode).collect(),
        checkpoint,
    })
}

/// The outcome of checking the log against an earlier checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyReport {
    /// The earlier checkpoint's size.
    pub checkpoint_size: u64,
    /// Events in the log now.
    pub log_size: u64,
    /// Whether the log still extends the checkpoint.
    pub consistent: bool,
    /// What was found, for a person.
    pub detail: String,
    /// The consistency proof from the checkpoint to the current tree (hex),
    /// when consistent: give it with both checkpoints to an auditor.
    pub proof: Vec<String>,
    /// The current root (hex).
    pub root_hash: String,
}

/// Check that the log still extends the checkpoint in `note` (signed by
/// `trusted`). A signature or format problem is an error; a log that no
/// longer matches is a report with `consistent: false`.
pub fn verify_checkpoint(
    recorder: &dyn FlightRecorder,
    note: &[u8],
    trusted: &PublicKey,
) -> Result<ConsistencyReport, AttestError> {
    let cp = Checkpoint::open(note, trusted)?;
    let (tree, old_root) = tree(recorder, Some(cp.size))?;
    let mut report = ConsistencyReport {
        checkpoint_size: cp.size,
        log_size: tree.size(),
        consistent: false,
        detail: String::new(),
        proof: Vec::new(),
        root_hash: hex::encode(tree.root()),
    };
    let Some(old_root) = old_root else {
        report.detail = format!(
            "the checkpoint covers {} events but the log now holds only {}: the log was truncated after the checkpoint",
            cp.size,
            tree.size()
        );
        return Ok(report);
    };
    if old_root != cp.root {
        report.detail = format!(
            "the first {} events no longer hash to the checkpoint's root (checkpoint {}, log {}): events up to seq {} were edited, replaced or the chain was rebuilt",
            cp.size,
            hex::encode(cp.root),
            hex::encode(old_root),
            cp.size
        );
        return Ok(report);
    }
    let proof = tree.prove_consistency(cp.size)?;
    merkle::verify_consistency(cp.size, &cp.root, tree.size(), &tree.root(), &proof)?;
    report.consistent = true;
    report.proof = proof.iter().map(hex::encode).collect();
    report.detail = format!(
        "the log's {} events extend the checkpoint's {} unchanged",
        tree.size(),
        cp.size
    );
    Ok(report)
}
