//! Migration of a layout-1 store (`records/<id>/artifact.json`) to
//! layout 2 (`records/<id>.json`).
//!
//! It runs when a store whose marker says `mex-artifacts-store-1` is
//! opened, under the exclusive store lock, and is idempotent: a process
//! killed at any instant leaves the marker at layout 1 and a mix of old
//! record directories and new record files, which the next open finishes
//! migrating. No record is lost (an old manifest is removed only after its
//! new name is durable) or duplicated (the new name is a hard link to the
//! same, already fsynced file, and `list` only sees new names).
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

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cap_std::fs::Dir;
use uuid::Uuid;

use crate::error::{Result, store_io};
use crate::store::{
    ArtifactStore, LAYOUT, LAYOUT_1, LAYOUT_FILE, MANIFEST_1, RECORDS, fsync_dir, record_name,
};

/// Counts the steps of a migration for a test hook (which a crash test
/// uses to stop a child process between any two of them).
struct Steps<'h> {
    done: usize,
    hook: &'h mut dyn FnMut(usize),
}

impl Steps<'_> {
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
    pub(crate) fn migrate_from_layout_1(&self, hook: &mut dyn FnMut(usize)) -> Result<usize> {
        let _lock = self.lock(true)?;
        let marker = self.root_path.join(LAYOUT_FILE);
        match self.root.read_to_string(LAYOUT_FILE) {
            Ok(text) if text == LAYOUT_1 => {}
            Ok(text) if text == LAYOUT => return Ok(0),
            Ok(text) => return Err(crate::store::unknown_layout(&marker, &text)),
            Err(e) => return Err(store_io("read", marker, 0, e)),
        }
        let records_path = self.root_path.join(RECORDS);
        let mut steps = Steps { done: 0, hook };

        // Old record directories, by name.
        let mut old = Vec::new();
        for entry in self
            .records
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
            let dir = self
                .records
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
            match dir.hard_link(MANIFEST_1, &self.records, &new_name) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && same_file(&dir, MANIFEST_1, &self.records, &new_name) => {}
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
        fsync_dir(&self.records, &records_path)?;
        steps.tick();

        // 3. Remove the old directories.
        for id in to_remove {
            let dir_name = id.hyphenated().to_string();
            let dir_path = records_path.join(&dir_name);
            match self
                .records
                .remove_file(Path::new(&dir_name).join(MANIFEST_1))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(store_io("delete", dir_path.join(MANIFEST_1), 0, e)),
            }
            steps.tick();
            match self.records.remove_dir(&dir_name) {
                Ok(()) => {}
                // Other files inside: not ours to delete; verify reports it.
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => return Err(store_io("delete", dir_path, 0, e)),
            }
            steps.tick();
        }
        fsync_dir(&self.records, &records_path)?;
        steps.tick();

        // 4. The marker says layout 2 only once every record is migrated.
        write_marker(&self.root, &self.root_path, true)?;
        steps.tick();
        Ok(migrated)
    }
}

/// Write the layout marker atomically and durably: a temp name in the root
/// (outside `tmp/`, which gc empties), fsynced, then linked (a new store: a
/// concurrent opener may win, which is fine) or renamed over the old marker
/// (`replace`, a migration under the exclusive lock), then the root fsynced.
pub(crate) fn write_marker(root: &Dir, root_path: &Path, replace: bool) -> Result<()> {
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
        io::Write::write_all(&mut file, LAYOUT.as_bytes())
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
