//! What bootstrap reads of the server before it changes anything: its os-release, whether
//! PID 1 is systemd, its cgroups and kernel, the Podman it has or would install, SELinux,
//! firewalld, and Traefik and Litestream. One script (it only reads), one answer of
//! `key=value` lines. Pure.

use super::os::{parse_version, Version};
use crate::sys::selinux::Mode;
use std::collections::BTreeMap;

/// The programs bootstrap looks for where deploy finds them (`/usr/local/bin`, `/usr/bin`).
pub const PROGRAMS: [&str; 2] = ["traefik", "litestream"];

/// The probe; run as root (or through sudo). Pure.
pub fn script() -> String {
    format!(
        r#"echo "uid=$(id -u)"
sed 's/^/os:/' /etc/os-release 2>/dev/null || sed 's/^/os:/' /usr/lib/os-release 2>/dev/null
echo "pid1=$(cat /proc/1/comm 2>/dev/null)"
[ -f /sys/fs/cgroup/cgroup.controllers ] && echo "cgroup=v2"
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
if command -v podman >/dev/null 2>&1; then echo "podman=$(podman --version 2>/dev/null | awk '{{print $NF}}')"
elif command -v apt-cache >/dev/null 2>&1; then echo "candidate=$(apt-cache policy podman 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
elif command -v dnf >/dev/null 2>&1; then echo "candidate=$(dnf -q repoquery --latest-limit=1 --qf '%{{version}} ' podman 2>/dev/null | awk 'NR == 1 {{ print $1 }}')"
fi
[ -e {enforce} ] && echo "selinux=$(cat {enforce} 2>/dev/null)"
command -v firewall-cmd >/dev/null 2>&1 && echo "firewalld=$(firewall-cmd --state 2>/dev/null)"
for b in {programs}; do
  for d in /usr/local/bin /usr/bin; do
    if [ -x "$d/$b" ]; then echo "program=$b $d/$b"; break; fi
  done
done
true
"#,
        programs = PROGRAMS.join(" "),
        enforce = crate::sys::selinux::ENFORCE
    )
}

/// The server, as the probe saw it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Facts {
    pub uid: Option<u32>,
    /// /etc/os-release as it is.
    pub os_release: String,
    /// PID 1's command name.
    pub pid1: String,
    pub cgroup_v2: bool,
    pub kernel: String,
    /// `uname -m`.
    pub arch: String,
    /// The installed Podman's version.
    pub podman: Option<Version>,
    /// The Podman apt or dnf would install (its candidate), when none is installed and the
    /// package manager knows one.
    pub candidate: Option<Version>,
    /// SELinux's mode, when it is enabled (read as the node reads it).
    pub selinux: Option<Mode>,
    pub firewalld: bool,
    /// Program name -> its path, for those found.
    pub programs: BTreeMap<String, String>,
}

impl Facts {
    /// PID 1 is systemd (not so in containers and on some CI machines).
    pub fn pid1_systemd(&self) -> bool {
        self.pid1 == "systemd"
    }
}

/// Reads the probe's answer. Pure.
pub fn parse(text: &str) -> Facts {
    let mut f = Facts::default();
    for line in text.lines() {
        if let Some(os) = line.strip_prefix("os:") {
            f.os_release.push_str(os);
            f.os_release.push('\n');
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k {
            "uid" => f.uid = v.parse().ok(),
            "pid1" => f.pid1 = v.to_string(),
            "cgroup" => f.cgroup_v2 = v == "v2",
            "kernel" => f.kernel = v.to_string(),
            "arch" => f.arch = v.to_string(),
            "podman" => f.podman = parse_version(v),
            "candidate" => f.candidate = parse_version(v),
            "selinux" => f.selinux = Some(Mode::parse(v)),
            "firewalld" => f.firewalld = v == "running",
            "program" => {
                if let Some((name, path)) = v.split_once(' ') {
                    f.programs.insert(name.to_string(), path.to_string());
                }
            }
            _ => {}
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_read() {
        let f = parse(
            "uid=0\nos:ID=debian\nos:VERSION_ID=\"12\"\npid1=process_api\nkernel=6.1.0-18-amd64\n\
             podman=4.3.1\ncandidate=4.3.1+ds1-8+deb12u1\nselinux=1\nfirewalld=running\n\
             program=traefik /usr/local/bin/traefik\nnoise\n",
        );
        assert_eq!(f.uid, Some(0));
        assert_eq!(f.os_release, "ID=debian\nVERSION_ID=\"12\"\n");
        assert!(!f.pid1_systemd() && !f.cgroup_v2);
        assert_eq!(f.podman, Some(Version(4, 3)));
        assert_eq!(f.candidate, Some(Version(4, 3)));
        assert_eq!(f.selinux, Some(Mode::Enforcing));
        assert!(f.firewalld);
        assert_eq!(f.programs["traefik"], "/usr/local/bin/traefik");
        let none =
            parse("uid=1000\npid1=systemd\ncgroup=v2\ncandidate=(none)\nfirewalld=not running\n");
        assert!(none.pid1_systemd() && none.cgroup_v2 && !none.firewalld);
        assert_eq!(none.candidate, None);
        assert_eq!(none.selinux, None);
        assert_eq!(parse("selinux=0\n").selinux, Some(Mode::Permissive));
        assert!(script().contains("for b in traefik litestream; do"));
        assert!(script().contains("dnf -q repoquery --latest-limit=1 --qf '%{version} ' podman"));
        let sh = std::process::Command::new("sh")
            .args(["-n", "-c", &script()])
            .output()
            .unwrap();
        assert!(
            sh.status.success(),
            "{}",
            String::from_utf8_lossy(&sh.stderr)
        );
        assert!(script().contains(
            "[ -e /sys/fs/selinux/enforce ] && echo \"selinux=$(cat /sys/fs/selinux/enforce"
        ));
    }
}
