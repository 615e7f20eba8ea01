//! The one platform type of every stage: parsed and normalised as
//! containerd does, compared after normalisation, displayed as
//! `os/arch[/variant]`, serialised as in an OCI descriptor.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A platform as in an OCI descriptor. Field order is the serialization
/// order (Go's `ocispec.Platform`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, `arm`, ...).
    pub architecture: String,
    /// Operating system (`linux`, `windows`, ...).
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant (`v7` for `linux/arm/v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]` and normalizes it as containerd does
    /// (`x86_64` → `amd64`, `aarch64` → `arm64`, `arm64/v8` → `arm64`,
    /// `arm` → `arm/v7`, `armhf` → `arm/v7`, `armel` → `arm/v6`,
    /// `i386` → `386`, variant `7` → `v7`).
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.trim().is_empty()) {
            return Err(format!(
                "invalid platform {text:?}: expected os/arch[/variant]"
            ));
        }
        Ok(Platform {
            architecture: parts[1].trim().to_owned(),
            os: parts[0].trim().to_owned(),
            os_version: None,
            os_features: Vec::new(),
            variant: parts.get(2).map(|v| v.trim().to_owned()),
        }
        .normalized())
    }

    /// The unknown platform (`unknown/unknown`) of attestation manifests.
    pub fn unknown() -> Platform {
        Platform {
            architecture: "unknown".into(),
            os: "unknown".into(),
            os_version: None,
            os_features: Vec::new(),
            variant: None,
        }
    }

    /// The containerd normalization of os, architecture and variant.
    pub fn normalized(mut self) -> Platform {
        self.os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_owned(),
            other => other.to_owned(),
        };
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self
            .variant
            .take()
            .map(|v| v.to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        let (arch, variant) = match arch.as_str() {
            "i386" => ("386".to_owned(), variant),
            "x86_64" | "x86-64" | "amd64" => ("amd64".to_owned(), variant.filter(|v| v != "v1")),
            "aarch64" | "arm64" => (
                "arm64".to_owned(),
                variant.filter(|v| v != "8" && v != "v8"),
            ),
            "armhf" => ("arm".to_owned(), Some("v7".to_owned())),
            "armel" => ("arm".to_owned(), Some("v6".to_owned())),
            "arm" => (
                "arm".to_owned(),
                Some(match variant.as_deref() {
                    None | Some("7") | Some("v7") => "v7".to_owned(),
                    Some("5") | Some("6") | Some("8") => {
                        format!("v{}", variant.unwrap_or_default())
                    }
                    Some(v) => v.to_owned(),
                }),
            ),
            _ => (arch, variant),
        };
        self.architecture = arch;
        self.variant = variant;
        self
    }

    /// Whether two platforms are the same os/architecture/variant after
    /// normalization (OS version and features are not compared).
    pub fn matches(&self, other: &Platform) -> bool {
        let a = self.clone().normalized();
        let b = other.clone().normalized();
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_as_containerd() {
        for (a, b) in [
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AMD64", "linux/amd64"),
        ] {
            let (pa, pb) = (Platform::parse(a).unwrap(), Platform::parse(b).unwrap());
            assert!(pa.matches(&pb), "{a} = {b}");
            assert_eq!(pa.to_string(), pb.to_string(), "{a} = {b}");
        }
        for (a, b) in [
            ("linux/arm/v6", "linux/arm/v7"),
            ("linux/amd64", "linux/arm64"),
            ("windows/amd64", "linux/amd64"),
        ] {
            assert!(
                !Platform::parse(a)
                    .unwrap()
                    .matches(&Platform::parse(b).unwrap()),
                "{a} != {b}"
            );
        }
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
    }
}
