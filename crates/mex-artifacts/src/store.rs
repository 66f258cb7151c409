//! The store itself: opening, `put`, records and verified reads.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};
use mex_envelope::{
    ArtifactHandle, ArtifactKind, ArtifactManifest, ArtifactProducer, Classification,
    MANIFEST_SCHEMA_VERSION, MediaType, Sha256Digest, UtcTimestamp,
};
use rustix::fs::FlockOperation;
use uuid::Uuid;

use crate::error::{ArtifactError, Result, store_io};
use crate::index::{INDEX, INLINE_MAX, Index, Op};
use crate::ingest::{self, IngestError, Ingested};

/// Marker file naming the layout version.
pub(crate) const LAYOUT_FILE: &str = "LAYOUT";
/// Its content.
pub(crate) const LAYOUT: &str = "mex-artifacts-store-3\n";
/// Layout 2 (a record was the file `records/<id>.json`), which opening
/// migrates (see `migrate.rs`).
pub(crate) const LAYOUT_2: &str = "mex-artifacts-store-2\n";
/// Layout 1 (a record was `records/<id>/artifact.json`), which opening
/// migrates to layout 2 and then 3.
pub(crate) const LAYOUT_1: &str = "mex-artifacts-store-1\n";
/// Directory of content-addressed payloads.
pub(crate) const BLOBS: &str = "blobs/sha256";
/// Directory of records in layouts 1 and 2 (gone once migrated).
pub(crate) const RECORDS: &str = "records";
/// Staging directory.
pub(crate) const TMP: &str = "tmp";
/// Lock file.
const LOCK: &str = "lock";
/// Manifest file name inside a layout-1 record directory.
pub(crate) const MANIFEST_1: &str = "artifact.json";
/// Suffix of a layout-2 record's file name: `records/<artifact id>.json`.
pub(crate) const RECORD_SUFFIX: &str = ".json";

/// The file name of an artifact's record in a layout-2 `records/`.
pub(crate) fn record_name(id: Uuid) -> String {
    format!("{}{RECORD_SUFFIX}", id.hyphenated())
}

/// The artifact id a `records/` entry is the record of, if its name is
/// exactly `<hyphenated lower-case uuid>.json`.
pub(crate) fn record_id(name: &std::ffi::OsStr) -> Option<Uuid> {
    let name = name.to_str()?;
    let stem = name.strip_suffix(RECORD_SUFFIX)?;
    canonical_id(stem)
}

/// The id whose canonical (lower-case hyphenated) text is exactly `text`.
pub(crate) fn canonical_id(text: &str) -> Option<Uuid> {
    let id = Uuid::try_parse(text).ok()?;
    (id.hyphenated().to_string() == text).then_some(id)
}

/// The most bytes a record may have (a record is about a kilobyte): a
/// larger row, or file at a record's name in an older layout, is refused,
/// not read into memory.
pub(crate) const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Read the record file `records/<name>`: opened without blocking and
/// checked to be a regular file of at most [`MAX_RECORD_BYTES`] before it is
/// read (a FIFO planted at a record's name would otherwise block the
/// reader for good, gc with the exclusive store lock held; a huge file would
/// be read whole into memory).
pub(crate) fn read_record(records: &Dir, name: &str) -> io::Result<Vec<u8>> {
    let file = records
        .open_with(name, OpenOptions::new().read(true).custom_flags(nonblock()))?
        .into_std();
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is a {}, not a record file; move it out of the store",
                file_type_name(&meta.file_type())
            ),
        ));
    }
    let too_large = |len: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is {len} bytes or more, larger than any record ({MAX_RECORD_BYTES} bytes at most); move it out of the store"
            ),
        )
    };
    if meta.len() > MAX_RECORD_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_RECORD_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The most bytes a layout marker may have (it is about 22).
const MAX_MARKER_BYTES: u64 = 256;

/// Read the layout marker: opened without blocking and read only if it is
/// a regular file of at most [`MAX_MARKER_BYTES`] (a FIFO planted there
/// would otherwise block every open of the store for good, a huge file be
/// read whole into memory). `NotFound` when there is none.
pub(crate) fn read_marker(root: &Dir) -> io::Result<String> {
    let file = root
        .open_with(
            LAYOUT_FILE,
            OpenOptions::new().read(true).custom_flags(nonblock()),
        )?
        .into_std();
    let meta = file.metadata()?;
    let refuse = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what}, not a layout marker; move it away and write the store's layout (e.g. \"{}\" and a newline) into a regular file of that name",
                LAYOUT.trim()
            ),
        )
    };
    if !meta.is_file() {
        return Err(refuse(format!(
            "it is a {}",
            file_type_name(&meta.file_type())
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MARKER_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MARKER_BYTES {
        return Err(refuse(format!(
            "it is larger than {MAX_MARKER_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|_| refuse("it is not UTF-8 text".to_owned()))
}

/// `O_NONBLOCK`, for opening a file that may turn out to be a FIFO (a
/// regular file reads the same with it).
pub(crate) fn nonblock() -> i32 {
    rustix::fs::OFlags::NONBLOCK.bits() as i32
}

/// A payload taken in by a put: its digest and size, and its bytes when it
/// is small enough to live inline (not yet durable: they are committed with
/// the record).
#[derive(Debug)]
pub(crate) struct Blob {
    pub(crate) got: Ingested,
    pub(crate) inline: Option<Vec<u8>>,
}

/// The digest and size a caller expects the content to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// Expected SHA-256.
    pub hash: Sha256Digest,
    /// Expected size in bytes.
    pub size: u64,
}

/// What to record with a put. The defaults are restrictive: kind `file`,
/// classification `high`, not exportable, no expiry, not pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOptions {
    /// Artifact kind. `bundle` is reserved for [`ArtifactStore::put_dir`].
    pub kind: ArtifactKind,
    /// Sensitivity.
    pub classification: Classification,
    /// Whether it may leave the mex home.
    pub exportable: bool,
    /// Days to keep it (1..=36500); `None` keeps it until deleted.
    pub retention_ttl_days: Option<u32>,
    /// Media type.
    pub media_type: Option<MediaType>,
    /// Pinned artifacts are never removed by gc or quotas.
    pub pinned: bool,
    /// Who produced it (engine outputs).
    pub producer: Option<ArtifactProducer>,
    /// Refuse the content unless it has this hash and size.
    pub expected: Option<Expected>,
    /// Refuse content larger than this many bytes.
    pub max_bytes: Option<u64>,
}

impl Default for PutOptions {
    fn default() -> Self {
        Self {
            kind: ArtifactKind::File,
            classification: Classification::High,
            exportable: false,
            retention_ttl_days: None,
            media_type: None,
            pinned: false,
            producer: None,
            expected: None,
            max_bytes: None,
        }
    }
}

impl PutOptions {
    /// Options for `kind` at `classification`, otherwise the defaults.
    pub fn new(kind: ArtifactKind, classification: Classification) -> Self {
        Self {
            kind,
            classification,
            ..Self::default()
        }
    }
}

/// Tuning of an open store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Let [`ArtifactStore::open`] skip re-hashing a payload it already
    /// verified while its file identity and timestamps are unchanged (see the
    /// crate docs for what this cannot detect). Default: on.
    pub verify_cache: bool,
    /// A payload whose ctime is younger than this is never cached, because a
    /// write in the same timestamp tick would not change it ("racy" entries,
    /// as in git's index). Default: 2 s.
    pub racy_window: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            verify_cache: true,
            racy_window: Duration::from_secs(2),
        }
    }
}

/// File identity and change stamps used by the verification cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// A content-addressed artifact store rooted in one directory. All methods
/// take `&self`; share it between threads freely. Several processes may open
/// the same root at once.
///
/// # Example
///
/// Open a store in a directory, put bytes, and read them back verified:
///
/// ```rust
/// use std::io::Read;
///
/// use mex_artifacts::{ArtifactError, ArtifactStore, PutOptions};
/// use mex_envelope::{ArtifactKind, Classification, Sha256Digest};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let home = tempfile::tempdir()?;
/// let store = ArtifactStore::at(home.path().join("artifacts"))?;
///
/// let mut options = PutOptions::new(ArtifactKind::Report, Classification::Low);
/// options.media_type = "text/plain".parse().ok();
/// let handle = store.put_bytes(b"hello, mex", &options)?;
/// assert_eq!(handle.size_bytes, 10);
/// assert_eq!(handle.content_hash, Sha256Digest::of(b"hello, mex"));
///
/// // `read` returns exactly the bytes it verified.
/// assert_eq!(store.read(&handle)?, b"hello, mex");
///
/// // `open` verifies first, then hands out the file.
/// let mut text = String::new();
/// store.open(&handle)?.read_to_string(&mut text)?;
/// assert_eq!(text, "hello, mex");
///
/// // A handle that does not match the stored record is refused.
/// let mut forged = handle.clone();
/// forged.size_bytes += 1;
/// assert!(matches!(
///     store.read(&forged),
///     Err(ArtifactError::HandleMismatch { field: "size_bytes", .. })
/// ));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ArtifactStore {
    pub(crate) root_path: PathBuf,
    pub(crate) root: Dir,
    pub(crate) blobs: Dir,
    pub(crate) tmp: Dir,
    /// `index.db`: records and small payloads.
    pub(crate) index: Index,
    config: StoreConfig,
    cache: Mutex<HashMap<Sha256Digest, FileStamp>>,
    /// Group fsync of directories for concurrent puts.
    dir_sync: crate::dirsync::DirSync,
    reclaimed_at_open: Vec<String>,
    /// Use named temp files (no `O_TMPFILE` here, or asked for).
    named_temp: std::sync::atomic::AtomicBool,
    /// Test hook: the temp writer fails with ENOSPC after this many bytes.
    #[cfg(test)]
    pub(crate) fault_enospc_after: Option<u64>,
}

/// An exclusive or shared hold on the store lock; released on drop.
pub(crate) struct StoreLock {
    _file: File,
}

/// A temporary file in `tmp/`: anonymous (`O_TMPFILE`, no name at all, so
/// a killed writer leaves nothing behind) or, where the filesystem lacks
/// `O_TMPFILE`, named `<prefix>-<uuid>.tmp` and removed on drop.
pub(crate) struct TempFile<'a> {
    dir: &'a Dir,
    /// `None` for an anonymous file.
    name: Option<String>,
    prefix: &'static str,
    pub(crate) file: File,
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = self.dir.remove_file(name);
        }
    }
}

impl TempFile<'_> {
    /// Where the file is, for messages.
    pub(crate) fn path(&self, root: &Path) -> PathBuf {
        match &self.name {
            Some(name) => root.join(TMP).join(name),
            None => root
                .join(TMP)
                .join(format!("{}-(unnamed temporary file)", self.prefix)),
        }
    }

    /// Give the file the name `to_dir/to_name`, which must not exist yet
    /// (`AlreadyExists` otherwise). An anonymous file is linked through
    /// `/proc/self/fd` (`linkat` with `AT_SYMLINK_FOLLOW`: no privilege
    /// needed); a named one is hard-linked and its temp name removed on drop.
    fn link_to(&self, to_dir: &Dir, to_name: &str) -> io::Result<()> {
        match &self.name {
            Some(name) => self.dir.hard_link(name, to_dir, to_name),
            None => {
                use std::os::fd::AsRawFd;
                let fd_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
                rustix::fs::linkat(
                    rustix::fs::CWD,
                    fd_path.as_str(),
                    to_dir,
                    to_name,
                    rustix::fs::AtFlags::SYMLINK_FOLLOW,
                )
                .map_err(io::Error::from)
            }
        }
    }

    /// Give the file the name `to_dir/to_name`, replacing what is there by
    /// one atomic rename. An anonymous file is given a temp name first.
    fn rename_over(&mut self, to_dir: &Dir, to_name: &str) -> io::Result<()> {
        if self.name.is_none() {
            let name = format!("{}-{}.tmp", self.prefix, Uuid::new_v4().simple());
            self.link_to(self.dir, &name)?;
            self.name = Some(name);
        }
        if let Some(name) = &self.name {
            self.dir.rename(name, to_dir, to_name)?;
        }
        self.name = None;
        Ok(())
    }
}

/// Whether an `open(O_TMPFILE)` error means the filesystem (or kernel) does
/// not support anonymous temp files, so named ones must be used instead.
fn tmpfile_unsupported(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::OPNOTSUPP, Errno::ISDIR, Errno::INVAL, Errno::NOSYS].contains(&e)
}

/// The temp-file writer, with a fault hook in tests.
struct TempWriter<'a> {
    file: &'a mut File,
    remaining: Option<u64>,
}

impl Write for TempWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.remaining {
            None => self.file.write(buf),
            Some(0) => Err(io::Error::from_raw_os_error(
                rustix::io::Errno::NOSPC.raw_os_error(),
            )),
            Some(r) => {
                let n = buf.len().min(usize::try_from(r).unwrap_or(usize::MAX));
                let n = self.file.write(&buf[..n])?;
                self.remaining = Some(r - n as u64);
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The relative location of a blob: (shard directory, file name).
pub(crate) fn blob_location(digest: &Sha256Digest) -> (String, String) {
    let hex = digest.to_hex();
    let (shard, rest) = hex.split_at(2);
    (shard.to_owned(), rest.to_owned())
}

/// The payload whose file `<shard>/<name>` in `blobs/sha256/` is, if any:
/// the inverse of [`blob_location`]. The two names must have its lengths
/// (2 and 62 hex): `a/bcd…` joins into a digest too, but a read never
/// looks there, so it is no payload (and must not stand for one).
pub(crate) fn blob_at(shard: &str, name: &str) -> Option<Sha256Digest> {
    if shard.len() != 2 || name.len() != 62 {
        return None;
    }
    format!("{shard}{name}").parse().ok()
}

/// fsync a directory. cap-std directory handles may be `O_PATH`, which
/// cannot be synced, so open the directory itself read-only first.
pub(crate) fn fsync_dir(dir: &Dir, path: &Path) -> Result<()> {
    let err = |e: io::Error| store_io("fsync directory", path.to_path_buf(), 0, e);
    let handle = dir
        .open_with(".", OpenOptions::new().read(true))
        .map_err(err)?;
    rustix::fs::fsync(&handle).map_err(|e| err(e.into()))
}

/// What an entry found through a store directory (cap-std metadata, not
/// followed) is when it is not a regular file, for messages.
fn entry_kind(meta: &cap_std::fs::Metadata) -> &'static str {
    if meta.file_type().is_symlink() {
        "symbolic link"
    } else if meta.is_dir() {
        "directory"
    } else {
        "special file (FIFO, socket or device)"
    }
}

fn file_type_name(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

impl ArtifactStore {
    /// Open (creating if needed) the store rooted at `root`, with the default
    /// configuration. This is the one place where ambient authority is used.
    pub fn at(root: impl AsRef<Path>) -> Result<Self> {
        Self::with_config(root, StoreConfig::default())
    }

    /// Open (creating if needed) the store rooted at `root`. A store of the
    /// previous layout (`mex-artifacts-store-1`) is migrated first, under
    /// the exclusive store lock (so this waits for puts in flight in other
    /// processes); a newer layout is refused.
    pub fn with_config(root: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        Self::open_with_migration_hook(root, config, &mut |_| {})
    }

    /// [`ArtifactStore::with_config`], calling `hook` after each step of a
    /// layout migration (crash tests stop there). Not a stable API.
    #[doc(hidden)]
    pub fn open_with_migration_hook(
        root: impl AsRef<Path>,
        config: StoreConfig,
        hook: &mut dyn FnMut(usize),
    ) -> Result<Self> {
        let root_path = root.as_ref().to_path_buf();
        let io_err = |action, source| store_io(action, root_path.clone(), 0, source);
        Dir::create_ambient_dir_all(&root_path, ambient_authority())
            .map_err(|e| io_err("create the store directory", e))?;
        let root = Dir::open_ambient_dir(&root_path, ambient_authority())
            .map_err(|e| io_err("open the store directory", e))?;
        for dir in [BLOBS, TMP] {
            root.create_dir_all(dir)
                .map_err(|e| store_io("create directory", root_path.join(dir), 0, e))?;
        }
        let layout = match read_marker(&root) {
            Ok(text) if text == LAYOUT => Some(3),
            Ok(text) if text == LAYOUT_2 => Some(2),
            Ok(text) if text == LAYOUT_1 => Some(1),
            Ok(text) => return Err(unknown_layout(&root_path.join(LAYOUT_FILE), &text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(store_io("read", root_path.join(LAYOUT_FILE), 0, e)),
        };
        if matches!(layout, Some(1 | 2)) {
            root.create_dir_all(RECORDS)
                .map_err(|e| store_io("create directory", root_path.join(RECORDS), 0, e))?;
        }
        // Each directory of the layout must be a directory of its own, not a
        // symlink: `tmp -> blobs/sha256` would have every open empty the
        // payloads as crash leftovers, `records -> tmp` (while a migration
        // is due) lose every old record the same way.
        for dir in ["blobs", BLOBS, RECORDS, TMP] {
            let meta = match root.symlink_metadata(dir) {
                Ok(meta) => meta,
                // `records/` exists only until a migration finishes.
                Err(e) if dir == RECORDS && e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(store_io("inspect", root_path.join(dir), 0, e)),
            };
            if !meta.is_dir() {
                return Err(store_io(
                    "open directory",
                    root_path.join(dir),
                    0,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "it is a {}, not a directory of the store; replace it with a plain directory",
                            if meta.file_type().is_symlink() {
                                "symbolic link"
                            } else {
                                "file but not a directory"
                            }
                        ),
                    ),
                ));
            }
        }
        let index_path = root_path.join(INDEX);
        let index_exists = match root.symlink_metadata(INDEX) {
            Ok(meta) if meta.is_file() => true,
            Ok(meta) => {
                return Err(store_io(
                    "open the index",
                    index_path,
                    0,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "it is a {}, not the store's SQLite index; move it away and restore the real index.db from a backup",
                            entry_kind(&meta)
                        ),
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(store_io("inspect", index_path, 0, e)),
        };
        // SQLite refuses a journal that is not a regular file (it opens
        // them without following symlinks) but says only "unable to open
        // database file"; say which file and what to do.
        for suffix in ["-wal", "-shm"] {
            let name = format!("{INDEX}{suffix}");
            match root.symlink_metadata(&name) {
                Ok(meta) if !meta.is_file() => {
                    return Err(store_io(
                        "open the index",
                        root_path.join(&name),
                        0,
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "it is a {}, not the index's SQLite journal (a regular file); remove it (if index.db's last commits matter, restore the store from a backup)",
                                entry_kind(&meta)
                            ),
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(store_io("inspect", root_path.join(&name), 0, e)),
            }
        }
        if layout == Some(3) && !index_exists {
            return Err(store_io(
                "open the index",
                index_path,
                0,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "the store is at layout 3, whose records all live in index.db, and index.db is missing; restore it from a backup (payload files alone are not artifacts), or move the store away to start an empty one",
                ),
            ));
        }
        // A new store's index exists (tables created, durable) before its
        // marker does, so a marker at layout 3 always has its index.
        let index = Index::open(index_path, !index_exists, index_exists && layout == Some(3))?;
        if !index_exists {
            // The new index's name is durable before a marker (or a
            // migration's marker) can be.
            fsync_dir(&root, &root_path)?;
        }
        if layout.is_none() {
            crate::migrate::write_marker(&root, &root_path, LAYOUT, false)?;
        }
        let sub = |name: &str| {
            root.open_dir(name)
                .map_err(|e| store_io("open directory", root_path.join(name), 0, e))
        };
        let blobs = sub(BLOBS)?;
        let tmp = sub(TMP)?;
        let mut store = Self {
            root_path,
            root,
            blobs,
            tmp,
            index,
            config,
            cache: Mutex::new(HashMap::new()),
            dir_sync: crate::dirsync::DirSync::default(),
            reclaimed_at_open: Vec::new(),
            // An anonymous temp file is named through /proc/self/fd.
            named_temp: std::sync::atomic::AtomicBool::new(!Path::new("/proc/self/fd").is_dir()),
            #[cfg(test)]
            fault_enospc_after: None,
        };
        let mut steps = crate::migrate::Steps::new(hook);
        if layout == Some(1) {
            store.migrate_from_layout_1(&mut steps)?;
        }
        if matches!(layout, Some(1 | 2)) {
            store.migrate_from_layout_2(&mut steps)?;
        } else if layout == Some(3) && store.root.symlink_metadata(RECORDS).is_ok() {
            // A migration that stopped after its marker: finish removing the
            // imported record files when nothing else is running (they are
            // not read any more; verify reports them meanwhile).
            if let Some(_lock) = store.try_lock_exclusive()? {
                store.remove_imported_records(&mut steps)?;
            }
        }
        // Crash leftovers of puts that were killed; skipped (not an error)
        // when the store is busy or cannot be cleaned now.
        if let Ok(Some(names)) = store.reclaim_temp() {
            store.reclaimed_at_open = names;
        }
        Ok(store)
    }

    /// The store root as given to [`ArtifactStore::at`].
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    pub(crate) fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        let (shard, name) = blob_location(digest);
        self.root_path.join(BLOBS).join(shard).join(name)
    }

    /// Where the record of `artifact_id` lives, for messages:
    /// `<root>/index.db[records:<id>]`, naming its row in the store's index
    /// (a database row, not a file of its own).
    pub fn record_location(&self, artifact_id: Uuid) -> PathBuf {
        self.manifest_path(artifact_id)
    }

    /// Where an artifact's record lives, for messages: its row in
    /// `index.db`.
    pub(crate) fn manifest_path(&self, id: Uuid) -> PathBuf {
        self.root_path
            .join(format!("{INDEX}[records:{}]", id.hyphenated()))
    }

    /// Where a small payload lives, for messages: its row in `index.db`.
    pub(crate) fn inline_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root_path
            .join(format!("{INDEX}[inline_blobs:{}]", digest.to_hex()))
    }

    /// Take the store lock: shared for puts, exclusive for gc and pinning.
    pub(crate) fn lock(&self, exclusive: bool) -> Result<StoreLock> {
        self.lock_with(exclusive, false)?
            .ok_or_else(|| ArtifactError::Lock {
                path: self.root_path.join(LOCK),
                source: io::Error::other("flock returned without the lock"),
            })
    }

    /// Take the store lock exclusively if nobody holds it (no put, verify,
    /// gc or pinning in flight); `None` when it is busy.
    pub(crate) fn try_lock_exclusive(&self) -> Result<Option<StoreLock>> {
        self.lock_with(true, true)
    }

    fn lock_with(&self, exclusive: bool, nonblocking: bool) -> Result<Option<StoreLock>> {
        let path = self.root_path.join(LOCK);
        let file = self
            .root
            .open_with(LOCK, OpenOptions::new().read(true).write(true).create(true))
            .map_err(|source| ArtifactError::Lock {
                path: path.clone(),
                source,
            })?
            .into_std();
        let op = match (exclusive, nonblocking) {
            (true, false) => FlockOperation::LockExclusive,
            (true, true) => FlockOperation::NonBlockingLockExclusive,
            (false, false) => FlockOperation::LockShared,
            (false, true) => FlockOperation::NonBlockingLockShared,
        };
        match rustix::fs::flock(&file, op) {
            Ok(()) => Ok(Some(StoreLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) if nonblocking => Ok(None),
            Err(e) => Err(ArtifactError::Lock {
                path,
                source: e.into(),
            }),
        }
    }

    /// Remove what killed puts left in `tmp/` (named temp files: those of
    /// the fallback without `O_TMPFILE`, of re-pinning, of a damaged blob's
    /// replacement; anonymous ones vanish with their writer), if no put is
    /// in flight in any process: returns the names removed, or `None` when
    /// the store was busy (nothing is touched then; the next open or
    /// [`ArtifactStore::gc`] tries again). [`ArtifactStore::at`]
    /// runs it on every open; [`ArtifactStore::reclaimed_at_open`] says what
    /// that removed.
    pub fn reclaim_temp(&self) -> Result<Option<Vec<String>>> {
        let Some(_lock) = self.try_lock_exclusive()? else {
            return Ok(None);
        };
        self.clean_tmp().map(Some)
    }

    /// What opening this store removed from `tmp/` (leftovers of puts
    /// killed in another process); empty when the store was busy.
    pub fn reclaimed_at_open(&self) -> &[String] {
        &self.reclaimed_at_open
    }

    /// Make puts use named temp files in `tmp/` (renamed or linked into
    /// place) instead of anonymous `O_TMPFILE` ones: the fallback used on
    /// filesystems without `O_TMPFILE`, switchable here so that it stays
    /// tested. Not a stable API.
    #[doc(hidden)]
    pub fn use_named_temp_files(&self, named: bool) {
        self.named_temp
            .store(named, std::sync::atomic::Ordering::Relaxed);
    }

    /// A new temp file in `tmp/`, anonymous when `anonymous` is asked for
    /// and the filesystem supports it, created with `mode` (before umask).
    pub(crate) fn temp_file(
        &self,
        prefix: &'static str,
        anonymous: bool,
        mode: u32,
    ) -> Result<TempFile<'_>> {
        use std::sync::atomic::Ordering;
        if anonymous && !self.named_temp.load(Ordering::Relaxed) {
            use rustix::fs::{Mode, OFlags};
            match rustix::fs::openat(
                &self.tmp,
                ".",
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            ) {
                Ok(fd) => {
                    return Ok(TempFile {
                        dir: &self.tmp,
                        name: None,
                        prefix,
                        file: File::from(fd),
                    });
                }
                // Remembered: this store's filesystem has no O_TMPFILE.
                Err(e) if tmpfile_unsupported(e) => {
                    self.named_temp.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    return Err(store_io(
                        "create an unnamed temporary file in",
                        self.root_path.join(TMP),
                        0,
                        e.into(),
                    ));
                }
            }
        }
        let name = format!("{prefix}-{}.tmp", Uuid::new_v4().simple());
        let file = self
            .tmp
            .open_with(
                &name,
                OpenOptions::new()
                    .write(true)
                    .read(true)
                    .create_new(true)
                    .mode(mode),
            )
            .map_err(|e| {
                store_io(
                    "create temporary file",
                    self.root_path.join(TMP).join(&name),
                    0,
                    e,
                )
            })?
            .into_std();
        Ok(TempFile {
            dir: &self.tmp,
            name: Some(name),
            prefix,
            file,
        })
    }

    // ----------------------------------------------------------------- put

    /// Store the bytes of `reader` as a new artifact. Streams in constant
    /// memory; atomic; idempotent on payloads (see the crate docs).
    pub fn put_reader<R: Read + ?Sized>(
        &self,
        reader: &mut R,
        options: &PutOptions,
    ) -> Result<ArtifactHandle> {
        self.put_source(reader, "<reader>", options)
    }

    /// Store a byte slice as a new artifact.
    pub fn put_bytes(&self, bytes: &[u8], options: &PutOptions) -> Result<ArtifactHandle> {
        let mut reader = bytes;
        self.put_source(&mut reader, "<bytes>", options)
    }

    /// Store the regular file at `path` (a trusted, caller-chosen path) as a
    /// new artifact. Directories, FIFOs, devices and sockets are refused.
    pub fn put_path(&self, path: impl AsRef<Path>, options: &PutOptions) -> Result<ArtifactHandle> {
        let path = path.as_ref();
        let mut file = open_regular_source(path)?;
        self.put_source(&mut file, &path.display().to_string(), options)
    }

    fn put_source<R: Read + ?Sized>(
        &self,
        reader: &mut R,
        source_name: &str,
        options: &PutOptions,
    ) -> Result<ArtifactHandle> {
        check_options(options)?;
        let _lock = self.lock(false)?;
        let blob = self.store_blob(reader, source_name, options.expected, options.max_bytes)?;
        self.write_record(blob, Vec::new(), options, false)
    }

    /// Take in the bytes of `reader` as a payload. A payload of at most
    /// [`INLINE_MAX`] bytes is only read and hashed into memory: it becomes
    /// durable in the transaction that commits its record (the caller's
    /// [`ArtifactStore::write_record`]). A larger one is streamed into the
    /// content-addressed blob files and is durable when this returns.
    /// Caller holds the store lock (shared or exclusive).
    pub(crate) fn store_blob<R: Read + ?Sized>(
        &self,
        reader: &mut R,
        source_name: &str,
        expected: Option<Expected>,
        max_bytes: Option<u64>,
    ) -> Result<Blob> {
        let limit = max_bytes.unwrap_or(u64::MAX);
        let map_ingest = |e: IngestError, tmp_path: PathBuf| match e {
            IngestError::Read { read, source } => ArtifactError::SourceUnreadable {
                source_name: source_name.to_owned(),
                read,
                source,
            },
            IngestError::Write { written, source } => {
                store_io("write the temporary file", tmp_path, written, source)
            }
            IngestError::TooLarge => ArtifactError::TooLarge {
                source_name: source_name.to_owned(),
                limit,
            },
        };
        let check_expected = |got: &Ingested| match expected {
            Some(exp) if exp.hash != got.digest || exp.size != got.size => {
                Err(ArtifactError::ExpectedMismatch {
                    source_name: source_name.to_owned(),
                    expected_hash: exp.hash,
                    expected_size: exp.size,
                    actual_hash: got.digest,
                    actual_size: got.size,
                })
            }
            _ => Ok(()),
        };
        if let Some(exp) = expected
            && exp.size > INLINE_MAX
        {
            // Cheap second put: the caller says which content this is and we
            // already hold it, so only hash, never write.
            let (shard, name) = blob_location(&exp.hash);
            if let Ok(meta) = self.blobs.symlink_metadata(Path::new(&shard).join(&name))
                && meta.is_file()
                && meta.len() == exp.size
                && self.blob_intact(&exp.hash, exp.size)
            {
                let got = ingest::ingest(reader, &mut io::sink(), limit)
                    .map_err(|e| map_ingest(e, PathBuf::from("<none>")))?;
                check_expected(&got)?;
                return Ok(Blob { got, inline: None });
            }
        }
        // The first INLINE_MAX + 1 bytes (no more than the limit + 1) decide
        // where the payload goes.
        let mut head = Vec::new();
        let cap = INLINE_MAX.min(limit).saturating_add(1);
        if let Err(source) = (&mut *reader).take(cap).read_to_end(&mut head) {
            return Err(ArtifactError::SourceUnreadable {
                source_name: source_name.to_owned(),
                read: head.len() as u64,
                source,
            });
        }
        let read = head.len() as u64;
        if read > limit {
            return Err(map_ingest(IngestError::TooLarge, PathBuf::new()));
        }
        if read < cap {
            let got = Ingested {
                digest: Sha256Digest::of(&head),
                size: read,
            };
            check_expected(&got)?;
            self.drop_damaged_file(&got.digest, got.size);
            return Ok(Blob {
                got,
                inline: Some(head),
            });
        }
        let mut tmp = self.temp_file("put", true, 0o600)?;
        let tmp_path = tmp.path(&self.root_path);
        let got = {
            #[cfg(test)]
            let remaining = self.fault_enospc_after;
            #[cfg(not(test))]
            let remaining = None;
            let mut writer = TempWriter {
                file: &mut tmp.file,
                remaining,
            };
            let mut source = (&head[..]).chain(&mut *reader);
            ingest::ingest(&mut source, &mut writer, limit)
                .map_err(|e| map_ingest(e, tmp_path.clone()))?
        };
        check_expected(&got)?;
        self.commit_blob(tmp, &got)?;
        Ok(Blob { got, inline: None })
    }

    /// Move a fully written temp file into place as the blob for `got`.
    pub(crate) fn commit_blob(&self, mut tmp: TempFile<'_>, got: &Ingested) -> Result<()> {
        let tmp_path = tmp.path(&self.root_path);
        let (shard, name) = blob_location(&got.digest);
        let rel = Path::new(&shard).join(&name);
        let blob_path = self.blob_path(&got.digest);
        let existing = match self.blobs.symlink_metadata(&rel) {
            // A blob of the right size is reused only if it hashes right: a
            // corrupt file planted at a digest's path is replaced, never
            // silently served as those bytes.
            Ok(meta) => Some(
                meta.is_file() && meta.len() == got.size && self.blob_intact(&got.digest, got.size),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(store_io("inspect", blob_path, 0, e)),
        };
        if existing == Some(true) {
            // Same bytes already stored: drop the temp file unsynced.
            return Ok(());
        }
        tmp.file
            .set_permissions(std::fs::Permissions::from_mode(0o444))
            .map_err(|e| store_io("set permissions of", tmp_path.clone(), 0, e))?;
        tmp.file
            .sync_all()
            .map_err(|e| store_io("fsync", tmp_path.clone(), got.size, e))?;
        match self.blobs.create_dir(&shard) {
            Ok(()) => fsync_dir(&self.blobs, &self.root_path.join(BLOBS))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(store_io(
                    "create directory",
                    self.root_path.join(BLOBS).join(&shard),
                    0,
                    e,
                ));
            }
        }
        let shard_dir = self.blobs.open_dir(&shard).map_err(|e| {
            store_io(
                "open directory",
                self.root_path.join(BLOBS).join(&shard),
                0,
                e,
            )
        })?;
        if existing == Some(false) {
            // A damaged blob (wrong size) is in the way: replace it with the
            // verified bytes we just wrote.
            tmp.rename_over(&shard_dir, &name)
                .map_err(|e| store_io("replace damaged payload", blob_path.clone(), 0, e))?;
            self.forget_cached(&got.digest);
        } else {
            match tmp.link_to(&shard_dir, &name) {
                Ok(()) => {}
                // Another writer stored the same bytes first.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(store_io("link payload into place at", blob_path, 0, e)),
            }
        }
        drop(shard_dir);
        self.dir_sync
            .sync(&self.root, &self.root_path, &Path::new(BLOBS).join(&shard))?;
        drop(tmp);
        Ok(())
    }

    /// Commit the record (sidecar manifest) of a taken-in payload: one
    /// transaction holds the record row, the payload's row when it is
    /// inline, and `extra` (inline payloads of a bundle's entries). The
    /// artifact exists once that transaction is durable, and not before.
    pub(crate) fn write_record(
        &self,
        blob: Blob,
        extra: Vec<Op>,
        options: &PutOptions,
        normalize_line_endings: bool,
    ) -> Result<ArtifactHandle> {
        let got = blob.got;
        let id = Uuid::new_v4();
        let handle = ArtifactHandle {
            artifact_id: id,
            kind: options.kind,
            content_hash: got.digest,
            size_bytes: got.size,
            classification: options.classification,
            exportable: options.exportable,
            retention_ttl_days: options.retention_ttl_days,
            media_type: options.media_type.clone(),
        };
        let manifest = ArtifactManifest {
            schema_version: MANIFEST_SCHEMA_VERSION.to_owned(),
            artifact: handle.clone(),
            created_at: UtcTimestamp::now(),
            pinned: options.pinned,
            normalize_line_endings,
            producer: options.producer.clone(),
        };
        let mut ops = extra;
        if let Some(bytes) = blob.inline {
            ops.push(Op::InlineBlob {
                hash: got.digest,
                bytes,
            });
        }
        ops.push(Op::InsertRecord {
            id,
            manifest: self.manifest_bytes(&manifest)?,
        });
        self.index.commit(ops)?;
        Ok(handle)
    }

    /// The stored form of a manifest: pretty JSON and a newline (the bytes
    /// a layout-2 record file held).
    pub(crate) fn manifest_bytes(&self, manifest: &ArtifactManifest) -> Result<Vec<u8>> {
        let mut json =
            serde_json::to_vec_pretty(manifest).map_err(|e| ArtifactError::ManifestInvalid {
                path: self.manifest_path(manifest.artifact.artifact_id),
                message: format!("cannot serialize: {e}"),
            })?;
        json.push(b'\n');
        Ok(json)
    }

    // ------------------------------------------------------------- records

    /// The sidecar manifest of an artifact.
    pub fn manifest(&self, artifact_id: Uuid) -> Result<ArtifactManifest> {
        let path = self.manifest_path(artifact_id);
        match self.index.record(artifact_id, MAX_RECORD_BYTES)? {
            None => Err(ArtifactError::NotFound {
                artifact_id,
                root: self.root_path.clone(),
            }),
            Some(Err(why)) => Err(ArtifactError::ManifestInvalid {
                path,
                message: format!("{why}; restore index.db from a backup"),
            }),
            Some(Ok(bytes)) => parse_manifest(&bytes, &path, Some(artifact_id)),
        }
    }

    /// The handle of an artifact.
    pub fn handle(&self, artifact_id: Uuid) -> Result<ArtifactHandle> {
        Ok(self.manifest(artifact_id)?.artifact)
    }

    /// Check that a caller-presented handle names an existing record and
    /// matches it field for field; returns the stored manifest. This is what
    /// the integrity gate calls for every input handle.
    pub fn check_handle(&self, handle: &ArtifactHandle) -> Result<ArtifactManifest> {
        let manifest = self.manifest(handle.artifact_id)?;
        let stored = &manifest.artifact;
        let diff = |field, claimed: String, stored: String| ArtifactError::HandleMismatch {
            artifact_id: handle.artifact_id,
            path: self.manifest_path(handle.artifact_id),
            field,
            claimed,
            stored,
        };
        if stored.content_hash != handle.content_hash {
            return Err(diff(
                "content_hash",
                handle.content_hash.to_string(),
                stored.content_hash.to_string(),
            ));
        }
        if stored.size_bytes != handle.size_bytes {
            return Err(diff(
                "size_bytes",
                handle.size_bytes.to_string(),
                stored.size_bytes.to_string(),
            ));
        }
        if stored.kind != handle.kind {
            return Err(diff(
                "kind",
                format!("{:?}", handle.kind),
                format!("{:?}", stored.kind),
            ));
        }
        if stored.classification != handle.classification {
            return Err(diff(
                "classification",
                format!("{:?}", handle.classification),
                format!("{:?}", stored.classification),
            ));
        }
        if stored.exportable != handle.exportable {
            return Err(diff(
                "exportable",
                handle.exportable.to_string(),
                stored.exportable.to_string(),
            ));
        }
        if stored.retention_ttl_days != handle.retention_ttl_days {
            return Err(diff(
                "retention_ttl_days",
                format!("{:?}", handle.retention_ttl_days),
                format!("{:?}", stored.retention_ttl_days),
            ));
        }
        if stored.media_type != handle.media_type {
            return Err(diff(
                "media_type",
                format!("{:?}", handle.media_type),
                format!("{:?}", stored.media_type),
            ));
        }
        Ok(manifest)
    }

    /// Ids of all records (rows of `index.db`), sorted. A record appears
    /// with the transaction that commits it, whole, and not before.
    pub fn list(&self) -> Result<Vec<Uuid>> {
        let mut ids: Vec<Uuid> = self
            .index
            .record_ids()?
            .iter()
            .filter_map(|text| canonical_id(text))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Pin or unpin an artifact (pinned artifacts survive gc and quotas).
    pub fn set_pinned(&self, artifact_id: Uuid, pinned: bool) -> Result<ArtifactManifest> {
        let _lock = self.lock(true)?;
        let mut manifest = self.manifest(artifact_id)?;
        if manifest.pinned != pinned {
            manifest.pinned = pinned;
            let bytes = self.manifest_bytes(&manifest)?;
            self.index.commit(vec![Op::ReplaceRecord {
                id: artifact_id,
                manifest: bytes,
            }])?;
        }
        Ok(manifest)
    }

    // --------------------------------------------------------------- reads

    /// Whether the blob at `digest`'s path holds exactly those bytes
    /// (hashed, or vouched for by a valid verify-cache entry).
    fn blob_intact(&self, digest: &Sha256Digest, size: u64) -> bool {
        self.open_blob_verified("(existing blob)", digest, size)
            .is_ok()
    }

    /// A small payload lives inline, but a file can sit at its blob path:
    /// a copy from layout 2, or one planted there. A damaged one (wrong
    /// size or bytes, not a regular file) is removed when the same bytes
    /// are put, as a layout-2 put replaced it; an intact one stays. Only a
    /// damaged copy goes, so nothing durable is lost if the put then fails.
    fn drop_damaged_file(&self, digest: &Sha256Digest, size: u64) {
        let (shard, name) = blob_location(digest);
        let path = Path::new(&shard).join(&name);
        if self.blobs.symlink_metadata(&path).is_ok() && !self.blob_intact(digest, size) {
            let _ = self.blobs.remove_file(&path);
            self.forget_cached(digest);
        }
    }

    fn forget_cached(&self, digest: &Sha256Digest) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
    }

    /// The bytes of the inline payload `digest`, verified (size and hash)
    /// against what the record says, or `None` when it has no row (it is a
    /// file, or missing). A damaged row is an integrity error, never served.
    pub(crate) fn read_inline(
        &self,
        artifact: &str,
        digest: &Sha256Digest,
        size: u64,
    ) -> Result<Option<Vec<u8>>> {
        let Some(row) = self.index.inline_blob(digest)? else {
            return Ok(None);
        };
        let integrity = |found: String| ArtifactError::Integrity {
            artifact: artifact.to_owned(),
            path: self.inline_path(digest),
            expected_hash: *digest,
            expected_size: size,
            found,
        };
        let Some(bytes) = row.bytes else {
            return Err(integrity(format!(
                "its row holds {} bytes, more than an inline payload may ({INLINE_MAX})",
                row.len
            )));
        };
        let got = Sha256Digest::of(&bytes);
        if got != *digest || bytes.len() as u64 != size || row.size != Some(size) {
            return Err(integrity(format!(
                "it hashes to sha256 {got} ({} bytes; its row says {})",
                bytes.len(),
                row.size
                    .map_or_else(|| "no valid size".to_owned(), |s| s.to_string())
            )));
        }
        Ok(Some(bytes))
    }

    /// Open a blob and check its size; returns the file and its metadata.
    pub(crate) fn open_blob(
        &self,
        artifact: &str,
        digest: &Sha256Digest,
        size: u64,
    ) -> Result<(File, std::fs::Metadata)> {
        let (shard, name) = blob_location(digest);
        let path = self.blob_path(digest);
        let integrity = |found: String| ArtifactError::Integrity {
            artifact: artifact.to_owned(),
            path: path.clone(),
            expected_hash: *digest,
            expected_size: size,
            found,
        };
        // Opened without blocking: a FIFO planted at a blob's path is
        // refused below instead of blocking the reader for good.
        let file = match self.blobs.open_with(
            Path::new(&shard).join(&name),
            OpenOptions::new().read(true).custom_flags(nonblock()),
        ) {
            Ok(f) => f.into_std(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(integrity("the payload file is missing".into()));
            }
            Err(e) => return Err(store_io("open payload", path, 0, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| store_io("stat payload", path.clone(), 0, e))?;
        if !meta.is_file() {
            return Err(integrity(format!(
                "it is a {}",
                file_type_name(&meta.file_type())
            )));
        }
        if meta.len() != size {
            self.forget_cached(digest);
            return Err(integrity(format!("it is {} bytes", meta.len())));
        }
        Ok((file, meta))
    }

    /// Open a blob, verified by hash and size (or by a valid cache entry).
    pub(crate) fn open_blob_verified(
        &self,
        artifact: &str,
        digest: &Sha256Digest,
        size: u64,
    ) -> Result<(File, bool)> {
        let (mut file, meta) = self.open_blob(artifact, digest, size)?;
        let path = self.blob_path(digest);
        let stamp = FileStamp::of(&meta);
        if self.config.verify_cache
            && self
                .cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(digest)
                == Some(&stamp)
        {
            return Ok((file, true));
        }
        let started = SystemTime::now();
        let got = ingest::hash_reader(&mut file).map_err(|e| match e {
            IngestError::Read { source, .. } | IngestError::Write { source, .. } => {
                store_io("read payload", path.clone(), 0, source)
            }
            IngestError::TooLarge => store_io(
                "read payload",
                path.clone(),
                0,
                io::Error::other("too large"),
            ),
        })?;
        if got.digest != *digest || got.size != size {
            self.forget_cached(digest);
            return Err(ArtifactError::Integrity {
                artifact: artifact.to_owned(),
                path,
                expected_hash: *digest,
                expected_size: size,
                found: format!("it hashes to sha256 {} ({} bytes)", got.digest, got.size),
            });
        }
        if self.config.verify_cache {
            let after = file
                .metadata()
                .map_err(|e| store_io("stat payload", path.clone(), 0, e))?;
            let ctime = UNIX_EPOCH
                + Duration::new(
                    u64::try_from(stamp.ctime.0).unwrap_or(0),
                    u32::try_from(stamp.ctime.1).unwrap_or(0),
                );
            let old_enough = started
                .duration_since(ctime)
                .is_ok_and(|age| age >= self.config.racy_window);
            if FileStamp::of(&after) == stamp && old_enough {
                self.cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(*digest, stamp);
            }
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| store_io("seek payload", path, 0, e))?;
        Ok((file, false))
    }

    /// Read an artifact's whole payload into memory, verified in one pass:
    /// the returned bytes are exactly the bytes that were hashed. The handle
    /// must match the stored record ([`ArtifactStore::check_handle`]).
    pub fn read(&self, handle: &ArtifactHandle) -> Result<Vec<u8>> {
        self.check_handle(handle)?;
        self.read_blob(
            &handle.artifact_id.to_string(),
            &handle.content_hash,
            handle.size_bytes,
        )
    }

    pub(crate) fn read_blob(
        &self,
        artifact: &str,
        digest: &Sha256Digest,
        size: u64,
    ) -> Result<Vec<u8>> {
        if let Some(bytes) = self.read_inline(artifact, digest, size)? {
            return Ok(bytes);
        }
        let (mut file, _) = self.open_blob(artifact, digest, size)?;
        let path = self.blob_path(digest);
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // Read one byte past the expected size to notice growth.
        (&mut file)
            .take(size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| store_io("read payload", path.clone(), 0, e))?;
        let got = Sha256Digest::of(&bytes);
        if got != *digest || bytes.len() as u64 != size {
            self.forget_cached(digest);
            return Err(ArtifactError::Integrity {
                artifact: artifact.to_owned(),
                path,
                expected_hash: *digest,
                expected_size: size,
                found: format!("it hashes to sha256 {got} ({} bytes)", bytes.len()),
            });
        }
        Ok(bytes)
    }

    /// Open an artifact's payload for reading after verifying it (hash and
    /// size), or after finding a valid verification-cache entry. See the
    /// crate docs for the residual risk of this verify-then-read path.
    pub fn open(&self, handle: &ArtifactHandle) -> Result<VerifiedFile> {
        self.check_handle(handle)?;
        if let Some(bytes) = self.read_inline(
            &handle.artifact_id.to_string(),
            &handle.content_hash,
            handle.size_bytes,
        )? {
            return Ok(VerifiedFile {
                file: Source::Memory(io::Cursor::new(bytes)),
                size: handle.size_bytes,
                from_cache: false,
            });
        }
        let (file, from_cache) = self.open_blob_verified(
            &handle.artifact_id.to_string(),
            &handle.content_hash,
            handle.size_bytes,
        )?;
        Ok(VerifiedFile {
            file: Source::File(file),
            size: handle.size_bytes,
            from_cache,
        })
    }

    /// Open an artifact's payload as a single-pass reader that hashes while
    /// it reads and fails with `InvalidData` at the end if the bytes did not
    /// match: treat what it yields as untrusted until it returns `Ok(0)`.
    pub fn open_streaming(&self, handle: &ArtifactHandle) -> Result<VerifyingReader> {
        self.check_handle(handle)?;
        let artifact = handle.artifact_id.to_string();
        let (file, path) =
            match self.read_inline(&artifact, &handle.content_hash, handle.size_bytes)? {
                // Verified already; hashed again as it is read, like a file.
                Some(bytes) => (
                    Source::Memory(io::Cursor::new(bytes)),
                    self.inline_path(&handle.content_hash),
                ),
                None => (
                    Source::File(
                        self.open_blob(&artifact, &handle.content_hash, handle.size_bytes)?
                            .0,
                    ),
                    self.blob_path(&handle.content_hash),
                ),
            };
        Ok(VerifyingReader {
            file,
            hasher: Some(mex_envelope::Sha256Writer::new()),
            expected: Expected {
                hash: handle.content_hash,
                size: handle.size_bytes,
            },
            path,
            failed: false,
        })
    }
}

/// The error for a layout marker this build does not understand.
pub(crate) fn unknown_layout(path: &Path, text: &str) -> ArtifactError {
    let found = text.trim();
    let newer = found
        .strip_prefix("mex-artifacts-store-")
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n > 3);
    let message = if newer {
        format!(
            "the store has layout {found:?}, written by a newer mex; this build understands {:?} (and migrates {:?} and {:?}); open it with that newer mex version",
            LAYOUT.trim(),
            LAYOUT_2.trim(),
            LAYOUT_1.trim()
        )
    } else {
        format!(
            "unknown store layout {found:?}, this build understands {:?} (and migrates {:?} and {:?}); open it with a matching mex version",
            LAYOUT.trim(),
            LAYOUT_2.trim(),
            LAYOUT_1.trim()
        )
    };
    ArtifactError::ManifestInvalid {
        path: path.to_path_buf(),
        message,
    }
}

/// Parse and sanity-check a manifest file.
pub(crate) fn parse_manifest(
    bytes: &[u8],
    path: &Path,
    id: Option<Uuid>,
) -> Result<ArtifactManifest> {
    let manifest: ArtifactManifest =
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::ManifestInvalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if manifest.schema_version != MANIFEST_SCHEMA_VERSION {
        return Err(ArtifactError::ManifestInvalid {
            path: path.to_path_buf(),
            message: format!(
                "schema_version {:?}, expected {MANIFEST_SCHEMA_VERSION:?}",
                manifest.schema_version
            ),
        });
    }
    if let Some(id) = id
        && manifest.artifact.artifact_id != id
    {
        return Err(ArtifactError::ManifestInvalid {
            path: path.to_path_buf(),
            message: format!(
                "it names artifact {} but lives in the record of {id}",
                manifest.artifact.artifact_id
            ),
        });
    }
    Ok(manifest)
}

fn check_options(options: &PutOptions) -> Result<()> {
    if let Some(ttl) = options.retention_ttl_days
        && !(1..=36_500).contains(&ttl)
    {
        return Err(ArtifactError::InvalidOptions {
            message: format!(
                "retention_ttl_days {ttl} is out of range; use 1..=36500 days, or None to keep it"
            ),
        });
    }
    if options.kind == ArtifactKind::Bundle {
        return Err(ArtifactError::InvalidOptions {
            message:
                "kind bundle is reserved for put_dir, whose payload is a canonical bundle index"
                    .into(),
        });
    }
    Ok(())
}

/// Open a caller-chosen source path, refusing anything but a regular file
/// without blocking on FIFOs.
pub(crate) fn open_regular_source(path: &Path) -> Result<File> {
    let unreadable = |source| ArtifactError::SourceUnreadable {
        source_name: path.display().to_string(),
        read: 0,
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(ArtifactError::NotARegularFile {
            path: path.to_path_buf(),
            file_type: file_type_name(&meta.file_type()),
        });
    }
    Ok(file)
}

/// Where verified payload bytes come from: the payload file, or the bytes
/// of an inline payload held in memory.
#[derive(Debug)]
enum Source {
    File(File),
    Memory(io::Cursor<Vec<u8>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::File(f) => f.read(buf),
            Self::Memory(m) => m.read(buf),
        }
    }
}

impl Seek for Source {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            Self::File(f) => f.seek(pos),
            Self::Memory(m) => m.seek(pos),
        }
    }
}

/// A payload opened after verification. Reads come from the same open file
/// that was hashed (or, for a small payload kept inline in the index, from
/// the very bytes that were hashed, in memory).
#[derive(Debug)]
pub struct VerifiedFile {
    file: Source,
    size: u64,
    from_cache: bool,
}

impl VerifiedFile {
    /// Payload size.
    pub fn len(&self) -> u64 {
        self.size
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// Whether verification came from the cache rather than a fresh hash.
    pub fn verified_by_cache(&self) -> bool {
        self.from_cache
    }
}

impl Read for VerifiedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for VerifiedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

/// A single-pass reader that verifies at the end (see
/// [`ArtifactStore::open_streaming`]).
pub struct VerifyingReader {
    file: Source,
    hasher: Option<mex_envelope::Sha256Writer>,
    expected: Expected,
    path: PathBuf,
    failed: bool,
}

impl std::fmt::Debug for VerifyingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingReader")
            .field("path", &self.path)
            .field("expected", &self.expected)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl VerifyingReader {
    fn integrity_error(&self, digest: &Sha256Digest, size: u64) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "integrity failure: payload {} should be sha256 {} ({} bytes) but hashes to {digest} ({size} bytes or more); discard what was read and run verify",
                self.path.display(),
                self.expected.hash,
                self.expected.size
            ),
        )
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "integrity failure already reported for this payload",
            ));
        }
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0);
        };
        let n = self.file.read(buf)?;
        hasher.update(&buf[..n]);
        if hasher.len() > self.expected.size || n == 0 {
            let seen = hasher.len();
            let (digest, size) = self.hasher.take().map_or(
                (self.expected.hash, seen),
                mex_envelope::Sha256Writer::finish,
            );
            if n > 0 || digest != self.expected.hash || size != self.expected.size {
                self.failed = true;
                return Err(self.integrity_error(&digest, size));
            }
        }
        Ok(n)
    }
}
