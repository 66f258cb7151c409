//! DSSE (Dead Simple Signing Envelope) v1.
//!
//! The signature is over the pre-authentication encoding
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`
//! (lengths as ASCII decimal byte counts), never over the JSON around it.
//! The envelope is `{"payload": base64(body), "payloadType": type,
//! "signatures": [{"keyid": ..., "sig": base64(sig)}]}` with standard
//! base64; `keyid` is [`PublicKey::key_id`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::AttestError;
use crate::keys::{HomeKey, PublicKey};

/// The in-toto payload type.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Largest envelope accepted for verification, in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024 * 1024;

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Which key signed (hex SHA-256 of its SubjectPublicKeyInfo).
    #[serde(default)]
    pub keyid: String,
    /// Base64 Ed25519 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Base64 of the payload bytes.
    pub payload: String,
    /// The payload's media type.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Signatures over the PAE.
    pub signatures: Vec<EnvelopeSignature>,
}

/// The DSSE v1 pre-authentication encoding.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + payload_type.len() + 32);
    out.extend_from_slice(
        format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// Sign `body` of `payload_type` with the home key.
    pub fn sign(payload_type: &str, body: &[u8], key: &HomeKey) -> Self {
        let sig = key.sign(&pae(payload_type, body));
        Self {
            payload: B64.encode(body),
            payload_type: payload_type.to_owned(),
            signatures: vec![EnvelopeSignature {
                keyid: key.public().key_id(),
                sig: B64.encode(sig),
            }],
        }
    }

    /// Parse an envelope from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(AttestError::malformed(
                "DSSE envelope",
                format!("it is larger than {MAX_ENVELOPE_BYTES} bytes"),
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| {
            AttestError::malformed(
                "DSSE envelope",
                format!("{e} (line {}, column {})", e.line(), e.column()),
            )
        })
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> Result<String, AttestError> {
        serde_json::to_string_pretty(self)
            .map(|s| s + "\n")
            .map_err(|e| AttestError::Json {
                what: "DSSE envelope",
                detail: e.to_string(),
            })
    }

    /// Verify that `trusted` signed this envelope with payload type
    /// `payload_type`; returns the payload bytes. Signatures by other keys
    /// are ignored; at least one must be by `trusted` and valid.
    pub fn verify(&self, payload_type: &str, trusted: &PublicKey) -> Result<Vec<u8>, AttestError> {
        let what = || format!("DSSE envelope ({payload_type})");
        if self.payload_type != payload_type {
            return Err(AttestError::BadSignature {
                what: what(),
                detail: format!(
                    "payload type is {:?}, expected {payload_type:?}",
                    self.payload_type
                ),
            });
        }
        let body = B64
            .decode(&self.payload)
            .map_err(|e| AttestError::malformed(what(), format!("payload is not base64: {e}")))?;
        let message = pae(payload_type, &body);
        let id = trusted.key_id();
        let mut ours = self
            .signatures
            .iter()
            .filter(|s| s.keyid.is_empty() || s.keyid == id)
            .peekable();
        if ours.peek().is_none() {
            return Err(AttestError::BadSignature {
                what: what(),
                detail: format!(
                    "no signature by key {id}: it was signed by another key, or not at all"
                ),
            });
        }
        if ours.any(|s| {
            B64.decode(&s.sig)
                .is_ok_and(|sig| trusted.verify(&message, &sig))
        }) {
            Ok(body)
        } else {
            Err(AttestError::BadSignature {
                what: what(),
                detail: format!(
                    "the signature by key {id} does not verify: the payload was altered after signing"
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // The DSSE protocol text's worked example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn sign_verify_and_tamper() {
        let key = HomeKey::from_seed(&[4; 32]);
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}", &key);
        let parsed = Envelope::from_json(env.to_json().unwrap().as_bytes()).unwrap();
        assert_eq!(
            parsed.verify(IN_TOTO_PAYLOAD_TYPE, key.public()).unwrap(),
            b"{\"a\":1}"
        );
        let mut altered = parsed.clone();
        altered.payload = B64.encode(b"{\"a\":2}");
        assert!(altered.verify(IN_TOTO_PAYLOAD_TYPE, key.public()).is_err());
        assert!(parsed.verify("text/plain", key.public()).is_err());
        let other = HomeKey::from_seed(&[8; 32]);
        assert!(parsed.verify(IN_TOTO_PAYLOAD_TYPE, other.public()).is_err());
    }
}
