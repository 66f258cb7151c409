//! Capability strings (docs/contract.md §6): `kind` or `kind:scope`.
//!
//! Grammar (ASCII only, so look-alike Unicode never parses):
//!
//! ```text
//! capability = scoped-kind ":" scope | bare-kind
//! scoped-kind = "fs.read" | "fs.write" | "proc.exec" | "secrets.use"
//! bare-kind   = "net.http" | "gpu.compute"
//!             | "device.camera" | "device.mic" | "device.usb" | "device.serial"
//! scope       = [A-Za-z0-9*] [A-Za-z0-9_.*/-]{0,127}   ; and no ".." anywhere
//! ```
//!
//! Scoped kinds must carry a scope and bare kinds must not. An unknown kind is
//! an error, never a warning. `*` in a scope is only a character here; what it
//! means when matching grants is the policy's business (mex-gates).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::EnvelopeError;

/// The kind of a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CapabilityKind {
    /// `fs.read:<scope>`.
    FsRead,
    /// `fs.write:<scope>` (usually `fs.write:artifacts`).
    FsWrite,
    /// `net.http`.
    NetHttp,
    /// `device.camera`.
    DeviceCamera,
    /// `device.mic`.
    DeviceMic,
    /// `device.usb`.
    DeviceUsb,
    /// `device.serial`.
    DeviceSerial,
    /// `proc.exec:<allowlist>`.
    ProcExec,
    /// `gpu.compute`.
    GpuCompute,
    /// `secrets.use:<id>`.
    SecretsUse,
}

impl CapabilityKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 10] = [
        Self::FsRead,
        Self::FsWrite,
        Self::NetHttp,
        Self::DeviceCamera,
        Self::DeviceMic,
        Self::DeviceUsb,
        Self::DeviceSerial,
        Self::ProcExec,
        Self::GpuCompute,
        Self::SecretsUse,
    ];

    /// The text form of the kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::FsRead => "fs.read",
            Self::FsWrite => "fs.write",
            Self::NetHttp => "net.http",
            Self::DeviceCamera => "device.camera",
            Self::DeviceMic => "device.mic",
            Self::DeviceUsb => "device.usb",
            Self::DeviceSerial => "device.serial",
            Self::ProcExec => "proc.exec",
            Self::GpuCompute => "gpu.compute",
            Self::SecretsUse => "secrets.use",
        }
    }

    /// Whether the kind takes a scope (`kind:scope`).
    pub fn is_scoped(&self) -> bool {
        matches!(
            self,
            Self::FsRead | Self::FsWrite | Self::ProcExec | Self::SecretsUse
        )
    }

    /// Whether `docs/contract.md §6` requires an explicit consent record for
    /// this kind (`device.*`, `net.http`, `secrets.use:*`).
    pub fn is_sensitive(&self) -> bool {
        matches!(
            self,
            Self::NetHttp
                | Self::DeviceCamera
                | Self::DeviceMic
                | Self::DeviceUsb
                | Self::DeviceSerial
                | Self::SecretsUse
        )
    }

    fn from_text(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for CapabilityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed capability: a kind plus, for scoped kinds, a scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability {
    kind: CapabilityKind,
    scope: Option<String>,
}

impl Capability {
    /// The kind.
    pub fn kind(&self) -> CapabilityKind {
        self.kind
    }

    /// The scope, for scoped kinds.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Whether this capability needs a consent record.
    pub fn is_sensitive(&self) -> bool {
        self.kind.is_sensitive()
    }
}

fn is_valid_scope(scope: &str) -> bool {
    let mut chars = scope.chars();
    scope.len() <= 128
        && !scope.contains("..")
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '*')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '*' | '/' | '-'))
}

impl FromStr for Capability {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind_text, scope) = match s.split_once(':') {
            Some((k, scope)) => (k, Some(scope)),
            None => (s, None),
        };
        if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
            return Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} contains the non-ASCII character U+{:04X}; capabilities are ASCII only (look-alike characters are refused)",
                    crate::excerpt(s),
                    u32::from(c)
                ),
            ));
        }
        let Some(kind) = CapabilityKind::from_text(kind_text) else {
            let known: Vec<&str> = CapabilityKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} has unknown capability kind {}; known kinds: {}",
                    crate::excerpt(s),
                    crate::excerpt(kind_text),
                    known.join(", ")
                ),
            ));
        };
        match (kind.is_scoped(), scope) {
            (true, Some(scope)) if is_valid_scope(scope) => Ok(Self {
                kind,
                scope: Some(scope.to_owned()),
            }),
            (true, Some(scope)) => Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} has an invalid scope {}: expected 1-128 ASCII characters [A-Za-z0-9_.*/-], starting with a letter, digit or '*', and no \"..\"",
                    crate::excerpt(s),
                    crate::excerpt(scope)
                ),
            )),
            (true, None) => Err(EnvelopeError::invalid(
                "",
                format!(
                    "{} needs a scope: write \"{kind}:<scope>\", e.g. \"fs.read:inputs\"",
                    crate::excerpt(s)
                ),
            )),
            (false, None) => Ok(Self { kind, scope: None }),
            (false, Some(_)) => Err(EnvelopeError::invalid(
                "",
                format!(
                    "{}: capability kind {kind} takes no scope; write \"{kind}\"",
                    crate::excerpt(s)
                ),
            )),
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Some(scope) => write!(f, "{}:{scope}", self.kind),
            None => f.write_str(self.kind.as_str()),
        }
    }
}

impl TryFrom<&str> for Capability {
    type Error = EnvelopeError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::ids::parse_str(d, crate::ids::Messages::Bare)
    }
}

impl JsonSchema for Capability {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Capability")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Capability: fs.read:<scope>, fs.write:<scope>, proc.exec:<allowlist>, secrets.use:<id>, net.http, gpu.compute, device.camera|mic|usb|serial.",
            "pattern": "^(net\\.http|gpu\\.compute|device\\.(camera|mic|usb|serial)|(fs\\.read|fs\\.write|proc\\.exec|secrets\\.use):[A-Za-z0-9*][A-Za-z0-9_.*/-]{0,127})$",
            "not": { "pattern": "\\.\\." },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_contract_examples() {
        for ok in [
            "fs.read:inputs",
            "fs.write:artifacts",
            "net.http",
            "device.camera",
            "device.mic",
            "device.usb",
            "device.serial",
            "proc.exec:bash",
            "gpu.compute",
            "secrets.use:key-1",
        ] {
            let cap: Capability = ok.parse().unwrap();
            assert_eq!(cap.to_string(), ok);
        }
    }

    #[test]
    fn refuses_malformed_and_unknown() {
        for bad in [
            "",
            "fs.read",
            "net.http:x",
            "fs.delete:all",
            "fs.read:",
            "fs.read:../etc",
            "fs.read:/etc",
            "fs.reаd:inputs",
            /* Cyrillic a */ "net.http ",
            "NET.HTTP",
            "fs.read:inputs:more",
            "device.camera:0",
            "fs.read:a..b",
            "secrets.use:ключ",
        ] {
            assert!(bad.parse::<Capability>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn sensitivity() {
        assert!("net.http".parse::<Capability>().unwrap().is_sensitive());
        assert!(
            "secrets.use:k"
                .parse::<Capability>()
                .unwrap()
                .is_sensitive()
        );
        assert!(
            !"fs.read:inputs"
                .parse::<Capability>()
                .unwrap()
                .is_sensitive()
        );
    }

    proptest! {
        #[test]
        fn display_round_trips(kind in 0usize..10, scope in "[A-Za-z0-9][A-Za-z0-9_*/-]{0,20}") {
            let kind = CapabilityKind::ALL[kind];
            let text = if kind.is_scoped() { format!("{kind}:{scope}") } else { kind.to_string() };
            let cap: Capability = text.parse().unwrap();
            prop_assert_eq!(cap.to_string(), text.clone());
            let again: Capability = cap.to_string().parse().unwrap();
            prop_assert_eq!(again, cap);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Capability>();
        }
    }
}
