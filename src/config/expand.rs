//! `${VAR}` and `${VAR:-default}` in the configuration's values, from this machine's environment
//! (so `op run -- deploy ...` or a CI secret store can fill them). Expanded on the text, line by
//! line, so errors keep their line numbers, and the resolved text is what a remote node gets.
//! The `hooks:` section is left as it is: its commands' variables are the shell's. `$$` is a `$`.

use anyhow::{bail, Result};

/// The text with every `${...}` outside `hooks:` replaced. `lookup` reads a variable. Pure.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut section = "";
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if let Some(top) = top_level_key(line) {
            section = top;
        }
        if section == "hooks" || !line.contains('$') || line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        out.push_str(
            &expand_line(line, &lookup)
                .map_err(|e| anyhow::anyhow!("line {} ({}): {e}", n + 1, key_of(line)))?,
        );
    }
    Ok(out)
}

/// `app` for `app: x` at the start of a line.
fn top_level_key(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t', '#', '-']) {
        return None;
    }
    line.split_once(':').map(|(k, _)| k.trim())
}

/// The key a line sets (`password` in `  password: ${DB}`).
fn key_of(line: &str) -> String {
    let t = line.trim_start().trim_start_matches("- ");
    match t.split_once(':') {
        Some((k, _)) if !k.contains(' ') => format!("key `{k}`"),
        _ => "a list item".into(),
    }
}

fn expand_line(line: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                bail!("`${{` is not closed");
            };
            let (name, default) = match inner[..end].split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (&inner[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("`${{{}}}` is not a variable's name", &inner[..end]);
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => bail!(
                    "the environment variable {name} is not set (give it a value, or a default: \
                     ${{{name}:-...}})"
                ),
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
        (name == "HOST").then(|| "vps.example.com".to_string())
    }

    #[test]
    fn values_are_expanded_and_hooks_are_not() {
        let text = "app: shop\nenvironments:\n  prod:\n    host: deploy@${HOST}\n    path: ${ROOT:-~/web/shop}\n\
                    hooks:\n  after_release: [\"echo ${HOST}\"]\ntraefik:\n  rule: Host(`${HOST}`) # $$5\n";
        let out = expand(text, env).unwrap();
        assert!(out.contains("host: deploy@vps.example.com\n"), "{out}");
        assert!(out.contains("path: ~/web/shop\n"), "{out}");
        assert!(out.contains("echo ${HOST}"), "hooks are the shell's: {out}");
        assert!(out.contains("Host(`vps.example.com`) # $5"), "{out}");
        assert_eq!(out.lines().count(), text.lines().count());
    }

    #[test]
    fn an_unset_variable_names_itself_its_key_and_line() {
        let e = expand("app: x\nenvironments:\n  prod:\n    port: ${PORT}\n", env).unwrap_err();
        let e = format!("{e}");
        assert!(
            e.contains("line 4") && e.contains("key `port`") && e.contains("PORT"),
            "{e}"
        );
        assert!(expand("a: ${B", env).is_err());
    }
}
