//! The app's variables of a release (`env.clear`, `env.secret`): an env file in the release's
//! `.deploy/` (0600, outside the image's build context), which the container reads after
//! `shared/.env`. Secret values come from the environment of `deploy release` where it was
//! typed; they are never on a command line, in the config sent to a node, or in any output.

use crate::config::Env;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The file's name in the release's `.deploy/`.
pub const FILE: &str = "env";

/// The env file's text: the clear values, then the secrets, each looked up with `secret`. Pure.
pub fn text(env: &Env, secret: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::from("# Written by deploy: env.clear and env.secret of this release.\n");
    for (name, value) in &env.clear {
        out += &format!("{name}={value}\n");
    }
    for name in &env.secret {
        let Some(value) = secret(name) else {
            bail!(
                "env.secret `{name}` is not set in this shell: export it, or run deploy under \
                 your secret store (`op run -- deploy release ...`, `doppler run -- deploy \
                 release ...`)"
            );
        };
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            bail!(
                "env.secret `{name}` holds a control character ({c:?}): an env file holds one \
                 line per variable, and systemd ends a line at a carriage return too"
            );
        }
        out += &format!("{name}={value}\n");
    }
    Ok(out)
}

/// Where a node-side run finds the env.secret values: in the file a laptop sent (`--secrets`),
/// or, without one (a local environment), in this process's environment.
pub struct Secrets(Option<BTreeMap<String, String>>);

impl Secrets {
    /// Reads (and removes) the file that was sent, if one was.
    pub fn new(sent: Option<&Path>) -> Result<Secrets> {
        Ok(Secrets(sent.map(read_secrets).transpose()?))
    }

    pub fn get(&self, name: &str) -> Option<String> {
        match &self.0 {
            Some(sent) => sent.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }
}

/// Reads a secrets file a laptop sent and removes it at once.
fn read_secrets(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secrets sent to {}", path.display()));
    let _ = std::fs::remove_file(path);
    Ok(text?
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            clear: BTreeMap::from([("RUST_LOG".to_string(), "info".to_string())]),
            secret: vec!["API_KEY".into()],
        }
    }

    #[test]
    fn clear_then_secret_values_one_per_line() {
        let t = text(&env(), |n| (n == "API_KEY").then(|| "s3cret".to_string())).unwrap();
        assert!(t.ends_with("RUST_LOG=info\nAPI_KEY=s3cret\n"), "{t}");
    }

    #[test]
    fn a_missing_secret_is_named_and_its_value_never_shown() {
        let e = text(&env(), |_| None).unwrap_err().to_string();
        assert!(
            e.contains("env.secret `API_KEY` is not set") && e.contains("op run"),
            "{e}"
        );
        let e = text(&env(), |_| Some("a\nb".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("control character") && !e.contains("a\nb"),
            "{e}"
        );
        let e = text(&env(), |_| Some("a\rb".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("control character"), "{e}");
    }
}
