//! The server's distribution, from its `/etc/os-release`: which package manager bootstrap
//! drives, and whether its Podman is new enough (4.3). Pure.

use std::collections::BTreeMap;

/// How packages are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Debian and Ubuntu: apt-get and dpkg.
    Apt,
    /// RHEL, Rocky, Alma, CentOS Stream and Fedora: dnf and rpm.
    Dnf,
}

/// A distribution bootstrap knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distro {
    /// `ID` (debian, ubuntu, rhel, rocky, almalinux, centos, fedora).
    pub id: String,
    /// `PRETTY_NAME`, or `ID VERSION_ID`: what the output calls it.
    pub name: String,
    pub family: Family,
}

/// A version's major and minor numbers: `4.3.1+ds1-8` is (4, 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

/// The oldest Podman deploy works with (`podman build --layers`, `--init`, sd-notify).
pub const MIN_PODMAN: Version = Version(4, 3);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Reads a version's first two numbers, after an epoch (`1:4.9.3` is 4.9); `None` when it
/// does not begin with a number. Pure.
pub fn parse_version(text: &str) -> Option<Version> {
    let text = text.trim();
    let text = match text.split_once(':') {
        Some((epoch, rest)) if epoch.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => text,
    };
    let mut numbers = text.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some(Version(major, minor))
}

/// The `KEY=value` lines of an os-release file, their quotes removed (`"..."` with its
/// backslash escapes, or `'...'`); comments and malformed lines are skipped. Pure.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        fields.insert(key.to_string(), unquote(value));
    }
    fields
}

/// A shell-like value as os-release(5) writes it. Pure.
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match (c, chars.clone().next()) {
                ('\\', Some(n @ ('"' | '\\' | '$' | '`'))) => {
                    out.push(n);
                    chars.next();
                }
                _ => out.push(c),
            }
        }
        out
    } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.to_string()
    } else {
        value.to_string()
    }
}

/// The distribution an os-release describes, or why bootstrap refuses it: an unknown one, or
/// a release whose Podman is older than 4.3 (Ubuntu 22.04's is 3.4). Pure.
pub fn distro(fields: &BTreeMap<String, String>) -> Result<Distro, String> {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    let id = get("ID").to_ascii_lowercase();
    let version = get("VERSION_ID");
    let name = match get("PRETTY_NAME") {
        "" => format!("{id} {version}").trim().to_string(),
        pretty => pretty.to_string(),
    };
    let number = parse_version(version);
    let at_least =
        |min: Version, what: &str| -> Result<(), String> {
            match number {
                Some(v) if v >= min => Ok(()),
                _ => Err(format!(
                "{} is too old for deploy bootstrap: it needs {what} or newer, whose Podman is \
                 4.3 or newer",
                if name.is_empty() { "this system" } else { &name }
            )),
            }
        };
    let family =
        match id.as_str() {
            // Debian testing and unstable have no VERSION_ID: they are newer than any release.
            "debian" if version.is_empty() => Family::Apt,
            "debian" => at_least(Version(12, 0), "Debian 12").map(|()| Family::Apt)?,
            "ubuntu" => at_least(Version(24, 4), "Ubuntu 24.04 (22.04's Podman is 3.4)")
                .map(|()| Family::Apt)?,
            "rhel" | "rocky" | "almalinux" | "centos" => {
                at_least(Version(9, 0), "release 9").map(|()| Family::Dnf)?
            }
            "fedora" => at_least(Version(37, 0), "Fedora 37").map(|()| Family::Dnf)?,
            _ => {
                return Err(format!(
                "{} (ID={}{}) is not a distribution deploy bootstrap knows: it knows Debian 12+, \
                 Ubuntu 24.04+, RHEL, Rocky and Alma 9+, CentOS Stream 9+ and Fedora",
                if name.is_empty() { "this system" } else { &name },
                if id.is_empty() { "?" } else { &id },
                match get("ID_LIKE") {
                    "" => String::new(),
                    like => format!(", ID_LIKE={like}"),
                }
            ))
            }
        };
    Ok(Distro { id, name, family })
}

/// The Podman the server will run: the installed one (bootstrap does not count on upgrading
/// it: an old one is refused, to be upgraded by hand), else the one apt or dnf would install
/// (its candidate), when it says. Pure.
pub fn podman_after(installed: Option<Version>, candidate: Option<Version>) -> Option<Version> {
    installed.or(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distro_of(text: &str) -> Result<Distro, String> {
        distro(&parse_os_release(text))
    }

    #[test]
    fn os_release_values_lose_their_quotes() {
        let f = parse_os_release(
            "# comment\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID='12'\n\
             QUOTED=\"a \\\"b\\\" \\$c\"\nnot a line\n=x\n",
        );
        assert_eq!(f["NAME"], "Debian GNU/Linux");
        assert_eq!(f["ID"], "debian");
        assert_eq!(f["VERSION_ID"], "12");
        assert_eq!(f["QUOTED"], "a \"b\" $c");
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn known_distributions_pick_their_package_manager() {
        let debian = distro_of(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        )
        .unwrap();
        assert_eq!(debian.family, Family::Apt);
        assert_eq!(debian.name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(
            distro_of("ID=debian\nVERSION_CODENAME=trixie\n")
                .unwrap()
                .family,
            Family::Apt
        );
        assert_eq!(
            distro_of("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n")
                .unwrap()
                .family,
            Family::Apt
        );
        for text in [
            "ID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"9.4\"\n",
            "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
            "ID=\"almalinux\"\nVERSION_ID=\"9.5\"\n",
            "ID=\"centos\"\nVERSION_ID=\"9\"\n",
            "ID=fedora\nVERSION_ID=41\n",
        ] {
            assert_eq!(distro_of(text).unwrap().family, Family::Dnf, "{text}");
        }
    }

    #[test]
    fn unknown_and_old_distributions_are_refused() {
        let e = distro_of("PRETTY_NAME=\"Arch Linux\"\nID=arch\n").unwrap_err();
        assert!(
            e.contains("Arch Linux (ID=arch) is not a distribution"),
            "{e}"
        );
        let e = distro_of("NAME=\"Linux Mint\"\nID=linuxmint\nID_LIKE=\"ubuntu debian\"\n")
            .unwrap_err();
        assert!(e.contains("ID_LIKE=ubuntu debian"), "{e}");
        assert!(distro_of("").unwrap_err().contains("ID=?"));
        let e = distro_of("PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nID=ubuntu\nVERSION_ID=\"22.04\"\n")
            .unwrap_err();
        assert!(e.contains("Ubuntu 22.04.4 LTS is too old"), "{e}");
        assert!(e.contains("3.4"), "{e}");
        assert!(distro_of("ID=debian\nVERSION_ID=11\n").is_err());
        assert!(distro_of("ID=rocky\nVERSION_ID=8.9\n").is_err());
    }

    #[test]
    fn versions_read_from_package_and_podman_strings() {
        assert_eq!(parse_version("4.3.1+ds1-8+deb12u1"), Some(Version(4, 3)));
        assert_eq!(parse_version("1:4.9.3"), Some(Version(4, 9)));
        assert_eq!(parse_version("5"), Some(Version(5, 0)));
        assert_eq!(parse_version("(none)"), None);
        assert!(Version(3, 4) < MIN_PODMAN && Version(4, 3) >= MIN_PODMAN);
        assert!(Version(24, 4) > Version(22, 4));
        let (old, new) = (Some(Version(3, 4)), Some(Version(4, 3)));
        assert_eq!(podman_after(old, new), old);
        assert_eq!(podman_after(None, new), new);
        assert_eq!(podman_after(None, None), None);
    }
}
