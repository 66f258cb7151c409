//! Human-readable rendering of results and outcomes.

use std::fmt::Write as _;

use mex_cli::report;
use mex_envelope::{EngineResult, ResultStatus, UtcTimestamp};
use mex_gates::internal::GateOutcome;
use mex_recorder::BreakKind;

/// A short summary of an EngineResult.
pub fn result_summary(r: &EngineResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "status    {}{}",
        r.status.as_str(),
        if r.served_from_cache {
            " (served from cache)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "op_id     {}", r.op_id);
    let ms = r.ended_at.unix_millis() - r.started_at.unix_millis();
    let _ = writeln!(
        out,
        "time      {} .. {} ({ms} ms)",
        r.started_at, r.ended_at
    );
    if let Some(p) = &r.provenance {
        let _ = writeln!(
            out,
            "engine    {} {} via {}@{} ({})",
            p.engine_id, p.operation, p.implementation_id, p.implementation_version, p.determinism
        );
    }
    for (label, list) in [("output", &r.outputs), ("evidence", &r.evidence)] {
        for h in list {
            let media = h.media_type.as_ref().map_or("-", |m| m.as_str());
            let _ = writeln!(
                out,
                "{label:<9} {} {} {} bytes sha256 {}",
                h.artifact_id, media, h.size_bytes, h.content_hash
            );
        }
    }
    if let Some(h) = &r.logs_ref {
        let _ = writeln!(out, "logs      {} {} bytes", h.artifact_id, h.size_bytes);
    }
    for d in &r.denials {
        let at = d
            .pointer
            .as_deref()
            .map(|p| format!(" at {p}"))
            .unwrap_or_default();
        let _ = writeln!(out, "denied    [{}] {}{at}: {}", d.code, d.gate, d.message);
    }
    for e in &r.errors {
        let _ = writeln!(out, "error     [{}] {}", e.code, e.message);
    }
    if r.status != ResultStatus::Succeeded {
        let _ = writeln!(
            out,
            "next      mex recorder events --op {}   |   mex problems",
            r.op_id
        );
    }
    out
}

/// Every gate outcome, one line each, denials indented below.
pub fn outcomes(outcomes: &[GateOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let verdict = if o.findings.is_empty() {
            "passed"
        } else if o.denied() {
            "DENIED"
        } else {
            "degraded"
        };
        let _ = writeln!(out, "{:<18} {verdict}", o.gate.as_str());
        for f in &o.findings {
            let at = f
                .pointer
                .as_deref()
                .map(|p| format!(" at {p}"))
                .unwrap_or_default();
            let _ = writeln!(out, "    [{}]{at}: {}", f.code, f.message);
        }
    }
    out
}

/// The artifact store's verify report in the CLI's published form.
pub fn store_report(
    found: &mex_artifacts::VerifyReport,
    store: &std::path::Path,
) -> report::ArtifactsVerifyReport {
    use mex_artifacts::ProblemKind as K;
    use report::StoreProblemKind as R;
    let problems = found
        .problems
        .iter()
        .map(|p| {
            let (kind, action) = match p.kind {
                K::ManifestInvalid => (
                    R::ManifestInvalid,
                    "the artifact cannot be served: restore the store's index (index.db, which holds every record) from a backup; the path names the record's row",
                ),
                K::PayloadMissing => (
                    R::PayloadMissing,
                    "the artifact cannot be served: restore the payload from a backup, or `mex artifacts put` the original file again (same bytes, same hash)",
                ),
                K::SizeMismatch => (
                    R::SizeMismatch,
                    "the payload was changed after it was stored and mex refuses to serve it: restore the original bytes from a backup, and find out who could write the store",
                ),
                K::HashMismatch => (
                    R::HashMismatch,
                    "the payload was changed after it was stored and mex refuses to serve it: restore the original bytes from a backup, and find out who could write the store",
                ),
                K::BundleInvalid => (
                    R::BundleInvalid,
                    "the bundle cannot be served: restore its index from a backup, or produce the bundle again",
                ),
                K::Stray => (
                    R::Stray,
                    "mex did not write this file: inspect it, then move it out of the store",
                ),
                K::Unreadable => (
                    R::Unreadable,
                    "check the file's permissions and the disk, then run `mex artifacts verify` again",
                ),
                _ => (
                    R::Other,
                    "read the message, fix the file, and run `mex artifacts verify` again",
                ),
            };
            report::StoreProblem {
                kind,
                artifact_id: p.artifact_id,
                path: p.path.display().to_string(),
                message: p.message.clone(),
                action: action.to_owned(),
            }
        })
        .collect();
    report::ArtifactsVerifyReport {
        ok: found.is_ok(),
        store: store.display().to_string(),
        records: found.records as u64,
        payloads: found.blobs as u64,
        bytes_hashed: found.bytes_hashed,
        problems,
        problems_omitted: found.problems_omitted,
    }
}

fn store_problem_words(kind: report::StoreProblemKind) -> &'static str {
    use report::StoreProblemKind as R;
    match kind {
        R::ManifestInvalid => "invalid manifest",
        R::PayloadMissing => "payload missing",
        R::SizeMismatch => "payload has the wrong size",
        R::HashMismatch => "payload has the wrong hash",
        R::BundleInvalid => "invalid bundle index",
        R::Stray => "stray file",
        R::Unreadable => "unreadable payload",
        R::Unaccounted => "record not accounted for by the Flight Recorder",
        R::Other => "problem",
    }
}

/// `mex artifacts verify` for a person.
pub fn store_verify(r: &report::ArtifactsVerifyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checked {} record(s) and {} payload(s), {} bytes hashed, in {}",
        r.records, r.payloads, r.bytes_hashed, r.store
    );
    for p in &r.problems {
        let artifact = p
            .artifact_id
            .map(|id| format!("artifact {id}, "))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "PROBLEM  {}: {artifact}{}",
            store_problem_words(p.kind),
            p.path
        );
        let _ = writeln!(out, "         {}", p.message);
        let _ = writeln!(out, "         what to do: {}", p.action);
    }
    if r.ok {
        let _ = writeln!(
            out,
            "store verified: every payload matches its hash and size, every manifest is valid"
        );
    } else {
        let _ = writeln!(
            out,
            "{} problem(s){}: the store has been damaged or tampered with; mex refuses to serve the artifacts concerned",
            r.problems.len() as u64 + r.problems_omitted,
            if r.problems_omitted > 0 {
                format!(" ({} not listed)", r.problems_omitted)
            } else {
                String::new()
            }
        );
    }
    out
}

/// The store's gc report in the CLI's published form.
pub fn gc_report(done: &mex_artifacts::GcReport, now: UtcTimestamp) -> report::ArtifactsGcReport {
    report::ArtifactsGcReport {
        now,
        deleted_count: done.deleted_count,
        deleted: done
            .deleted
            .iter()
            .map(|d| report::GcDeleted {
                artifact_id: d.artifact_id,
                content_hash: d.content_hash,
                size_bytes: d.size_bytes,
                created_at: d.created_at,
                reason: d.reason.clone(),
            })
            .collect(),
        payloads_deleted: done
            .blobs_deleted
            .iter()
            .map(|(content_hash, size_bytes)| report::GcPayload {
                content_hash: *content_hash,
                size_bytes: *size_bytes,
            })
            .collect(),
        payloads_deleted_count: done.blobs_deleted_count,
        bytes_freed: done.bytes_freed,
        temp_entries_removed: done.temp_entries_removed as u64,
        total_bytes_after: done.total_bytes_after,
        quota_unmet: done.quota_unmet,
        notes: done.notes.clone(),
        notes_omitted: done.notes_omitted,
        report: done.report.clone(),
    }
}

/// `mex artifacts gc` for a person.
pub fn gc(r: &report::ArtifactsGcReport) -> String {
    let mut out = String::new();
    for d in &r.deleted {
        let _ = writeln!(
            out,
            "deleted  {} ({} bytes): {}",
            d.artifact_id, d.size_bytes, d.reason
        );
    }
    for note in &r.notes {
        let _ = writeln!(out, "note     {note}");
    }
    if r.notes_omitted > 0 {
        let _ = writeln!(
            out,
            "note     ... and {} more note(s) not listed",
            r.notes_omitted
        );
    }
    let _ = writeln!(
        out,
        "deleted {} artifact(s) and {} payload(s), freed {} bytes, removed {} leftover temp file(s); {} bytes remain; report artifact {}",
        r.deleted_count,
        r.payloads_deleted_count,
        r.bytes_freed,
        r.temp_entries_removed,
        r.total_bytes_after,
        r.report.artifact_id
    );
    out
}

/// What a chain break means and what to do, per kind.
fn break_words(kind: BreakKind) -> (&'static str, &'static str) {
    match kind {
        BreakKind::Unreadable => (
            "the stored event cannot be read (a column holds something no event can)",
            "the row was edited behind the recorder's back or the file is damaged",
        ),
        BreakKind::HashMismatch => (
            "the event's content does not match its hash",
            "the event was edited, or moved here from another position",
        ),
        BreakKind::PrevHashMismatch => (
            "the event does not link to the event before it",
            "events were reordered, inserted or deleted before this one",
        ),
        BreakKind::Missing => ("events are missing at this position", "events were deleted"),
        BreakKind::TimeRegression => (
            "the event is recorded earlier than the event before it",
            "the events or their times were edited",
        ),
        BreakKind::Truncated => (
            "the log ends before its checkpoint",
            "the newest events were cut off",
        ),
        BreakKind::BeyondCheckpoint => (
            "there are events after the checkpoint",
            "events were appended outside the recorder",
        ),
        BreakKind::CheckpointMismatch => (
            "the checkpoint does not match the last event",
            "the checkpoint or the last event was replaced",
        ),
        BreakKind::AnchorMismatch => (
            "an anchored event differs from, or is missing in, the log",
            "the log was rewritten after the anchor was taken",
        ),
        BreakKind::ForeignWriter => (
            "the event carries no valid writer tag of this home's key",
            "another writer (not a mex runtime holding this home's recorder.key) appended it",
        ),
        _ => ("the chain is broken", "the log was changed"),
    }
}

/// `mex recorder verify` for a person. `at` is the event stored at the
/// break, when it can be read.
pub fn chain_verify(
    r: &mex_recorder::VerifyReport,
    at: Option<&mex_recorder::Event>,
    db: &std::path::Path,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checked {} event(s) in {}",
        r.events_checked,
        db.display()
    );
    let Some(b) = &r.first_break else {
        let head = r
            .checkpoint
            .map(|c| format!("; head seq {} hash {}", c.seq, c.hash))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "chain verified: no edits, deletions, insertions, reorders or truncation found{head}"
        );
        return out;
    };
    let (what, why) = break_words(b.kind);
    let event = at
        .map(|e| {
            let op = e
                .op_id
                .map(|id| format!(" of operation {id}"))
                .unwrap_or_default();
            format!(
                " ({} event{op}, recorded {})",
                e.kind.as_str(),
                e.recorded_at
            )
        })
        .unwrap_or_default();
    let _ = writeln!(out, "CHAIN BROKEN at seq {}{event}: {what}.", b.seq);
    let _ = writeln!(out, "  likely cause: {why}.");
    let _ = writeln!(out, "  detail:       {}", b.detail);
    let _ = writeln!(
        out,
        "  what to do:   treat the events from seq {} on as untrustworthy. Compare them with an export or a chain head kept elsewhere (`mex recorder export --jsonl`), find out who could write {}, and keep the damaged file for investigation.",
        b.seq,
        db.display()
    );
    out
}
