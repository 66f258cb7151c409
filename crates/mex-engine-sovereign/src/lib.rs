//! # engine.sovereign: keys, signatures, encryption and push (D2)
//!
//! A handler library hosted as a sandboxed process engine: [`handle`] runs
//! one `mex-engine-1` request. Operations (`docs/engines/sovereign.md`):
//!
//! * `sovereign.sign`: Ed25519 signature of an input artifact with a held
//!   key, as a minisign signature file (legacy `Ed`, pure Ed25519, with a
//!   signed trusted comment) or `custom` (the raw 64 signature bytes).
//!   Deterministic: Ed25519 signatures are, and the trusted comment holds no
//!   time.
//! * `sovereign.verify`: checks a signature (minisign text or 64 raw bytes)
//!   against a public key (minisign public key text or 32 raw bytes); a
//!   signature that does not verify is `SOV_VERIFY_FAILED`.
//! * `sovereign.encrypt` / `sovereign.decrypt`: age (X25519) to and from the
//!   held identity's own recipient, streamed, so memory stays bounded
//!   whatever the input size.
//! * `sovereign.sync_push`: PUT an artifact (age-encrypted by default) to
//!   the `http://` URL of a remote profile artifact; needs `net.http`.
//!
//! Keys: a held key is named by its `key_id`, and reaches the handler only
//! as the request's `secrets` entry for a granted `secrets.use:<key_id>`
//! (see [`keys`] for the two key forms). Key material is zeroed after use and
//! never appears in outputs, logs or failure messages: messages name the key
//! id only.

use std::io::{Read, Write};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use mex_engine_sdk::{Fail, Request};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub mod keys;
mod push;

pub use keys::HeldKey;

/// The engine id this handler serves.
pub const ENGINE_ID: &str = "engine.sovereign";

/// The key was not granted to this run, or is not a key of the needed kind.
pub const SOV_KEY_DENIED: &str = "SOV_KEY_DENIED";
/// Encryption or decryption failed (malformed, truncated or foreign input).
pub const SOV_ENCRYPT_ERROR: &str = "SOV_ENCRYPT_ERROR";
/// The push failed (profile, network or remote refusal).
pub const SOV_SYNC_ERROR: &str = "SOV_SYNC_ERROR";
/// The signature does not verify, or a signature/key input is malformed.
pub const SOV_VERIFY_FAILED: &str = "SOV_VERIFY_FAILED";

/// Largest signature input read (a minisign file is ~300 bytes).
pub const MAX_SIGNATURE_BYTES: u64 = 4096;
/// Largest public-key input read.
pub const MAX_PUBLIC_KEY_BYTES: u64 = 4096;

/// Run one request: dispatch on the operation.
pub fn handle(req: &mut Request) -> Result<(), Fail> {
    match req.operation() {
        "sovereign.sign" => sign(req),
        "sovereign.verify" => verify(req),
        "sovereign.encrypt" => encrypt(req),
        "sovereign.decrypt" => decrypt(req),
        "sovereign.sync_push" => push::sync_push(req),
        other => Err(Fail::new(
            "PROC_BAD_REQUEST",
            format!("engine.sovereign has no operation {other:?}"),
        )),
    }
}

/// The held key `params.key_id` names, parsed (the caller drops it, which
/// zeroes it).
fn held_key(req: &Request) -> Result<(String, HeldKey), Fail> {
    let key_id = req.param_str("key_id")?.to_owned();
    let key = held_key_named(req, &key_id)?;
    Ok((key_id, key))
}

/// The held key `key_id`, from the request's granted secrets.
pub(crate) fn held_key_named(req: &Request, key_id: &str) -> Result<HeldKey, Fail> {
    let text = req.secret(key_id).ok_or_else(|| {
        Fail::new(
            SOV_KEY_DENIED,
            format!(
                "key {key_id:?} was not delivered to this run: request secrets.use:{key_id} and have an operator grant it (with a consent record) in the policy"
            ),
        )
    })?;
    HeldKey::parse(text).map_err(|why| {
        Fail::new(
            SOV_KEY_DENIED,
            format!(
                "held key {key_id:?} is not usable: {why}; replace it with `mex secrets generate`"
            ),
        )
    })
}

/// Read a small input (`param`), refusing more than `max` bytes.
fn read_small(req: &Request, param: &str, max: u64, code: &str) -> Result<Vec<u8>, Fail> {
    let path = req.input_path(param)?;
    let f = std::fs::File::open(&path)
        .map_err(|e| Fail::new(code, format!("params.{param}: cannot be read ({e})")))?;
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Fail::new(code, format!("params.{param}: cannot be read ({e})")))?;
    if bytes.len() as u64 > max {
        return Err(Fail::new(
            code,
            format!("params.{param}: larger than {max} bytes; this is not a signature or key file"),
        ));
    }
    Ok(bytes)
}

/// The 8-byte key number minisign uses to match a signature to its key:
/// here the first 8 bytes of SHA-256 of the public key, so a key always has
/// the same one.
pub fn key_number(public: &VerifyingKey) -> [u8; 8] {
    let d = Sha256::digest(public.as_bytes());
    let mut n = [0u8; 8];
    n.copy_from_slice(&d[..8]);
    n
}

/// The trusted comment of signatures made for `key_id`.
fn trusted_comment(key_id: &str) -> String {
    format!("mex engine.sovereign key_id:{key_id}")
}

fn sign(req: &mut Request) -> Result<(), Fail> {
    let (key_id, key) = held_key(req)?;
    let HeldKey::Ed25519(signing) = &key else {
        return Err(Fail::new(
            SOV_KEY_DENIED,
            format!("held key {key_id:?} is an age identity; sign needs an Ed25519 key"),
        ));
    };
    let format = req.param_str("sig_format")?.to_owned();
    let message = req.read_input("input_ref")?;
    let signature = signing.sign(&message);
    drop(message);
    let public = signing.verifying_key();
    let (file, media, bytes) = match format.as_str() {
        "minisign" => (
            "signature.minisig",
            "text/plain",
            minisign_signature(signing, &signature, &trusted_comment(&key_id)).into_bytes(),
        ),
        "custom" => (
            "signature.bin",
            "application/octet-stream",
            signature.to_bytes().to_vec(),
        ),
        other => {
            return Err(Fail::new(
                SOV_VERIFY_FAILED,
                format!("params.sig_format {other:?} is not supported; use minisign or custom"),
            ));
        }
    };
    drop(key);
    req.environment("sovereign.key_number", &hex::encode(key_number(&public)));
    req.write_output(file, "artifact.document", media, &bytes)
}

/// A minisign signature file (legacy `Ed` algorithm: pure Ed25519 over the
/// message, and a global signature over signature || trusted comment).
fn minisign_signature(signing: &SigningKey, signature: &Signature, comment: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let public = signing.verifying_key();
    let mut sig_block = Vec::with_capacity(74);
    sig_block.extend_from_slice(b"Ed");
    sig_block.extend_from_slice(&key_number(&public));
    sig_block.extend_from_slice(&signature.to_bytes());
    let mut global = signature.to_bytes().to_vec();
    global.extend_from_slice(comment.as_bytes());
    let global_sig = signing.sign(&global);
    format!(
        "untrusted comment: signature from mex engine.sovereign\n{}\ntrusted comment: {comment}\n{}\n",
        b64.encode(&sig_block),
        b64.encode(global_sig.to_bytes())
    )
}

/// A minisign public key file for `public`.
pub fn minisign_public_key(public: &VerifyingKey) -> String {
    use base64::Engine as _;
    let n = key_number(public);
    let mut block = Vec::with_capacity(42);
    block.extend_from_slice(b"Ed");
    block.extend_from_slice(&n);
    block.extend_from_slice(public.as_bytes());
    format!(
        "untrusted comment: minisign public key {}\n{}\n",
        hex::encode_upper(n),
        base64::engine::general_purpose::STANDARD.encode(block)
    )
}

/// Lines of a small text file that carry data (not blank).
fn text_lines(bytes: &[u8]) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(bytes).ok()?;
    Some(
        text.lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// A public key: 32 raw bytes, or a minisign public key file.
fn parse_public_key(bytes: &[u8]) -> Result<(VerifyingKey, Option<[u8; 8]>), String> {
    let bad = |why: &str| format!("params.pubkey_ref is not an Ed25519 public key: {why}");
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| bad("not a curve point"))?;
        return Ok((key, None));
    }
    let lines = text_lines(bytes)
        .ok_or_else(|| bad("neither 32 raw bytes nor a minisign public key file (text)"))?;
    let data = lines
        .iter()
        .find(|l| !l.starts_with("untrusted comment:"))
        .ok_or_else(|| bad("the minisign file has no key line"))?;
    let block = b64_decode(data).ok_or_else(|| bad("the key line is not base64"))?;
    if block.len() != 42 || &block[..2] != b"Ed" {
        return Err(bad(&format!(
            "the key line holds {} bytes; a minisign Ed25519 key holds 42 starting with \"Ed\"",
            block.len()
        )));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&block[2..10]);
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&block[10..]);
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| bad("not a curve point"))?;
    Ok((key, Some(n)))
}

/// A parsed signature.
struct ParsedSignature {
    signature: Signature,
    key_number: Option<[u8; 8]>,
    /// Trusted comment and its global signature (minisign).
    trusted: Option<(String, Signature)>,
    format: &'static str,
}

fn parse_signature(bytes: &[u8]) -> Result<ParsedSignature, String> {
    let bad = |why: &str| format!("params.sig_ref is not a signature: {why}");
    if let Ok(raw) = <[u8; 64]>::try_from(bytes) {
        return Ok(ParsedSignature {
            signature: Signature::from_bytes(&raw),
            key_number: None,
            trusted: None,
            format: "custom",
        });
    }
    let lines = text_lines(bytes).ok_or_else(|| {
        bad(&format!(
            "{} bytes, neither 64 raw Ed25519 signature bytes nor a minisign signature file (text)",
            bytes.len()
        ))
    })?;
    let mut it = lines
        .iter()
        .filter(|l| !l.starts_with("untrusted comment:"));
    let data = it
        .next()
        .ok_or_else(|| bad("the minisign file has no signature line"))?;
    let block = b64_decode(data).ok_or_else(|| bad("the signature line is not base64"))?;
    if block.len() != 74 {
        return Err(bad(&format!(
            "the signature line holds {} bytes; a minisign signature holds 74",
            block.len()
        )));
    }
    match &block[..2] {
        b"Ed" => {}
        b"ED" => {
            return Err(bad(
                "prehashed (ED) minisign signatures are not supported; sign with mex or `minisign -l`",
            ));
        }
        _ => return Err(bad("unknown signature algorithm (expected \"Ed\")")),
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&block[2..10]);
    let mut raw = [0u8; 64];
    raw.copy_from_slice(&block[10..]);
    let trusted = match (it.next(), it.next()) {
        (Some(c), Some(g)) => {
            let comment = c
                .strip_prefix("trusted comment: ")
                .ok_or_else(|| bad("the third line is not a trusted comment"))?;
            let g = b64_decode(g).ok_or_else(|| bad("the global signature is not base64"))?;
            let g = <[u8; 64]>::try_from(g.as_slice())
                .map_err(|_| bad("the global signature is not 64 bytes"))?;
            Some((comment.to_owned(), Signature::from_bytes(&g)))
        }
        (None, None) => None,
        _ => return Err(bad("a trusted comment needs its global signature line")),
    };
    Ok(ParsedSignature {
        signature: Signature::from_bytes(&raw),
        key_number: Some(n),
        trusted,
        format: "minisign",
    })
}

fn verify(req: &mut Request) -> Result<(), Fail> {
    let failed = |m: String| Fail::new(SOV_VERIFY_FAILED, m);
    let sig_bytes = read_small(req, "sig_ref", MAX_SIGNATURE_BYTES, SOV_VERIFY_FAILED)?;
    let key_bytes = read_small(req, "pubkey_ref", MAX_PUBLIC_KEY_BYTES, SOV_VERIFY_FAILED)?;
    let parsed = parse_signature(&sig_bytes).map_err(failed)?;
    let (public, file_key_number) = parse_public_key(&key_bytes).map_err(failed)?;
    if let (Some(sig_n), Some(key_n)) = (parsed.key_number, file_key_number)
        && sig_n != key_n
    {
        return Err(failed(format!(
            "the signature was made by key {} but params.pubkey_ref is key {}",
            hex::encode_upper(sig_n),
            hex::encode_upper(key_n)
        )));
    }
    let message = req.read_input("input_ref")?;
    public
        .verify_strict(&message, &parsed.signature)
        .map_err(|_| {
            failed(
                "the signature does not verify: params.input_ref is not the signed content, or it was signed by another key".to_owned(),
            )
        })?;
    drop(message);
    let mut trusted_comment = Value::Null;
    if let Some((comment, global)) = &parsed.trusted {
        let mut signed = parsed.signature.to_bytes().to_vec();
        signed.extend_from_slice(comment.as_bytes());
        public.verify_strict(&signed, global).map_err(|_| {
            failed(
                "the trusted comment's global signature does not verify (the comment was altered)"
                    .to_owned(),
            )
        })?;
        trusted_comment = Value::String(comment.clone());
    }
    let report = json!({
        "valid": true,
        "algorithm": "Ed25519",
        "format": parsed.format,
        "key_number": hex::encode_upper(key_number(&public)),
        "trusted_comment": trusted_comment,
    });
    req.write_json("verification.json", "artifact.dataset", &report)
}

/// Encrypt `input` to the held identity's recipient, into `out`.
pub(crate) fn age_encrypt(
    identity: &age::x25519::Identity,
    input: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<u64, String> {
    let recipient = identity.to_public();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| format!("cannot set up age encryption: {e}"))?;
    let mut writer = encryptor
        .wrap_output(out)
        .map_err(|e| format!("cannot write the age header: {e}"))?;
    let n = std::io::copy(input, &mut writer).map_err(|e| format!("encrypting: {e}"))?;
    writer
        .finish()
        .map_err(|e| format!("finishing the age file: {e}"))?;
    Ok(n)
}

fn age_identity<'k>(key_id: &str, key: &'k HeldKey) -> Result<&'k age::x25519::Identity, Fail> {
    match key {
        HeldKey::Age(identity) => Ok(identity),
        HeldKey::Ed25519(_) => Err(Fail::new(
            SOV_KEY_DENIED,
            format!(
                "held key {key_id:?} is an Ed25519 signing key; age needs an age identity (`mex secrets generate {key_id} --kind age`)"
            ),
        )),
    }
}

fn open_input(req: &Request, param: &str) -> Result<std::fs::File, Fail> {
    let path = req.input_path(param)?;
    std::fs::File::open(&path).map_err(|e| {
        Fail::new(
            "PROC_BAD_REQUEST",
            format!("params.{param}: cannot be read ({e})"),
        )
    })
}

fn encrypt(req: &mut Request) -> Result<(), Fail> {
    let (key_id, key) = held_key(req)?;
    let identity = age_identity(&key_id, &key)?;
    let mode = req.param_str("mode")?;
    if mode != "age" {
        return Err(Fail::new(
            SOV_ENCRYPT_ERROR,
            format!("params.mode {mode:?} is not supported; use age"),
        ));
    }
    let mut input = std::io::BufReader::new(open_input(req, "input_ref")?);
    let file = "encrypted.age";
    let (out, path) = req.create_output(file)?;
    let mut out = std::io::BufWriter::new(out);
    let result = age_encrypt(identity, &mut input, &mut out)
        .and_then(|_| out.flush().map_err(|e| format!("writing the output: {e}")));
    drop(key);
    if let Err(why) = result {
        drop(out);
        let _ = std::fs::remove_file(&path);
        return Err(Fail::new(SOV_ENCRYPT_ERROR, why));
    }
    req.claim_output(file, "artifact.document", "application/octet-stream");
    Ok(())
}

/// The largest age header accepted. A header of one X25519 stanza is ~200
/// bytes; the age parser re-reads a growing header, so a header of
/// thousands of stanzas costs quadratic time: refused before parsing.
pub const MAX_AGE_HEADER_BYTES: usize = 16 << 10;

/// Refuse a file whose age header does not end (`\n--- ` MAC line) within
/// [`MAX_AGE_HEADER_BYTES`]; rewinds the file.
fn check_age_header(file: &mut std::fs::File) -> Result<(), String> {
    use std::io::Seek as _;
    let mut head = Vec::with_capacity(MAX_AGE_HEADER_BYTES);
    (&mut *file)
        .take(MAX_AGE_HEADER_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("params.encrypted_ref cannot be read: {e}"))?;
    file.rewind()
        .map_err(|e| format!("params.encrypted_ref cannot be read: {e}"))?;
    if !head.starts_with(b"age-encryption.org/v1\n") {
        return Err("params.encrypted_ref is not an age file (no age-encryption.org/v1 header); pass the output of sovereign.encrypt".to_owned());
    }
    if !head.windows(5).any(|w| w == b"\n--- ") {
        return Err(format!(
            "params.encrypted_ref's age header does not end within {MAX_AGE_HEADER_BYTES} bytes (truncated, or too many recipient stanzas)"
        ));
    }
    Ok(())
}

fn decrypt(req: &mut Request) -> Result<(), Fail> {
    let (key_id, key) = held_key(req)?;
    let identity = age_identity(&key_id, &key)?;
    let enc = |m: String| Fail::new(SOV_ENCRYPT_ERROR, m);
    let mut file = open_input(req, "encrypted_ref")?;
    check_age_header(&mut file).map_err(enc)?;
    let input = std::io::BufReader::new(file);
    let decryptor = age::Decryptor::new(input).map_err(|e| {
        enc(format!(
            "params.encrypted_ref is not an age file: {e}; pass the output of sovereign.encrypt"
        ))
    })?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => enc(format!(
                "params.encrypted_ref was not encrypted to key {key_id:?}; decrypt with the key it was encrypted to"
            )),
            other => enc(format!("params.encrypted_ref cannot be decrypted: {other}")),
        })?;
    let output_kind = req.param_str("output_kind")?.to_owned();
    req.environment("sovereign.output_kind", &output_kind);
    let file = "decrypted.bin";
    let (out, path) = req.create_output(file)?;
    let mut out = std::io::BufWriter::new(out);
    let copied = std::io::copy(&mut reader, &mut out)
        .map_err(|e| format!("params.encrypted_ref is truncated or was altered: {e}"))
        .and_then(|_| out.flush().map_err(|e| format!("writing the output: {e}")));
    drop(reader);
    drop(key);
    if let Err(why) = copied {
        // Never leave a partial plaintext behind.
        drop(out);
        let _ = std::fs::remove_file(&path);
        return Err(enc(why));
    }
    req.claim_output(file, "artifact.document", "application/octet-stream");
    Ok(())
}
