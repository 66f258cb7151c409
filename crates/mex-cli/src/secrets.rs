//! The host secret store and `mex secrets add|generate|list|public|remove`.
//!
//! Key material lives in `<home>/secrets/<key_id>` (directory 0700, files
//! 0600, one held key per file; see `mex_engine_sovereign::keys` for the two
//! forms). It leaves the store only for a run granted `secrets.use:<key_id>`,
//! in the request on the engine's stdin (mex-engine-process). The recorder
//! of a home is opened with every held key registered with its redactor, in
//! raw, hex and base64 forms, so a value that slips into a message is
//! removed before it is hashed or written. These commands never print a
//! secret: only key ids, kinds and public keys.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mex_engine_sovereign::keys::{HeldKey, KeyKind, generate};
use zeroize::Zeroizing;

use crate::CliError;
use crate::cli::SecretsCommand;
use crate::exit;
use crate::home::Home;
use crate::out::outln;

/// The largest held key accepted.
const MAX_KEY_BYTES: u64 = 4096;

/// `<home>/secrets`.
pub fn dir(home_root: &Path) -> PathBuf {
    home_root.join("secrets")
}

fn check_id(key_id: &str) -> Result<(), CliError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= 128
        && key_id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "key id {key_id:?} is not valid: use 1-128 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"
        )))
    }
}

fn ensure_dir(root: &Path) -> Result<PathBuf, CliError> {
    let d = dir(root);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .map_err(|e| CliError::internal(format!("cannot create {}: {e}", d.display())))?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| CliError::internal(format!("cannot set {} to 0700: {e}", d.display())))?;
    Ok(d)
}

/// Write a new held key (refuses to replace one).
fn store(root: &Path, key_id: &str, text: &str) -> Result<(), CliError> {
    let path = ensure_dir(root)?.join(key_id);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| {
            CliError::usage(format!(
                "cannot create {} ({e}); if the key exists, remove it first with `mex secrets remove {key_id}`",
                path.display()
            ))
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))
}

/// Read one held key's text (bounded, no symlinks).
fn load(root: &Path, key_id: &str) -> Result<Zeroizing<String>, CliError> {
    let path = dir(root).join(key_id);
    let meta = std::fs::symlink_metadata(&path).map_err(|_| {
        CliError::usage(format!(
            "no key {key_id:?} in {}; see `mex secrets list`",
            dir(root).display()
        ))
    })?;
    if !meta.file_type().is_file() {
        return Err(CliError::usage(format!(
            "{} is not a regular file; held keys are plain files",
            path.display()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_KEY_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        CliError::usage(format!("{} is not a held key (not UTF-8)", path.display()))
    })?;
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// Every held key id, sorted.
fn ids(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| check_id(n).is_ok())
        .collect();
    out.sort();
    out
}

/// The forms of every held key a redactor must remove: the text, and the
/// key bytes in raw (when UTF-8), hex and base64 forms.
pub fn redaction_values(root: &Path) -> Vec<Zeroizing<String>> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for id in ids(root) {
        let Ok(text) = load(root, &id) else { continue };
        let mut raw: Zeroizing<Vec<u8>> = Zeroizing::new(text.as_bytes().to_vec());
        if let Ok(HeldKey::Ed25519(k)) = HeldKey::parse(&text) {
            raw = Zeroizing::new(k.to_bytes().to_vec());
        }
        for form in [
            Zeroizing::new(hex::encode(raw.as_slice())),
            Zeroizing::new(hex::encode_upper(raw.as_slice())),
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(raw.as_slice())),
            Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice())),
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())),
            Zeroizing::new(hex::encode(text.as_bytes())),
        ] {
            out.push(form);
        }
        out.push(text);
    }
    out
}

fn kind_name(k: KeyKind) -> &'static str {
    match k {
        KeyKind::Ed25519 => "ed25519",
        KeyKind::Age => "age",
    }
}

/// `mex secrets ...`.
pub fn run(home: &Home, cmd: &SecretsCommand) -> Result<u8, CliError> {
    let root = &home.root;
    match cmd {
        SecretsCommand::Generate { key_id, kind } => {
            check_id(key_id)?;
            let kind = match kind.as_str() {
                "ed25519" => KeyKind::Ed25519,
                "age" => KeyKind::Age,
                other => {
                    return Err(CliError::usage(format!(
                        "--kind {other:?} is not a key kind; use ed25519 (sign) or age (encrypt, decrypt, sync_push)"
                    )));
                }
            };
            let text = generate(kind).map_err(CliError::internal)?;
            let key = HeldKey::parse(&text).map_err(CliError::internal)?;
            store(root, key_id, &text)?;
            outln!("{key_id} ({})", kind_name(kind));
            crate::out::out!("{}", key.public_text());
        }
        SecretsCommand::Add { key_id, file } => {
            check_id(key_id)?;
            let mut bytes = Zeroizing::new(Vec::new());
            let read = match file {
                Some(p) => std::fs::File::open(p)
                    .and_then(|f| f.take(MAX_KEY_BYTES + 1).read_to_end(&mut bytes)),
                None => std::io::stdin()
                    .lock()
                    .take(MAX_KEY_BYTES + 1)
                    .read_to_end(&mut bytes),
            };
            read.map_err(|e| CliError::usage(format!("cannot read the key: {e}")))?;
            if bytes.len() as u64 > MAX_KEY_BYTES {
                return Err(CliError::usage(format!(
                    "the key is larger than {MAX_KEY_BYTES} bytes; a held key is one line"
                )));
            }
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| CliError::usage("the key is not UTF-8 text"))?
                .trim();
            let key = HeldKey::parse(text)
                .map_err(|why| CliError::usage(format!("not a held key: {why}")))?;
            store(root, key_id, text)?;
            outln!("{key_id} ({})", kind_name(key.kind()));
        }
        SecretsCommand::List => {
            for id in ids(root) {
                match load(root, &id).map(|t| HeldKey::parse(&t)) {
                    Ok(Ok(k)) => outln!("{id}\t{}", kind_name(k.kind())),
                    _ => outln!("{id}\tunreadable (not a held key)"),
                }
            }
        }
        SecretsCommand::Public { key_id } => {
            check_id(key_id)?;
            let text = load(root, key_id)?;
            let key = HeldKey::parse(&text)
                .map_err(|why| CliError::usage(format!("{key_id} is not a held key: {why}")))?;
            crate::out::out!("{}", key.public_text());
        }
        SecretsCommand::Remove { key_id } => {
            check_id(key_id)?;
            let path = dir(root).join(key_id);
            // Overwrite before unlinking (best effort on journaling filesystems).
            if let Ok(meta) = std::fs::symlink_metadata(&path)
                && meta.file_type().is_file()
                && let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path)
            {
                let _ = f.write_all(&vec![0u8; usize::try_from(meta.len()).unwrap_or(0)]);
                let _ = f.sync_all();
            }
            std::fs::remove_file(&path).map_err(|e| {
                CliError::usage(format!(
                    "cannot remove {} ({e}); see `mex secrets list`",
                    path.display()
                ))
            })?;
            outln!("removed {key_id}");
        }
    }
    Ok(exit::OK)
}
