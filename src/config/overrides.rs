//! An environment's overrides: its top-level sections merged over the top level's (maps merge
//! key by key, lists and scalars replace), the configuration it sees, and key paths as its
//! errors name them.

use super::preview::{self, PortRange, PreviewOf};
use super::validate::{validate, Invalid};
use super::{explain, replica_url, Config, OVERRIDABLE};
use anyhow::{Context, Result};

/// `over` merged into `base`: maps merge key by key, anything else replaces.
pub(super) fn merge(base: &mut yaml_serde::Value, over: yaml_serde::Value) {
    use yaml_serde::Value::Mapping;
    match (base, over) {
        (Mapping(b), Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The configuration `env` sees, as YAML: its overrides merged over the top level.
pub(super) fn merged(values: &yaml_serde::Value, env: &str) -> Result<yaml_serde::Value> {
    let mut root = values.clone();
    let overrides: Vec<(yaml_serde::Value, yaml_serde::Value)> = root
        .get("environments")
        .and_then(|e| e.get(env))
        .and_then(|e| e.as_mapping())
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str().is_some_and(|k| OVERRIDABLE.contains(&k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    for (key, value) in overrides {
        let slot = root
            .as_mapping_mut()
            .context("a config is a mapping")?
            .entry(key)
            .or_insert(yaml_serde::Value::Null);
        merge(slot, value);
    }
    Ok(root)
}

/// `deploy config ENV`: the configuration `env` sees, as YAML; under `environments` only its
/// own keys; each env.secret with whether it is set here, never its value.
pub fn resolved_yaml(values: &yaml_serde::Value, env: &str) -> Result<String> {
    use yaml_serde::{Mapping, Value};
    let mut root = match crate::names::split_preview(env) {
        Some((from, name)) => {
            let (config, mut derived) = for_preview(values, from, name)?;
            // Its ports are chosen on its server: where, not the placeholders.
            let range = config
                .preview_of
                .map(|o| o.ports.to_string())
                .unwrap_or_default();
            if let Some(e) = derived
                .get_mut("environments")
                .and_then(|e| e.get_mut(env))
                .and_then(Value::as_mapping_mut)
            {
                let said = Value::from(format!("(chosen on the server in {range})"));
                e.insert("port".into(), said.clone());
                e.insert("gap_port".into(), said);
            }
            derived
        }
        None => merged(values, env)?,
    };
    let map = root.as_mapping_mut().context("a config is a mapping")?;
    let own: Mapping = map
        .get("environments")
        .and_then(|e| e.get(env))
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.as_str().is_some_and(|k| OVERRIDABLE.contains(&k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    map.insert(
        "environments".into(),
        Value::Mapping(Mapping::from_iter([(env.into(), Value::Mapping(own))])),
    );
    // A password in the replica's URL is never shown.
    if let Some(Value::String(url)) = map
        .get_mut("replicate")
        .and_then(|r| r.as_mapping_mut())
        .and_then(|r| r.get_mut("url"))
    {
        *url = replica_url::shown_url(url);
    }
    let secrets = map
        .get_mut("env")
        .and_then(|e| e.as_mapping_mut())
        .and_then(|e| e.get_mut("secret"));
    if let Some(list) = secrets {
        let names: Vec<String> = list
            .as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        *list = Value::Mapping(Mapping::from_iter(names.into_iter().map(|n| {
            let set = std::env::var_os(&n).is_some();
            (
                n.into(),
                (if set { "(set here)" } else { "(NOT set here)" }).into(),
            )
        })));
    }
    Ok(yaml_serde::to_string(&root)?)
}

/// The configuration `env` sees: its overrides merged over the top level, validated. The values
/// parsed already (their errors have their lines); an error here names the environment.
pub(super) fn for_environment(values: &yaml_serde::Value, env: &str) -> Result<Config> {
    if let Some((from, name)) = crate::names::split_preview(env) {
        return for_preview(values, from, name).map(|(config, _)| config);
    }
    let root = merged(values, env)?;
    let within = |e: String| anyhow::anyhow!("environment `{env}`, with its overrides: {e}");
    let config = config_of(&root).map_err(|e| within(explain::in_words(&without_location(&e))))?;
    validate(&config, &root)
        .map_err(|Invalid { key, message }| within(format!("{}: {message}", dotted(&key))))?;
    // A range written is checked with every environment; the default one when a preview is made.
    if config.preview.ports.is_some() {
        check_preview_ports(&config, env).map_err(within)?;
    }
    Ok(config)
}

/// The range previews of `env` take their ports in: valid, and not over `env`'s own ports.
fn check_preview_ports(config: &Config, env: &str) -> std::result::Result<PortRange, String> {
    let Some(e) = config.environments.get(env) else {
        return Err(format!("no environment `{env}`"));
    };
    let range = PortRange::of(&config.preview, e.port, e.gap_port())
        .map_err(|m| format!("preview.ports: {m}"))?;
    if range.contains(e.port) || (config.traefik.is_some() && range.contains(e.gap_port())) {
        return Err(format!(
            "preview.ports: {range} holds the environment's own port {} or gap port {}: give \
             previews ports of their own",
            e.port,
            e.gap_port()
        ));
    }
    Ok(range)
}

/// The config of the preview `name` of `from` ([`preview`]), and its values: `from`'s,
/// validated, then derived. An error is a config error (exit 3).
fn for_preview(
    values: &yaml_serde::Value,
    from: &str,
    name: &str,
) -> Result<(Config, yaml_serde::Value)> {
    let as_config = |e: anyhow::Error| crate::exit::with(crate::exit::Code::Config, e);
    let env_keys = values
        .get("environments")
        .and_then(|e| e.get(from))
        .and_then(yaml_serde::Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.as_str().is_some_and(|k| OVERRIDABLE.contains(&k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<yaml_serde::Mapping>()
        })
        .ok_or_else(|| {
            as_config(anyhow::anyhow!(
                "unknown environment `{from}` (the preview {name} is of it)"
            ))
        })?;
    let base = for_environment(values, from).map_err(as_config)?;
    let within = |e: String| as_config(anyhow::anyhow!("the preview {name} of {from}: {e}"));
    let range = check_preview_ports(&base, from).map_err(within)?;
    let derived = preview::derive(merged(values, from)?, env_keys, from, name, &base.preview)
        .map_err(within)?;
    let mut config =
        config_of(&derived).map_err(|e| within(explain::in_words(&without_location(&e))))?;
    config.preview_of = Some(PreviewOf {
        from: from.to_string(),
        name: name.to_string(),
        from_path: base.environments[from].path.clone(),
        ports: range,
    });
    if let Some(t) = config.traefik.as_mut() {
        t.noindex = true;
        t.basic_auth = base.preview.basic_auth.clone();
    }
    validate(&config, &derived)
        .map_err(|Invalid { key, message }| within(format!("{}: {message}", dotted(&key))))?;
    Ok((config, derived))
}

/// The config that `values` make, read as a file of them would be (a string field takes any
/// scalar, as it does in the file).
pub(super) fn config_of(
    values: &yaml_serde::Value,
) -> std::result::Result<Config, yaml_serde::Error> {
    yaml_serde::from_str(&yaml_serde::to_string(values)?)
}

/// A YAML error without its `at line L column C`: for text that is not the file.
pub(super) fn without_location(e: &yaml_serde::Error) -> String {
    let text = e.to_string();
    match e.location() {
        Some(l) => text
            .strip_suffix(&format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or(&text)
            .to_string(),
        None => text,
    }
}

/// A key as its section sees it: `environments.<env>.hooks.in_gap` is `hooks.in_gap`, as the
/// override of the top level's it is.
pub(super) fn as_top_level(key: &[String]) -> &[String] {
    match key {
        [e, _, rest @ ..]
            if e == "environments"
                && rest
                    .first()
                    .is_some_and(|k| OVERRIDABLE.contains(&k.as_str())) =>
        {
            rest
        }
        _ => key,
    }
}

/// A mapping's key as a path component.
pub(super) fn key_name(k: &yaml_serde::Value) -> String {
    match k {
        yaml_serde::Value::String(s) => s.clone(),
        other => yaml_serde::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
    }
}

/// `environments.prod.port`, `artifacts[1]`; a control character in a key escaped.
pub(super) fn dotted(key: &[String]) -> String {
    let mut out = String::new();
    for k in key {
        if !out.is_empty() && !k.starts_with('[') {
            out.push('.');
        }
        for c in k.chars() {
            match c.is_control() {
                true => out.extend(c.escape_debug()),
                false => out.push(c),
            }
        }
    }
    out
}
