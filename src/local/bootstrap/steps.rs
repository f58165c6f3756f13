//! The steps of a bootstrap as shell scripts that root runs on the server, each one a check
//! (exit 0: it is so already; it only reads) and the commands that make it so. Pure: the
//! runner runs them, the tests read them as strings. Every value put into a script is quoted
//! ([`sh_quote`]); the user name is checked against a strict pattern first.

use super::os::Family;
use crate::sys::shell::{sh_join, sh_quote};
use std::path::PathBuf;

/// One thing bootstrap makes so.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What it makes so, as the output says it.
    pub name: String,
    /// Exits 0 when it is so already; changes nothing. What it prints is said beside
    /// "ok, already".
    pub check: String,
    /// The commands that make it so (run only when the check fails).
    pub apply: String,
    /// A local file that `apply` reads on its stdin (a binary being uploaded).
    pub input: Option<PathBuf>,
    /// Said after the step, whether it changed something or not.
    pub note: Option<String>,
}

/// What the server is, as far as the steps differ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Server {
    pub family: Family,
    /// PID 1 is systemd (not so in containers and on some CI machines).
    pub pid1_systemd: bool,
    /// The unified cgroup v2 hierarchy only (no v1 or hybrid mounts).
    pub cgroup_v2: bool,
    /// The kernel mounts overlay for rootless users itself (Linux 5.13+).
    pub native_overlay: bool,
    /// SELinux's mode, when it is enabled: deploy labels the app's mounts (`:z`).
    pub selinux: Option<crate::sys::selinux::Mode>,
    /// firewalld is running (`firewall-cmd --state`).
    pub firewalld: bool,
}

/// A program to put on the server: a local binary and its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// `traefik` or `litestream`: its name in /usr/local/bin.
    pub program: &'static str,
    pub local: PathBuf,
    pub sha256: String,
}

/// What the config and the command line ask of the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Wants {
    /// The deploy user (checked with [`check_user_name`]).
    pub user: String,
    /// The public key the deploy user logs in with (`--local` may go without one).
    pub key: Option<PublicKey>,
    pub uploads: Vec<Upload>,
    /// The lowest port below 1024 that the managed Traefik listens on, if any.
    pub low_port: Option<u16>,
    /// The ports the managed Traefik listens on for the world: opened where firewalld runs
    /// ([`super::firewall`]).
    pub public_ports: Vec<u16>,
    /// The tests' node (`--test-node`): what only it gets, beside every step (see
    /// [`super::testnode`]).
    pub test_node: bool,
}

/// Where a binary upload goes.
pub const BIN_DIR: &str = "/usr/local/bin";
/// The sysctl file that lets unprivileged users bind low ports (traefik.manage on :80/:443).
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/50-deploy-unprivileged-ports.conf";

/// A user name bootstrap creates or uses: 1 to 32 lower-case letters, digits, `_` and `-`,
/// not beginning with `-` or a digit, and never root. Pure.
pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && !name.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    if !ok {
        return Err(format!(
            "`{}` is not a user name bootstrap creates: use 1 to 32 lower-case letters, digits, \
             `_` and `-`, beginning with a letter or `_`",
            name.escape_debug()
        ));
    }
    if name == "root" {
        return Err(
            "the deploy user must not be root: name another user in the environment's \
                    host (user@host, e.g. deploy@host), or with --local (--local deploy)"
                .into(),
        );
    }
    Ok(())
}

/// An OpenSSH public key: its type, its base64 body and a comment.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKey {
    pub kind: String,
    pub body: String,
    pub comment: String,
}

impl PublicKey {
    /// The authorized_keys line.
    pub fn line(&self) -> String {
        [
            self.kind.as_str(),
            self.body.as_str(),
            self.comment.as_str(),
        ]
        .iter()
        .filter(|w| !w.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
    }
}

/// The first public key of a `.pub` file or of `ssh-add -L`'s output: `TYPE BASE64 [COMMENT]`,
/// with no options before it; a private key is refused with what to pass instead. Pure.
pub fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    if text.contains("PRIVATE KEY") {
        return Err("this is a private key: pass its public half (the .pub file)".into());
    }
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("no public key in it")?;
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let body = words.next().unwrap_or_default();
    let comment = words.collect::<Vec<_>>().join(" ");
    let known_kind = kind.starts_with("ssh-")
        || kind.starts_with("ecdsa-sha2-")
        || kind.starts_with("sk-ssh-")
        || kind.starts_with("sk-ecdsa-");
    let kind_ok = known_kind
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-@.".contains(c));
    let body_ok = body.len() >= 16
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
    if !kind_ok || !body_ok {
        return Err(format!(
            "`{}` is not an OpenSSH public key line (TYPE BASE64 [COMMENT], e.g. ssh-ed25519 \
             AAAA... me@laptop)",
            clip(line, 60)
        ));
    }
    if comment.chars().any(|c| c.is_control()) {
        return Err("the key's comment holds a control character".into());
    }
    Ok(PublicKey {
        kind: kind.into(),
        body: body.into(),
        comment,
    })
}

/// At most `n` characters of `text`, `…` for the rest. Pure.
fn clip(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The lowest port below 1024 among the managed Traefik's entry point addresses (`:80`,
/// `127.0.0.1:443`, `[::]:80`), if any. Pure.
pub fn low_port<'a>(addresses: impl IntoIterator<Item = &'a String>) -> Option<u16> {
    addresses
        .into_iter()
        .filter_map(|a| a.rsplit_once(':')?.1.parse::<u16>().ok())
        .filter(|p| *p < 1024)
        .min()
}

/// Rootless native overlay needs Linux 5.13 (`uname -r`); before, fuse-overlayfs. Pure.
pub fn native_overlay(kernel: &str) -> bool {
    let mut parts = kernel
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (5, 13)
}

/// The packages a node needs, by the names its package manager knows. apt with
/// `--no-install-recommends` installs only what is named, so Podman's usual companions are
/// named too. Pure.
pub fn packages(server: &Server) -> Vec<&'static str> {
    let mut p = match server.family {
        Family::Apt => vec![
            "podman",
            "rsync",
            "catatonit",
            "sqlite3",
            "uidmap",
            "slirp4netns",
            "dbus-user-session",
        ],
        // newuidmap/newgidmap are in shadow-utils; the sqlite3 command in sqlite; the user's
        // bus (dbus-broker's user units) comes with dbus.
        Family::Dnf => vec![
            "podman",
            "rsync",
            "catatonit",
            "sqlite",
            "shadow-utils",
            "slirp4netns",
            "dbus",
        ],
    };
    // The policy that labels what containers use (container_file_t, for `:z`); Podman's
    // packages require it there already, named so that it is said.
    if server.selinux.is_some() && server.family == Family::Dnf {
        p.push("container-selinux");
    }
    // crun refuses cgroup v1 and hybrid hierarchies; runc runs there.
    if !server.cgroup_v2 {
        p.push("runc");
    }
    if !server.native_overlay {
        p.push("fuse-overlayfs");
    }
    p
}

/// Checks that every package is installed (prints the missing ones). Pure.
pub fn packages_check(family: Family, packages: &[&str]) -> String {
    let query = match family {
        Family::Apt => {
            r#"dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed""#
        }
        // By what packages provide: on EL9 `catatonit` is podman-catatonit's.
        Family::Dnf => r#"rpm -q --whatprovides "$p" >/dev/null 2>&1"#,
    };
    format!(
        "missing=''\nfor p in {}; do\n  {query} || missing=\"$missing $p\"\ndone\n\
         [ -z \"$missing\" ] || {{ echo \"missing:$missing\"; exit 1; }}\n",
        sh_join(packages)
    )
}

/// Installs the packages. apt waits up to 10 minutes for the lock that a fresh server's
/// unattended upgrades hold; dnf waits for its own lock by itself. Pure.
pub fn packages_install(family: Family, packages: &[&str]) -> String {
    match family {
        Family::Apt => {
            let apt = "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600";
            format!(
                "set -e\n{apt} update -qq\n{apt} install -y -qq --no-install-recommends {}\n",
                sh_join(packages)
            )
        }
        Family::Dnf => format!("set -e\ndnf install -y -q {}\n", sh_join(packages)),
    }
}

/// The packages step, with `extra` packages besides. Pure.
pub fn packages_step(server: &Server, extra: &[&'static str]) -> Step {
    let mut p = packages(server);
    for e in extra {
        if !p.contains(e) {
            p.push(e);
        }
    }
    Step {
        name: format!("Installing packages ({})", p.join(" ")),
        check: packages_check(server.family, &p),
        apply: packages_install(server.family, &p),
        input: None,
        note: None,
    }
}

/// A binary uploaded into /usr/local/bin, unless the one there has the same SHA-256. Pure.
pub fn upload_step(u: &Upload) -> Step {
    let dest = format!("{BIN_DIR}/{}", u.program);
    Step {
        name: format!("Installing {} as {dest}", u.local.display()),
        check: format!(
            "[ \"$(sha256sum {d} 2>/dev/null | cut -d' ' -f1)\" = {sum} ]\n",
            d = sh_quote(&dest),
            sum = sh_quote(&u.sha256)
        ),
        apply: format!(
            "set -e\nt=$(mktemp {tmp})\ncat > \"$t\"\nchmod 0755 \"$t\"\nmv -f \"$t\" {d}\n",
            tmp = sh_quote(&format!("{BIN_DIR}/.{}.XXXXXX", u.program)),
            d = sh_quote(&dest)
        ),
        input: Some(u.local.clone()),
        note: None,
    }
}

/// The shell variables of the deploy user: `u` (name), `U`/`G` (uid, gid), `H` (home), and
/// `as_user CMD...`, which runs a command as that user with its session's environment (as
/// `systemd --user` sees it). Pure.
pub fn user_prelude(user: &str) -> String {
    format!(
        r#"u={user}
U=$(id -u "$u" 2>/dev/null); G=$(id -g "$u" 2>/dev/null); H=$(getent passwd "$u" | cut -d: -f6)
as_user() {{
  (cd / && setpriv --reuid="$U" --regid="$G" --init-groups env -i HOME="$H" USER="$u" \
    LOGNAME="$u" PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="/run/user/$U" \
    DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$U/bus" "$@")
}}
"#,
        user = sh_quote(user)
    )
}

/// A step about the deploy user: its scripts begin with [`user_prelude`]. Pure.
pub(super) fn user_step(
    user: &str,
    name: String,
    check: &str,
    apply: &str,
    note: Option<String>,
) -> Step {
    let prelude = user_prelude(user);
    Step {
        name,
        check: format!("{prelude}{check}"),
        apply: format!("{prelude}set -e\n{apply}"),
        input: None,
        note,
    }
}

/// The deploy user, made by `useradd`, which also gives it subordinate ids where
/// /etc/login.defs says. Pure.
pub fn user_step_create(user: &str) -> Step {
    user_step(
        user,
        format!("Creating the user {user}"),
        "[ -n \"$U\" ]\n",
        "useradd -m -s /bin/bash \"$u\"\n",
        None,
    )
}

/// Subordinate uid and gid ranges for rootless Podman, when `useradd` gave none (an older
/// shadow, or a user made before): the next free range above every range in /etc/subuid and
/// /etc/subgid, of /etc/login.defs' size, from its minimum, so it collides with none. Pure.
pub fn subids_step(user: &str) -> Step {
    user_step(
        user,
        format!("Giving {user} subordinate uids and gids (rootless Podman)"),
        "grep -q \"^$u:\" /etc/subuid 2>/dev/null && grep -q \"^$u:\" /etc/subgid 2>/dev/null\n",
        r#"def() { v=$(awk -v k="$1" '$1 == k { print $2 }' /etc/login.defs 2>/dev/null); echo "${v:-$2}"; }
min=$(def SUB_UID_MIN 100000); max=$(def SUB_UID_MAX 600100000); count=$(def SUB_UID_COUNT 65536)
start=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: -v m="$min" '$3 > 0 { e = $2 + $3; if (e > m) m = e } END { print m }')
end=$((start + count - 1))
[ "$end" -le "$max" ] || { echo "no free subordinate range below SUB_UID_MAX ($max) in /etc/login.defs" >&2; exit 1; }
if pgrep -u "$U" >/dev/null 2>&1; then
  echo "usermod gives no subordinate ids to a user whose processes run: stop $u's processes (as root: loginctl terminate-user $u, or kill them) and run deploy bootstrap again" >&2
  exit 1
fi
grep -q "^$u:" /etc/subuid 2>/dev/null || usermod --add-subuids "$start-$end" "$u"
grep -q "^$u:" /etc/subgid 2>/dev/null || usermod --add-subgids "$start-$end" "$u"
"#,
        None,
    )
}

/// No password, but not locked: sshd refuses a key login to a locked account (`!` in
/// /etc/shadow, as useradd leaves it). Pure.
pub fn unlock_step(user: &str) -> Step {
    user_step(
        user,
        format!("Letting {user} log in with a key (no password: usermod -p '*')"),
        "p=$(getent shadow \"$u\" | cut -d: -f2)\n[ -n \"$p\" ] && [ \"${p#!}\" = \"$p\" ]\n",
        "usermod -p '*' \"$u\"\n",
        None,
    )
}

/// Lingering: the user's manager (and its apps) runs without a login. Where PID 1 is not
/// systemd there is no logind to ask: the file it would write is written. Pure.
pub fn linger_step(user: &str, server: &Server) -> Step {
    let apply = if server.pid1_systemd {
        "loginctl enable-linger \"$u\"\n"
    } else {
        "install -d -m 0755 /var/lib/systemd/linger\ntouch \"/var/lib/systemd/linger/$u\"\n"
    };
    user_step(
        user,
        format!("Enabling lingering for {user} (its apps run without a login)"),
        "[ -f \"/var/lib/systemd/linger/$u\" ]\n",
        apply,
        None,
    )
}

/// Writes `text` as a file of the deploy user's (0644), its directories made. Pure.
fn write_user_file(path: &str, text: &str) -> String {
    format!(
        "f={path}\nd=$(dirname \"$f\")\n\
         as_user mkdir -p \"$d\"\nprintf '%s' {text} > \"$f.tmp\"\n\
         chown \"$U:$G\" \"$f.tmp\"\nchmod 0644 \"$f.tmp\"\nmv -f \"$f.tmp\" \"$f\"\n",
        text = sh_quote(text)
    )
}

/// Where the settings rootless Podman needs differ from its defaults: no systemd as PID 1
/// (no journald; no cgroup delegation: cgroupfs), or cgroups that are not v2 only (crun
/// refuses them: runc). An existing file is kept. Pure.
pub fn containers_conf(server: &Server) -> Option<String> {
    if server.pid1_systemd && server.cgroup_v2 {
        return None;
    }
    let mut text = String::from("[engine]\n");
    if !server.cgroup_v2 {
        text += "runtime = \"runc\"\n";
    }
    text += "cgroup_manager = \"cgroupfs\"\n";
    if !server.pid1_systemd {
        text += "events_logger = \"file\"\n";
    }
    Some(text)
}

/// The containers.conf step, where [`containers_conf`] says one is needed. Pure.
pub fn containers_conf_step(user: &str, server: &Server) -> Option<Step> {
    let text = containers_conf(server)?;
    Some(user_step(
        user,
        format!("Configuring rootless Podman for {user} (~/.config/containers/containers.conf)"),
        "[ -n \"$H\" ] && [ -f \"$H/.config/containers/containers.conf\" ]\n",
        &write_user_file("\"$H/.config/containers/containers.conf\"", &text),
        None,
    ))
}

/// Overlay storage for the user's Podman (vfs copies every layer whole). Never over a store
/// that exists already: changing its driver needs `podman system reset`, which `deploy setup`
/// does only when nothing would be lost, or when asked (`--reset-storage`). Pure.
pub fn storage_step(user: &str, server: &Server) -> Step {
    let text = crate::node::runtime::storage::with_overlay("", server.native_overlay);
    user_step(
        user,
        format!("Configuring overlay storage for {user} (~/.config/containers/storage.conf)"),
        r#"[ -n "$H" ] || exit 1
c="$H/.config/containers/storage.conf"
if [ -f "$c" ]; then
  grep -Eq '^[[:space:]]*driver[[:space:]]*=[[:space:]]*"overlay"' "$c" ||
    echo "$c names another driver: kept as it is (deploy check says what it costs)"
  exit 0
fi
if [ -d "$H/.local/share/containers/storage" ]; then
  echo "Podman's store exists already: kept as it is (deploy setup switches it to overlay when nothing would be lost, or with --reset-storage)"
  exit 0
fi
exit 1
"#,
        &write_user_file("\"$H/.config/containers/storage.conf\"", &text),
        None,
    )
}

/// `net.ipv4.ip_unprivileged_port_start` lowered to `port` (the managed Traefik, rootless,
/// listens below 1024), now and at every boot. Pure.
pub fn sysctl_step(port: u16) -> Step {
    let key = "net.ipv4.ip_unprivileged_port_start";
    Step {
        name: format!("Letting unprivileged users listen on port {port} and up ({key})"),
        check: format!(
            "v=$(sysctl -n {key} 2>/dev/null)\n[ -n \"$v\" ] && [ \"$v\" -le {port} ] && \
             grep -qsx '{key} = {port}' {file}\n",
            file = SYSCTL_FILE
        ),
        apply: format!(
            "set -e\nprintf '%s\\n' '# deploy bootstrap: the managed Traefik (rootless) listens \
             on port {port}' '{key} = {port}' > {file}\nsysctl -q -w {key}={port}\n",
            file = SYSCTL_FILE
        ),
        input: None,
        note: Some(format!(
            "ports {port} to 1023 can be taken by every user of this server now, not only \
             Traefik ({SYSCTL_FILE})"
        )),
    }
}

/// The public key in the deploy user's authorized_keys (the directory and file made 0700 and
/// 0600, the user's). Pure.
pub fn key_step(user: &str, key: &PublicKey) -> Step {
    let label = if key.comment.is_empty() {
        key.kind.clone()
    } else {
        format!("{} {}", key.kind, key.comment)
    };
    user_step(
        user,
        format!("Authorizing the key {label} for {user}"),
        &format!(
            "[ -n \"$H\" ] && grep -qF {} \"$H/.ssh/authorized_keys\" 2>/dev/null\n",
            sh_quote(&key.body)
        ),
        &format!(
            r#"install -d -m 0700 -o "$U" -g "$G" "$H/.ssh"
f="$H/.ssh/authorized_keys"
[ -f "$f" ] || install -m 0600 -o "$U" -g "$G" /dev/null "$f"
if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f"; fi
printf '%s\n' {line} >> "$f"
chown "$U:$G" "$f"; chmod 0600 "$f"
if command -v restorecon >/dev/null 2>&1; then restorecon -R "$H/.ssh" || true; fi
"#,
            line = sh_quote(&key.line())
        ),
        None,
    )
}

/// Every step, in order: packages, the programs, the user and what it needs, its Podman
/// settings (before anything runs Podman as it: its store is made with the driver set),
/// its manager, Podman running, low ports, firewalld's ports, the key. The tests' node gets its own steps
/// between them ([`super::testnode`]). Pure.
pub fn plan(server: &Server, wants: &Wants) -> Vec<Step> {
    use super::{manager, testnode};
    let user = wants.user.as_str();
    let extra: &[&str] = if wants.test_node {
        &testnode::PACKAGES
    } else {
        &[]
    };
    let mut steps = vec![packages_step(server, extra)];
    if wants.test_node {
        steps.extend(testnode::program_steps());
    }
    steps.extend(wants.uploads.iter().map(upload_step));
    steps.extend([
        user_step_create(user),
        subids_step(user),
        unlock_step(user),
        linger_step(user, server),
    ]);
    steps.extend(containers_conf_step(user, server));
    steps.push(storage_step(user, server));
    steps.push(manager::manager_step(user, server));
    steps.push(manager::podman_step(user));
    if wants.test_node {
        steps.push(testnode::overlay_store_step(user));
    }
    steps.extend(wants.low_port.map(sysctl_step));
    if server.firewalld && !wants.public_ports.is_empty() {
        steps.push(super::firewall::open_ports_step(&wants.public_ports));
    }
    steps.extend(wants.key.as_ref().map(|k| key_step(user, k)));
    steps
}

/// A script run through `sudo -n` (no password prompt: it fails instead) when the login is
/// not root's. Pure.
pub fn as_root(script: &str, sudo: bool) -> String {
    if sudo {
        format!("sudo -n sh -c {}", sh_quote(script))
    } else {
        script.to_string()
    }
}

#[cfg(test)]
mod tests;
