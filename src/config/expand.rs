//! `${VAR}` and `${VAR:-default}` in the configuration's values, from the environment of the
//! machine `deploy` is typed on (so `op run -- deploy ...` or a CI secret store can fill them).
//! `$$` is a `$`.
//!
//! Expanded once, there, inside the parsed values (string scalars only, never keys): whatever a
//! variable holds (a newline, a `#`, `key: value`) stays inside its value. A remote node is sent
//! the resolved values and does not expand them again (`$${X}` reaches it as `${X}`). `hooks:`
//! and `jobs:`, at the top and in an environment's overrides, are left as they are: their
//! commands' variables are the shell's, or the job's own.

use yaml_serde::Value;

/// Reads a variable of the environment (or of a test's).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A value that cannot be expanded, and its key (`environments.prod.port`; a list item `[1]`).
pub struct Unexpanded {
    pub key: Vec<String>,
    pub message: String,
}

/// The sections whose values are commands, never expanded.
const NOT_EXPANDED: &[&str] = &["hooks", "jobs"];

/// Expands every string value outside [`NOT_EXPANDED`]; `lookup` reads a variable. Whether any
/// value changed. Pure.
pub fn expand(values: &mut Value, lookup: Lookup) -> Result<bool, Unexpanded> {
    walk(values, &mut Vec::new(), lookup)
}

fn walk(value: &mut Value, key: &mut Vec<String>, lookup: Lookup) -> Result<bool, Unexpanded> {
    if super::as_top_level(key)
        .first()
        .is_some_and(|k| NOT_EXPANDED.contains(&k.as_str()))
    {
        return Ok(false);
    }
    let mut changed = false;
    match value {
        Value::String(s) if s.contains('$') => {
            let out = expand_str(s, lookup).map_err(|message| Unexpanded {
                key: key.clone(),
                message,
            })?;
            if out != *s {
                *value = typed(out);
                changed = true;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                key.push(format!("[{i}]"));
                changed |= walk(item, key, lookup)?;
                key.pop();
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                key.push(super::key_name(k));
                changed |= walk(v, key, lookup)?;
                key.pop();
            }
        }
        Value::Tagged(t) => changed = walk(&mut t.value, key, lookup)?,
        _ => {}
    }
    Ok(changed)
}

/// An expanded value that reads exactly as a number or `true`/`false` is one (`port: ${PORT}`),
/// as if it had been written there; anything else stays a string.
fn typed(s: String) -> Value {
    match yaml_serde::from_str::<Value>(&s) {
        Ok(v @ (Value::Number(_) | Value::Bool(_)))
            if yaml_serde::to_string(&v).is_ok_and(|t| t.trim_end() == s) =>
        {
            v
        }
        _ => Value::String(s),
    }
}

/// One string with its `${...}` and `$$` replaced.
fn expand_str(text: &str, lookup: Lookup) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                return Err("`${` is not closed (write `$$` for a `$`)".into());
            };
            let (name, default) = match inner[..end].split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (&inner[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{}}}` is not a variable's name", &inner[..end]));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "the environment variable {name} is not set (give it a value, or a \
                         default: ${{{name}:-...}})"
                    ))
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("vps.example.com".into()),
            "PORT" => Some("8080".into()),
            "G" => Some("hi\nbuild:\n  command: touch /tmp/x".into()),
            "H" => Some("c # d".into()),
            _ => None,
        }
    }

    fn expanded(text: &str) -> Value {
        let mut v: Value = yaml_serde::from_str(text).unwrap();
        expand(&mut v, &env).unwrap_or_else(|e| panic!("{}: {}", e.key.join("."), e.message));
        v
    }

    #[test]
    fn values_are_expanded_and_hooks_are_not() {
        let v = expanded(
            "app: shop\nenvironments:\n  prod:\n    host: deploy@${HOST}\n    path: ${ROOT:-~/web/shop}\n    \
             port: ${PORT}\n    hooks:\n      in_gap: [\"echo ${HOST}\"]\n\
             hooks:\n  after_release: [\"echo ${HOST} $$\"]\ntraefik:\n  rule: Host(`${HOST}`) # $$5\n  \
             entrypoints: [\"${HOST}\", \"$$\"]\n",
        );
        let prod = &v["environments"]["prod"];
        assert_eq!(prod["host"], "deploy@vps.example.com");
        assert_eq!(prod["path"], "~/web/shop");
        assert_eq!(prod["port"], 8080, "a number, as if written there");
        assert_eq!(
            prod["hooks"]["in_gap"][0], "echo ${HOST}",
            "an environment's hooks"
        );
        assert_eq!(
            v["hooks"]["after_release"][0], "echo ${HOST} $$",
            "the shell's"
        );
        assert_eq!(v["traefik"]["rule"], "Host(`vps.example.com`)");
        assert_eq!(v["traefik"]["entrypoints"][0], "vps.example.com");
        assert_eq!(v["traefik"]["entrypoints"][1], "$");
    }

    #[test]
    fn a_value_stays_one_value_whatever_it_holds() {
        let v =
            expanded("env:\n  clear:\n    GREETING: ${G}\n    HASH: a#b ${H}\n    RAW: $${X}\n");
        let keys: Vec<_> = v.as_mapping().unwrap().keys().collect();
        assert_eq!(keys, ["env"], "no `build:` came in");
        let clear = &v["env"]["clear"];
        assert_eq!(clear["GREETING"], "hi\nbuild:\n  command: touch /tmp/x");
        assert_eq!(clear["HASH"], "a#b c # d", "a `#` cuts nothing");
        assert_eq!(clear["RAW"], "${X}", "expanded once");
        // `8080 # x` is no number: nothing is cut to make one.
        let v = expanded("port: \"${P:-8080 # x}\"\nflag: ${F:-true}\n");
        assert_eq!(v["port"], "8080 # x");
        assert_eq!(v["flag"], true);
    }

    #[test]
    fn jobs_are_not_expanded_at_the_top_or_in_an_environment() {
        let v = expanded(
            "jobs:\n  digest: {schedule: \"${HOST}\", command: \"/app/x ${HOST} $$\"}\n\
             environments:\n  prod:\n    port: ${PORT}\n    jobs:\n      digest: {command: [\"${PORT}\"]}\n",
        );
        assert_eq!(v["jobs"]["digest"]["schedule"], "${HOST}");
        assert_eq!(v["jobs"]["digest"]["command"], "/app/x ${HOST} $$");
        let prod = &v["environments"]["prod"];
        assert_eq!(prod["port"], 8080);
        assert_eq!(prod["jobs"]["digest"]["command"][0], "${PORT}");
    }

    #[test]
    fn nothing_changed_is_said() {
        let mut v: Value =
            yaml_serde::from_str("a: b$c\nhooks: {before_upload: [\"$$\"]}\n").unwrap();
        assert!(!expand(&mut v, &env).ok().unwrap());
        let mut v: Value = yaml_serde::from_str("a: $$\n").unwrap();
        assert!(expand(&mut v, &env).ok().unwrap());
    }

    #[test]
    fn an_unset_variable_names_itself_and_its_key() {
        let mut v: Value =
            yaml_serde::from_str("app: x\nenvironments:\n  prod:\n    port: ${NOPE}\n").unwrap();
        let e = expand(&mut v, &env).err().unwrap();
        assert_eq!(e.key, ["environments", "prod", "port"]);
        assert!(e.message.contains("NOPE is not set"), "{}", e.message);
        let mut v: Value = yaml_serde::from_str("artifacts: [a, \"${B\"]").unwrap();
        let e = expand(&mut v, &env).err().unwrap();
        assert_eq!(e.key, ["artifacts", "[1]"]);
    }
}
