//! Property tests: bundle hashes do not depend on enumeration order, and
//! paths that differ only in normalization hash alike (or are refused,
//! consistently).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation panics, which is the test failing"
)]

use mex_artifacts::{ArtifactUri, BundleBuilder, RelPath, normalize_line_endings};
use mex_envelope::Sha256Digest;
use proptest::prelude::*;
use unicode_normalization::UnicodeNormalization;

/// Segments with a mix of ASCII and characters that have NFC/NFD forms.
fn segment() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("z9"),
            Just("é"),
            Just("Å"),
            Just("ñ"),
            Just("-"),
            Just("_.")
        ],
        1..4,
    )
    .prop_map(|parts| parts.concat())
    .prop_filter("not a dot segment", |s| s != "." && s != "..")
}

fn canonical_path() -> impl Strategy<Value = String> {
    proptest::collection::vec(segment(), 1..4).prop_map(|s| s.join("/"))
}

/// Respell a canonical path: NFD, doubled slashes, `./` prefixes, `.` segments, trailing slash.
fn respell(path: &str, choice: u8) -> String {
    let mut segments: Vec<String> = path.split('/').map(str::to_owned).collect();
    if choice & 1 != 0 {
        segments = segments.iter().map(|s| s.nfd().collect()).collect();
    }
    let sep = if choice & 2 != 0 { "//" } else { "/" };
    let mut out = segments.join(sep);
    if choice & 4 != 0 {
        out = format!("./{out}");
    }
    if choice & 8 != 0 {
        out.push('/');
    }
    if choice & 16 != 0 {
        out = out.replacen('/', "/./", 1);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn bundle_hash_is_independent_of_order(
        paths in proptest::collection::btree_set(canonical_path(), 1..12),
        seed in any::<u64>(),
        norm in any::<bool>(),
    ) {
        let entries: Vec<(String, Sha256Digest, u64)> = paths.iter().enumerate()
            .map(|(i, p)| (p.clone(), Sha256Digest::of(p.as_bytes()), i as u64)).collect();
        // Paths may collide once normalized (a prefix file vs a directory is
        // fine; identical strings cannot occur in a set).
        let mut forward = BundleBuilder::new(norm);
        for (p, h, s) in &entries { forward.add(p, *h, *s).unwrap(); }
        let mut shuffled = entries.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let mut backward = BundleBuilder::new(norm);
        for (p, h, s) in &shuffled { backward.add(p, *h, *s).unwrap(); }
        let a = forward.finish();
        let b = backward.finish();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.content_hash().unwrap(), b.content_hash().unwrap());
        mex_artifacts::validate_bundle_index(&a).unwrap();
    }

    #[test]
    fn respelled_paths_hash_alike(
        paths in proptest::collection::btree_set(canonical_path(), 1..8),
        choices in proptest::collection::vec(any::<u8>(), 8),
    ) {
        let mut canonical = BundleBuilder::new(false);
        let mut respelled = BundleBuilder::new(false);
        for (i, p) in paths.iter().enumerate() {
            let nfc: String = p.nfc().collect();
            let h = Sha256Digest::of(nfc.as_bytes());
            // The canonical spelling may itself be non-NFC input ("é" literal
            // is NFC already); both builders normalize.
            let r1 = canonical.add(p, h, 1);
            let r2 = respelled.add(&respell(p, choices[i % choices.len()]), h, 1);
            // Refused or accepted, consistently.
            prop_assert_eq!(r1.is_ok(), r2.is_ok(), "{} vs {}", p, respell(p, choices[i % choices.len()]));
            if let (Ok(a), Ok(b)) = (r1, r2) { prop_assert_eq!(a, b); }
        }
        prop_assert_eq!(canonical.finish().content_hash().unwrap(), respelled.finish().content_hash().unwrap());
    }

    #[test]
    fn normalization_is_idempotent_and_strict_parse_agrees(path in "[a-zé./\\\\\u{301}]{0,24}") {
        match RelPath::parse(&path) {
            Ok(p) => {
                prop_assert_eq!(RelPath::parse(p.as_str()).unwrap(), p.clone());
                prop_assert_eq!(RelPath::parse_canonical(p.as_str()).unwrap(), p.clone());
                prop_assert!(!p.segments().any(|s| s == ".." || s == "." || s.is_empty()));
                prop_assert!(!p.as_str().contains('\\'));
                prop_assert_eq!(p.as_str().nfc().collect::<String>(), p.as_str());
            }
            Err(_) => prop_assert!(RelPath::parse_canonical(&path).is_err()),
        }
    }

    #[test]
    fn dotdot_is_always_refused(prefix in canonical_path(), suffix in canonical_path(), choice in any::<u8>()) {
        let bad = respell(&format!("{prefix}/../{suffix}"), choice);
        prop_assert!(RelPath::parse(&bad).is_err());
        let absolute = format!("/{}", respell(&prefix, choice));
        prop_assert!(RelPath::parse(&absolute).is_err());
    }

    #[test]
    fn uri_display_roundtrips(path in canonical_path(), id in any::<u128>()) {
        let uuid = uuid::Uuid::from_u128(id);
        let text = format!("mex://artifact/{}/{}", uuid.hyphenated(), RelPath::parse(&path).unwrap());
        let uri = ArtifactUri::parse(&text).unwrap();
        prop_assert_eq!(uri.to_string(), text);
    }

    #[test]
    fn line_ending_normalization(bytes in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'x')], 0..64)) {
        let out = normalize_line_endings(&bytes);
        prop_assert!(!out.contains(&b'\r'));
        prop_assert_eq!(normalize_line_endings(&out), out.clone());
        let text = String::from_utf8(bytes.clone()).unwrap().replace("\r\n", "\n").replace('\r', "\n");
        prop_assert_eq!(out, text.into_bytes());
    }
}
