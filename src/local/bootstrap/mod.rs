//! `deploy bootstrap`: a server from nothing, over SSH as root (or a sudo-capable user), or
//! this machine as root (`--local`): the packages, Traefik and Litestream where needed, the
//! deploy user with its subordinate ids, lingering and systemd user manager, rootless Podman on
//! overlay storage, the key deploy logs in with, then (over SSH) `deploy setup`. Every step
//! checks first and says "ok, already" when there is nothing to do; `--dry-run` prints the
//! commands that would run. An unknown distribution, or a Podman older than 4.3, stops it
//! before anything changes, with the steps to do by hand.
//!
//! - [`os`]: /etc/os-release, the distributions known, Podman's version;
//! - [`probe`]: what is read of the server first;
//! - [`programs`]: Traefik and Litestream, a binary of one's own or a pinned download;
//! - [`steps`]: the steps as shell scripts (pure builders), [`manager`] those of the user's
//!   manager and Podman, [`firewall`] firewalld's ports; [`testnode`]: the tests' extras;
//! - [`runner`]: runs them as root; [`here`]: `--local`.

pub mod firewall;
pub mod here;
pub mod manager;
pub mod os;
pub mod probe;
pub mod programs;
pub mod runner;
pub mod steps;
pub mod testnode;

use crate::cli::{BootstrapArgs, Cli};
use crate::config::{self, Host};
use crate::sys::ssh::Ssh;
use crate::ui::Ui;
use anyhow::{anyhow, bail, Context, Result};
use programs::{Program, Scratch, Want};
use runner::{Outcome, RootSession};
use std::path::{Path, PathBuf};
use steps::{PublicKey, Server, Wants};

/// Runs `deploy bootstrap`.
pub fn run(cli: &Cli, a: &BootstrapArgs, ui: Ui) -> Result<()> {
    match &a.local {
        Some(user) => here::run(a, user, ui),
        None => over_ssh(cli, a, ui),
    }
}

/// `deploy bootstrap ENV --root DEST`.
fn over_ssh(cli: &Cli, a: &BootstrapArgs, ui: Ui) -> Result<()> {
    let loaded = config::load(&cli.config)
        .map_err(|e| crate::exit::with(crate::exit::Code::Config, e))?
        .for_environment(a.env.as_deref())?;
    let (env_name, env) = loaded.environment(a.env.as_deref())?;
    let Host::Ssh { destination, port } = env.host() else {
        bail!(
            "{env_name} is `local`: deploy bootstrap sets up a server over SSH (on this machine, \
             `deploy setup {env_name}` is what is left to do)"
        );
    };
    let home = crate::node::home_dir()?;
    let target = Ssh::new(&destination, port, env.ssh.as_ref(), &home)?;
    let user = deploy_user(&target)?;
    steps::check_user_name(&user).map_err(|e| anyhow!("{e} (from host: {})", env.host))?;
    let (key, key_from) = public_key(a.key.as_deref(), env, &home)?;
    let root = root_session(a, env, &home)?;
    ui.info(&format!(
        "Bootstrapping {} for {env_name} ({}): logged in as {}{}, for the deploy user {user}",
        target.destination,
        loaded.config.app,
        root.label(),
        if a.sudo { " through sudo -n" } else { "" }
    ));
    ui.info(&format!("   the key: {} ({key_from})", key_label(&key)));
    let facts = ui.step("Reading the server", || root.probe())?;
    let server = check_server(&facts, &user)?;
    let config = &loaded.config;
    let managed = config.traefik.as_ref().and_then(|t| t.managed());
    let needs = [
        (Program::Traefik, managed.is_some()),
        (Program::Litestream, config.replicate.is_some()),
    ];
    let mut scratch = Scratch::default();
    let wants = Wants {
        user: user.clone(),
        key: Some(key),
        uploads: programs::uploads(&wanted(a, &needs), &facts, &mut scratch, ui)?,
        low_port: managed
            .as_ref()
            .and_then(|m| steps::low_port(m.entrypoints.values())),
        public_ports: managed
            .as_ref()
            .map(|m| firewall::public_ports(m.entrypoints.values()))
            .unwrap_or_default(),
        test_node: false,
    };
    for note in server_notes(&server, Some(managed.is_some())) {
        ui.info(&note);
    }
    let changed = make_node(&root, &server, &wants, a.dry_run, ui)?;
    if a.dry_run {
        let then = format!(
            "then, from here: a login as {user} (ssh {}), and `deploy setup {env_name}`",
            target.destination
        );
        dry_run_done(&then, changed, ui);
        return Ok(());
    }
    check_podman(&root, &user, ui)?;
    ui.step(&format!("Logging in as {}", target.destination), || {
        login(&target, &user)
    })?;
    ui.info(&format!("Then: deploy setup {env_name}"));
    crate::local::commands::run(setup_cli(cli, &env_name))?;
    ui.done(
        &format!(
            "{} is bootstrapped: `deploy release {env_name}` ships {} there",
            target.destination, loaded.config.app
        ),
        serde_json::json!({"action": "bootstrap", "environment": env_name, "user": user, "changed": changed}),
    );
    Ok(())
}

/// The root login (`--root`), reached with the environment's ssh options (jump host,
/// known_hosts, identity).
fn root_session(a: &BootstrapArgs, env: &config::Environment, home: &Path) -> Result<RootSession> {
    let dest = a.root.as_deref().unwrap_or_default();
    let Ok(Host::Ssh { destination, port }) = config::parse_host(dest) else {
        bail!(
            "--root {dest}: give root@host[:port] or an ssh alias of a root login (with --sudo, \
             a user who may run sudo -n)"
        );
    };
    Ok(RootSession::Ssh {
        ssh: Ssh::new(&destination, port, env.ssh.as_ref(), home)?,
        sudo: a.sudo,
    })
}

/// The deploy user: the `user@` of the environment's host, or what ssh resolves for an
/// alias (`ssh -G`).
fn deploy_user(target: &Ssh) -> Result<String> {
    if let Some((user, _)) = target.destination.rsplit_once('@') {
        return Ok(user.to_string());
    }
    let mut args = vec!["-G".to_string()];
    args.extend(target.args());
    args.extend(["--".into(), target.destination.clone()]);
    let out = duct::cmd("ssh", args)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run ssh: install the OpenSSH client")?;
    if !out.status.success() {
        bail!(
            "`ssh -G {}` failed: {}",
            target.destination,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    ssh_config_value(&String::from_utf8_lossy(&out.stdout), "user").ok_or_else(|| {
        anyhow!(
            "ssh does not say which user {} logs in as: write the host as user@host",
            target.destination
        )
    })
}

/// A value of `ssh -G`'s output (`user deploy`). Pure.
pub fn ssh_config_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim().to_string())
}

/// The public key to authorize, and where it came from: `--key FILE`, else the public half
/// of the environment's ssh.identity, else the first key the agent lists.
fn public_key(
    file: Option<&Path>,
    env: &config::Environment,
    home: &Path,
) -> Result<(PublicKey, String)> {
    if let Some(path) = file {
        return Ok((read_public_key(path)?, format!("from {}", path.display())));
    }
    if let Some(identity) = env.ssh.as_ref().and_then(|s| s.identity.as_deref()) {
        let public = PathBuf::from(format!(
            "{}.pub",
            crate::sys::fsx::expand_home(identity, home)?.display()
        ));
        if public.is_file() {
            return Ok((
                read_public_key(&public)?,
                format!("from {}, the environment's ssh.identity", public.display()),
            ));
        }
    }
    let out = duct::cmd!("ssh-add", "-L")
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run();
    let listed = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => String::new(),
    };
    let key = steps::parse_public_key(&listed).map_err(|_| {
        anyhow!(
            "no key to authorize for the deploy user: pass --key FILE (a public key, e.g. \
             ~/.ssh/id_ed25519.pub), or load one into ssh-agent (ssh-add)"
        )
    })?;
    Ok((key, "the first key `ssh-add -L` lists".into()))
}

/// A public key from a `.pub` file.
fn read_public_key(path: &Path) -> Result<PublicKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key {}", path.display()))?;
    steps::parse_public_key(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// `ssh-ed25519 me@laptop`.
fn key_label(key: &PublicKey) -> String {
    format!("{} {}", key.kind, key.comment).trim().to_string()
}

/// What must hold before anything changes: a known distribution and Podman 4.3 or newer.
/// Returns what the steps are built from.
fn check_server(facts: &probe::Facts, user: &str) -> Result<Server> {
    let refuse = |why: String| {
        anyhow!(
            "{why}\nNothing was changed. To make the server a node by hand:\n{}",
            manual_steps(user)
        )
    };
    let distro = os::distro(&os::parse_os_release(&facts.os_release)).map_err(refuse)?;
    if let Some(v) = os::podman_after(facts.podman, facts.candidate) {
        if v < os::MIN_PODMAN {
            return Err(refuse(format!(
                "{} has Podman {v} (installed, or what its packages would install): deploy \
                 needs {} or newer",
                distro.name,
                os::MIN_PODMAN
            )));
        }
    }
    Ok(Server {
        family: distro.family,
        pid1_systemd: facts.pid1_systemd(),
        cgroup_v2: facts.cgroup_v2,
        native_overlay: steps::native_overlay(&facts.kernel),
        selinux: facts.selinux,
        firewalld: facts.firewalld,
    })
}

/// Traefik and Litestream: each with its --…-bin, needed when the config needs it (`needs`)
/// or `--with` names it. Pure.
fn wanted(a: &BootstrapArgs, needs: &[(Program, bool)]) -> Vec<Want> {
    Program::ALL
        .into_iter()
        .map(|program| Want {
            program,
            own: match program {
                Program::Traefik => a.traefik_bin.clone(),
                Program::Litestream => a.litestream_bin.clone(),
            },
            needed: a.with.contains(&program) || needs.contains(&(program, true)),
        })
        .collect()
}

/// Runs every step of the plan; returns how many changed (or, with `dry_run`, would).
fn make_node(
    root: &RootSession,
    server: &Server,
    wants: &Wants,
    dry_run: bool,
    ui: Ui,
) -> Result<usize> {
    let mut changed = 0;
    for step in steps::plan(server, wants) {
        if root.step(&step, dry_run, ui)? != Outcome::Already {
            changed += 1;
        }
    }
    if changed == 0 && !dry_run {
        ui.info("   nothing to change: every step was done already");
    }
    Ok(changed)
}

/// The end of a dry run: what would come next, and that nothing was changed.
fn dry_run_done(then: &str, changed: usize, ui: Ui) {
    if ui.json {
        ui.done(
            &format!("Dry run: nothing was changed ({then})"),
            serde_json::json!({"action": "bootstrap", "dry_run": true, "would_change": changed}),
        );
    } else {
        println!("# {then}\nDry run: nothing was changed.");
    }
}

/// What bootstrap says of the server beside its steps: that the app's mounts will be labelled
/// for SELinux, and, with firewalld and a Traefik of the admin's own (`managed`: Some(false);
/// `None` for `--local`, which has no config), that its ports are the admin's to open. Pure.
pub fn server_notes(server: &Server, managed: Option<bool>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(mode) = server.selinux {
        notes.push(format!(
            "   SELinux is {} here: deploy will label what the app's containers share (it mounts \
             the app's shared directories with `:z`, so Podman labels them container_file_t; \
             never a path outside the app's own directory); `deploy check ENV` says whether \
             they are",
            mode.as_str()
        ));
    }
    if server.firewalld && managed == Some(false) {
        notes.push(
            "   firewalld is running here and deploy does not manage Traefik (traefik.manage): \
             open your Traefik's ports yourself, as root, e.g. firewall-cmd --permanent \
             --add-port=443/tcp && firewall-cmd --add-port=443/tcp"
                .into(),
        );
    }
    notes
}

/// Rootless Podman works for the user: it says its version and storage driver.
fn check_podman(root: &RootSession, user: &str, ui: Ui) -> Result<()> {
    let script = format!(
        "{}as_user podman info --format '{{{{.Version.Version}}}} {{{{.Store.GraphDriverName}}}}'",
        steps::user_prelude(user)
    );
    let out = root.run(&script)?;
    if !out.status.success() {
        bail!(
            "rootless Podman does not work for {user}: {}\ncheck `podman info` as {user}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let (version, driver) = (words.next().unwrap_or("?"), words.next().unwrap_or("?"));
    ui.info(&format!(
        "   rootless Podman {version} works for {user}, storage: {driver}"
    ));
    Ok(())
}

/// A login as the deploy user, with the environment's ssh settings.
fn login(target: &Ssh, user: &str) -> Result<()> {
    let out = target.capture("id -un")?;
    let who = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || who != user {
        bail!(
            "the login as {} did not work ({}): check the key and the environment's ssh: \
             options",
            target.destination,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `deploy setup ENV`, with this command line's global options.
fn setup_cli(cli: &Cli, env: &str) -> Cli {
    Cli {
        config: cli.config.clone(),
        lock_wait: cli.lock_wait,
        color: cli.color,
        verbose: cli.verbose,
        quiet: cli.quiet,
        json: cli.json,
        node: false,
        resolved: false,
        command: crate::cli::Command::Setup(crate::cli::SetupArgs {
            env: Some(env.to_string()),
            dry_run: false,
            reset_storage: false,
            server_binary: None,
        }),
    }
}

/// The steps by hand, for a server bootstrap refuses. Pure.
pub fn manual_steps(user: &str) -> String {
    [
        "  1. Install Podman 4.3 or newer, rsync, catatonit, sqlite3, newuidmap/newgidmap \
         (uidmap or shadow-utils), slirp4netns and the user D-Bus session (dbus-user-session \
         or dbus).",
        &format!(
            "  2. useradd -m {user} (never root); give it subordinate ids in /etc/subuid and \
             /etc/subgid if useradd did not (usermod --add-subuids/--add-subgids with a free \
             range); usermod -p '*' {user}."
        ),
        &format!("  3. loginctl enable-linger {user}."),
        "  4. In its ~/.config/containers/storage.conf: [storage] driver = \"overlay\".",
        &format!("  5. Your public key into ~{user}/.ssh/authorized_keys (0600, the user's)."),
        "  6. Then, from here: deploy setup ENV.",
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_of_one_way_are_refused_with_the_other() {
        let parse = |line: &str| crate::help::command().try_get_matches_from(line.split(' '));
        for bad in [
            "deploy bootstrap --sudo --local x",
            "deploy bootstrap --test-node --root r",
            "deploy bootstrap --local x --root r",
            "deploy bootstrap prod --local x",
            "deploy bootstrap",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        for good in [
            "deploy bootstrap --local x --test-node --with traefik,litestream",
            "deploy bootstrap prod --root r --sudo",
        ] {
            assert!(parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn ssh_g_output_gives_the_user() {
        let text = "host web\nuser deploy\nhostname 10.0.0.5\nport 22\n";
        assert_eq!(ssh_config_value(text, "user").as_deref(), Some("deploy"));
        assert_eq!(ssh_config_value(text, "port").as_deref(), Some("22"));
        assert_eq!(ssh_config_value(text, "proxyjump"), None);
    }

    #[test]
    fn the_manual_steps_name_the_user() {
        let m = manual_steps("web");
        assert!(m.contains("useradd -m web") && m.contains("loginctl enable-linger web"));
        assert_eq!(programs::elf_machine("x86_64"), Some(62));
        assert_eq!(programs::elf_machine("s390x"), None);
    }

    #[test]
    fn an_unknown_distribution_or_an_old_podman_is_refused_with_the_manual_steps() {
        let facts = |os: &str, podman: &str| {
            probe::parse(&format!(
                "uid=0\npid1=systemd\ncgroup=v2\nkernel=6.1.0\n{podman}\n{}",
                os.lines().map(|l| format!("os:{l}\n")).collect::<String>()
            ))
        };
        let refused = |f: &probe::Facts| format!("{:#}", check_server(f, "web").unwrap_err());
        let e = refused(&facts(
            "PRETTY_NAME=\"Arch Linux\"\nID=arch\n",
            "podman=5.2.0",
        ));
        assert!(
            e.starts_with("Arch Linux (ID=arch) is not a distribution"),
            "{e}"
        );
        assert!(
            e.contains("Nothing was changed.") && e.contains("useradd -m web"),
            "{e}"
        );
        let rocky = "ID=\"rocky\"\nVERSION_ID=\"9.1\"\n";
        let e = refused(&facts(rocky, "candidate=4.2.0"));
        assert!(
            e.contains("has Podman 4.2 (installed, or what its packages"),
            "{e}"
        );
        assert!(e.contains("Nothing was changed."), "{e}");
        let e = refused(&facts("ID=debian\nVERSION_ID=12\n", "podman=4.2.1"));
        assert!(e.contains("has Podman 4.2"), "{e}");
        let s = check_server(
            &facts(rocky, "candidate=5.2.2\nselinux=1\nfirewalld=running"),
            "web",
        )
        .unwrap();
        assert_eq!(s.family, os::Family::Dnf);
        assert!(s.firewalld && s.selinux == Some(crate::sys::selinux::Mode::Enforcing));
    }

    #[test]
    fn bootstrap_says_it_will_label_for_selinux_and_whose_ports_firewalld_keeps() {
        let plain = Server {
            family: os::Family::Dnf,
            pid1_systemd: true,
            cgroup_v2: true,
            native_overlay: true,
            selinux: None,
            firewalld: false,
        };
        assert!(server_notes(&plain, Some(false)).is_empty());
        let selinux = Server {
            selinux: Some(crate::sys::selinux::Mode::Enforcing),
            ..plain
        };
        let notes = server_notes(&selinux, Some(true));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].starts_with("   SELinux is enforcing here: deploy will label"));
        assert!(notes[0].contains("with `:z`"), "{}", notes[0]);
        let firewalld = Server {
            firewalld: true,
            ..plain
        };
        // A managed Traefik's ports are a step of their own; --local has no Traefik.
        assert!(server_notes(&firewalld, Some(true)).is_empty());
        assert!(server_notes(&firewalld, None).is_empty());
        let said = server_notes(&firewalld, Some(false));
        assert!(
            said[0].contains("open your Traefik's ports yourself"),
            "{said:?}"
        );
    }
}
