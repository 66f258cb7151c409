//! Bundles: directory trees stored as a canonical index plus one blob per
//! entry.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use mex_envelope::{
    ArtifactHandle, ArtifactKind, BundleEntry, BundleIndex, MediaType, Sha256Digest, canonical,
};

use crate::error::{ArtifactError, Result};
use crate::index::Op;
use crate::path::{RelPath, look_alike_key, normalize_segment};
use crate::store::{ArtifactStore, PutOptions};

/// Media type recorded for bundle payloads (their canonical index).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.mex.bundle-index+json";

/// Options for [`ArtifactStore::put_dir`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BundleOptions {
    /// Classification, exportability, retention, pinning and producer of the
    /// bundle record. `kind` is ignored (always `bundle`); `expected` applies
    /// to the bundle's content hash (its index); `max_bytes` to each entry.
    pub put: PutOptions,
    /// Convert CRLF and lone CR to LF in text entries before hashing. An
    /// entry is text when it is valid UTF-8 without NUL bytes; other entries
    /// are stored byte for byte.
    pub normalize_line_endings: bool,
}

/// Builds a canonical [`BundleIndex`] from entries given in any order. The
/// one way a set of names becomes a bundle: every path goes through the
/// store's path rules ([`RelPath::parse`]) and twins (names equal after
/// normalization, or look-alikes: see [`crate::path::look_alike_key`]) are
/// refused.
#[derive(Debug, Clone, Default)]
pub struct BundleBuilder {
    normalize_line_endings: bool,
    entries: BTreeMap<String, BundleEntry>,
    keys: BTreeMap<String, String>,
}

impl BundleBuilder {
    /// An empty builder.
    pub fn new(normalize_line_endings: bool) -> Self {
        Self {
            normalize_line_endings,
            entries: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }

    /// Add an entry. The path is normalized leniently ([`RelPath::parse`]);
    /// two entries that normalize to the same path are refused.
    pub fn add(
        &mut self,
        path: &str,
        content_hash: Sha256Digest,
        size_bytes: u64,
    ) -> Result<RelPath> {
        let rel = RelPath::parse(path)?;
        self.add_rel(&rel, content_hash, size_bytes)?;
        Ok(rel)
    }

    fn add_rel(
        &mut self,
        rel: &RelPath,
        content_hash: Sha256Digest,
        size_bytes: u64,
    ) -> Result<()> {
        let key = rel.as_str().to_owned();
        if self.entries.contains_key(&key) {
            return Err(ArtifactError::UnsafePath {
                path: key,
                reason: "two entries normalize to the same path (they differ only in Unicode normalization, '.' or empty segments)".into(),
            });
        }
        let look = look_alike_key(rel);
        if let Some(twin) = self.keys.get(&look) {
            return Err(ArtifactError::UnsafePath {
                path: key,
                reason: format!(
                    "it looks like the entry {twin:?} (they differ only in letter case or compatibility forms such as fullwidth letters); rename one of them"
                ),
            });
        }
        self.keys.insert(look, key.clone());
        self.entries.insert(
            key.clone(),
            BundleEntry {
                path: key,
                content_hash,
                size_bytes,
            },
        );
        Ok(())
    }

    /// Number of entries so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The canonical index, entries sorted by path bytes.
    pub fn finish(self) -> BundleIndex {
        let mut index = BundleIndex {
            normalize_line_endings: self.normalize_line_endings,
            entries: self.entries.into_values().collect(),
        };
        index.sort();
        index
    }
}

/// Check that an index (e.g. parsed from an untrusted payload) is canonical:
/// paths canonical, sorted by bytes, unique, and no two alike.
pub fn validate_bundle_index(index: &BundleIndex) -> Result<()> {
    let mut previous: Option<&str> = None;
    let mut keys: BTreeMap<String, &str> = BTreeMap::new();
    for entry in &index.entries {
        let rel = RelPath::parse_canonical(&entry.path)?;
        if let Some(twin) = keys.insert(look_alike_key(&rel), &entry.path) {
            return Err(ArtifactError::UnsafePath {
                path: entry.path.clone(),
                reason: format!(
                    "bundle index entries {twin:?} and {:?} look alike (letter case or compatibility forms)",
                    entry.path
                ),
            });
        }
        if let Some(p) = previous
            && p.as_bytes() >= entry.path.as_bytes()
        {
            return Err(ArtifactError::UnsafePath {
                path: entry.path.clone(),
                reason: format!(
                    "bundle index entries are not sorted and unique (it follows {p:?})"
                ),
            });
        }
        previous = Some(&entry.path);
    }
    Ok(())
}

/// Whether a file is text: valid UTF-8 and no NUL byte. Reads to the end.
fn is_text(file: &mut File) -> io::Result<bool> {
    let mut buf = vec![0u8; 1 << 16];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(carry.is_empty());
        }
        if buf[..n].contains(&0) {
            return Ok(false);
        }
        carry.extend_from_slice(&buf[..n]);
        match std::str::from_utf8(&carry) {
            Ok(_) => carry.clear(),
            Err(e) if e.error_len().is_some() => return Ok(false),
            Err(e) => {
                let tail = carry.split_off(e.valid_up_to());
                carry = tail;
            }
        }
    }
}

/// A reader that turns CRLF and lone CR into LF.
pub(crate) struct NormalizingReader<R> {
    inner: R,
    raw: Vec<u8>,
    pending_cr: bool,
    done: bool,
}

impl<R: Read> NormalizingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            raw: vec![0u8; 1 << 16],
            pending_cr: false,
            done: false,
        }
    }
}

impl<R: Read> Read for NormalizingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            // Each input byte yields at most one output byte, plus a pending
            // CR may yield one extra at the end.
            let want = out.len().min(self.raw.len());
            let n = self.inner.read(&mut self.raw[..want])?;
            if n == 0 {
                self.done = true;
                if self.pending_cr {
                    self.pending_cr = false;
                    out[0] = b'\n';
                    return Ok(1);
                }
                return Ok(0);
            }
            let mut w = 0;
            for &b in &self.raw[..n] {
                if self.pending_cr {
                    self.pending_cr = false;
                    out[w] = b'\n';
                    w += 1;
                    if b == b'\n' {
                        continue;
                    }
                }
                if b == b'\r' {
                    self.pending_cr = true;
                } else {
                    out[w] = b;
                    w += 1;
                }
            }
            if w > 0 {
                return Ok(w);
            }
        }
    }
}

/// Convert CRLF and lone CR to LF (the in-memory form of the normalization).
pub fn normalize_line_endings(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut reader = NormalizingReader::new(bytes);
    // Reading from a slice cannot fail.
    let _ = reader.read_to_end(&mut out);
    out
}

fn file_kind(ft: &cap_std::fs::FileType) -> &'static str {
    use cap_std::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

struct Walk<'a> {
    store: &'a ArtifactStore,
    root_path: PathBuf,
    root: Dir,
    options: &'a BundleOptions,
    builder: BundleBuilder,
    /// Inline entries not committed yet, and their bytes.
    pending: Vec<Op>,
    pending_bytes: usize,
}

/// Inline entries of a bundle held in memory before they are committed in
/// a batch of their own.
const PENDING_MAX_BYTES: usize = 4 << 20;

impl Walk<'_> {
    fn refuse(&self, entry: &Path, reason: impl Into<String>) -> ArtifactError {
        ArtifactError::UnsafeEntry {
            root: self.root_path.clone(),
            entry: entry.to_string_lossy().into_owned(),
            reason: reason.into(),
        }
    }

    fn walk(&mut self, disk: &Path, segments: &mut Vec<String>) -> Result<()> {
        let listing = if disk.as_os_str().is_empty() {
            self.root.entries()
        } else {
            self.root.read_dir(disk)
        };
        let listing = listing.map_err(|e| ArtifactError::SourceUnreadable {
            source_name: self.root_path.join(disk).display().to_string(),
            read: 0,
            source: e,
        })?;
        let mut names = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| ArtifactError::SourceUnreadable {
                source_name: self.root_path.join(disk).display().to_string(),
                read: 0,
                source: e,
            })?;
            let ft = entry
                .file_type()
                .map_err(|e| ArtifactError::SourceUnreadable {
                    source_name: self
                        .root_path
                        .join(disk)
                        .join(entry.file_name())
                        .display()
                        .to_string(),
                    read: 0,
                    source: e,
                })?;
            names.push((entry.file_name(), ft));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, ft) in names {
            let child = disk.join(&name);
            let Some(name_str) = name.to_str() else {
                return Err(self.refuse(&child, "the name is not valid UTF-8"));
            };
            let segment = normalize_segment(name_str, name_str).map_err(|e| match e {
                ArtifactError::UnsafePath { reason, .. } => self.refuse(&child, reason),
                other => other,
            })?;
            segments.push(segment);
            if ft.is_dir() {
                self.walk(&child, segments)?;
            } else if ft.is_file() {
                self.add_file(&child, segments)?;
            } else if ft.is_symlink() {
                // Resolved beneath the bundle root by cap-std: a link that
                // leads outside (absolute, or through '..') fails here.
                match self.root.metadata(&child) {
                    Err(e) => {
                        return Err(self.refuse(
                            &child,
                            format!(
                                "symbolic link pointing outside the bundle root, or dangling ({e})"
                            ),
                        ));
                    }
                    Ok(m) if m.is_file() => self.add_file(&child, segments)?,
                    Ok(m) if m.is_dir() => {
                        return Err(self.refuse(
                            &child,
                            "symbolic link to a directory (refused to avoid cycles and duplicates)",
                        ));
                    }
                    Ok(m) => {
                        return Err(self.refuse(
                            &child,
                            format!("symbolic link to {}", file_kind(&m.file_type())),
                        ));
                    }
                }
            } else {
                return Err(self.refuse(
                    &child,
                    format!("it is {}, not a regular file or directory", file_kind(&ft)),
                ));
            }
            segments.pop();
        }
        Ok(())
    }

    fn add_file(&mut self, disk: &Path, segments: &[String]) -> Result<()> {
        let rel = RelPath::from_segments(segments).map_err(|e| match e {
            ArtifactError::UnsafePath { reason, .. } => self.refuse(disk, reason),
            other => other,
        })?;
        let source_name = self.root_path.join(disk).display().to_string();
        let unreadable = |source| ArtifactError::SourceUnreadable {
            source_name: source_name.clone(),
            read: 0,
            source,
        };
        let mut file = self
            .root
            .open_with(
                disk,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32),
            )
            .map_err(unreadable)?
            .into_std();
        let meta = file.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            return Err(self.refuse(
                disk,
                "it stopped being a regular file while the bundle was read",
            ));
        }
        let text = if self.options.normalize_line_endings {
            let t = is_text(&mut file).map_err(unreadable)?;
            file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
            t
        } else {
            false
        };
        let max = self.options.put.max_bytes;
        let got = if text {
            self.store.store_blob(
                &mut NormalizingReader::new(&mut file),
                &source_name,
                None,
                max,
            )?
        } else {
            self.store.store_blob(&mut file, &source_name, None, max)?
        };
        if let Some(bytes) = got.inline {
            // Committed with the bundle's record, or earlier in a batch of
            // its own (gc cannot run meanwhile: the put holds the shared
            // lock), so memory stays bounded however many entries there are.
            self.pending_bytes += bytes.len();
            self.pending.push(Op::InlineBlob {
                hash: got.got.digest,
                bytes,
            });
            if self.pending_bytes >= PENDING_MAX_BYTES {
                self.store.index.commit(std::mem::take(&mut self.pending))?;
                self.pending_bytes = 0;
            }
        }
        let got = got.got;
        self.builder
            .add_rel(&rel, got.digest, got.size)
            .map_err(|e| match e {
                ArtifactError::UnsafePath { reason, .. } => self.refuse(disk, reason),
                other => other,
            })
    }
}

impl ArtifactStore {
    /// Store the directory tree at `path` (a trusted, caller-chosen path) as
    /// a bundle: every regular file becomes a blob, and the bundle's payload
    /// is its canonical index. Refused with [`ArtifactError::UnsafeEntry`]:
    /// non-UTF-8 or control-character names, names that collide after NFC,
    /// symlinks leading outside the root or to directories, FIFOs, sockets
    /// and devices. Symlinks to regular files inside the root are stored as
    /// the file they point to.
    pub fn put_dir(
        &self,
        path: impl AsRef<Path>,
        options: &BundleOptions,
    ) -> Result<ArtifactHandle> {
        let path = path.as_ref();
        let mut put = options.put.clone();
        put.kind = ArtifactKind::Bundle;
        if put.media_type.is_none() {
            put.media_type = BUNDLE_MEDIA_TYPE.parse::<MediaType>().ok();
        }
        if let Some(ttl) = put.retention_ttl_days
            && !(1..=36_500).contains(&ttl)
        {
            return Err(ArtifactError::InvalidOptions {
                message: format!(
                    "retention_ttl_days {ttl} is out of range; use 1..=36500, or None"
                ),
            });
        }
        let root = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| {
            ArtifactError::SourceUnreadable {
                source_name: path.display().to_string(),
                read: 0,
                source: e,
            }
        })?;
        let _lock = self.lock(false)?;
        let mut walk = Walk {
            store: self,
            root_path: path.to_path_buf(),
            root,
            options,
            builder: BundleBuilder::new(options.normalize_line_endings),
            pending: Vec::new(),
            pending_bytes: 0,
        };
        walk.walk(Path::new(""), &mut Vec::new())?;
        let index = walk.builder.finish();
        let payload = canonical::to_vec(&index)?;
        let got = self.store_blob(
            &mut &payload[..],
            &path.display().to_string(),
            put.expected,
            None,
        )?;
        self.write_record(got, walk.pending, &put, options.normalize_line_endings)
    }

    /// The verified, canonical index of a bundle artifact.
    pub fn bundle_index(&self, handle: &ArtifactHandle) -> Result<BundleIndex> {
        if handle.kind != ArtifactKind::Bundle {
            return Err(ArtifactError::Bundle {
                artifact_id: handle.artifact_id,
                message: format!(
                    "it is of kind {:?}, not a bundle; pass a bundle handle",
                    handle.kind
                ),
            });
        }
        let bytes = self.read(handle)?;
        parse_index(&bytes, handle.artifact_id)
    }

    /// Write every entry of a bundle, each verified against the index, as a
    /// read-only file (mode 0444) under `dest`, which must not exist yet;
    /// directories are made as needed and left read-only (0555). Entry paths
    /// are the index's canonical store paths, so nothing is written outside
    /// `dest`. Returns the number of entries written. This is how a bundle
    /// input reaches an engine that reads a tree (a process engine's jail).
    pub fn export_bundle(&self, handle: &ArtifactHandle, dest: &Path) -> Result<usize> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt};
        let index = self.bundle_index(handle)?;
        let io = |action: &'static str, path: &Path, e: io::Error| {
            crate::error::store_io(action, path.to_path_buf(), 0, e)
        };
        std::fs::create_dir(dest).map_err(|e| io("create directory", dest, e))?;
        let mut dirs = vec![dest.to_path_buf()];
        for entry in &index.entries {
            let rel = RelPath::parse_canonical(&entry.path)?;
            let bytes = self.read_blob(
                &format!("{} entry {}", handle.artifact_id, entry.path),
                &entry.content_hash,
                entry.size_bytes,
            )?;
            let mut path = dest.to_path_buf();
            let segments: Vec<&str> = rel.segments().collect();
            let (name, parents) = segments.split_last().ok_or_else(|| ArtifactError::Bundle {
                artifact_id: handle.artifact_id,
                message: "it has an entry with an empty path".into(),
            })?;
            for segment in parents {
                path.push(segment);
                match std::fs::create_dir(&path) {
                    Ok(()) => dirs.push(path.clone()),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
                    Err(e) => return Err(io("create directory", &path, e)),
                }
            }
            path.push(name);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&path)
                .map_err(|e| io("create file", &path, e))?;
            file.write_all(&bytes)
                .map_err(|e| io("write file", &path, e))?;
        }
        for dir in dirs.iter().rev() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))
                .map_err(|e| io("make read-only", dir, e))?;
        }
        Ok(index.entries.len())
    }

    /// Read one entry of a bundle, verified against the bundle's index.
    pub fn read_bundle_entry(&self, handle: &ArtifactHandle, path: &RelPath) -> Result<Vec<u8>> {
        let index = self.bundle_index(handle)?;
        let entry = index
            .entries
            .binary_search_by(|e| e.path.as_bytes().cmp(path.as_str().as_bytes()))
            .ok()
            .and_then(|i| index.entries.get(i))
            .ok_or_else(|| ArtifactError::Bundle {
                artifact_id: handle.artifact_id,
                message: format!(
                    "it has no entry {:?}; list its index to see what it holds",
                    path.as_str()
                ),
            })?;
        self.read_blob(
            &format!("{} entry {}", handle.artifact_id, entry.path),
            &entry.content_hash,
            entry.size_bytes,
        )
    }
}

/// Parse a bundle payload and check it is exactly the canonical form.
pub(crate) fn parse_index(bytes: &[u8], artifact_id: uuid::Uuid) -> Result<BundleIndex> {
    let bad = |message: String| ArtifactError::Bundle {
        artifact_id,
        message,
    };
    let index: BundleIndex = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("its payload is not a bundle index: {e}")))?;
    validate_bundle_index(&index).map_err(|e| bad(format!("its index is not canonical: {e}")))?;
    if canonical::to_vec(&index)? != bytes {
        return Err(bad(
            "its payload is not the RFC 8785 canonical form of its index".into(),
        ));
    }
    Ok(index)
}
