//! Held keys: the two forms a secret of the host store takes.
//!
//! * Ed25519 signing key: `MEX-ED25519-SECRET-KEY-` followed by the 32-byte
//!   seed in 64 lowercase hex digits.
//! * age identity: the native `AGE-SECRET-KEY-1…` form (X25519).
//!
//! Parsing never echoes the text; both parsed forms zero their bytes on drop.

use std::str::FromStr;

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

/// The prefix of an Ed25519 held key.
pub const ED25519_PREFIX: &str = "MEX-ED25519-SECRET-KEY-";

/// A parsed held key.
pub enum HeldKey {
    /// An Ed25519 signing key (sign).
    Ed25519(SigningKey),
    /// An age X25519 identity (encrypt, decrypt, sync_push).
    Age(age::x25519::Identity),
}

impl std::fmt::Debug for HeldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ed25519(_) => "HeldKey::Ed25519([REDACTED])",
            Self::Age(_) => "HeldKey::Age([REDACTED])",
        })
    }
}

/// The kinds of key `generate` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Ed25519 signing key.
    Ed25519,
    /// age X25519 identity.
    Age,
}

impl HeldKey {
    /// Parse a held key's text (surrounding whitespace ignored). The error
    /// says what is wrong without quoting the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(hex_seed) = text.strip_prefix(ED25519_PREFIX) {
            let mut seed = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hex_seed, seed.as_mut_slice())
                .map_err(|_| "an Ed25519 key must be the prefix and 64 hex digits".to_owned())?;
            return Ok(Self::Ed25519(SigningKey::from_bytes(&seed)));
        }
        if text.starts_with("AGE-SECRET-KEY-1") {
            return age::x25519::Identity::from_str(text)
                .map(Self::Age)
                .map_err(|_| "the age identity is malformed".to_owned());
        }
        Err(format!(
            "neither an Ed25519 key ({ED25519_PREFIX}…) nor an age identity (AGE-SECRET-KEY-1…)"
        ))
    }

    /// The public half, as text: a minisign public key file (Ed25519) or an
    /// age recipient (`age1…`).
    pub fn public_text(&self) -> String {
        match self {
            Self::Ed25519(k) => crate::minisign_public_key(&k.verifying_key()),
            Self::Age(i) => format!("{}\n", i.to_public()),
        }
    }

    /// The kind of this key.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::Ed25519(_) => KeyKind::Ed25519,
            Self::Age(_) => KeyKind::Age,
        }
    }
}

/// A fresh key of `kind` from the OS random source, as held-key text
/// (zeroed when dropped).
pub fn generate(kind: KeyKind) -> Result<Zeroizing<String>, String> {
    match kind {
        KeyKind::Ed25519 => {
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut_slice())
                .map_err(|e| format!("the OS random source failed: {e}"))?;
            let mut out = String::with_capacity(ED25519_PREFIX.len() + 64);
            out.push_str(ED25519_PREFIX);
            out.push_str(&Zeroizing::new(hex::encode(seed.as_slice())));
            Ok(Zeroizing::new(out))
        }
        KeyKind::Age => {
            use age::secrecy::ExposeSecret as _;
            let identity = age::x25519::Identity::generate();
            let secret = identity.to_string();
            Ok(Zeroizing::new(secret.expose_secret().to_owned()))
        }
    }
}
