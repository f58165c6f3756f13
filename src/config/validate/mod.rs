//! Validation of a parsed configuration, one function per section (`app`: the app's sections,
//! `environments`, `traefik`); a problem is reported with its key, which `parse` turns into the
//! key's line in the file (`keys`).

mod app;
mod environments;
mod keys;
mod traefik;

pub(super) use keys::key_at;
pub use keys::line_of;

use super::Config;
use std::path::Path;
use yaml_serde::Value;

pub(super) struct Invalid {
    pub(super) key: Vec<String>,
    pub(super) message: String,
}

pub(super) fn invalid(key: &[&str], message: impl Into<String>) -> Invalid {
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
pub(super) fn check_relative(p: &str) -> bool {
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
    app::validate_hooks(&c.hooks)?;
    app::validate_jobs(&c.jobs)?;
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
    let in_release = app::validate_artifacts(&c.artifacts)?;
    app::validate_shared(&c.shared, &in_release)?;
    app::validate_container(&c.container, &c.shared)?;
    app::validate_health(&c.health)?;
    if let Some(t) = &c.traefik {
        traefik::validate_traefik(t)?;
    }
    app::validate_env(&c.env)?;
    super::preview::check(&c.preview).map_err(|(key, m)| invalid(&["preview", key], m))?;
    app::validate_env(&c.preview.env).map_err(|mut i| {
        i.key.insert(0, "preview".into());
        i
    })?;
    if let Some(r) = &c.replicate {
        app::validate_replicate(r)?;
    }
    environments::validate_environments(c)
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

/// The longest `container.stop_timeout`: the app's unit, which no release rewrites, allows a
/// stop this long plus 30 s.
pub const MAX_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Characters a node path may not contain: it is written into unit files unquoted.
pub const UNSAFE_PATH_CHARS: &str = " \t\n\"'\\%$;`";

/// What is wrong with a value that goes into the unit file and podman's arguments unquoted (a
/// mount's target, a shared entry's name): a control character would start a new line of the
/// unit (`ExecStartPost=`...), `%` and `$` are expanded by systemd, white space splits an
/// argument, and `:` separates the parts of podman's `--volume`.
pub(super) fn unit_safe(value: &str) -> Result<(), String> {
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
