//! The app's own sections: hooks, jobs, artifacts, shared, container, health, env and
//! replicate.

use super::{artifact_name, check_relative, invalid, unit_safe, Invalid};
use super::{MAX_STOP_TIMEOUT, RESERVED_IN_RELEASE};
use crate::config::{Container, Health, Hooks, Shared};
use std::collections::BTreeMap;

/// A command run in a one-off container (an `in_gap` hook, a job): it splits into words, the
/// first the program in the image.
fn check_command(command: &str) -> Result<(), String> {
    match crate::sys::shell::sh_split(command) {
        Ok(words) if !words.is_empty() => Ok(()),
        Ok(_) => Err("an empty command: give the program in the image and its arguments".into()),
        Err(e) => Err(format!("`{command}`: {e}")),
    }
}

pub(super) fn validate_hooks(h: &Hooks) -> Result<(), Invalid> {
    for command in &h.in_gap {
        check_command(command).map_err(|m| invalid(&["hooks", "in_gap"], m))?;
    }
    if h.timeout.is_zero() {
        return Err(invalid(&["hooks", "timeout"], "must be above zero"));
    }
    Ok(())
}

/// What a calendar expression may be made of: systemd's words, digits, `*-:/.,~+` and white
/// space, and a time zone's name (`Europe/Berlin`, `America/New_York`). Nothing a unit file
/// reads specially (`%`, `\`, quotes, `$`) gets into its `OnCalendar=` line; whether systemd
/// takes the expression is asked of it on the server (`systemd-analyze calendar`).
fn check_schedule(schedule: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || " *-:/.,~+_".contains(c);
    match schedule.chars().find(|c| !ok(*c)) {
        _ if schedule.trim().is_empty() => {
            Err("is empty: e.g. hourly, *-*-* 03:00 or *:*:0/30 (as OnCalendar= takes it)".into())
        }
        None => Ok(()),
        Some(c) => Err(format!(
            "`{}` contains {c:?}, which no calendar expression holds (OnCalendar= takes e.g. \
             hourly, *-*-* 03:00, *:*:0/30)",
            schedule.escape_debug()
        )),
    }
}

/// Each job's name (it names its units, containers and log), schedule, command and timeout.
pub(super) fn validate_jobs(jobs: &BTreeMap<String, crate::config::Job>) -> Result<(), Invalid> {
    for (name, job) in jobs {
        crate::names::check("job", name).map_err(|m| invalid(&["jobs", name], m))?;
        check_schedule(&job.schedule).map_err(|m| invalid(&["jobs", name, "schedule"], m))?;
        check_command(&job.command).map_err(|m| invalid(&["jobs", name, "command"], m))?;
        if job.timeout.is_zero() {
            return Err(invalid(&["jobs", name, "timeout"], "must be above zero"));
        }
    }
    Ok(())
}

/// Each artifact's name in the release, with the artifact it comes from.
pub(super) fn validate_artifacts(
    artifacts: &[String],
) -> Result<BTreeMap<String, String>, Invalid> {
    if artifacts.is_empty() {
        return Err(invalid(
            &["artifacts"],
            "lists nothing: name the files and directories a release is made of",
        ));
    }
    let mut in_release: BTreeMap<String, String> = BTreeMap::new();
    for a in artifacts {
        let name = artifact_name(a)
            .filter(|n| n != "." && n != "..")
            .ok_or_else(|| invalid(&["artifacts"], format!("`{a}` has no file name")))?;
        if RESERVED_IN_RELEASE.contains(&name.as_str()) {
            return Err(invalid(
                &["artifacts"],
                format!("`{a}`: the name `{name}` is reserved for deploy's own files"),
            ));
        }
        if let Some(other) = in_release.insert(name.clone(), a.clone()) {
            return Err(invalid(
                &["artifacts"],
                format!("`{other}` and `{a}` would both be uploaded as `{name}`"),
            ));
        }
    }
    Ok(in_release)
}

pub(super) fn validate_shared(
    shared: &Shared,
    in_release: &BTreeMap<String, String>,
) -> Result<(), Invalid> {
    for (kind, list) in [("dirs", &shared.dirs), ("files", &shared.files)] {
        for s in list {
            unit_safe(s).map_err(|m| invalid(&["shared", kind], m))?;
            if !check_relative(s) {
                return Err(invalid(
                    &["shared", kind],
                    format!("`{s}` must be a relative path inside shared/, without `..`"),
                ));
            }
            let top = s.split('/').next().unwrap_or(s);
            if in_release.contains_key(top) || RESERVED_IN_RELEASE.contains(&top) {
                return Err(invalid(
                    &["shared", kind],
                    format!("`{s}` clashes with an artifact or a reserved name in the release"),
                ));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in shared.dirs.iter().chain(&shared.files) {
        if !seen.insert(s) {
            return Err(invalid(&["shared"], format!("`{s}` is listed twice")));
        }
    }
    Ok(())
}

pub(super) fn validate_container(container: &Container, shared: &Shared) -> Result<(), Invalid> {
    if container.port == 0 {
        return Err(invalid(&["container", "port"], "must be 1 to 65535"));
    }
    if container.stop_timeout > MAX_STOP_TIMEOUT {
        return Err(invalid(
            &["container", "stop_timeout"],
            "must be at most 5m (the unit gives a stop that long plus 30s)",
        ));
    }
    for (dir, target) in &container.mounts {
        unit_safe(target).map_err(|m| invalid(&["container", "mounts", dir], m))?;
        if !shared.dirs.contains(dir) {
            return Err(invalid(
                &["container", "mounts"],
                format!("`{dir}` is not one of shared.dirs ({:?})", shared.dirs),
            ));
        }
        if !target.starts_with('/') {
            return Err(invalid(
                &["container", "mounts", dir],
                format!("`{target}` must be an absolute path inside the container"),
            ));
        }
    }
    Ok(())
}

pub(super) fn validate_health(health: &Health) -> Result<(), Invalid> {
    if !health.path.starts_with('/') {
        return Err(invalid(&["health", "path"], "must start with `/`"));
    }
    if health.interval.is_zero() || health.timeout < health.interval {
        return Err(invalid(
            &["health", "timeout"],
            "must be at least health.interval, and the interval above zero",
        ));
    }
    Ok(())
}

/// A name an env file can hold: letters, digits and `_`, not starting with a digit; `DEPLOY_`
/// is deploy's.
pub(super) fn validate_env(e: &crate::config::Env) -> Result<(), Invalid> {
    let names = e
        .clear
        .keys()
        .map(|k| ("clear", k))
        .chain(e.secret.iter().map(|k| ("secret", k)));
    for (part, name) in names {
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(invalid(
                &["env", part],
                format!("`{name}` is not a variable name (letters, digits and _)"),
            ));
        }
        if name.starts_with("DEPLOY_") {
            return Err(invalid(
                &["env", part],
                format!("`{name}`: DEPLOY_ names are deploy's"),
            ));
        }
    }
    if let Some(both) = e.secret.iter().find(|n| e.clear.contains_key(*n)) {
        return Err(invalid(
            &["env", "secret"],
            format!("`{both}` is also in env.clear: keep one"),
        ));
    }
    Ok(())
}

/// A URL Litestream takes, and only the keys of its kind.
pub(super) fn validate_replicate(r: &crate::config::Replicate) -> Result<(), Invalid> {
    let scheme = r.url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    let rest = r.url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let ok = match scheme {
        "sftp" => rest.contains('@') && rest.contains('/'),
        "s3" => !rest.is_empty() && !rest.starts_with('/'),
        "file" => rest.starts_with('/'),
        _ => false,
    };
    // A `/` in an SFTP password must be written %2F: Litestream, like any URL parser, would
    // take it for the start of the path (and the password would be shown as part of the URL).
    if scheme == "sftp" && rest.rfind('@').is_some_and(|at| rest[..at].contains('/')) {
        return Err(invalid(
            &["replicate", "url"],
            "the part before `@` holds a `/`: write a `/` of the password as %2F",
        ));
    }
    if !ok || r.url.chars().any(|c| c.is_whitespace()) {
        return Err(invalid(
            &["replicate", "url"],
            format!(
                "`{}`: use sftp://user@host:port/path, s3://bucket/path or file:///path",
                crate::config::replica_url::shown_url(&r.url)
            ),
        ));
    }
    if (r.key.is_some() || r.host_key.is_some()) && scheme != "sftp" {
        return Err(invalid(
            &["replicate", "key"],
            "key and host_key are for an sftp:// replica",
        ));
    }
    if (r.endpoint.is_some() || r.region.is_some()) && scheme != "s3" {
        return Err(invalid(
            &["replicate", "endpoint"],
            "endpoint and region are for an s3:// replica",
        ));
    }
    Ok(())
}
