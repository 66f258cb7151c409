//! Store behaviour: put/read, dedup, tamper detection, bad input, bundles, gc.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::field_reassign_with_default,
    clippy::type_complexity,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mex_artifacts::{
    ArtifactError, ArtifactStore, BundleOptions, Expected, GcOptions, ProblemKind, PutOptions,
    RelPath, StoreConfig,
};
use mex_envelope::{ArtifactHandle, ArtifactKind, Classification, Sha256Digest, UtcTimestamp};

mod support;

fn store() -> (tempfile::TempDir, ArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::at(dir.path().join("artifacts")).unwrap();
    (dir, store)
}

fn blob_path(store: &ArtifactStore, h: &ArtifactHandle) -> PathBuf {
    let hex = h.content_hash.to_hex();
    store
        .root()
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(&hex[2..])
}

/// Payloads stored: files, and small ones inline in the index.
fn blob_count(store: &ArtifactStore) -> usize {
    support::blob_file_count(store.root()) + support::inline_count(store.root())
}

/// Damage payload `digest` where it lives: its inline row in `index.db`
/// (the size column left as it was), or its file.
fn tamper_payload(store: &ArtifactStore, digest: &Sha256Digest, how: &str) {
    let hex = digest.to_hex();
    let Some(mut bytes) = support::inline_row(store.root(), &hex) else {
        let path = store
            .root()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(&hex[2..]);
        return tamper(&path, how);
    };
    mutate(&mut bytes, how);
    support::set_inline_row(store.root(), &hex, &bytes);
}

/// Remove payload `digest`: its inline row, or its file.
fn remove_payload(store: &ArtifactStore, digest: &Sha256Digest) {
    let hex = digest.to_hex();
    if support::inline_row(store.root(), &hex).is_some() {
        support::delete_inline_row(store.root(), &hex);
    } else {
        fs::remove_file(
            store
                .root()
                .join("blobs/sha256")
                .join(&hex[..2])
                .join(&hex[2..]),
        )
        .unwrap();
    }
}

fn tmp_count(store: &ArtifactStore) -> usize {
    fs::read_dir(store.root().join("tmp")).unwrap().count()
}

fn writable(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn put_read_roundtrip_and_manifest() {
    let (_d, store) = store();
    let bytes = data(3 << 20, 1);
    let mut opts = PutOptions::new(ArtifactKind::ToolOutput, Classification::Medium);
    opts.retention_ttl_days = Some(7);
    opts.media_type = Some("application/octet-stream".parse().unwrap());
    let h = store.put_reader(&mut &bytes[..], &opts).unwrap();
    assert_eq!(h.content_hash, Sha256Digest::of(&bytes));
    assert_eq!(h.size_bytes, bytes.len() as u64);
    assert_eq!(store.read(&h).unwrap(), bytes);
    let mut via_open = Vec::new();
    store.open(&h).unwrap().read_to_end(&mut via_open).unwrap();
    assert_eq!(via_open, bytes);
    let mut via_stream = Vec::new();
    store
        .open_streaming(&h)
        .unwrap()
        .read_to_end(&mut via_stream)
        .unwrap();
    assert_eq!(via_stream, bytes);
    let m = store.manifest(h.artifact_id).unwrap();
    assert_eq!(m.artifact, h);
    assert!(!m.pinned);
    let json =
        String::from_utf8(support::record_row(store.root(), h.artifact_id).unwrap()).unwrap();
    assert!(
        json.contains("\"schema_version\": \"mex-artifact-1.0\""),
        "{json}"
    );
    assert_eq!(store.list().unwrap(), vec![h.artifact_id]);
    assert_eq!(tmp_count(&store), 0);
    // Blobs are read-only on disk.
    assert_eq!(
        fs::metadata(blob_path(&store, &h))
            .unwrap()
            .permissions()
            .mode()
            & 0o222,
        0
    );
}

#[test]
fn same_bytes_share_one_payload() {
    let (_d, store) = store();
    let bytes = data(2 << 20, 2);
    let a = store.put_bytes(&bytes, &PutOptions::default()).unwrap();
    let ino = fs::metadata(blob_path(&store, &a)).unwrap();
    let b = store.put_bytes(&bytes, &PutOptions::default()).unwrap();
    let mut expected = PutOptions::default();
    expected.expected = Some(Expected {
        hash: a.content_hash,
        size: a.size_bytes,
    });
    let c = store.put_bytes(&bytes, &expected).unwrap();
    assert_ne!(a.artifact_id, b.artifact_id);
    assert_eq!(a.content_hash, c.content_hash);
    assert_eq!(blob_count(&store), 1);
    assert_eq!(store.list().unwrap().len(), 3);
    // The payload file was not rewritten.
    use std::os::unix::fs::MetadataExt;
    let after = fs::metadata(blob_path(&store, &a)).unwrap();
    assert_eq!(
        (ino.ino(), ino.mtime(), ino.mtime_nsec()),
        (after.ino(), after.mtime(), after.mtime_nsec())
    );
    assert_eq!(tmp_count(&store), 0);
}

#[test]
fn wrong_expected_hash_is_refused_and_nothing_stored() {
    let (_d, store) = store();
    let known = store.put_bytes(b"known", &PutOptions::default()).unwrap();
    for (content, expected) in [
        (
            &b"other"[..],
            Expected {
                hash: Sha256Digest::of(b"nope"),
                size: 5,
            },
        ),
        // Claims an existing blob (fast path), but the bytes differ.
        (
            &b"fake!"[..],
            Expected {
                hash: known.content_hash,
                size: known.size_bytes,
            },
        ),
        // Right hash, wrong size.
        (
            &b"known"[..],
            Expected {
                hash: known.content_hash,
                size: 6,
            },
        ),
    ] {
        let mut opts = PutOptions::default();
        opts.expected = Some(expected);
        let err = store.put_bytes(content, &opts).unwrap_err();
        assert!(
            matches!(err, ArtifactError::ExpectedMismatch { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("nothing was stored"), "{err}");
    }
    assert_eq!(store.list().unwrap(), vec![known.artifact_id]);
    assert_eq!(blob_count(&store), 1);
    assert_eq!(tmp_count(&store), 0);
    assert!(store.verify().unwrap().is_ok());
}

struct FailingReader {
    left: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("simulated read error (EIO)"));
        }
        let n = buf.len().min(self.left).min(64 * 1024);
        buf[..n].fill(9);
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn unreadable_sources_give_clear_errors() {
    let (d, store) = store();
    for left in [10usize, 5 << 20] {
        let err = store
            .put_reader(&mut FailingReader { left }, &PutOptions::default())
            .unwrap_err();
        let ArtifactError::SourceUnreadable { read, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*read, left as u64);
        assert!(err.to_string().contains("simulated read error"), "{err}");
    }
    let missing = d.path().join("missing.bin");
    let err = store
        .put_path(&missing, &PutOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::SourceUnreadable { .. })
            && err.to_string().contains("missing.bin"),
        "{err}"
    );
    let err = store
        .put_path(d.path(), &PutOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::NotARegularFile {
                file_type: "directory",
                ..
            }
        ),
        "{err:?}"
    );
    let fifo = d.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let err = store.put_path(&fifo, &PutOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::NotARegularFile {
                file_type: "FIFO",
                ..
            }
        ),
        "{err:?}"
    );
    let mut opts = PutOptions::default();
    opts.max_bytes = Some(100);
    assert!(matches!(
        store.put_bytes(&[0; 101], &opts),
        Err(ArtifactError::TooLarge { limit: 100, .. })
    ));
    opts.retention_ttl_days = Some(0);
    assert!(matches!(
        store.put_bytes(&[0; 1], &opts),
        Err(ArtifactError::InvalidOptions { .. })
    ));
    assert!(store.list().unwrap().is_empty());
    assert_eq!(tmp_count(&store), 0);
    assert!(store.verify().unwrap().is_ok());
}

fn tamper(path: &Path, how: &str) {
    writable(path);
    let mut bytes = fs::read(path).unwrap();
    mutate(&mut bytes, how);
    fs::write(path, bytes).unwrap();
}

fn mutate(bytes: &mut Vec<u8>, how: &str) {
    match how {
        "flip" => {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
        }
        "truncate" => bytes.truncate(bytes.len() - 1),
        "replace" => *bytes = vec![b'x'; bytes.len()],
        _ => unreachable!(),
    }
}

#[test]
fn tampering_is_caught_on_read_and_by_verify() {
    for how in ["flip", "truncate", "replace"] {
        let (_d, store) = store();
        let good = store
            .put_bytes(&data(100_000, 3), &PutOptions::default())
            .unwrap();
        let victim = store
            .put_bytes(&data(200_000, 4), &PutOptions::default())
            .unwrap();
        tamper(&blob_path(&store, &victim), how);

        let err = store.read(&victim).unwrap_err();
        assert!(
            matches!(err, ArtifactError::Integrity { .. }),
            "{how}: {err:?}"
        );
        assert!(
            err.to_string().contains(&victim.artifact_id.to_string()),
            "{err}"
        );
        assert!(
            matches!(store.open(&victim), Err(ArtifactError::Integrity { .. })),
            "{how}"
        );
        match store.open_streaming(&victim) {
            Err(ArtifactError::Integrity { .. }) => assert_eq!(how, "truncate"),
            Err(e) => panic!("{e:?}"),
            Ok(mut r) => {
                let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{how}");
            }
        }
        assert_eq!(store.read(&good).unwrap().len(), 100_000);

        let report = store.verify().unwrap();
        assert_eq!(report.problems.len(), 1, "{how}: {report:?}");
        let p = &report.problems[0];
        assert_eq!(p.artifact_id, Some(victim.artifact_id));
        let want = if how == "truncate" {
            ProblemKind::SizeMismatch
        } else {
            ProblemKind::HashMismatch
        };
        assert_eq!(p.kind, want, "{how}");
    }
}

#[test]
fn verify_reports_every_bad_artifact_and_missing_payloads() {
    let (_d, store) = store();
    let hs: Vec<_> = (0..4)
        .map(|i| {
            store
                .put_bytes(&data(1000 + i, i as u8), &PutOptions::default())
                .unwrap()
        })
        .collect();
    tamper_payload(&store, &hs[0].content_hash, "flip");
    remove_payload(&store, &hs[1].content_hash);
    support::set_record_row(store.root(), hs[2].artifact_id, b"{not json");
    let report = store.verify().unwrap();
    let mut kinds: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.artifact_id, p.kind))
        .collect();
    kinds.sort_by_key(|(id, _)| *id);
    let mut want = vec![
        (Some(hs[0].artifact_id), ProblemKind::HashMismatch),
        (Some(hs[1].artifact_id), ProblemKind::PayloadMissing),
        (Some(hs[2].artifact_id), ProblemKind::ManifestInvalid),
    ];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(kinds, want, "{report:#?}");
    assert_eq!(report.records, 4);
}

#[test]
fn verification_cache_rehashes_after_any_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        verify_cache: true,
        racy_window: Duration::ZERO,
    };
    let store = ArtifactStore::with_config(dir.path(), config).unwrap();
    let h = store
        .put_bytes(&data(50_000, 5), &PutOptions::default())
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert!(!store.open(&h).unwrap().verified_by_cache());
    assert!(store.open(&h).unwrap().verified_by_cache());
    std::thread::sleep(Duration::from_millis(30));
    tamper(&blob_path(&store, &h), "replace");
    assert!(matches!(
        store.open(&h),
        Err(ArtifactError::Integrity { .. })
    ));

    // With the default racy window a fresh payload is never cached.
    let store = ArtifactStore::at(dir.path()).unwrap();
    let h = store.put_bytes(b"fresh", &PutOptions::default()).unwrap();
    assert!(!store.open(&h).unwrap().verified_by_cache());
    assert!(!store.open(&h).unwrap().verified_by_cache());
}

#[test]
fn forged_handles_are_refused() {
    let (_d, store) = store();
    let h = store.put_bytes(b"secret", &PutOptions::default()).unwrap();
    let other = store
        .put_bytes(
            b"public",
            &PutOptions::new(ArtifactKind::File, Classification::Low),
        )
        .unwrap();
    let mut forged = other.clone();
    forged.content_hash = h.content_hash;
    let err = store.read(&forged).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::HandleMismatch {
                field: "content_hash",
                ..
            }
        ),
        "{err:?}"
    );
    let mut forged = h.clone();
    forged.classification = Classification::Low;
    assert!(matches!(
        store.read(&forged),
        Err(ArtifactError::HandleMismatch {
            field: "classification",
            ..
        })
    ));
    let mut forged = h.clone();
    forged.artifact_id = uuid::Uuid::new_v4();
    assert!(matches!(
        store.read(&forged),
        Err(ArtifactError::NotFound { .. })
    ));
}

#[test]
fn damaged_blob_of_wrong_size_is_healed_by_a_new_put() {
    // Inline (a row) and a file.
    for len in [10_000, mex_artifacts::INLINE_MAX as usize + 10_000] {
        let (_d, store) = store();
        let bytes = data(len, 6);
        let a = store.put_bytes(&bytes, &PutOptions::default()).unwrap();
        tamper_payload(&store, &a.content_hash, "truncate");
        assert!(store.read(&a).is_err(), "{len}");
        let b = store.put_bytes(&bytes, &PutOptions::default()).unwrap();
        assert_eq!(store.read(&a).unwrap(), bytes);
        assert_eq!(store.read(&b).unwrap(), bytes);
        assert!(store.verify().unwrap().is_ok());
    }
}

// ------------------------------------------------------------------ bundles

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

#[test]
fn bundle_roundtrip_and_canonical_index() {
    let (d, store) = store();
    let src = d.path().join("src");
    write(&src, "b.txt", b"bee");
    write(&src, "a/z.bin", &[0, 1, 2]);
    write(&src, "a/y/x.txt", b"deep");
    std::os::unix::fs::symlink("../b.txt", src.join("a/link-to-b")).unwrap();
    let h = store.put_dir(&src, &BundleOptions::default()).unwrap();
    assert_eq!(h.kind, ArtifactKind::Bundle);
    let index = store.bundle_index(&h).unwrap();
    let paths: Vec<_> = index.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["a/link-to-b", "a/y/x.txt", "a/z.bin", "b.txt"]);
    assert_eq!(index.content_hash().unwrap(), h.content_hash);
    assert_eq!(
        store.read(&h).unwrap(),
        mex_envelope::canonical::to_vec(&index).unwrap()
    );
    assert_eq!(
        store
            .read_bundle_entry(&h, &RelPath::parse("a/y/x.txt").unwrap())
            .unwrap(),
        b"deep"
    );
    assert_eq!(
        store
            .read_bundle_entry(&h, &RelPath::parse("a/link-to-b").unwrap())
            .unwrap(),
        b"bee"
    );
    assert!(matches!(
        store.read_bundle_entry(&h, &RelPath::parse("nope").unwrap()),
        Err(ArtifactError::Bundle { .. })
    ));
    // Same tree again: same hash, no new payloads.
    let blobs = blob_count(&store);
    let h2 = store.put_dir(&src, &BundleOptions::default()).unwrap();
    assert_eq!(h2.content_hash, h.content_hash);
    assert_eq!(blob_count(&store), blobs);
    // A tampered entry is caught on read and by verify.
    let entry = &index.entries[1];
    tamper_payload(&store, &entry.content_hash, "flip");
    assert!(matches!(
        store.read_bundle_entry(&h, &RelPath::parse("a/y/x.txt").unwrap()),
        Err(ArtifactError::Integrity { .. })
    ));
    let report = store.verify().unwrap();
    assert_eq!(report.problems.len(), 2, "{report:#?}"); // both bundle records
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::HashMismatch && p.message.contains("a/y/x.txt"))
    );
}

#[test]
fn bundles_refuse_unsafe_entries() {
    let (d, store) = store();
    let outside = d.path().join("outside.txt");
    fs::write(&outside, b"secret").unwrap();
    let cases: Vec<(&str, Box<dyn Fn(&Path)>)> = vec![
        (
            "absolute symlink out",
            Box::new(|src: &Path| {
                std::os::unix::fs::symlink("/etc/passwd", src.join("x")).unwrap()
            }),
        ),
        (
            "relative symlink out",
            Box::new(|src: &Path| {
                std::os::unix::fs::symlink("../outside.txt", src.join("x")).unwrap()
            }),
        ),
        (
            "dangling",
            Box::new(|src: &Path| std::os::unix::fs::symlink("nothing", src.join("x")).unwrap()),
        ),
        (
            "dir symlink",
            Box::new(|src: &Path| {
                fs::create_dir(src.join("sub")).unwrap();
                std::os::unix::fs::symlink("sub", src.join("x")).unwrap()
            }),
        ),
        (
            "fifo",
            Box::new(|src: &Path| {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    src.join("x"),
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    0,
                )
                .unwrap()
            }),
        ),
        (
            "socket",
            Box::new(|src: &Path| {
                std::mem::forget(std::os::unix::net::UnixListener::bind(src.join("x")).unwrap());
            }),
        ),
        (
            "control char",
            Box::new(|src: &Path| fs::write(src.join("a\nb"), b"").unwrap()),
        ),
        (
            "backslash",
            Box::new(|src: &Path| fs::write(src.join("a\\b"), b"").unwrap()),
        ),
        (
            "non-utf8",
            Box::new(|src: &Path| {
                use std::os::unix::ffi::OsStrExt;
                fs::write(src.join(std::ffi::OsStr::from_bytes(b"bad\xff")), b"").unwrap()
            }),
        ),
        (
            "nfc collision",
            Box::new(|src: &Path| {
                fs::write(src.join("caf\u{e9}"), b"1").unwrap();
                fs::write(src.join("cafe\u{301}"), b"2").unwrap();
            }),
        ),
    ];
    for (i, (name, setup)) in cases.iter().enumerate() {
        let src = d.path().join(format!("case{i}"));
        fs::create_dir(&src).unwrap();
        fs::write(src.join("ok.txt"), b"fine").unwrap();
        setup(&src);
        let err = store.put_dir(&src, &BundleOptions::default()).unwrap_err();
        assert!(
            matches!(err, ArtifactError::UnsafeEntry { .. }),
            "{name}: {err:?}"
        );
        assert!(
            err.to_string().contains(&src.display().to_string()),
            "{name}: {err}"
        );
    }
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn nfd_and_nfc_names_give_the_same_bundle() {
    let (d, store) = store();
    let nfc = d.path().join("nfc");
    let nfd = d.path().join("nfd");
    write(&nfc, "caf\u{e9}/x", b"1");
    write(&nfd, "cafe\u{301}/x", b"1");
    let a = store.put_dir(&nfc, &BundleOptions::default()).unwrap();
    let b = store.put_dir(&nfd, &BundleOptions::default()).unwrap();
    assert_eq!(a.content_hash, b.content_hash);
    assert_eq!(
        store.bundle_index(&b).unwrap().entries[0].path,
        "caf\u{e9}/x"
    );
}

#[test]
fn line_endings_are_normalized_only_when_asked_and_only_in_text() {
    let (d, store) = store();
    let crlf = d.path().join("crlf");
    let lf = d.path().join("lf");
    write(&crlf, "t.txt", b"a\r\nb\rc\r\n");
    write(&crlf, "bin", b"\0\r\n");
    write(&lf, "t.txt", b"a\nb\nc\n");
    write(&lf, "bin", b"\0\r\n");
    let plain = |p: &Path| store.put_dir(p, &BundleOptions::default()).unwrap();
    let norm = |p: &Path| {
        store
            .put_dir(
                p,
                &BundleOptions {
                    normalize_line_endings: true,
                    ..Default::default()
                },
            )
            .unwrap()
    };
    assert_ne!(plain(&crlf).content_hash, plain(&lf).content_hash);
    let h = norm(&crlf);
    assert_eq!(h.content_hash, norm(&lf).content_hash);
    assert!(
        store
            .manifest(h.artifact_id)
            .unwrap()
            .normalize_line_endings
    );
    assert_eq!(
        store
            .read_bundle_entry(&h, &RelPath::parse("t.txt").unwrap())
            .unwrap(),
        b"a\nb\nc\n"
    );
    assert_eq!(
        store
            .read_bundle_entry(&h, &RelPath::parse("bin").unwrap())
            .unwrap(),
        b"\0\r\n"
    );
}

// ----------------------------------------------------------------------- gc

#[test]
fn gc_deletes_expired_unpinned_and_reports_why() {
    let (_d, store) = store();
    let mut ttl1 = PutOptions::default();
    ttl1.retention_ttl_days = Some(1);
    let expired = store.put_bytes(b"expired", &ttl1).unwrap();
    let shared_a = store.put_bytes(b"shared", &ttl1).unwrap();
    let shared_b = store.put_bytes(b"shared", &PutOptions::default()).unwrap();
    let mut pinned = ttl1.clone();
    pinned.pinned = true;
    let pinned = store.put_bytes(b"pinned", &pinned).unwrap();
    let forever = store.put_bytes(b"forever", &PutOptions::default()).unwrap();
    let later = store
        .put_bytes(b"later", &{
            let mut o = PutOptions::default();
            o.retention_ttl_days = Some(30);
            o
        })
        .unwrap();
    fs::write(store.root().join("tmp/put-junk.tmp"), b"left by a crash").unwrap();

    // Not yet expired: nothing happens.
    let report = store.gc(UtcTimestamp::now()).unwrap();
    assert!(
        report.deleted.is_empty() && report.blobs_deleted.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.temp_entries_removed, 1);

    let now =
        UtcTimestamp::from_unix_millis(UtcTimestamp::now().unix_millis() + 2 * 86_400_000).unwrap();
    let report = store.gc(now).unwrap();
    let mut gone: Vec<_> = report.deleted.iter().map(|d| d.artifact_id).collect();
    gone.sort();
    let mut want = vec![expired.artifact_id, shared_a.artifact_id];
    want.sort();
    assert_eq!(gone, want);
    assert!(
        report
            .deleted
            .iter()
            .all(|d| d.reason.starts_with("expired"))
    );
    // "shared" bytes are still referenced by shared_b: only "expired"'s blob goes.
    assert_eq!(report.blobs_deleted, vec![(expired.content_hash, 7)]);
    for h in [&shared_b, &pinned, &forever, &later] {
        store.read(h).unwrap();
    }
    assert!(matches!(
        store.read(&expired),
        Err(ArtifactError::NotFound { .. })
    ));
    // The report is itself an artifact.
    assert_eq!(report.report.kind, ArtifactKind::Report);
    let body: serde_json::Value =
        serde_json::from_slice(&store.read(&report.report).unwrap()).unwrap();
    assert_eq!(body["deleted"].as_array().unwrap().len(), 2);
    assert!(
        body["deleted"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert_eq!(
        body["payloads_deleted"][0]["content_hash"],
        expired.content_hash.to_string()
    );
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn quota_evicts_oldest_unpinned_and_never_pinned() {
    let (_d, store) = store();
    let mut pin = PutOptions::default();
    pin.pinned = true;
    let p1 = store.put_bytes(&data(1000, 1), &pin).unwrap();
    std::thread::sleep(Duration::from_millis(3));
    let old = store
        .put_bytes(&data(1000, 2), &PutOptions::default())
        .unwrap();
    std::thread::sleep(Duration::from_millis(3));
    let mid = store
        .put_bytes(&data(1000, 3), &PutOptions::default())
        .unwrap();
    std::thread::sleep(Duration::from_millis(3));
    let new = store
        .put_bytes(&data(1000, 4), &PutOptions::default())
        .unwrap();
    let opts = GcOptions {
        now: UtcTimestamp::now(),
        max_total_bytes: Some(2500),
        report_ttl_days: Some(1),
    };
    let report = store.gc_with(&opts).unwrap();
    let gone: Vec<_> = report.deleted.iter().map(|d| d.artifact_id).collect();
    assert_eq!(gone, vec![old.artifact_id, mid.artifact_id]);
    assert!(report.deleted[0].reason.starts_with("quota"));
    assert!(!report.quota_unmet);
    store.read(&p1).unwrap();
    store.read(&new).unwrap();
    // A quota below the pinned bytes evicts every unpinned artifact but not the pinned one.
    let report = store
        .gc_with(&GcOptions {
            max_total_bytes: Some(10),
            ..opts
        })
        .unwrap();
    assert!(report.quota_unmet);
    assert!(
        report
            .deleted
            .iter()
            .all(|d| d.artifact_id != p1.artifact_id)
    );
    store.read(&p1).unwrap();
    assert!(store.set_pinned(p1.artifact_id, false).is_ok());
    assert!(!store.manifest(p1.artifact_id).unwrap().pinned);
}

#[test]
fn gc_keeps_payloads_when_a_manifest_is_unreadable() {
    let (_d, store) = store();
    let mut ttl1 = PutOptions::default();
    ttl1.retention_ttl_days = Some(1);
    let expired = store.put_bytes(b"expired", &ttl1).unwrap();
    let damaged = store.put_bytes(b"damaged", &PutOptions::default()).unwrap();
    support::set_record_row(store.root(), damaged.artifact_id, b"{");
    let now =
        UtcTimestamp::from_unix_millis(UtcTimestamp::now().unix_millis() + 3 * 86_400_000).unwrap();
    let report = store.gc(now).unwrap();
    assert_eq!(report.deleted.len(), 1);
    assert_eq!(report.deleted[0].artifact_id, expired.artifact_id);
    assert!(
        report.blobs_deleted.is_empty(),
        "no payload may go while a manifest cannot be read"
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains(&damaged.artifact_id.to_string())),
        "{:?}",
        report.notes
    );
    assert!(support::inline_row(store.root(), &damaged.content_hash.to_hex()).is_some());
}

#[test]
fn export_bundle_writes_the_tree_read_only_and_refuses_tampered_entries() {
    let (d, store) = store();
    let src = d.path().join("src");
    write(&src, "b.txt", b"bee");
    write(&src, "a/y/x.txt", b"deep");
    write(&src, "a/z.bin", &[0, 1, 2]);
    let h = store.put_dir(&src, &BundleOptions::default()).unwrap();
    let dest = d.path().join("out");
    assert_eq!(store.export_bundle(&h, &dest).unwrap(), 3);
    assert_eq!(fs::read(dest.join("a/y/x.txt")).unwrap(), b"deep");
    assert_eq!(fs::read(dest.join("a/z.bin")).unwrap(), [0, 1, 2]);
    assert_eq!(fs::read(dest.join("b.txt")).unwrap(), b"bee");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dest.join("b.txt")), 0o444);
    assert_eq!(mode(&dest.join("a/y")), 0o555);
    assert_eq!(mode(&dest), 0o555);
    // The destination must be new.
    assert!(matches!(
        store.export_bundle(&h, &dest),
        Err(ArtifactError::Io { .. })
    ));
    // An entry whose payload changed is refused, not exported.
    let index = store.bundle_index(&h).unwrap();
    tamper_payload(&store, &index.entries[0].content_hash, "flip");
    let err = store.export_bundle(&h, &d.path().join("out2")).unwrap_err();
    assert!(matches!(err, ArtifactError::Integrity { .. }), "{err:?}");
    // Let the temporary directory be removed.
    for dir in [&dest, &dest.join("a"), &dest.join("a/y")] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

// ------------------------------------------------------------ on-disk layout

/// Every way bytes and records reach the disk, with anonymous (`O_TMPFILE`)
/// temp files and with the named fallback: a record is exactly one row of
/// `index.db` (no `records/`), a small payload one inline row and no file,
/// large blobs are shared read-only files, re-pinning rewrites the row, a
/// damaged blob (row or file) is replaced, and `tmp/` is left empty.
#[test]
fn both_temp_file_modes_store_the_same_layout() {
    for named in [false, true] {
        let (_d, store) = store();
        store.use_named_temp_files(named);
        let big = data(3 << 20, 9); // the pipelined ingest path
        let a = store.put_bytes(&big, &PutOptions::default()).unwrap();
        let b = store.put_bytes(&big, &PutOptions::default()).unwrap();
        let small = store.put_bytes(b"small", &PutOptions::default()).unwrap();
        assert_eq!(support::blob_file_count(store.root()), 1, "named={named}");
        assert_eq!(support::inline_count(store.root()), 1, "named={named}");
        assert_eq!(
            support::inline_row(store.root(), &small.content_hash.to_hex()).unwrap(),
            b"small"
        );
        assert_eq!(
            fs::metadata(blob_path(&store, &a))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o444
        );
        assert!(!store.root().join("records").exists());
        for h in [&a, &b, &small] {
            let row = support::record_row(store.root(), h.artifact_id).unwrap();
            let m: mex_envelope::ArtifactManifest = serde_json::from_slice(&row).unwrap();
            assert_eq!(&m.artifact, h);
        }

        let pinned = store.set_pinned(small.artifact_id, true).unwrap();
        assert!(pinned.pinned && store.manifest(small.artifact_id).unwrap().pinned);
        let row = support::record_row(store.root(), small.artifact_id).unwrap();
        assert!(String::from_utf8(row).unwrap().contains("\"pinned\": true"));

        tamper_payload(&store, &small.content_hash, "truncate");
        let again = store.put_bytes(b"small", &PutOptions::default()).unwrap();
        assert_eq!(store.read(&again).unwrap(), b"small");
        assert_eq!(store.read(&small).unwrap(), b"small");
        tamper(&blob_path(&store, &a), "truncate");
        store.put_bytes(&big, &PutOptions::default()).unwrap();
        assert_eq!(store.read(&a).unwrap(), big);

        let gc = store.gc(UtcTimestamp::now()).unwrap();
        assert!(gc.temp_entries.is_empty(), "named={named}: {gc:?}");
        assert!(store.verify().unwrap().is_ok(), "named={named}");
        assert_eq!(store.list().unwrap().len(), 6); // + two again + the gc report
        assert_eq!(tmp_count(&store), 0, "named={named}");
    }
}

/// Anything in a `records/` directory of a layout-3 store (the records
/// live in `index.db`) is reported as a stray, and never listed.
#[test]
fn verify_reports_what_in_records_is_not_a_record_file() {
    let (_d, store) = store();
    let h = store.put_bytes(b"real", &PutOptions::default()).unwrap();
    let records = store.root().join("records");
    fs::create_dir(&records).unwrap();
    let old_style = uuid::Uuid::new_v4().to_string();
    fs::create_dir(records.join(&old_style)).unwrap();
    fs::write(records.join(&old_style).join("artifact.json"), b"{}").unwrap();
    fs::write(records.join("notes.json"), b"{}").unwrap();
    let other = uuid::Uuid::new_v4();
    fs::write(records.join(format!("{other}.json")), b"{}").unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.records, 1);
    let mut strays: Vec<String> = report
        .problems
        .iter()
        .map(|p| {
            assert_eq!(p.kind, ProblemKind::Stray, "{p:?}");
            assert!(p.message.contains("index.db"), "{}", p.message);
            p.path.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    strays.sort();
    let mut want = vec![old_style, "notes.json".to_owned(), format!("{other}.json")];
    want.sort();
    assert_eq!(strays, want);
    assert_eq!(store.list().unwrap(), vec![h.artifact_id]);
}
