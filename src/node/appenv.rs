//! The app's variables of a release (`env.clear`, `env.secret`): an env file in the release's
//! `.deploy/` (0600, outside the image's build context), which the container reads after
//! `shared/.env`. Secret values come from the environment of `deploy release` where it was
//! typed, read once there ([`SecretValues`]); they are never on a command line, in the config sent to a node, or in any output.

use crate::config::Env;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The file's name in the release's `.deploy/`.
pub const FILE: &str = "env";

/// The env file's text: the clear values, then the secrets. Pure.
pub fn text(env: &Env, secrets: &SecretValues) -> Result<String> {
    let mut out = String::from("# Written by deploy: env.clear and env.secret of this release.\n");
    for (name, value) in &env.clear {
        out += &format!("{name}={value}\n");
    }
    for name in &env.secret {
        out += &format!("{name}={}\n", secrets.checked(name)?);
    }
    Ok(out)
}

/// The env.secret values of a run, read once where they were typed: on the laptop from its
/// environment (and sent to a node as [`SecretValues::to_text`], which the node
/// [`SecretValues::parse`]s back), or, on a local environment, from this process's
/// environment. Its `Debug` names the secrets, never their values.
#[derive(Clone, Default, PartialEq)]
pub struct SecretValues(BTreeMap<String, Option<String>>);

impl SecretValues {
    /// The values of `names` in this process's environment (an unset one is noted as unset).
    pub fn from_env(names: &[String]) -> SecretValues {
        SecretValues::from_lookup(names, |n| std::env::var(n).ok())
    }

    /// The values of `names`, each looked up with `lookup`. Pure.
    pub fn from_lookup(names: &[String], lookup: impl Fn(&str) -> Option<String>) -> SecretValues {
        SecretValues(names.iter().map(|n| (n.clone(), lookup(n))).collect())
    }

    /// What a node-side run uses: the values in the file a laptop sent (`--secrets`, read and
    /// removed at once), or, without one (a local environment), those of `names` in this
    /// process's environment.
    pub fn on_node(sent: Option<&Path>, names: &[String]) -> Result<SecretValues> {
        match sent {
            Some(path) => read_sent(path),
            None => Ok(SecretValues::from_env(names)),
        }
    }

    /// The value of `name`, if it is set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.as_deref()
    }

    /// The value of `name` for an env file: refused when it is unset or holds a control
    /// character (the error never shows the value).
    fn checked(&self, name: &str) -> Result<&str> {
        let Some(value) = self.get(name) else {
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
        Ok(value)
    }

    /// Every value set and fit for an env file, or the first that is not.
    pub fn require_all(&self) -> Result<()> {
        self.0.keys().try_for_each(|n| self.checked(n).map(drop))
    }

    /// The values as `NAME=value` lines, what a node is sent; refused as [`text`] refuses
    /// them (unset, or a control character). Pure.
    pub fn to_text(&self) -> Result<String> {
        let mut out = String::from("# Written by deploy: env.secret values for one run.\n");
        for name in self.0.keys() {
            out += &format!("{name}={}\n", self.checked(name)?);
        }
        Ok(out)
    }

    /// The values of [`SecretValues::to_text`]'s text. Pure.
    pub fn parse(text: &str) -> SecretValues {
        SecretValues(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
        )
    }
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self
            .0
            .iter()
            .map(|(n, v)| (n, if v.is_some() { "<set>" } else { "<unset>" }));
        f.debug_map().entries(shown).finish()
    }
}

/// Reads a secrets file a laptop sent and removes it at once.
fn read_sent(path: &Path) -> Result<SecretValues> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secrets sent to {}", path.display()));
    let _ = std::fs::remove_file(path);
    Ok(SecretValues::parse(&text?))
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
        let t = text(&env(), &one("s3cret")).unwrap();
        assert!(t.ends_with("RUST_LOG=info\nAPI_KEY=s3cret\n"), "{t}");
    }

    #[test]
    fn a_missing_secret_is_named_and_its_value_never_shown() {
        let unset = SecretValues::from_lookup(&["API_KEY".into()], |_| None);
        let e = text(&env(), &unset).unwrap_err().to_string();
        assert!(
            e.contains("env.secret `API_KEY` is not set") && e.contains("op run"),
            "{e}"
        );
        let e = text(&env(), &one("a\nb")).unwrap_err().to_string();
        assert!(
            e.contains("control character") && !e.contains("a\nb"),
            "{e}"
        );
        let e = text(&env(), &one("a\rb")).unwrap_err().to_string();
        assert!(e.contains("control character"), "{e}");
        // What is sent is refused alike, before it leaves.
        let e = one("a\nb").to_text().unwrap_err().to_string();
        assert!(
            e.contains("control character") && !e.contains("a\nb"),
            "{e}"
        );
        assert!(unset.to_text().is_err() && unset.require_all().is_err());
    }

    fn one(value: &str) -> SecretValues {
        SecretValues::from_lookup(&["API_KEY".into()], |_| Some(value.to_string()))
    }

    #[test]
    fn what_is_sent_is_parsed_back_the_same() {
        let names: Vec<String> = ["API_KEY", "EMPTY", "WITH_EQ"].map(String::from).into();
        let sent = SecretValues::from_lookup(&names, |n| {
            Some(match n {
                "API_KEY" => "s3cret with spaces # and ünïcode".to_string(),
                "EMPTY" => String::new(),
                _ => "a=b==c".to_string(),
            })
        });
        let text = sent.to_text().unwrap();
        assert_eq!(SecretValues::parse(&text), sent, "{text}");
        assert_eq!(SecretValues::parse(&text).get("WITH_EQ"), Some("a=b==c"));
    }

    #[test]
    fn debug_names_the_secrets_and_never_shows_a_value() {
        let names: Vec<String> = ["API_KEY", "GONE"].map(String::from).into();
        let v = SecretValues::from_lookup(&names, |n| (n == "API_KEY").then(|| "s3cret".into()));
        let shown = format!("{v:?} {v:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("API_KEY") && shown.contains("<set>") && shown.contains("<unset>"),
            "{shown}"
        );
    }
}
