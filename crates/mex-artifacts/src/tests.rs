//! Unit tests that need private hooks (fault injection).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use crate::store::TMP;
use crate::{ArtifactError, ArtifactStore, PutOptions};

fn tmp_entries(store: &ArtifactStore) -> usize {
    std::fs::read_dir(store.root().join(TMP)).unwrap().count()
}

#[test]
fn disk_full_is_clear_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ArtifactStore::at(dir.path()).unwrap();
    let before = store
        .put_bytes(b"already here", &PutOptions::default())
        .unwrap();
    // Large input (ingest's pipeline path) and input just over the inline
    // limit (ingest's one-buffer path; anything smaller never has a file).
    for (len, limit) in [(5 << 20, 3 << 20), (crate::INLINE_MAX as usize + 1000, 10)] {
        store.fault_enospc_after = Some(limit);
        let data = vec![0x5au8; len];
        let err = store.put_bytes(&data, &PutOptions::default()).unwrap_err();
        let ArtifactError::DiskFull { written, .. } = &err else {
            panic!("expected DiskFull, got {err:?}")
        };
        assert!(*written <= limit, "{written} > {limit}");
        let message = err.to_string();
        assert!(
            message.contains("disk full")
                && message.contains("free space")
                && message.contains("no partial artifact"),
            "{message}"
        );
        assert!(
            message.contains("/tmp/put-"),
            "message names the file: {message}"
        );
        assert_eq!(tmp_entries(&store), 0, "temp file removed");
        assert_eq!(
            store.list().unwrap(),
            vec![before.artifact_id],
            "no record appeared"
        );
    }
    store.fault_enospc_after = None;
    assert!(store.verify().unwrap().is_ok());
    let h = store
        .put_bytes(&vec![1u8; 3 << 20], &PutOptions::default())
        .unwrap();
    assert_eq!(store.read(&h).unwrap().len(), 3 << 20);
}

#[test]
fn enospc_during_record_write_is_disk_full_too() {
    let e = std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
    assert!(matches!(
        crate::error::store_io("write", "x".into(), 0, e),
        ArtifactError::DiskFull { .. }
    ));
    let e = std::io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error());
    assert!(matches!(
        crate::error::store_io("write", "x".into(), 0, e),
        ArtifactError::Io { .. }
    ));
}

#[test]
fn opening_reclaims_crash_leftovers_but_never_under_a_live_put() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    assert!(store.reclaimed_at_open().is_empty());
    std::fs::write(store.root().join(TMP).join("put-dead.tmp"), b"junk").unwrap();
    std::fs::create_dir(store.root().join(TMP).join("rec-dead")).unwrap();

    // A put in flight (here or in another process) holds the shared lock:
    // an open meanwhile leaves tmp/ alone, as do explicit reclaims.
    let in_flight = store.lock(false).unwrap();
    let other = ArtifactStore::at(dir.path()).unwrap();
    assert!(other.reclaimed_at_open().is_empty());
    assert_eq!(other.reclaim_temp().unwrap(), None);
    assert_eq!(tmp_entries(&store), 2);
    drop(in_flight);

    // Idle: the next open removes both leftovers and names them.
    let again = ArtifactStore::at(dir.path()).unwrap();
    assert_eq!(again.reclaimed_at_open(), ["put-dead.tmp", "rec-dead"]);
    assert_eq!(tmp_entries(&again), 0);
    assert_eq!(again.reclaim_temp().unwrap(), Some(Vec::new()));
}

#[test]
fn a_bundle_refuses_twins_and_hostile_names() {
    use crate::{BundleBuilder, validate_bundle_index};
    use mex_envelope::Sha256Digest;
    let d = Sha256Digest::of(b"");
    for (first, second) in [
        ("caf\u{e9}.txt", "cafe\u{301}.txt"), // NFC and NFD
        ("a.txt", "A.txt"),                   // case
        ("a.txt", "\u{FF41}.txt"),            // fullwidth look-alike
        ("dir/file", "dir/\u{FB01}le"),       // ligature
        ("x", "./x"),                         // '.' segment
    ] {
        let mut b = BundleBuilder::new(false);
        b.add(first, d, 0).unwrap();
        let err = b.add(second, d, 0).unwrap_err().to_string();
        assert!(
            err.contains("look") || err.contains("normalize"),
            "{first:?} / {second:?}: {err}"
        );
        assert_eq!(b.len(), 1);
    }
    let mut b = BundleBuilder::new(false);
    for bad in ["x\u{202E}txt.exe", "x\u{2066}y", "x\u{200B}y"] {
        assert!(b.add(bad, d, 0).is_err(), "{bad:?}");
    }
    // Different scripts are different names.
    b.add("a.txt", d, 0).unwrap();
    b.add("\u{0430}.txt", d, 0).unwrap();
    assert!(validate_bundle_index(&b.finish()).is_ok());
    // An index assembled by hand with twins or an RLO is not canonical.
    let entry = |path: &str| mex_envelope::BundleEntry {
        path: path.to_owned(),
        content_hash: d,
        size_bytes: 0,
    };
    for entries in [
        vec![entry("A"), entry("a")],
        vec![entry("x\u{202E}y")],
        vec![entry("cafe\u{301}")],
    ] {
        let index = mex_envelope::BundleIndex {
            normalize_line_endings: false,
            entries,
        };
        assert!(validate_bundle_index(&index).is_err(), "{index:?}");
    }
}
