use super::*;

fn server(family: Family) -> Server {
    Server {
        family,
        pid1_systemd: true,
        cgroup_v2: true,
        native_overlay: true,
        selinux: None,
        firewalld: false,
    }
}

/// A Debian server where PID 1 is not systemd, with hybrid cgroups (a container, CI).
fn no_systemd_server() -> Server {
    Server {
        pid1_systemd: false,
        cgroup_v2: false,
        ..server(Family::Apt)
    }
}

fn key() -> PublicKey {
    parse_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBlahBlahBlah me@laptop\n").unwrap()
}

fn wants() -> Wants {
    Wants {
        user: "deploy".into(),
        key: Some(key()),
        uploads: Vec::new(),
        low_port: None,
        public_ports: Vec::new(),
        test_node: false,
    }
}

#[test]
fn dnf_command_lines_name_dnf_packages() {
    let s = server(Family::Dnf);
    let step = packages_step(&s, &[]);
    assert_eq!(
        step.apply,
        "set -e\ndnf install -y -q podman rsync catatonit sqlite shadow-utils slirp4netns dbus\n"
    );
    assert!(
        step.check.contains("rpm -q --whatprovides \"$p\""),
        "{}",
        step.check
    );
    assert!(step
        .check
        .contains("for p in podman rsync catatonit sqlite shadow-utils slirp4netns dbus;"));
    assert!(!step.apply.contains("apt") && !step.check.contains("dpkg"));
    // Hybrid cgroups and an old kernel: runc and fuse-overlayfs, by the same names.
    let old = Server {
        cgroup_v2: false,
        native_overlay: false,
        ..s
    };
    assert!(packages_install(Family::Dnf, &packages(&old)).ends_with("dbus runc fuse-overlayfs\n"));
}

#[test]
fn apt_command_lines_wait_for_the_lock_and_name_every_package() {
    let step = packages_step(&server(Family::Apt), &[]);
    assert_eq!(
        step.apply,
        "set -e\n\
         DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq\n\
         DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
         --no-install-recommends podman rsync catatonit sqlite3 uidmap slirp4netns \
         dbus-user-session\n"
    );
    assert!(step.check.contains("install ok installed"));
}

#[test]
fn the_same_user_steps_for_both_families() {
    for family in [Family::Apt, Family::Dnf] {
        let steps = plan(&server(family), &wants());
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(steps.len(), 9, "{names:?}");
        assert!(steps[1].apply.contains("useradd -m -s /bin/bash \"$u\""));
        assert!(steps[1].check.starts_with("u=deploy\n"));
        assert!(steps[3].apply.contains("usermod -p '*' \"$u\""));
        assert!(steps[4].apply.contains("loginctl enable-linger \"$u\""));
        // systemd as PID 1 and cgroup v2: Podman's defaults, no containers.conf.
        assert!(!names.iter().any(|n| n.contains("containers.conf")));
        assert!(steps[6]
            .apply
            .contains("systemctl start \"user@$U.service\""));
        assert_eq!(steps[6].note, None);
        assert!(steps[7].apply.contains("as_user podman system migrate"));
        assert!(steps[8].name.starts_with("Authorizing the key"));
        // None of the tests' extras: a real server never gets them.
        assert!(!steps.iter().any(|s| s.name.contains("for the tests")
            || s.apply.contains("system reset")
            || s.apply.contains("busybox")));
    }
}

#[test]
fn the_tests_node_gets_its_extras_between_the_same_steps() {
    let s = no_systemd_server();
    let plain = plan(
        &s,
        &Wants {
            key: None,
            ..wants()
        },
    );
    let test = plan(
        &s,
        &Wants {
            key: None,
            test_node: true,
            ..wants()
        },
    );
    let names = |steps: &[Step]| -> Vec<String> { steps.iter().map(|s| s.name.clone()).collect() };
    assert!(
        !names(&plain).iter().any(|n| n.starts_with("Authorizing")),
        "no key, no key step"
    );
    assert!(test[0].apply.ends_with("runc openssh-server openssh-client busybox-static curl ca-certificates python3-venv git\n"), "{}", test[0].apply);
    assert!(test[1].name.starts_with("Installing traefik for the tests"));
    assert!(test[2]
        .name
        .starts_with("Installing litestream for the tests"));
    assert!(test
        .last()
        .unwrap()
        .apply
        .contains("as_user podman system reset --force"));
    // Every other step is the plain plan's, in its order.
    let common: Vec<String> = names(&test)
        .into_iter()
        .filter(|n| !n.contains("for the tests") && !n.contains("a test node's"))
        .collect();
    let mut plain_names = names(&plain);
    plain_names[0] = common[0].clone();
    assert_eq!(common, plain_names);
}

#[test]
fn without_systemd_as_pid_1_the_manager_is_started_by_hand_and_said_so() {
    let s = no_systemd_server();
    let steps = plan(&s, &wants());
    let conf = steps
        .iter()
        .find(|s| s.name.contains("containers.conf"))
        .unwrap();
    assert!(conf.apply.contains("runtime = \"runc\""), "{}", conf.apply);
    assert!(conf.apply.contains("events_logger = \"file\""));
    let manager = steps.iter().find(|s| s.name.contains("manager")).unwrap();
    assert!(manager.apply.contains("mkdir -p /run/systemd/system"));
    assert!(manager.apply.contains("\"$sd\" --user"));
    assert!(manager
        .note
        .as_deref()
        .unwrap()
        .contains("does not survive a reboot"));
    let linger = steps.iter().find(|s| s.name.contains("lingering")).unwrap();
    assert!(linger
        .apply
        .contains("touch \"/var/lib/systemd/linger/$u\""));
    // Storage comes before the manager: nothing runs Podman before its driver is set.
    let at = |n: &str| steps.iter().position(|s| s.name.contains(n)).unwrap();
    assert!(at("storage.conf") < at("manager") && at("containers.conf") < at("manager"));
}

#[test]
fn values_are_quoted_into_the_scripts() {
    let k = parse_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA+/= it's me\n").unwrap();
    let step = key_step("deploy", &k);
    assert!(step
        .apply
        .contains(r"printf '%s\n' 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA+/= it'\''s me'"));
    assert!(step.check.contains("grep -qF AAAAC3NzaC1lZDI1NTE5AAAA+/= "));
    assert_eq!(
        sh_quote("$(reboot)"),
        "'$(reboot)'",
        "the quoting the steps rely on"
    );
    let u = upload_step(&Upload {
        program: "traefik",
        local: "/tmp/t".into(),
        sha256: "ab12".into(),
    });
    assert!(u.check.contains("sha256sum /usr/local/bin/traefik"));
    assert!(u.apply.contains("mv -f \"$t\" /usr/local/bin/traefik"));
    assert_eq!(
        as_root("echo 'a b'", true),
        r"sudo -n sh -c 'echo '\''a b'\'''"
    );
    assert_eq!(as_root("true", false), "true");
}

#[test]
fn every_script_is_valid_sh() {
    let mut w = wants();
    w.low_port = Some(80);
    w.public_ports = vec![80, 443];
    w.uploads.push(Upload {
        program: "litestream",
        local: "/tmp/l".into(),
        sha256: "ab".into(),
    });
    for family in [Family::Apt, Family::Dnf] {
        for (pid1_systemd, cgroup_v2) in [(true, true), (false, false)] {
            let s = Server {
                pid1_systemd,
                cgroup_v2,
                firewalld: true,
                ..server(family)
            };
            for step in plan(&s, &w) {
                for script in [&step.check, &step.apply, &as_root(&step.apply, true)] {
                    let out = std::process::Command::new("sh")
                        .args(["-n", "-c", script])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}: {}\n{script}",
                        step.name,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
    }
}

#[test]
fn user_names_are_strict_and_never_root() {
    for ok in ["deploy", "deploy-boot", "_app", "web2"] {
        assert!(check_user_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "root",
        "-x",
        "2web",
        "Deploy",
        "a b",
        "a;b",
        "a$",
        "x'y",
        &"a".repeat(33),
    ] {
        assert!(check_user_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn public_keys_are_read_strictly() {
    let k = key();
    assert_eq!(k.kind, "ssh-ed25519");
    assert_eq!(k.comment, "me@laptop");
    assert_eq!(
        k.line(),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBlahBlahBlah me@laptop"
    );
    assert!(parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        .unwrap_err()
        .contains(".pub"));
    assert!(parse_public_key("from=\"x\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n").is_err());
    assert!(parse_public_key("ssh-ed25519 AAAA$(x)AAAAAAAAAAAAAA\n").is_err());
    assert!(parse_public_key("\n").is_err());
}

#[test]
fn low_ports_and_the_sysctl_that_opens_them() {
    let addrs: Vec<String> = [":80", "127.0.0.1:18400", "[::]:443"]
        .map(String::from)
        .to_vec();
    assert_eq!(low_port(&addrs), Some(80));
    assert_eq!(low_port(&["127.0.0.1:8080".to_string()]), None);
    let s = sysctl_step(80);
    assert!(s
        .apply
        .contains("sysctl -q -w net.ipv4.ip_unprivileged_port_start=80"));
    assert!(s.apply.contains(SYSCTL_FILE));
    assert!(s.note.unwrap().contains("every user"));
    assert!(native_overlay("6.1.0-18-amd64") && !native_overlay("5.10.0-28-amd64"));
}

#[test]
fn with_firewalld_the_public_ports_are_opened_after_the_low_port_and_before_the_key() {
    let mut w = wants();
    w.public_ports = vec![80, 443];
    let none = plan(&server(Family::Dnf), &w);
    assert!(!none.iter().any(|s| s.apply.contains("firewall-cmd")));
    let s = Server {
        firewalld: true,
        ..server(Family::Dnf)
    };
    let steps = plan(&s, &w);
    assert_eq!(steps.len(), none.len() + 1);
    let open = &steps[steps.len() - 2];
    assert_eq!(
        open.name,
        "Opening Traefik's ports in firewalld (80/tcp 443/tcp)"
    );
    assert!(open
        .apply
        .contains("firewall-cmd --permanent --add-port=443/tcp\n"));
    // Nothing to open (a Traefik on loopback only): no step.
    w.public_ports.clear();
    assert_eq!(plan(&s, &w).len(), none.len());
}

#[test]
fn with_selinux_dnf_names_the_container_policy() {
    let selinux = Some(crate::sys::selinux::Mode::Enforcing);
    let dnf = Server {
        selinux,
        ..server(Family::Dnf)
    };
    assert!(packages(&dnf).contains(&"container-selinux"));
    assert!(!packages(&server(Family::Dnf)).contains(&"container-selinux"));
    let apt = Server {
        selinux,
        ..server(Family::Apt)
    };
    assert_eq!(packages(&apt), packages(&server(Family::Apt)));
}
