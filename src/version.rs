//! Release names: what a VERSION may be ([`Version`], checked where it enters: the command
//! line), and the image tag it becomes. Pure.

use anyhow::{bail, Result};

/// A version names a directory under `releases/`: letters, digits, `.`, `_`, `-`, `+`; it may
/// not start with `.` (deploy's own temp names do) or `-` (it would read as an option).
pub fn check(version: &str) -> Result<()> {
    let ok_chars = version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if version.is_empty()
        || version.len() > 100
        || !ok_chars
        || version.starts_with('.')
        || version.starts_with('-')
    {
        bail!(
            "`{version}` is not a valid version: use 1 to 100 letters, digits, `.`, `_`, `-` or `+`, \
             not starting with `.` or `-` (e.g. v2.0.0, 2026-11-22.1, 1.4.0+build7)"
        );
    }
    Ok(())
}

/// A release's name, valid ([`check`]): parsed once where it enters (clap parses the command
/// line's with [`std::str::FromStr`]) and carried as this type. Reads as a `&str`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(String);

impl Version {
    pub fn new(text: &str) -> Result<Version> {
        check(text)?;
        Ok(Version(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::str::FromStr for Version {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Version> {
        Version::new(text)
    }
}

impl std::ops::Deref for Version {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The image tag for a version. Tags cannot hold `+`, so it becomes `_` followed by a short
/// checksum of the version, which keeps `1+a` and `1_a` apart.
pub fn image_tag(version: &str) -> String {
    if !version.contains('+') {
        return version.to_string();
    }
    // FNV-1a, 32 bits: stable across builds and platforms.
    let mut h: u32 = 0x811c9dc5;
    for b in version.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    format!("{}-{h:08x}", version.replace('+', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_versions() {
        for v in [
            "v1",
            "v2.0.0",
            "2026-11-22.1",
            "1.4.0+build7",
            "release_3",
            "a",
        ] {
            check(v).unwrap();
        }
    }

    #[test]
    fn bad_versions() {
        for v in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".incoming-v1",
            "-rf",
            "v 1",
            "v1;rm",
            "é",
        ] {
            assert!(check(v).is_err(), "{v:?} accepted");
        }
        assert!(check(&"x".repeat(101)).is_err());
        assert!("../x".parse::<Version>().is_err());
        assert_eq!("v1.2".parse::<Version>().unwrap().as_str(), "v1.2");
    }

    #[test]
    fn tags() {
        assert_eq!(image_tag("v2.0.0"), "v2.0.0");
        let plus = image_tag("1+a");
        assert!(plus.starts_with("1_a-") && plus.len() == 12, "{plus}");
        assert_ne!(plus, image_tag("1_a"));
    }
}
