//! Migration of older store layouts to layout 3 (records in `index.db`).
//!
//! Both steps run when a store with an older marker is opened, under the
//! exclusive store lock, and are idempotent: a process killed at any instant
//! leaves a store the next open finishes migrating, with no record lost,
//! duplicated or changed.
//!
//! ## Layout 1 to 2
//!
//! Layout 1 kept a record as `records/<id>/artifact.json`, layout 2 as
//! `records/<id>.json`.
//!
//! 1. For every `records/<uuid>/` directory holding a regular
//!    `artifact.json`: hard-link it to `records/<uuid>.json` (already there
//!    and the same file: an earlier run was interrupted; fine).
//! 2. fsync `records/`.
//! 3. Remove each migrated `artifact.json` and its then empty directory
//!    (an empty record directory was never an artifact and goes too).
//! 4. fsync `records/`, then replace the marker by rename and fsync the root.
//!
//! Anything else is left where it is for `verify` to report as a stray: a
//! record directory whose `artifact.json` is not a regular file, one that
//! holds other files, or one whose new name is taken by a different file.
//!
//! ## Layout 2 to 3
//!
//! 0. Any row already in `records` is deleted (one durable transaction):
//!    while the marker says layout 2 the files are the records, and rows an
//!    interrupted import left may have gone stale since (a layout-2 mex
//!    re-pinned a record, or deleted it and its payload).
//! 1. Every `records/<id>.json` that the reader accepts (a regular file of
//!    at most 1 MiB, a valid manifest naming that id) is inserted, exact
//!    bytes, as a row of `records` in `index.db`, in transactions of
//!    [`IMPORT_BATCH`] records, each durable on commit.
//! 2. The marker is replaced (temp file fsynced, renamed, root fsynced).
//! 3. Each record file whose row holds exactly its bytes is removed, then
//!    `records/` is fsynced and removed if empty (and the root fsynced).
//!
//! Killed before step 2, the marker still says layout 2 and every record is
//! still a file: the next open clears the rows and imports again (one row
//! per id, so nothing is listed twice). Killed after it, every
//! record is a row and the leftover files are no longer read: the next open
//! that finds the store idle finishes step 3. A record file the reader
//! refuses, and anything else in `records/`, stays there for `verify` to
//! report. Blob files stay files: a payload is moved inline only by being
//! put again.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cap_std::fs::Dir;
use uuid::Uuid;

use crate::error::{Result, store_io};
use crate::store::{
    ArtifactStore, LAYOUT, LAYOUT_1, LAYOUT_2, LAYOUT_FILE, MANIFEST_1, MAX_RECORD_BYTES, RECORDS,
    fsync_dir, parse_manifest, read_record, record_id, record_name,
};

/// Records imported per transaction (bounds the memory of a migration).
pub(crate) const IMPORT_BATCH: usize = 4096;

/// Counts the steps of a migration for a test hook (which a crash test
/// uses to stop a child process between any two of them).
pub(crate) struct Steps<'h> {
    done: usize,
    hook: &'h mut dyn FnMut(usize),
}

impl<'h> Steps<'h> {
    pub(crate) fn new(hook: &'h mut dyn FnMut(usize)) -> Self {
        Self { done: 0, hook }
    }

    fn tick(&mut self) {
        self.done += 1;
        (self.hook)(self.done);
    }
}

/// Whether two open files are the same inode.
fn same_file(a: &Dir, a_name: &str, b: &Dir, b_name: &str) -> bool {
    let ident = |d: &Dir, n: &str| {
        d.open(n)
            .and_then(|f| f.into_std().metadata())
            .map(|m| (m.dev(), m.ino()))
    };
    matches!((ident(a, a_name), ident(b, b_name)), (Ok(x), Ok(y)) if x == y)
}

impl ArtifactStore {
    /// Migrate a layout-1 store to layout 2 if its marker still says
    /// layout 1 once the exclusive lock is held (a concurrent opener may
    /// have done it meanwhile). Returns the number of records migrated.
    pub(crate) fn migrate_from_layout_1(&self, steps: &mut Steps<'_>) -> Result<usize> {
        let _lock = self.lock(true)?;
        let marker = self.root_path.join(LAYOUT_FILE);
        match crate::store::read_marker(&self.root) {
            Ok(text) if text == LAYOUT_1 => {}
            Ok(text) if text == LAYOUT_2 || text == LAYOUT => return Ok(0),
            Ok(text) => return Err(crate::store::unknown_layout(&marker, &text)),
            Err(e) => return Err(store_io("read", marker, 0, e)),
        }
        let records_path = self.root_path.join(RECORDS);
        let records = self
            .root
            .open_dir(RECORDS)
            .map_err(|e| store_io("open directory", records_path.clone(), 0, e))?;

        // Old record directories, by name.
        let mut old = Vec::new();
        for entry in records
            .entries()
            .map_err(|e| store_io("list", records_path.clone(), 0, e))?
        {
            let entry = entry.map_err(|e| store_io("list", records_path.clone(), 0, e))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|s| Uuid::try_parse(s).ok()) else {
                continue;
            };
            if id.hyphenated().to_string() == name.to_string_lossy()
                && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                old.push(id);
            }
        }
        old.sort();

        // 1. Link each manifest to its new name.
        let mut to_remove = Vec::new();
        let mut migrated = 0;
        for id in old {
            let dir_name = id.hyphenated().to_string();
            let dir_path = records_path.join(&dir_name);
            let dir = records
                .open_dir(&dir_name)
                .map_err(|e| store_io("open directory", dir_path.clone(), 0, e))?;
            match dir.symlink_metadata(MANIFEST_1) {
                Ok(meta) if meta.is_file() => {}
                // Not a manifest: leave it for verify to report.
                Ok(_) => continue,
                // Empty: never an artifact (or one whose migration was
                // interrupted after its manifest was unlinked).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    to_remove.push(id);
                    continue;
                }
                Err(e) => return Err(store_io("inspect", dir_path.join(MANIFEST_1), 0, e)),
            }
            let new_name = record_name(id);
            match dir.hard_link(MANIFEST_1, &records, &new_name) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && same_file(&dir, MANIFEST_1, &records, &new_name) => {}
                // A different file has the new name: keep both for verify.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(store_io(
                        "migrate record to",
                        records_path.join(&new_name),
                        0,
                        e,
                    ));
                }
            }
            migrated += 1;
            // Only the id is kept: holding each directory open until step 3
            // would run out of file descriptors on a store with more
            // records than the process may have open files.
            to_remove.push(id);
            steps.tick();
        }

        // 2. The new names are durable before any old one goes.
        fsync_dir(&records, &records_path)?;
        steps.tick();

        // 3. Remove the old directories.
        for id in to_remove {
            let dir_name = id.hyphenated().to_string();
            let dir_path = records_path.join(&dir_name);
            match records.remove_file(Path::new(&dir_name).join(MANIFEST_1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(store_io("delete", dir_path.join(MANIFEST_1), 0, e)),
            }
            steps.tick();
            match records.remove_dir(&dir_name) {
                Ok(()) => {}
                // Other files inside: not ours to delete; verify reports it.
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => return Err(store_io("delete", dir_path, 0, e)),
            }
            steps.tick();
        }
        fsync_dir(&records, &records_path)?;
        steps.tick();

        // 4. The marker says layout 2 only once every record is migrated.
        write_marker(&self.root, &self.root_path, LAYOUT_2, true)?;
        steps.tick();
        Ok(migrated)
    }
}

impl ArtifactStore {
    /// Migrate a layout-2 store to layout 3 if its marker still says
    /// layout 2 once the exclusive lock is held, and finish removing
    /// imported record files either way. Returns the number of records
    /// imported.
    pub(crate) fn migrate_from_layout_2(&self, steps: &mut Steps<'_>) -> Result<usize> {
        let _lock = self.lock(true)?;
        let marker = self.root_path.join(LAYOUT_FILE);
        match crate::store::read_marker(&self.root) {
            Ok(text) if text == LAYOUT_2 => {}
            Ok(text) if text == LAYOUT => {
                self.remove_imported_records(steps)?;
                return Ok(0);
            }
            Ok(text) => return Err(crate::store::unknown_layout(&marker, &text)),
            Err(e) => return Err(store_io("read", marker, 0, e)),
        }
        let records_path = self.root_path.join(RECORDS);
        let mut imported = 0;
        // 0. While the marker says layout 2 the files are the records: rows
        // an interrupted import left behind may have gone stale since (the
        // store changed by a layout-2 mex: a record re-pinned, or deleted
        // with its payload), so they go before the import.
        self.index
            .write_now("clear stale rows of an interrupted migration from", |tx| {
                tx.execute("DELETE FROM records", []).map(drop)
            })?;
        steps.tick();
        if let Some(records) = self.open_records_dir()? {
            let ids = record_file_ids(&records, &records_path)?;
            // 1. Import, a batch per transaction.
            for batch in ids.chunks(IMPORT_BATCH) {
                let mut rows = Vec::with_capacity(batch.len());
                for id in batch {
                    let path = records_path.join(record_name(*id));
                    // Refused by the reader: left for verify to report.
                    let Ok(bytes) = read_record(&records, &record_name(*id)) else {
                        continue;
                    };
                    if parse_manifest(&bytes, &path, Some(*id)).is_ok() {
                        rows.push((*id, bytes));
                    }
                }
                imported += rows.len();
                self.index.write_now("import records into", |tx| {
                    let mut insert =
                        tx.prepare_cached("INSERT INTO records (id, manifest) VALUES (?1, ?2)")?;
                    for (id, bytes) in &rows {
                        insert.execute(rusqlite::params![id.hyphenated().to_string(), bytes])?;
                    }
                    Ok(())
                })?;
                steps.tick();
            }
        }
        // 2. Every record is a durable row: the marker may say so.
        write_marker(&self.root, &self.root_path, LAYOUT, true)?;
        steps.tick();
        // 3. The files are no longer read; remove them.
        self.remove_imported_records(steps)?;
        Ok(imported)
    }

    /// `records/`, if it is still there.
    fn open_records_dir(&self) -> Result<Option<Dir>> {
        match self.root.open_dir(RECORDS) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_io(
                "open directory",
                self.root_path.join(RECORDS),
                0,
                e,
            )),
        }
    }

    /// Remove every `records/<id>.json` whose row in `index.db` holds
    /// exactly its bytes, then `records/` itself if nothing else is left.
    /// Caller holds the exclusive lock, and the marker says layout 3.
    pub(crate) fn remove_imported_records(&self, steps: &mut Steps<'_>) -> Result<()> {
        let Some(records) = self.open_records_dir()? else {
            return Ok(());
        };
        let records_path = self.root_path.join(RECORDS);
        let mut removed_any = false;
        for id in record_file_ids(&records, &records_path)? {
            let name = record_name(id);
            let Ok(bytes) = read_record(&records, &name) else {
                continue;
            };
            if self.index.record(id, MAX_RECORD_BYTES)? != Some(Ok(bytes)) {
                continue;
            }
            match records.remove_file(&name) {
                Ok(()) => removed_any = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(store_io("delete", records_path.join(&name), 0, e)),
            }
            steps.tick();
        }
        if removed_any {
            fsync_dir(&records, &records_path)?;
        }
        drop(records);
        match self.root.remove_dir(RECORDS) {
            Ok(()) => fsync_dir(&self.root, &self.root_path)?,
            // Strays inside: left for verify to report.
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(store_io("delete", records_path, 0, e)),
        }
        steps.tick();
        Ok(())
    }
}

impl ArtifactStore {
    /// How many names in `records/` look like records of an older layout
    /// (`<id>.json`, or a layout-1 `<id>/` directory), and the first of
    /// them by name: after [`ArtifactStore::remove_imported_records`],
    /// records that are not rows, which gc must not delete the payloads of.
    /// Counted as listed, holding one name at a time.
    pub(crate) fn record_files_left(&self) -> Result<(usize, Option<String>)> {
        let Some(records) = self.open_records_dir()? else {
            return Ok((0, None));
        };
        let records_path = self.root_path.join(RECORDS);
        let (mut count, mut first) = (0, None::<String>);
        for entry in records
            .entries()
            .map_err(|e| store_io("list", records_path.clone(), 0, e))?
        {
            let entry = entry.map_err(|e| store_io("list", records_path.clone(), 0, e))?;
            let name = entry.file_name();
            let old_dir = name.to_str().and_then(crate::store::canonical_id).is_some();
            if record_id(&name).is_some() || old_dir {
                count += 1;
                let name = name.to_string_lossy().into_owned();
                if first.as_ref().is_none_or(|f| name < *f) {
                    first = Some(name);
                }
            }
        }
        Ok((count, first))
    }
}

/// The ids of the regular-named record files (`<id>.json`) in `records/`,
/// sorted.
fn record_file_ids(records: &Dir, records_path: &Path) -> Result<Vec<Uuid>> {
    let mut ids = Vec::new();
    for entry in records
        .entries()
        .map_err(|e| store_io("list", records_path.to_path_buf(), 0, e))?
    {
        let entry = entry.map_err(|e| store_io("list", records_path.to_path_buf(), 0, e))?;
        if let Some(id) = record_id(&entry.file_name()) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// Write the layout marker atomically and durably: a temp name in the root
/// (outside `tmp/`, which gc empties), fsynced, then linked (a new store: a
/// concurrent opener may win, which is fine) or renamed over the old marker
/// (`replace`, a migration under the exclusive lock), then the root fsynced.
pub(crate) fn write_marker(
    root: &Dir,
    root_path: &Path,
    content: &str,
    replace: bool,
) -> Result<()> {
    let name = format!(".{LAYOUT_FILE}-{}", Uuid::new_v4().simple());
    let temp_path = root_path.join(&name);
    let marker = root_path.join(LAYOUT_FILE);
    let written = (|| {
        let mut file = root
            .open_with(
                &name,
                cap_std::fs::OpenOptions::new().write(true).create_new(true),
            )
            .map_err(|e| store_io("create", temp_path.clone(), 0, e))?
            .into_std();
        io::Write::write_all(&mut file, content.as_bytes())
            .map_err(|e| store_io("write", temp_path.clone(), 0, e))?;
        file.sync_all()
            .map_err(|e| store_io("fsync", temp_path.clone(), 0, e))?;
        if replace {
            root.rename(&name, root, LAYOUT_FILE)
                .map_err(|e| store_io("replace", marker.clone(), 0, e))?;
            return Ok(true);
        }
        match root.hard_link(&name, root, LAYOUT_FILE) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(store_io("create", marker.clone(), 0, e)),
        }
    })();
    let _ = root.remove_file(&name);
    if written? {
        fsync_dir(root, root_path)?;
    }
    Ok(())
}
