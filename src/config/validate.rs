//! Validation of a parsed configuration, one function per section; a problem is reported with
//! its key, which `parse` turns into the key's line in the file.

use super::{parse_host, Config, Container, Health, Hooks, Host, Shared, Traefik};
use std::collections::BTreeMap;
use std::path::Path;
use yaml_serde::Value;

pub(super) struct Invalid {
    pub(super) key: Vec<String>,
    pub(super) message: String,
}

fn invalid(key: &[&str], message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
    }
}

/// App names become unit, container, image and router names (see `names`).
pub fn check_app_name(app: &str) -> Result<(), String> {
    crate::names::check("app", app)
}

/// A relative path inside a release or `shared/`: no `..`, not absolute, not empty.
fn check_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && !path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// The name an artifact takes inside the release: its base name.
pub fn artifact_name(artifact: &str) -> Option<String> {
    Path::new(artifact.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// The port of an address like `:80`, `127.0.0.1:8000` or `[::1]:443`.
pub fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':')?.1.parse().ok().filter(|p| *p != 0)
}

/// Names inside a release that deploy itself uses.
pub const RESERVED_IN_RELEASE: &[&str] = &[".deploy"];

/// Validates every section; the first problem names its key. `values`: what `c` was read from
/// (every string in it is checked as one, first: [`validate_characters`]).
pub(super) fn validate(c: &Config, values: &Value) -> Result<(), Invalid> {
    validate_characters(values, &mut Vec::new())?;
    check_app_name(&c.app).map_err(|m| invalid(&["app"], m))?;
    validate_hooks(&c.hooks)?;
    validate_jobs(&c.jobs)?;
    if c.keep_releases == 0 {
        return Err(invalid(
            &["keep_releases"],
            "must be at least 1 (current and previous are always kept anyway)",
        ));
    }
    if let Some(b) = &c.build {
        if b.command.trim().is_empty() {
            return Err(invalid(&["build", "command"], "is empty"));
        }
    }
    let in_release = validate_artifacts(&c.artifacts)?;
    validate_shared(&c.shared, &in_release)?;
    validate_container(&c.container, &c.shared)?;
    validate_health(&c.health)?;
    if let Some(t) = &c.traefik {
        validate_traefik(t)?;
    }
    validate_env(&c.env)?;
    super::preview::check(&c.preview).map_err(|(key, m)| invalid(&["preview", key], m))?;
    validate_env(&c.preview.env).map_err(|mut i| {
        i.key.insert(0, "preview".into());
        i
    })?;
    if let Some(r) = &c.replicate {
        validate_replicate(r)?;
    }
    validate_environments(c)
}

/// A URL Litestream takes, and only the keys of its kind.
fn validate_replicate(r: &crate::config::Replicate) -> Result<(), Invalid> {
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
                super::replica_url::shown_url(&r.url)
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

/// A name an env file can hold: letters, digits and `_`, not starting with a digit; `DEPLOY_`
/// is deploy's.
fn validate_env(e: &crate::config::Env) -> Result<(), Invalid> {
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

/// No value of the config (nor key) holds a control character: the node writes them into files
/// read line by line (units, where systemd ends a line at `\n`, `\r` or NUL and what follows
/// would be a line of its own, a new `ExecStartPre=`; Traefik's and Litestream's configs; env
/// files), whether written in the file or from a `${VAR}`. The local hooks
/// (`hooks.before_upload`, `hooks.after_release`) run in a shell here and may be several lines;
/// `build.command` (a shell here too), `hooks.in_gap` and `jobs.NAME.command` (split into words
/// that go to podman as arguments, never into a file) may hold tabs and newlines, which separate
/// words there.
fn validate_characters(value: &Value, key: &mut Vec<String>) -> Result<(), Invalid> {
    let allowed: &[char] = match super::as_top_level(key) {
        [h, k, ..] if h == "hooks" && (k == "before_upload" || k == "after_release") => {
            return Ok(())
        }
        [h, k, ..] if (h == "hooks" && k == "in_gap") || (h == "build" && k == "command") => {
            &['\t', '\n']
        }
        [j, _, k, ..] if j == "jobs" && k == "command" => &['\t', '\n'],
        _ => &[],
    };
    let no_control = |text: &str, key: &[String]| match text
        .chars()
        .find(|c| c.is_control() && !allowed.contains(c))
    {
        None => Ok(()),
        Some(c) => Err(Invalid {
            key: key.to_vec(),
            message: format!(
                "holds a control character (`{}`), which the unit, Traefik, Litestream and env \
                 files that values are written into cannot carry safely (systemd ends a line at \
                 `\\n`, `\\r` or NUL, and reads what follows as a line of its own): remove it",
                c.escape_debug()
            ),
        }),
    };
    match value {
        Value::String(s) => no_control(s, key),
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                key.push(format!("[{i}]"));
                validate_characters(item, key)?;
                key.pop();
            }
            Ok(())
        }
        Value::Mapping(map) => {
            for (k, v) in map {
                key.push(super::key_name(k));
                no_control(key.last().expect("pushed"), key)?;
                validate_characters(v, key)?;
                key.pop();
            }
            Ok(())
        }
        Value::Tagged(t) => validate_characters(&t.value, key),
        _ => Ok(()),
    }
}

/// A command run in a one-off container (an `in_gap` hook, a job): it splits into words, the
/// first the program in the image.
fn check_command(command: &str) -> Result<(), String> {
    match crate::sys::shell::sh_split(command) {
        Ok(words) if !words.is_empty() => Ok(()),
        Ok(_) => Err("an empty command: give the program in the image and its arguments".into()),
        Err(e) => Err(format!("`{command}`: {e}")),
    }
}

fn validate_hooks(h: &Hooks) -> Result<(), Invalid> {
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
fn validate_jobs(jobs: &BTreeMap<String, crate::config::Job>) -> Result<(), Invalid> {
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
fn validate_artifacts(artifacts: &[String]) -> Result<BTreeMap<String, String>, Invalid> {
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

fn validate_shared(shared: &Shared, in_release: &BTreeMap<String, String>) -> Result<(), Invalid> {
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

fn validate_container(container: &Container, shared: &Shared) -> Result<(), Invalid> {
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

fn validate_health(health: &Health) -> Result<(), Invalid> {
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

fn validate_environments(c: &Config) -> Result<(), Invalid> {
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
        if host == Host::Local && env.ssh.is_some() {
            return Err(invalid(
                &["environments", name, "ssh"],
                "is for a remote host; `host: local` is this machine",
            ));
        }
        let plain = env.path.trim_end_matches('/');
        if plain.is_empty() || plain == "~" || env.path.split('/').any(|c| c == ".." || c == ".") {
            return Err(invalid(
                &["environments", name, "path"],
                format!(
                    "`{}` is the home directory, `/`, or has `.` or `..` in it: give the app a \
                     directory of its own, such as ~/web/APP",
                    env.path
                ),
            ));
        }
        if !(env.path.starts_with('/') || env.path.starts_with("~/")) {
            return Err(invalid(
                &["environments", name, "path"],
                format!("`{}` must be absolute or start with `~/`", env.path),
            ));
        }
        if let Some(bad) = env.path.chars().find(|c| UNSAFE_PATH_CHARS.contains(*c)) {
            return Err(invalid(
                &["environments", name, "path"],
                format!(
                    "`{}` contains {bad:?}, which unit files cannot carry safely",
                    env.path
                ),
            ));
        }
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
    }
    Ok(())
}

fn validate_traefik(t: &Traefik) -> Result<(), Invalid> {
    if t.rule.trim().is_empty() {
        return Err(invalid(
            &["traefik", "rule"],
            "is empty: e.g. Host(`my-app.example.com`)",
        ));
    }
    if t.api.starts_with("https://") {
        return Err(invalid(
            &["traefik", "api"],
            format!(
                "`{}`: deploy talks to Traefik's API without TLS; serve the API on the loopback \
                 (e.g. http://127.0.0.1:8099, as traefik.manage does) and name that",
                t.api
            ),
        ));
    }
    if !t.api.starts_with("http://") {
        return Err(invalid(
            &["traefik", "api"],
            format!("`{}` is not an http:// URL", t.api),
        ));
    }
    if !on_the_loopback(&t.api) {
        return Err(invalid(
            &["traefik", "api"],
            format!(
                "`{}`: deploy talks to Traefik's API without TLS or credentials, so it must be \
                 on the server's loopback, named by its address (deploy resolves no names): \
                 http://127.0.0.1:PORT (any of 127.0.0.0/8) or http://[::1]:PORT",
                t.api
            ),
        ));
    }
    if t.entrypoints.is_empty() {
        return Err(invalid(&["traefik", "entrypoints"], "names no entry point"));
    }
    // Entry point names are written into Traefik's YAML as keys: plain words only.
    let plain = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let managed: Vec<String> = t
        .managed()
        .map(|m| m.entrypoints.into_keys().collect())
        .unwrap_or_default();
    for ep in t.entrypoints.iter().chain(&managed) {
        if !plain(ep) {
            return Err(invalid(
                &["traefik", "entrypoints"],
                format!(
                    "`{}` is not a usable entry point name: letters, digits, `-` and `_`",
                    ep.escape_debug()
                ),
            ));
        }
    }
    match &t.tls {
        None | Some(serde_json::Value::Bool(_)) | Some(serde_json::Value::Object(_)) => {}
        Some(other) => {
            return Err(invalid(
                &["traefik", "tls"],
                format!("must be true, false or a mapping of Traefik's TLS options, not {other}"),
            ))
        }
    }
    if t.hold.is_zero() {
        return Err(invalid(&["traefik", "hold"], "must be above zero"));
    }
    validate_https(t)?;
    if let Some(m) = t.managed() {
        for ep in &t.entrypoints {
            if !m.entrypoints.contains_key(ep) {
                return Err(invalid(
                    &["traefik", "entrypoints"],
                    format!("`{ep}` is not one of the entry points of traefik.manage"),
                ));
            }
        }
        for (name, address) in &m.entrypoints {
            if port_of(address).is_none() || name == "traefik" {
                return Err(invalid(
                    &["traefik", "manage", "entrypoints", name],
                    format!("`{address}` is not an address like \":80\" or \"127.0.0.1:8000\" (and `traefik` is the API's name)"),
                ));
            }
        }
    }
    Ok(())
}

/// Whether an `http://` URL names a loopback address (127.0.0.0/8, `[::1]`), with a port or
/// without; a host name, even `localhost`, does not. Pure.
fn on_the_loopback(url: &str) -> bool {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let rest = url.strip_prefix("http://").unwrap_or_default();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let ip = match authority.parse::<SocketAddr>() {
        Ok(a) => Some(a.ip()),
        Err(_) => match authority
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
        {
            Some(v6) => v6.parse::<IpAddr>().ok().filter(IpAddr::is_ipv6),
            None => authority.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        },
    };
    ip.is_some_and(|ip| ip.is_loopback())
}

/// `acme` and `redirect_https` are the managed Traefik's, on its `web`/`websecure` entry points.
fn validate_https(t: &Traefik) -> Result<(), Invalid> {
    use crate::config::AcmeChallenge;
    let (needs, key) = match (&t.acme, t.redirect_https) {
        (Some(a), _) if a.challenge == AcmeChallenge::Http => (vec!["web"], "acme"),
        (Some(_), _) => (vec!["websecure"], "acme"),
        (None, true) => (vec![], "redirect_https"),
        (None, false) => return Ok(()),
    };
    let Some(m) = t.managed() else {
        return Err(invalid(
            &["traefik", key],
            "needs traefik.manage (deploy writes it into the Traefik it runs); with your own \
             Traefik, define a resolver there and set traefik.tls: {certResolver: NAME}",
        ));
    };
    let redirect: &[&str] = if t.redirect_https {
        &["web", "websecure"]
    } else {
        &[]
    };
    for ep in needs.iter().chain(redirect) {
        if !m.entrypoints.contains_key(*ep) {
            return Err(invalid(
                &["traefik", key],
                format!("needs the entry point `{ep}` in traefik.manage.entrypoints"),
            ));
        }
    }
    if let Some(a) = &t.acme {
        if !a.email.contains('@') {
            return Err(invalid(
                &["traefik", "acme", "email"],
                format!("`{}` is not an email address", a.email),
            ));
        }
        if !a.ca_server.starts_with("https://") {
            return Err(invalid(
                &["traefik", "acme", "ca_server"],
                "must be an https:// URL",
            ));
        }
        // Written into Traefik's unit (an `Environment=` line): one word, nothing systemd
        // would split or unquote there.
        if let Some(ca) = &a.ca_certificates {
            if let Some(c) = ca
                .chars()
                .find(|c| c.is_whitespace() || ['"', '\'', '\\'].contains(c))
            {
                return Err(invalid(
                    &["traefik", "acme", "ca_certificates"],
                    format!(
                        "`{}` contains {c:?}: give a path without white space or quotes",
                        ca.escape_debug()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The longest `container.stop_timeout`: the app's unit, which no release rewrites, allows a
/// stop this long plus 30 s.
pub const MAX_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Characters a node path may not contain: it is written into unit files unquoted.
pub const UNSAFE_PATH_CHARS: &str = " \t\n\"'\\%$;`";

/// What is wrong with a value that goes into the unit file and podman's arguments unquoted (a
/// mount's target, a shared entry's name): a control character would start a new line of the
/// unit (`ExecStartPost=`...), `%` and `$` are expanded by systemd, white space splits an
/// argument, and `:` separates the parts of podman's `--volume`.
fn unit_safe(value: &str) -> Result<(), String> {
    match value.chars().find(|c| {
        c.is_control() || UNSAFE_PATH_CHARS.contains(*c) || *c == ':' || c.is_whitespace()
    }) {
        None => Ok(()),
        Some(c) => Err(format!(
            "`{}` contains {c:?}, which the app's unit file and podman's arguments cannot carry \
             (no white space, control characters, quotes, `\\`, `%`, `$`, `;`, backquotes or `:`)",
            value.escape_debug()
        )),
    }
}

/// Finds the 1-based line of a nested key (e.g. `environments.prod.port`) in YAML text: each
/// component is searched below the previous one, at a deeper indentation.
pub fn line_of(text: &str, key: &[String]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut min_indent = 0;
    let mut found = None;
    for (depth, k) in key.iter().enumerate() {
        let hit = lines.iter().enumerate().skip(start).find(|(_, l)| {
            let indent = l.len() - l.trim_start().len();
            let t = l.trim_start().trim_start_matches("- ");
            (depth == 0 || indent >= min_indent)
                && (t.starts_with(&format!("{k}:")) || t.starts_with(&format!("\"{k}\":")))
        });
        match hit {
            Some((i, l)) => {
                found = Some(i + 1);
                start = i + 1;
                min_indent = l.len() - l.trim_start().len() + 1;
            }
            None => return found,
        }
    }
    found
}

/// The key at a 1-based line of YAML text (the inverse of [`line_of`]): that line's key and the
/// key of each less indented line above it. A list item adds nothing (its parent's key names
/// it). Pure.
pub(super) fn key_at(text: &str, line: usize) -> Vec<String> {
    let mut key = Vec::new();
    let mut indent = usize::MAX;
    let lines: Vec<&str> = text.lines().take(line).collect();
    for l in lines.into_iter().rev() {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let at = l.len() - t.len();
        // An item is nested in the key above it, even at the same indentation.
        let (at, t) = match t.strip_prefix("- ") {
            Some(_) => (at + 1, ""),
            None => (at, t),
        };
        if at >= indent {
            continue;
        }
        indent = at;
        if let Some((k, _)) = t.split_once(':') {
            key.push(k.trim().trim_matches(['"', '\'']).to_string());
        }
    }
    key.reverse();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port_of(":80"), Some(80));
        assert_eq!(port_of("127.0.0.1:8000"), Some(8000));
        assert_eq!(port_of("[::1]:443"), Some(443));
        assert_eq!(port_of("localhost"), None);
    }
}
