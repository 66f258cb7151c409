//! Migration on open of a layout-1 store (`records/<id>/artifact.json`)
//! through layout 2 (`records/<id>.json`) to layout 3 (records in
//! `index.db`), and of a layout-2 store to layout 3, including a migrating
//! child process SIGKILLed between any two of its steps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Write};
use std::path::Path;

use mex_artifacts::{ArtifactStore, ProblemKind, PutOptions, StoreConfig};
use mex_envelope::{ArtifactManifest, Sha256Digest};
use support::spawn_self;
use uuid::Uuid;

const CHILD_ENV: &str = "MEX_ARTIFACTS_MIGRATE_CHILD";
const STOP_ENV: &str = "MEX_ARTIFACTS_MIGRATE_STOP_AT";
const RECORDS: u64 = 12;

/// A store in layout 2 with `RECORDS` artifacts (payloads as files, as
/// layout 2 kept them) and a stray file in `records/`; returns each
/// artifact's exact record bytes.
fn make_layout_2(root: &Path) -> BTreeMap<Uuid, Vec<u8>> {
    let store = ArtifactStore::at(root).unwrap();
    let mut made = Vec::new();
    for i in 0..RECORDS {
        let payload = format!("artifact {i}").into_bytes();
        let h = store.put_bytes(&payload, &PutOptions::default()).unwrap();
        made.push((h.artifact_id, payload));
    }
    drop(store);
    let records = root.join("records");
    fs::create_dir(&records).unwrap();
    let mut originals = BTreeMap::new();
    for (id, payload) in made {
        let bytes = support::record_row(root, id).unwrap();
        fs::write(records.join(format!("{id}.json")), &bytes).unwrap();
        let hex = Sha256Digest::of(&payload).to_hex();
        let shard = root.join("blobs/sha256").join(&hex[..2]);
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join(&hex[2..]), &payload).unwrap();
        originals.insert(id, bytes);
    }
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = fs::remove_file(root.join(name));
    }
    fs::write(records.join("notes.txt"), b"not a record").unwrap();
    fs::write(root.join("LAYOUT"), "mex-artifacts-store-2\n").unwrap();
    originals
}

/// A store in layout 1 with `RECORDS` artifacts, an empty record directory
/// (never an artifact) and a stray file; returns each artifact's exact
/// record bytes.
fn make_layout_1(root: &Path) -> BTreeMap<Uuid, Vec<u8>> {
    let originals = make_layout_2(root);
    let records = root.join("records");
    for id in originals.keys() {
        fs::create_dir(records.join(id.to_string())).unwrap();
        fs::rename(
            records.join(format!("{id}.json")),
            records.join(id.to_string()).join("artifact.json"),
        )
        .unwrap();
    }
    fs::create_dir(records.join(Uuid::new_v4().to_string())).unwrap();
    fs::write(root.join("LAYOUT"), "mex-artifacts-store-1\n").unwrap();
    originals
}

fn layout(root: &Path) -> String {
    fs::read_to_string(root.join("LAYOUT")).unwrap()
}

/// The record rows of `index.db`, if it exists, read directly.
fn rows(root: &Path) -> BTreeMap<String, Vec<u8>> {
    if !root.join("index.db").exists() {
        return BTreeMap::new();
    }
    let db = support::index_db(root);
    let mut stmt = db.prepare("SELECT id, manifest FROM records").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The invariant at any instant of a migration: every artifact is reachable
/// in an old form (layout-1 directory, layout-2 file) or as a row, every
/// form present holds exactly its original bytes, and nothing else looks
/// like a record. Returns (old directories, record files, rows).
fn check_no_record_lost(
    root: &Path,
    originals: &BTreeMap<Uuid, Vec<u8>>,
    what: &str,
) -> (usize, usize, usize) {
    let records = root.join("records");
    let rows = rows(root);
    let (mut old, mut new) = (0, 0);
    for (id, bytes) in originals {
        let old_path = records.join(id.to_string()).join("artifact.json");
        let new_path = records.join(format!("{id}.json"));
        let row = rows.get(&id.to_string());
        assert!(
            old_path.exists() || new_path.exists() || row.is_some(),
            "{what}: artifact {id} lost"
        );
        for path in [&old_path, &new_path] {
            if path.exists() {
                assert_eq!(&fs::read(path).unwrap(), bytes, "{what}: {path:?} changed");
            }
        }
        if let Some(row) = row {
            assert_eq!(row, bytes, "{what}: row of {id} changed");
        }
        old += usize::from(old_path.exists());
        new += usize::from(new_path.exists());
    }
    for id in rows.keys() {
        assert!(
            originals.contains_key(&Uuid::parse_str(id).unwrap()),
            "{what}: unexpected row {id}"
        );
    }
    if records.exists() {
        for entry in fs::read_dir(&records).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".json") {
                assert!(
                    originals.contains_key(&Uuid::parse_str(stem).unwrap()),
                    "{what}: unexpected {name}"
                );
            }
        }
    }
    (old, new, rows.len())
}

/// Run `migrate_child` on `root`, stopping at step `stop`; SIGKILL it
/// there. Returns whether it paused (false: it finished opening).
fn run_child_until(root: &Path, stop: usize, what: &str) -> bool {
    let (mut child, mut out) = spawn_self(
        "migrate_child",
        &[
            (CHILD_ENV, root.display().to_string()),
            (STOP_ENV, stop.to_string()),
        ],
    );
    let mut line = String::new();
    let paused = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "{what}: child died");
        match line.trim_end() {
            l if l.ends_with("paused") => break true,
            l if l.ends_with("opened") => break false,
            _ => {}
        }
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    paused
}

/// After a finished migration: layout 3, every record a row with its
/// original bytes, no old form left, only the stray file in `records/`.
fn check_migrated(root: &Path, originals: &BTreeMap<Uuid, Vec<u8>>) {
    let store = ArtifactStore::at(root).unwrap();
    assert_eq!(layout(root), "mex-artifacts-store-3\n");
    assert_eq!(
        store.list().unwrap(),
        originals.keys().copied().collect::<Vec<_>>()
    );
    let (old, new, rows) = check_no_record_lost(root, originals, "after the last open");
    assert_eq!((old, new, rows), (0, 0, originals.len()));
    for id in originals.keys() {
        let h = store.handle(*id).unwrap();
        assert!(store.read(&h).is_ok());
    }
    let report = store.verify().unwrap();
    assert_eq!(report.records, originals.len());
    assert_eq!(report.problems.len(), 1, "only the stray: {report:#?}");
    assert_eq!(report.problems[0].kind, ProblemKind::Stray);
    assert!(report.problems[0].path.ends_with("records/notes.txt"));
}

/// The child: opens the store named by the env var, stopping for good after
/// migration step `STOP_ENV` (the parent kills it there).
#[test]
fn migrate_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        // Run by the harness: the hook sees every step of a migration once.
        let dir = tempfile::tempdir().unwrap();
        make_layout_1(dir.path());
        let mut steps = Vec::new();
        ArtifactStore::open_with_migration_hook(dir.path(), StoreConfig::default(), &mut |n| {
            steps.push(n)
        })
        .unwrap();
        let want: Vec<usize> = (1..=steps.len()).collect();
        assert_eq!(steps, want);
        // 1 to 2: links, fsync, two removals per directory (12 + the empty
        // one), fsync, marker. 2 to 3: stale rows cleared, one import batch,
        // marker, one removal per record file, `records/` (kept: the stray
        // is in it).
        assert_eq!(
            steps.len(),
            (12 + 1 + 2 * 13 + 1 + 1) + (1 + 1 + 1 + 12 + 1)
        );
        return;
    };
    let stop: usize = std::env::var(STOP_ENV).unwrap().parse().unwrap();
    let mut hook = |n: usize| {
        if n == stop {
            println!("paused");
            std::io::stdout().flush().unwrap();
            loop {
                std::thread::park();
            }
        }
    };
    ArtifactStore::open_with_migration_hook(&root, StoreConfig::default(), &mut hook).unwrap();
    println!("opened");
    std::io::stdout().flush().unwrap();
}

#[test]
fn a_layout_1_store_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let originals = make_layout_1(dir.path());
    check_migrated(dir.path(), &originals);
    // A second open has nothing to do.
    let again = ArtifactStore::at(dir.path()).unwrap();
    assert_eq!(again.list().unwrap().len(), originals.len());
}

#[test]
fn a_layout_2_store_is_migrated_on_open_and_refused_records_stay_for_verify() {
    let dir = tempfile::tempdir().unwrap();
    let originals = make_layout_2(dir.path());
    let records = dir.path().join("records");
    // A record file the reader refuses: not imported, reported, kept.
    let garbage = Uuid::new_v4();
    fs::write(records.join(format!("{garbage}.json")), b"{ not json").unwrap();
    // A record file naming another id than its own: the same.
    let (&first, first_bytes) = originals.iter().next().unwrap();
    let misnamed = Uuid::new_v4();
    fs::write(records.join(format!("{misnamed}.json")), first_bytes).unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    assert_eq!(layout(dir.path()), "mex-artifacts-store-3\n");
    assert_eq!(
        store.list().unwrap(),
        originals.keys().copied().collect::<Vec<_>>()
    );
    assert!(matches!(
        store.manifest(garbage),
        Err(mex_artifacts::ArtifactError::NotFound { .. })
    ));
    let report = store.verify().unwrap();
    let mut strays: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Stray)
        .map(|p| p.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    strays.sort();
    let mut want = vec![
        format!("{garbage}.json"),
        format!("{misnamed}.json"),
        "notes.txt".to_owned(),
    ];
    want.sort();
    assert_eq!(strays, want, "{report:#?}");
    assert_eq!(report.problems.len(), 3, "{report:#?}");
    drop(store);
    // Once those are moved out, the next open removes records/ too.
    for name in &want {
        fs::remove_file(records.join(name)).unwrap();
    }
    let store = ArtifactStore::at(dir.path()).unwrap();
    assert!(!records.exists());
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.handle(first).unwrap().artifact_id, first);
}

#[test]
fn an_old_record_whose_new_name_is_taken_by_another_file_is_kept_for_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ids = make_layout_1(dir.path());
    let first = *ids.keys().next().unwrap();
    let records = dir.path().join("records");
    // A planted record file under the new name, different from the old one.
    let mut planted: ArtifactManifest = serde_json::from_slice(
        &fs::read(records.join(first.to_string()).join("artifact.json")).unwrap(),
    )
    .unwrap();
    planted.pinned = !planted.pinned;
    fs::write(
        records.join(format!("{first}.json")),
        serde_json::to_vec(&planted).unwrap(),
    )
    .unwrap();
    let store = ArtifactStore::at(dir.path()).unwrap();
    assert_eq!(store.list().unwrap().len(), ids.len());
    assert!(
        records
            .join(first.to_string())
            .join("artifact.json")
            .exists()
    );
    let report = store.verify().unwrap();
    let strays: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Stray)
        .map(|p| p.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        strays,
        [first.to_string(), "notes.txt".to_owned()],
        "{report:#?}"
    );
}

#[test]
fn a_newer_layout_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(ArtifactStore::at(dir.path()).unwrap());
    fs::write(dir.path().join("LAYOUT"), "mex-artifacts-store-4\n").unwrap();
    let err = ArtifactStore::at(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("mex-artifacts-store-4") && err.contains("newer mex"),
        "{err}"
    );
    fs::write(dir.path().join("LAYOUT"), "something else\n").unwrap();
    let err = ArtifactStore::at(dir.path()).unwrap_err().to_string();
    assert!(err.contains("unknown store layout"), "{err}");
}

/// SIGKILL between any two steps of a migration from layout 1 (and again
/// while the next open resumes it): no record is lost, duplicated or
/// changed, and the next open finishes the job.
#[test]
fn a_migration_killed_at_any_step_is_finished_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let originals = make_layout_1(&root);
    let mut mid_way = 0;
    let mut emptied_not_removed = 0;
    // Each round resumes what the previous killed child left. Steps: one
    // link per old record, an fsync, then two removals per directory, ...
    // (see `migrate_child`); 1000 is past the end (that child finishes).
    for stop in [1usize, 5, 12, 13, 14, 15, 20, 3, 9, 30, 2, 4, 1000] {
        let what = format!("stop at step {stop}");
        let paused = run_child_until(&root, stop, &what);
        let (old, new, _) = check_no_record_lost(&root, &originals, &what);
        if paused && layout(&root) == "mex-artifacts-store-1\n" && old > 0 && new > 0 {
            mid_way += 1;
        }
        // Killed between removing an old manifest and its directory.
        if originals.keys().any(|id| {
            let d = root.join("records").join(id.to_string());
            d.is_dir() && !d.join("artifact.json").exists()
        }) {
            emptied_not_removed += 1;
        }
        if !paused {
            break;
        }
    }
    assert!(mid_way > 0, "no kill left a half-migrated store");
    assert!(
        emptied_not_removed > 0,
        "no kill landed in the removal phase"
    );
    check_migrated(&root, &originals);
    println!("{mid_way} kills left a half-migrated store");
}

/// The same from layout 2: killed after the import committed but before
/// the marker (files and rows both there, marker at 2), after the marker
/// (rows, marker at 3, every file still there), and in the middle of the
/// removal of the imported files, which a later open finishes.
#[test]
fn a_migration_from_layout_2_killed_at_any_step_is_finished_by_the_next_open() {
    let n = RECORDS as usize;
    // Step 1: rows left by an earlier attempt cleared; 2: import
    // committed; 3: marker replaced; then one per removal. At layout 3, an
    // open's cleanup counts its removals from 1 again.
    let rounds: [(usize, &str, (usize, usize, usize)); 7] = [
        (1, "mex-artifacts-store-2\n", (0, n, 0)),
        (2, "mex-artifacts-store-2\n", (0, n, n)),
        // The next attempt starts over from the files.
        (1, "mex-artifacts-store-2\n", (0, n, 0)),
        (3, "mex-artifacts-store-3\n", (0, n, n)),
        (3, "mex-artifacts-store-3\n", (0, n - 3, n)),
        (5, "mex-artifacts-store-3\n", (0, n - 8, n)),
        (1000, "mex-artifacts-store-3\n", (0, 0, n)),
    ];
    // Each round runs on the state the previous kill left.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let originals = make_layout_2(&root);
    for (stop, marker, forms) in rounds {
        let what = format!("stop at step {stop}");
        let paused = run_child_until(&root, stop, &what);
        assert_eq!(paused, stop != 1000, "{what}");
        assert_eq!(layout(&root), marker, "{what}");
        assert_eq!(
            check_no_record_lost(&root, &originals, &what),
            forms,
            "{what}"
        );
    }
    check_migrated(&root, &originals);
}

const FEW_FILES_ENV: &str = "MEX_ARTIFACTS_MIGRATE_FEW_FILES";

/// A store-1 store with more records than the process may have open files
/// migrates (each old record directory is opened, used and closed in turn),
/// in a child process whose open-file limit is lowered to 64.
#[test]
fn a_store_with_more_records_than_open_files_migrates() {
    if let Ok(root) = std::env::var(FEW_FILES_ENV) {
        let limit = rustix::process::Rlimit {
            current: Some(64),
            maximum: Some(64),
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
        match ArtifactStore::at(&root) {
            Ok(store) => println!("opened {}", store.list().unwrap().len()),
            Err(e) => println!("refused: {e}"),
        }
        std::io::stdout().flush().unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let originals = make_layout_2(dir.path());
    let records = dir.path().join("records");
    let template: serde_json::Value =
        serde_json::from_slice(originals.values().next().unwrap()).unwrap();
    for id in originals.keys() {
        fs::remove_file(records.join(format!("{id}.json"))).unwrap();
    }
    const MANY: usize = 200;
    for _ in 0..MANY {
        let id = Uuid::new_v4();
        let mut m = template.clone();
        m["artifact"]["artifact_id"] = serde_json::json!(id.to_string());
        fs::create_dir(records.join(id.to_string())).unwrap();
        fs::write(
            records.join(id.to_string()).join("artifact.json"),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
    }
    fs::write(dir.path().join("LAYOUT"), "mex-artifacts-store-1\n").unwrap();
    let (mut child, mut out) = spawn_self(
        "a_store_with_more_records_than_open_files_migrates",
        &[(FEW_FILES_ENV, dir.path().display().to_string())],
    );
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // libtest may print the test's name first on the same line.
        if let Some(at) = line.find("opened ").or_else(|| line.find("refused: ")) {
            said = line[at..].trim_end().to_owned();
        }
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(said, format!("opened {MANY}"));
    assert_eq!(layout(dir.path()), "mex-artifacts-store-3\n");
}
