//! Reading a config: the file, its `${VAR}` expanded, parsed and validated for every
//! environment; an error names its key and line.

use super::overrides::{config_of, dotted, for_environment, without_location};
use super::validate::{key_at, line_of, validate, Invalid};
use super::{expand, explain, Config, Environment, DEFAULT_FILE};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A loaded configuration with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The config's values, `${VAR}` expanded (once, where deploy was typed; `hooks` as
    /// written): what each environment's config is merged from, what `deploy config` prints,
    /// and, as [`Loaded::resolved_text`], what a remote node is sent.
    pub values: yaml_serde::Value,
    /// The config file's directory: artifacts and the build command are relative to it.
    pub dir: PathBuf,
    pub file: PathBuf,
}

impl Loaded {
    /// This configuration as the environment `name` (or the only one) sees it: its overrides
    /// merged over the top level.
    pub fn for_environment(&self, name: Option<&str>) -> Result<Loaded> {
        let env = match name.filter(|n| crate::names::split_preview(n).is_some()) {
            Some(preview) => preview.to_string(),
            None => self.environment(name)?.0,
        };
        let config = for_environment(&self.values, &env)
            .with_context(|| format!("invalid config {}", self.file.display()))?;
        Ok(Loaded {
            config,
            ..self.clone()
        })
    }

    /// The resolved values as a config file, for a remote node: read there by
    /// [`load_resolved`], which expands nothing again (`$${X}` written here is `${X}` there).
    pub fn resolved_text(&self) -> Result<String> {
        Ok(format!(
            "# Resolved where deploy was typed: nothing in it is expanded again.\n{}",
            yaml_serde::to_string(&self.values)?
        ))
    }

    /// The same with only the environment `env` under `environments`: what a server is sent
    /// and keeps, so that no server holds another environment's values.
    pub fn resolved_text_for(&self, env: &str) -> Result<String> {
        let mut values = self.values.clone();
        if let Some(envs) = values
            .get_mut("environments")
            .and_then(yaml_serde::Value::as_mapping_mut)
        {
            // A preview's config is derived from its environment's, there as here.
            let keep = crate::names::split_preview(env).map_or(env, |(from, _)| from);
            envs.retain(|k, _| k.as_str() == Some(keep));
        }
        Ok(format!(
            "# Resolved where deploy was typed, for {env}: nothing in it is expanded again.\n{}",
            yaml_serde::to_string(&values)?
        ))
    }

    /// Picks the environment: the one named, or the only one when none is named.
    pub fn environment(&self, name: Option<&str>) -> Result<(String, &Environment)> {
        let envs = &self.config.environments;
        match name {
            Some(n) => envs
                .get_key_value(n)
                .map(|(k, v)| (k.clone(), v))
                .ok_or_else(|| {
                    let close = envs
                        .keys()
                        .map(|k| (strsim::jaro_winkler(n, k), k))
                        .filter(|(score, _)| *score >= 0.8)
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    crate::exit::with(
                        crate::exit::Code::Config,
                        anyhow::anyhow!(
                            "unknown environment `{n}` in {}: it defines {}{close}",
                            self.file.display(),
                            names(envs.keys())
                        ),
                    )
                }),
            None if envs.len() == 1 => {
                let (k, v) = envs.iter().next().expect("one environment");
                Ok((k.clone(), v))
            }
            None => bail!(
                "{} defines several environments ({}): name the one to use",
                self.file.display(),
                names(envs.keys())
            ),
        }
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    keys.map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads and validates a config file, its `${VAR}` expanded from this process's environment
/// (the machine `deploy` is typed on).
pub fn load(file: &Path) -> Result<Loaded> {
    read(file, Some(&|name: &str| std::env::var(name).ok()))
}

/// Reads and validates a config file that the deploy which sent it resolved already (a remote
/// node's, from [`Loaded::resolved_text`]): its values are taken as they are.
pub fn load_resolved(file: &Path) -> Result<Loaded> {
    read(file, None)
}

fn read(file: &Path, lookup: Option<expand::Lookup>) -> Result<Loaded> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read {}: run deploy where your {DEFAULT_FILE} is, or pass -c FILE",
            file.display()
        )
    })?;
    let (config, values) = parse_values(&text, lookup)
        .with_context(|| format!("invalid config {}", file.display()))?;
    let file = std::path::absolute(file)?;
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    Ok(Loaded {
        config,
        values,
        dir,
        file,
    })
}

/// Parses and validates config text, as written (nothing expanded).
pub fn parse(text: &str) -> Result<Config> {
    parse_values(text, None).map(|(config, _)| config)
}

/// The config in `text`, its values expanded with `lookup` when there is one, validated (with
/// every environment's overrides); and those values. An error names its key and line.
pub(super) fn parse_values(
    text: &str,
    lookup: Option<expand::Lookup>,
) -> Result<(Config, yaml_serde::Value)> {
    let mut values: yaml_serde::Value = yaml_serde::from_str(text)
        .map_err(|e| anyhow::anyhow!("{}", explain::explain(text, &e)))?;
    let expanded = match lookup {
        Some(lookup) => {
            expand::expand(&mut values, lookup).map_err(|e| at_key(text, &e.key, &e.message))?
        }
        None => false,
    };
    // The text as written gives an error its exact line; once values changed, the error's key
    // is looked up in it.
    let config: Config = if expanded {
        config_of(&values).map_err(|e| {
            let key = e
                .location()
                .and_then(|l| Some(key_at(&yaml_serde::to_string(&values).ok()?, l.line())))
                .unwrap_or_default();
            let at = line_of(text, &key)
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            anyhow::anyhow!("{}{at}", explain::in_words(&without_location(&e)))
        })?
    } else {
        yaml_serde::from_str(text).map_err(|e| anyhow::anyhow!("{}", explain::explain(text, &e)))?
    };
    validate(&config, &values).map_err(|Invalid { key, message }| at_key(text, &key, &message))?;
    for env in config.environments.keys() {
        for_environment(&values, env).map_err(|e| {
            anyhow::anyhow!("{}", explain::in_override(text, env, &format!("{e:#}")))
        })?;
    }
    Ok((config, values))
}

/// `key (line N): message`, the line found in `text`.
fn at_key(text: &str, key: &[String], message: &str) -> anyhow::Error {
    let at = line_of(text, key)
        .map(|l| format!(" (line {l})"))
        .unwrap_or_default();
    anyhow::anyhow!("{}{at}: {message}", dotted(key))
}
