//! A large store built fast: records and their small payloads written
//! straight into `index.db` in big transactions, each manifest exactly what
//! a put would have written (a real put's manifest, re-stamped).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::path::Path;

use mex_artifacts::{ArtifactStore, PutOptions};
use mex_envelope::{ArtifactManifest, Sha256Digest, UtcTimestamp};
use uuid::Uuid;

/// Add `n` small artifacts to the store at `root` (created if missing):
/// record `i` holds `"bulk {seed} shared {i / 2}"` (so pairs share a
/// payload) when `i % 10 < 8`, else a payload of its own,
/// was created `i` ms after a fixed instant, expires after a day when
/// `i % 3 == 0` and is pinned when `i % 7 == 0`. A few real puts go first
/// (a large file payload, shared by an expiring and a kept record).
pub fn fill(root: &Path, n: u64, seed: u64) {
    let store = ArtifactStore::at(root).unwrap();
    let template = store
        .put_bytes(b"template", &PutOptions::default())
        .unwrap();
    let template = store.manifest(template.artifact_id).unwrap();
    let big = vec![seed as u8; 64 * 1024];
    store.put_bytes(&big, &PutOptions::default()).unwrap();
    let doomed = PutOptions {
        retention_ttl_days: Some(1),
        ..PutOptions::default()
    };
    store.put_bytes(&big, &doomed).unwrap();
    let mut orphan = big.clone();
    orphan.push(1);
    store.put_bytes(&orphan, &doomed).unwrap();
    drop(store);

    let mut conn = rusqlite::Connection::open(root.join("index.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    let base = UtcTimestamp::from_unix_millis(1_700_000_000_000).unwrap();
    let mut i = 0;
    while i < n {
        let tx = conn.transaction().unwrap();
        {
            let mut blob = tx
                .prepare(
                    "INSERT INTO inline_blobs (hash, size, bytes) VALUES (?1, ?2, ?3)
                     ON CONFLICT (hash) DO NOTHING",
                )
                .unwrap();
            let mut record = tx
                .prepare("INSERT INTO records (id, manifest) VALUES (?1, ?2)")
                .unwrap();
            for i in i..(i + 50_000).min(n) {
                let payload = if i % 10 < 8 {
                    format!("bulk {seed} shared {}", i / 2)
                } else {
                    format!("bulk {seed} own {i}")
                }
                .into_bytes();
                let digest = Sha256Digest::of(&payload);
                blob.execute(rusqlite::params![
                    digest.to_hex(),
                    payload.len() as i64,
                    payload
                ])
                .unwrap();
                let id = Uuid::from_u128(
                    u128::from(seed) << 64 | u128::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                );
                let mut m: ArtifactManifest = template.clone();
                m.artifact.artifact_id = id;
                m.artifact.content_hash = digest;
                m.artifact.size_bytes = payload.len() as u64;
                m.artifact.retention_ttl_days = (i % 3 == 0).then_some(1);
                m.created_at =
                    UtcTimestamp::from_unix_millis(base.unix_millis() + i as i64).unwrap();
                m.pinned = i % 7 == 0;
                let mut bytes = serde_json::to_vec_pretty(&m).unwrap();
                bytes.push(b'\n');
                record
                    .execute(rusqlite::params![id.hyphenated().to_string(), bytes])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        i = (i + 50_000).min(n);
    }
}
