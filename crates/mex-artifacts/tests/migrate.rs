//! Migration of a layout-1 store (`records/<id>/artifact.json`) to layout 2
//! (`records/<id>.json`) on open, including a migrating child process
//! SIGKILLed between any two of its steps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, Write};
use std::path::Path;

use mex_artifacts::{ArtifactStore, ProblemKind, PutOptions, StoreConfig};
use mex_envelope::ArtifactManifest;
use support::spawn_self;
use uuid::Uuid;

const CHILD_ENV: &str = "MEX_ARTIFACTS_MIGRATE_CHILD";
const STOP_ENV: &str = "MEX_ARTIFACTS_MIGRATE_STOP_AT";
const RECORDS: u64 = 12;

/// A store in layout 1 with `RECORDS` artifacts, an empty record directory
/// (never an artifact) and a stray file; returns the artifact ids.
fn make_layout_1(root: &Path) -> BTreeSet<Uuid> {
    let store = ArtifactStore::at(root).unwrap();
    let mut ids = BTreeSet::new();
    for i in 0..RECORDS {
        let h = store
            .put_bytes(format!("artifact {i}").as_bytes(), &PutOptions::default())
            .unwrap();
        ids.insert(h.artifact_id);
    }
    drop(store);
    let records = root.join("records");
    for id in &ids {
        fs::create_dir(records.join(id.to_string())).unwrap();
        fs::rename(
            records.join(format!("{id}.json")),
            records.join(id.to_string()).join("artifact.json"),
        )
        .unwrap();
    }
    fs::create_dir(records.join(Uuid::new_v4().to_string())).unwrap();
    fs::write(records.join("notes.txt"), b"not a record").unwrap();
    fs::write(root.join("LAYOUT"), "mex-artifacts-store-1\n").unwrap();
    ids
}

fn layout(root: &Path) -> String {
    fs::read_to_string(root.join("LAYOUT")).unwrap()
}

/// The on-disk invariant at any instant of a migration: every artifact is
/// reachable in the old or the new form, each form present parses as that
/// artifact's manifest, and nothing else looks like a record. Returns
/// (old directories left, new files present).
fn check_no_record_lost(root: &Path, ids: &BTreeSet<Uuid>, what: &str) -> (usize, usize) {
    let records = root.join("records");
    let parse = |path: &Path, id: &Uuid| {
        let m: ArtifactManifest = serde_json::from_slice(&fs::read(path).unwrap())
            .unwrap_or_else(|e| panic!("{what}: {} does not parse: {e}", path.display()));
        assert_eq!(m.artifact.artifact_id, *id, "{what}");
    };
    let (mut old, mut new) = (0, 0);
    for id in ids {
        let old_path = records.join(id.to_string()).join("artifact.json");
        let new_path = records.join(format!("{id}.json"));
        assert!(
            old_path.exists() || new_path.exists(),
            "{what}: artifact {id} lost"
        );
        if old_path.exists() {
            parse(&old_path, id);
            old += 1;
        }
        if new_path.exists() {
            parse(&new_path, id);
            new += 1;
        }
    }
    for entry in fs::read_dir(&records).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".json") {
            assert!(
                ids.contains(&Uuid::parse_str(stem).unwrap()),
                "{what}: unexpected {name}"
            );
        }
    }
    (old, new)
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
        // Links, fsync, two removals per directory (12 + the empty one), fsync, marker.
        assert_eq!(steps.len(), 12 + 1 + 2 * 13 + 1 + 1);
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
    let ids = make_layout_1(dir.path());
    let store = ArtifactStore::at(dir.path()).unwrap();
    assert_eq!(layout(dir.path()), "mex-artifacts-store-2\n");
    assert_eq!(
        store.list().unwrap(),
        ids.iter().copied().collect::<Vec<_>>()
    );
    for id in &ids {
        let h = store.handle(*id).unwrap();
        assert!(store.read(&h).is_ok());
        assert!(!dir.path().join("records").join(id.to_string()).exists());
    }
    // Only the stray file is left, and verify says so.
    let report = store.verify().unwrap();
    assert_eq!(report.records, ids.len());
    assert_eq!(report.problems.len(), 1, "{report:#?}");
    assert_eq!(report.problems[0].kind, ProblemKind::Stray);
    assert!(report.problems[0].path.ends_with("records/notes.txt"));
    // A second open has nothing to do.
    drop(store);
    let again = ArtifactStore::at(dir.path()).unwrap();
    assert_eq!(again.list().unwrap().len(), ids.len());
}

#[test]
fn an_old_record_whose_new_name_is_taken_by_another_file_is_kept_for_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ids = make_layout_1(dir.path());
    let first = *ids.iter().next().unwrap();
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
    fs::write(dir.path().join("LAYOUT"), "mex-artifacts-store-3\n").unwrap();
    let err = ArtifactStore::at(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("mex-artifacts-store-3") && err.contains("newer mex"),
        "{err}"
    );
    fs::write(dir.path().join("LAYOUT"), "something else\n").unwrap();
    let err = ArtifactStore::at(dir.path()).unwrap_err().to_string();
    assert!(err.contains("unknown store layout"), "{err}");
}

/// SIGKILL between any two steps of a migration (and again while the next
/// open resumes it): no record is lost or duplicated, and the next open
/// finishes the job.
#[test]
fn a_migration_killed_at_any_step_is_finished_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let ids = make_layout_1(&root);
    let mut mid_way = 0;
    let mut emptied_not_removed = 0;
    // Each round resumes what the previous killed child left.
    // Steps: one link per old record, an fsync, then two removals per
    // directory; 1000 is past the end (that child finishes).
    for stop in [1usize, 5, 12, 13, 14, 15, 20, 3, 9, 30, 2, 4, 1000] {
        let what = format!("stop at step {stop}");
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
        let (old, new) = check_no_record_lost(&root, &ids, &what);
        if paused && layout(&root) == "mex-artifacts-store-1\n" && old > 0 && new > 0 {
            mid_way += 1;
        }
        // Killed between removing an old manifest and its directory.
        if ids.iter().any(|id| {
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
    let store = ArtifactStore::at(&root).unwrap();
    assert_eq!(layout(&root), "mex-artifacts-store-2\n");
    assert_eq!(
        store.list().unwrap(),
        ids.iter().copied().collect::<Vec<_>>()
    );
    let (old, new) = check_no_record_lost(&root, &ids, "after the last open");
    assert_eq!((old, new), (0, ids.len()));
    let report = store.verify().unwrap();
    assert_eq!(report.problems.len(), 1, "only the stray: {report:#?}");
    println!("{mid_way} kills left a half-migrated store");
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
    let store = ArtifactStore::at(dir.path()).unwrap();
    let h = store.put_bytes(b"shared", &PutOptions::default()).unwrap();
    drop(store);
    let records = dir.path().join("records");
    let template: serde_json::Value =
        serde_json::from_slice(&fs::read(records.join(format!("{}.json", h.artifact_id))).unwrap())
            .unwrap();
    fs::remove_file(records.join(format!("{}.json", h.artifact_id))).unwrap();
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
    assert_eq!(layout(dir.path()), "mex-artifacts-store-2\n");
}
