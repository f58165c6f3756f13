//! The `environments` section: each one's name, host, SSH options, path and ports.

use super::{invalid, Invalid, UNSAFE_PATH_CHARS};
use crate::config::{parse_host, Config, Environment, Host};

/// Every environment: at least one, each with a name, a host, SSH options, a path and ports
/// that work.
pub(super) fn validate_environments(c: &Config) -> Result<(), Invalid> {
    if c.environments.is_empty() {
        return Err(invalid(&["environments"], "defines no environment"));
    }
    for (name, env) in &c.environments {
        // A preview's derived config names it `ENV/NAME`; a file never may.
        let a_preview = c.preview_of.is_some() && crate::names::split_preview(name).is_some();
        if !a_preview {
            crate::names::check("environment", name)
                .map_err(|m| invalid(&["environments", name], m))?;
        }
        let host =
            parse_host(&env.host).map_err(|m| invalid(&["environments", name, "host"], m))?;
        validate_ssh(name, env)?;
        if host == Host::Local && env.ssh.is_some() {
            return Err(invalid(
                &["environments", name, "ssh"],
                "is for a remote host; `host: local` is this machine",
            ));
        }
        validate_path(name, &env.path)?;
        validate_ports(c, name, env)?;
    }
    Ok(())
}

/// `ssh.options` without `'`, `ssh.jump` hops that ssh -J takes.
fn validate_ssh(name: &str, env: &Environment) -> Result<(), Invalid> {
    if let Some(o) = env
        .ssh
        .as_ref()
        .and_then(|s| s.options.iter().find(|o| o.contains('\'')))
    {
        return Err(invalid(
            &["environments", name, "ssh", "options"],
            format!(
                "`{o}` has a `'`: ssh reads quotes in its options itself, and rsync passes \
                 them on to it; use double quotes around a value with spaces \
                 (UserKnownHostsFile=\"/a b/known_hosts\")"
            ),
        ));
    }
    if let Some(jump) = env.ssh.as_ref().and_then(|s| s.jump.as_deref()) {
        let hop_is_bad = |hop: &str| {
            hop.is_empty()
                || hop.contains(|c: char| c.is_whitespace() || c.is_control())
                || hop.split(['@', '/']).any(|part| part.starts_with('-'))
        };
        if jump.split(',').any(hop_is_bad) {
            return Err(invalid(
                &["environments", name, "ssh", "jump"],
                format!(
                    "`{}`: ssh -J takes [user@]host[:port] hops, separated by commas, with \
                     no white space and no part beginning with `-` (ssh would read it as an \
                     option)",
                    jump.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}

/// The app's directory: a directory of its own, absolute or under `~/`, that unit files can
/// carry.
fn validate_path(name: &str, path: &str) -> Result<(), Invalid> {
    let plain = path.trim_end_matches('/');
    if plain.is_empty() || plain == "~" || path.split('/').any(|c| c == ".." || c == ".") {
        return Err(invalid(
            &["environments", name, "path"],
            format!(
                "`{path}` is the home directory, `/`, or has `.` or `..` in it: give the app a \
                 directory of its own, such as ~/web/APP"
            ),
        ));
    }
    if !(path.starts_with('/') || path.starts_with("~/")) {
        return Err(invalid(
            &["environments", name, "path"],
            format!("`{path}` must be absolute or start with `~/`"),
        ));
    }
    if let Some(bad) = path.chars().find(|c| UNSAFE_PATH_CHARS.contains(*c)) {
        return Err(invalid(
            &["environments", name, "path"],
            format!("`{path}` contains {bad:?}, which unit files cannot carry safely"),
        ));
    }
    Ok(())
}

/// The app's port, and the gap server's beside it when Traefik fronts the app.
fn validate_ports(c: &Config, name: &str, env: &Environment) -> Result<(), Invalid> {
    if env.port == 0 {
        return Err(invalid(
            &["environments", name, "port"],
            "must be 1 to 65535",
        ));
    }
    if c.traefik.is_some() && (env.gap_port() == env.port || env.gap_port() == 0) {
        return Err(invalid(
            &["environments", name, "gap_port"],
            "must differ from `port` (and be 1 to 65535): the gap server listens there",
        ));
    }
    Ok(())
}
