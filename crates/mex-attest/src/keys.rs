//! The home signing key: one Ed25519 key per mex home, stored as a PKCS#8
//! PEM file `<home>/keys/signing.pem` with mode 0600 (in a 0700 directory).
//!
//! The private key is never printed, logged or recorded: [`HomeKey`] has no
//! accessor for it and its `Debug` shows only the public key. The public key
//! has three spellings, all printed by `mex keys show`:
//!
//! * a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo, RFC 8410), for OpenSSL,
//!   securesystemslib and friends;
//! * a C2SP signed-note verifier key `name+keyhash+base64` (the name is
//!   [`PublicKey::note_name`], the key hash the first four bytes of
//!   SHA-256(name || "\n" || 0x01 || key), big-endian, in hex);
//! * a key id, [`PublicKey::key_id`]: lowercase hex SHA-256 of the DER
//!   SubjectPublicKeyInfo, used as the DSSE `keyid`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::AttestError;

/// Directory of the key under the home.
pub const KEY_DIR: &str = "keys";
/// File name of the private key in [`KEY_DIR`].
pub const KEY_FILE: &str = "signing.pem";

/// Where a home keeps its private key.
pub fn key_path(home: &Path) -> PathBuf {
    home.join(KEY_DIR).join(KEY_FILE)
}

/// The signed-note algorithm byte for Ed25519.
const NOTE_ALG_ED25519: u8 = 0x01;

/// An Ed25519 public key and its derived names.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    /// [`PublicKey::note_name`], computed once.
    name: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.key_id()).finish()
    }
}

impl PublicKey {
    fn new(key: VerifyingKey) -> Self {
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let id = hex::encode(Sha256::digest(der));
        Self {
            key,
            name: format!("mex/{}", &id[..16]),
        }
    }

    /// From raw key bytes (refuses points that are not on the curve).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, AttestError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self::new)
            .map_err(|e| AttestError::BadKey {
                what: "Ed25519 public key".into(),
                detail: e.to_string(),
            })
    }

    /// A key under which no signature verifies: the identity point, a
    /// small-order key that strict verification always refuses. For failing
    /// closed when the real key cannot be loaded.
    pub fn refusing_all() -> Self {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        // The identity point always decodes; fall back to the basepoint-free
        // constructor only if a future version refused it.
        VerifyingKey::from_bytes(&identity)
            .map(Self::new)
            .unwrap_or_else(|_| Self::new(VerifyingKey::default()))
    }

    /// The 32 raw key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// DER SubjectPublicKeyInfo (RFC 8410).
    pub fn spki_der(&self) -> Vec<u8> {
        // Encoding a valid 32-byte key cannot fail; an empty vector would
        // only make the key id differ, never verify something wrongly.
        self.key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// PEM `PUBLIC KEY` block (SubjectPublicKeyInfo), ending in a newline.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo: the DSSE
    /// `keyid` and the key's fingerprint.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.spki_der()))
    }

    /// The signed-note key name, which is also the checkpoint origin:
    /// `mex/` and the first 16 hex digits of [`PublicKey::key_id`]. Distinct
    /// keys (homes) therefore name distinct logs.
    pub fn note_name(&self) -> &str {
        &self.name
    }

    /// The signed-note key hash (C2SP signed-note: the first four bytes of
    /// SHA-256(name || "\n" || 0x01 || key), big-endian).
    pub fn note_key_hash(&self) -> u32 {
        signed_note::key_id(self.note_name(), &self.note_key_bytes())
    }

    fn note_key_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(33);
        bytes.push(NOTE_ALG_ED25519);
        bytes.extend_from_slice(self.key.as_bytes());
        bytes
    }

    /// The signed-note verifier key: `name+keyhash+base64(0x01 || key)`.
    pub fn verifier_key(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.note_name(),
            self.note_key_hash(),
            B64.encode(self.note_key_bytes())
        )
    }

    /// Parse a public key given as a PEM `PUBLIC KEY` block or as a signed-
    /// note verifier key (`name+keyhash+base64`). A verifier key must carry
    /// this crate's name for the key and the right key hash.
    pub fn parse(text: &str) -> Result<Self, AttestError> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            return VerifyingKey::from_public_key_pem(text)
                .map(Self::new)
                .map_err(|e| AttestError::BadKey {
                    what: "PEM public key".into(),
                    detail: format!("{e}; give a `-----BEGIN PUBLIC KEY-----` Ed25519 block as printed by `mex keys show`"),
                });
        }
        let bad = |detail: String| AttestError::BadKey {
            what: format!("verifier key {text:?}"),
            detail,
        };
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hash), Some(key64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(
                "expected name+keyhash+base64 (as printed by `mex keys show`) or a PEM block"
                    .into(),
            ));
        };
        let raw = B64
            .decode(key64)
            .map_err(|e| bad(format!("the key part is not base64: {e}")))?;
        let (Some(&NOTE_ALG_ED25519), Ok(bytes)) = (
            raw.first(),
            <[u8; 32]>::try_from(raw.get(1..).unwrap_or_default()),
        ) else {
            return Err(bad(
                "the key part is not 0x01 followed by a 32-byte Ed25519 key".into(),
            ));
        };
        let key = Self::from_bytes(&bytes)?;
        if name != key.note_name() {
            return Err(bad(format!(
                "the name is {name:?} but this key's name is {:?}",
                key.note_name()
            )));
        }
        if hash.len() != 8 || u32::from_str_radix(hash, 16).ok() != Some(key.note_key_hash()) {
            return Err(bad(format!(
                "the key hash {hash:?} does not match the key (expected {:08x})",
                key.note_key_hash()
            )));
        }
        Ok(key)
    }

    /// Whether `sig` is this key's signature over `msg`. Strict
    /// verification (RFC 8032 with the small-order and malleability checks of
    /// `verify_strict`), so a signature by a weak key never passes.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

/// The home's private signing key.
pub struct HomeKey {
    key: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for HomeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HomeKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl HomeKey {
    fn from_signing(key: SigningKey) -> Self {
        let public = PublicKey::new(key.verifying_key());
        Self { key, public }
    }

    /// Create the home's key: 32 bytes from the OS random source, written as
    /// PKCS#8 PEM to `<home>/keys/signing.pem`, created with mode 0600 in a
    /// 0700 directory (never overwriting an existing key). Returns the key.
    pub fn init(home: &Path) -> Result<Self, AttestError> {
        let path = key_path(home);
        if path.exists() {
            return Err(AttestError::KeyExists { path });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| AttestError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| AttestError::BadKey {
                what: "new signing key".into(),
                detail: e.to_string(),
            })?;
        let dir = home.join(KEY_DIR);
        create_private_dir(&dir)?;
        let mut file = create_private_file(&path)?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| AttestError::io("write the signing key", &path, e))?;
        Ok(Self::from_signing(key))
    }

    /// The home's key, or `None` when the home has none. Refuses a key file
    /// that other users can read or write.
    pub fn load(home: &Path) -> Result<Option<Self>, AttestError> {
        let path = key_path(home);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AttestError::io("inspect the signing key", &path, e)),
            Ok(meta) => check_private_mode(&path, &meta)?,
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| AttestError::io("read the signing key", &path, e))?;
        let text = Zeroizing::new(text);
        SigningKey::from_pkcs8_pem(&text)
            .map(|k| Some(Self::from_signing(k)))
            .map_err(|e| AttestError::BadKey {
                what: format!("signing key {}", path.display()),
                detail: format!(
                    "{e}; it must be an Ed25519 PKCS#8 PEM `PRIVATE KEY` block as written by `mex keys init`"
                ),
            })
    }

    /// The home's key, or [`AttestError::NoKey`].
    pub fn require(home: &Path) -> Result<Self, AttestError> {
        Self::load(home)?.ok_or_else(|| AttestError::NoKey {
            path: key_path(home),
        })
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Sign `msg` (Ed25519, RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// A key from a fixed seed, for tests and fixtures only (never written).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing(SigningKey::from_bytes(seed))
    }
}

#[cfg(unix)]
fn check_private_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), AttestError> {
    use std::os::unix::fs::PermissionsExt;
    if !meta.is_file() {
        return Err(AttestError::BadKey {
            what: format!("signing key {}", path.display()),
            detail: "it is not a regular file (a symlink or directory is refused)".into(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AttestError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), AttestError> {
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), AttestError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(AttestError::io("create the key directory", dir, e)),
    }
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), AttestError> {
    std::fs::create_dir_all(dir).map_err(|e| AttestError::io("create the key directory", dir, e))
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> Result<std::fs::File, AttestError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => AttestError::KeyExists {
                path: path.to_path_buf(),
            },
            _ => AttestError::io("create the signing key", path, e),
        })
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> Result<std::fs::File, AttestError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| AttestError::io("create the signing key", path, e))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn init_writes_0600_pem_and_load_round_trips() {
        let home = tempfile::tempdir().unwrap();
        let key = HomeKey::init(home.path()).unwrap();
        let path = key_path(home.path());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dmode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(dmode, 0o700);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        let loaded = HomeKey::load(home.path()).unwrap().unwrap();
        assert_eq!(loaded.public(), key.public());
        assert!(matches!(
            HomeKey::init(home.path()),
            Err(AttestError::KeyExists { .. })
        ));
    }

    #[test]
    fn absent_key_is_none_and_require_says_how_to_create_one() {
        let home = tempfile::tempdir().unwrap();
        assert!(HomeKey::load(home.path()).unwrap().is_none());
        let err = HomeKey::require(home.path()).unwrap_err().to_string();
        assert!(err.contains("mex keys init"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        HomeKey::init(home.path()).unwrap();
        let path = key_path(home.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = HomeKey::load(home.path()).unwrap_err();
        assert!(
            matches!(err, AttestError::KeyPermissions { mode: 0o640, .. }),
            "{err}"
        );
    }

    #[test]
    fn public_key_spellings_parse_back() {
        let key = HomeKey::from_seed(&[7; 32]);
        let public = key.public();
        assert_eq!(PublicKey::parse(&public.to_pem()).unwrap(), *public);
        assert_eq!(PublicKey::parse(&public.verifier_key()).unwrap(), *public);
        // The signed_note crate agrees on the verifier key encoding.
        let theirs = signed_note::new_ed25519_verifier_key(
            public.note_name(),
            &VerifyingKey::from_bytes(&public.to_bytes()).unwrap(),
        );
        assert_eq!(theirs, public.verifier_key());
        // A wrong key hash or name is refused.
        let vkey = public.verifier_key();
        let mut parts: Vec<&str> = vkey.splitn(3, '+').collect();
        parts[1] = "00000000";
        assert!(PublicKey::parse(&parts.join("+")).is_err());
        let renamed = vkey.replacen("mex/", "xyz/", 1);
        assert!(PublicKey::parse(&renamed).is_err());
    }

    #[test]
    fn signatures_verify_only_with_their_key_and_message() {
        let a = HomeKey::from_seed(&[1; 32]);
        let b = HomeKey::from_seed(&[2; 32]);
        let sig = a.sign(b"hello");
        assert!(a.public().verify(b"hello", &sig));
        assert!(!a.public().verify(b"hellO", &sig));
        assert!(!b.public().verify(b"hello", &sig));
        assert!(!a.public().verify(b"hello", &sig[..63]));
    }

    #[test]
    fn the_refusing_key_verifies_nothing() {
        let k = PublicKey::refusing_all();
        // Even the trivial forgery for the identity key (R = identity, S = 0)
        // is refused.
        let mut sig = [0u8; 64];
        sig[0] = 1;
        assert!(!k.verify(b"anything", &sig));
        assert!(!k.verify(b"", &[0u8; 64]));
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let key = HomeKey::from_seed(&[9; 32]);
        let text = format!("{key:?}");
        assert!(!text.contains(&hex::encode([9u8; 32])));
        assert!(text.contains(&key.public().key_id()));
    }
}
