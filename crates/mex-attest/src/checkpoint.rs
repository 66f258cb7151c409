//! C2SP tlog-checkpoint bodies, signed as C2SP signed notes.
//!
//! A checkpoint body is exactly three lines, each ending in a newline:
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <root hash, standard base64 of 32 bytes>
//! ```
//!
//! The signed note is the body, an empty line, and one signature line
//! `— <key name> <base64(key hash (4 bytes, big-endian) || Ed25519 signature)>`
//! where the signature is over the body bytes. The origin is the key's name
//! ([`PublicKey::note_name`]), so a checkpoint names the log (the home) it is
//! for. Formatting and parsing of the note (line rules, size limits, the
//! signature line) are the `signed_note` crate's; the signature check is this
//! crate's own strict Ed25519 verification.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use signed_note::{Note, VerifierList};

use crate::AttestError;
use crate::keys::{HomeKey, PublicKey};
use crate::merkle::Hash;

/// Largest checkpoint note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

/// A tree head: which log, how many leaves, which root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (the key name).
    pub origin: String,
    /// Number of leaves (events).
    pub size: u64,
    /// RFC 6962 root hash over the first `size` event hashes.
    pub root: Hash,
}

impl Checkpoint {
    /// The tlog-checkpoint body text.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parse a checkpoint body (the note text). Extension lines after the
    /// root are allowed by the format and ignored here.
    pub fn parse_body(text: &[u8]) -> Result<Self, AttestError> {
        let bad = |detail: &str| AttestError::malformed("checkpoint body", detail);
        let text = std::str::from_utf8(text).map_err(|_| bad("it is not UTF-8"))?;
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("it needs three lines: origin, tree size, root hash"));
        };
        if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+') {
            return Err(bad("the origin line is empty or holds spaces or '+'"));
        }
        let n: u64 = size
            .parse()
            .map_err(|_| bad("the second line is not a decimal tree size"))?;
        if n.to_string() != size {
            return Err(bad("the tree size has leading zeros or a sign"));
        }
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("the third line is not the base64 of a 32-byte hash"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size: n,
            root,
        })
    }

    /// Sign the body with the home key: the complete signed note.
    pub fn sign(&self, key: &HomeKey) -> Result<String, AttestError> {
        let mut note = Note::new(self.body().as_bytes(), &[])
            .map_err(|e| AttestError::malformed("checkpoint note", e.to_string()))?;
        note.add_sigs(&[&NoteSigner(key)])
            .map_err(|e| AttestError::malformed("checkpoint signature", e.to_string()))?;
        String::from_utf8(note.to_bytes())
            .map_err(|_| AttestError::malformed("checkpoint note", "not UTF-8"))
    }

    /// Open a signed checkpoint note: its signature by `trusted` must
    /// verify, and its origin must be `trusted`'s name. Signatures by other
    /// keys are ignored (as the signed-note format prescribes); a note with
    /// none by `trusted` is refused.
    pub fn open(note: &[u8], trusted: &PublicKey) -> Result<Self, AttestError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(AttestError::malformed(
                "checkpoint note",
                format!("it is {} bytes, more than {MAX_NOTE_BYTES}", note.len()),
            ));
        }
        let parsed = Note::from_bytes(note).map_err(|e| {
            AttestError::malformed(
                "checkpoint note",
                format!("{e}; expected the text printed by `mex recorder checkpoint`"),
            )
        })?;
        let verifiers = VerifierList::new(vec![Box::new(NoteVerifier(trusted.clone()))]);
        parsed.verify(&verifiers).map_err(|e| AttestError::BadSignature {
            what: "checkpoint signature".into(),
            detail: format!(
                "{e}: the note is not signed by the key {} (it was altered, or signed by another home's key)",
                trusted.verifier_key()
            ),
        })?;
        let checkpoint = Self::parse_body(parsed.text())?;
        if checkpoint.origin != trusted.note_name() {
            return Err(AttestError::BadSignature {
                what: "checkpoint origin".into(),
                detail: format!(
                    "the checkpoint is for log {:?}, but the key names log {:?}",
                    checkpoint.origin,
                    trusted.note_name()
                ),
            });
        }
        Ok(checkpoint)
    }
}

struct NoteSigner<'a>(&'a HomeKey);

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        self.0.public().note_name()
    }
    fn key_id(&self) -> u32 {
        self.0.public().note_key_hash()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.0.sign(msg).to_vec())
    }
}

struct NoteVerifier(PublicKey);

impl signed_note::Verifier for NoteVerifier {
    fn name(&self) -> &str {
        self.0.note_name()
    }
    fn key_id(&self) -> u32 {
        self.0.note_key_hash()
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.0.verify(msg, sig)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    fn cp(key: &HomeKey) -> Checkpoint {
        Checkpoint {
            origin: key.public().note_name().to_owned(),
            size: 42,
            root: [3; 32],
        }
    }

    #[test]
    fn signed_note_round_trips_and_has_the_c2sp_shape() {
        let key = HomeKey::from_seed(&[5; 32]);
        let note = cp(&key).sign(&key).unwrap();
        let (body, sig) = note.split_once("\n\n").unwrap();
        assert_eq!(format!("{body}\n"), cp(&key).body());
        assert!(sig.starts_with(&format!("\u{2014} {} ", key.public().note_name())));
        assert!(sig.ends_with('\n'));
        assert_eq!(
            Checkpoint::open(note.as_bytes(), key.public()).unwrap(),
            cp(&key)
        );
        // The reference verifier of the signed_note crate accepts it too.
        let theirs = signed_note::StandardVerifier::new(&key.public().verifier_key()).unwrap();
        let parsed = Note::from_bytes(note.as_bytes()).unwrap();
        parsed
            .verify(&VerifierList::new(vec![Box::new(theirs)]))
            .unwrap();
    }

    #[test]
    fn altered_or_foreign_checkpoints_are_refused() {
        let key = HomeKey::from_seed(&[5; 32]);
        let other = HomeKey::from_seed(&[6; 32]);
        let note = cp(&key).sign(&key).unwrap();
        let altered = note.replacen("\n42\n", "\n41\n", 1);
        assert!(matches!(
            Checkpoint::open(altered.as_bytes(), key.public()),
            Err(AttestError::BadSignature { .. })
        ));
        assert!(Checkpoint::open(note.as_bytes(), other.public()).is_err());
        // Signed by the right key but naming another log: refused.
        let mut foreign = cp(&key);
        foreign.origin = "mex/elsewhere".into();
        let note = foreign.sign(&key).unwrap();
        assert!(Checkpoint::open(note.as_bytes(), key.public()).is_err());
    }

    #[test]
    fn bodies_are_parsed_strictly() {
        let ok = "mex/x\n7\n".to_owned() + &B64.encode([1u8; 32]) + "\n";
        assert_eq!(Checkpoint::parse_body(ok.as_bytes()).unwrap().size, 7);
        for bad in [
            "mex/x\n07\nAAAA\n".to_owned(),
            "mex/x\n-7\n".to_owned() + &B64.encode([1u8; 32]) + "\n",
            "mex/x\n7\n".to_owned() + &B64.encode([1u8; 31]) + "\n",
            "\n7\n".to_owned() + &B64.encode([1u8; 32]) + "\n",
            "mex x\n7\n".to_owned() + &B64.encode([1u8; 32]) + "\n",
        ] {
            assert!(Checkpoint::parse_body(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
