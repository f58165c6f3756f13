//! A parser's error in the user's words, at the right line: a port is 1 to 65535 (never
//! `u16`), a count a whole number; an unknown key or value gets "did you mean"; a bad duration
//! and a key written twice name the line they are on (the parser gives the line of the mapping
//! around them). Pure.

/// The message of a YAML error of `text`, as the user reads it.
pub fn explain(text: &str, e: &yaml_serde::Error) -> String {
    let plain = e.to_string();
    let Some(at) = e.location() else {
        return in_words(&plain);
    };
    let suffix = format!(" at line {} column {}", at.line(), at.column());
    let message = plain.strip_suffix(&suffix).unwrap_or(&plain);
    if let Some(found) = duplicate(text, message, at.line(), at.column()) {
        return found;
    }
    if let Some(found) = bad_value(text, message, at.line(), at.column()) {
        return found;
    }
    format!("{}{suffix}", in_words(message))
}

/// Rust's type names in a message, in words; and a close name for an unknown one.
pub fn in_words(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, words) in [
        ("expected u16", "expected a port number, 1 to 65535"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected a boolean", "expected true or false"),
    ] {
        out = out.replace(rust, words);
    }
    match did_you_mean(message) {
        Some(close) => format!("{out} (did you mean `{close}`?)"),
        None => out,
    }
}

/// For `unknown field `x`, expected one of `a`, `b`` (or `expected `a` or `b``, or an
/// unknown variant): the expected name closest to `x`, if one is close. Pure.
pub fn did_you_mean(message: &str) -> Option<String> {
    let rest = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("unknown variant `"))?
        .1;
    let (unknown, expected) = rest.split_once('`')?;
    let candidates = expected.split('`').skip(1).step_by(2);
    candidates
        .map(|c| (strsim::jaro_winkler(unknown, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// The lines of the mapping that begins at `line` (1-based), column `column`: its own keys'
/// lines, as (1-based line, key, value text).
fn mapping_entries(text: &str, line: usize, column: usize) -> Vec<(usize, String, String)> {
    let indent = column.saturating_sub(1);
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate().skip(line.saturating_sub(1)) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let at = l.len() - t.len();
        if at < indent {
            break;
        }
        if at == indent {
            if let Some((k, v)) = t.split_once(':') {
                let v = v.split(" #").next().unwrap_or_default().trim();
                out.push((i + 1, k.trim().to_string(), v.to_string()));
            }
        }
    }
    out
}

/// `duplicate entry with key "k"`: the line of the second `k`, and of the first. Pure.
fn duplicate(text: &str, message: &str, line: usize, column: usize) -> Option<String> {
    let key = message
        .strip_prefix("duplicate entry with key \"")?
        .strip_suffix('"')?;
    let found: Vec<usize> = mapping_entries(text, line, column)
        .into_iter()
        .filter(|(_, k, _)| k.trim_matches(['"', '\'']) == key)
        .map(|(l, _, _)| l)
        .collect();
    let (first, second) = (*found.first()?, *found.get(1)?);
    let path = super::dotted(&super::validate::key_at(text, second));
    Some(format!(
        "{path} (line {second}): written twice (first on line {first}): keep one"
    ))
}

/// A value the parser refused with a message of its own (a duration): the line of the key whose
/// value it is, within the mapping the parser points at. Pure.
fn bad_value(text: &str, message: &str, line: usize, column: usize) -> Option<String> {
    if !message.contains("is not a duration") {
        return None;
    }
    let value = message.split('`').nth(1)?;
    let (at, _, _) = mapping_entries(text, line, column)
        .into_iter()
        .find(|(_, _, v)| v.trim_matches(['"', '\'']) == value)?;
    let path = super::dotted(&super::validate::key_at(text, at));
    let said = message.split_once(": ").map_or(message, |(_, m)| m);
    Some(format!("{path} (line {at}): {said}"))
}

/// An environment's override that its own parse refused (`environment `prod`, with its
/// overrides: health: `x` is not a duration ...`), with the line of the key whose value it is
/// when that can be found; else the message as it is. Pure.
pub fn in_override(text: &str, env: &str, message: &str) -> String {
    let found = || {
        let (head, inner) = message.split_once("with its overrides: ")?;
        let (section, _) = inner.split_once(": ")?;
        let mut key: Vec<String> = vec!["environments".into(), env.into()];
        key.extend(section.split('.').map(String::from));
        let at = super::validate::line_of(text, &key)?;
        let (line, column) = text
            .lines()
            .enumerate()
            .skip(at)
            .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|(i, l)| (i + 1, l.len() - l.trim_start().len() + 1))?;
        Some(format!(
            "{head}with its overrides: {}",
            bad_value(text, inner, line, column)?
        ))
    };
    found().unwrap_or_else(|| message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_offered() {
        assert_eq!(
            did_you_mean(
                "health: unknown field `intervall`, expected one of `path`, `timeout`, `interval`"
            )
            .as_deref(),
            Some("interval")
        );
        assert_eq!(
            did_you_mean("listen: unknown variant `sockets`, expected `publish` or `socket`")
                .as_deref(),
            Some("socket")
        );
        assert_eq!(did_you_mean("unknown field `zzz`, expected `path`"), None);
        assert_eq!(
            in_words("port: invalid value: integer `70000`, expected u16"),
            "port: invalid value: integer `70000`, expected a port number, 1 to 65535"
        );
    }

    #[test]
    fn a_bad_duration_in_an_override_has_its_line() {
        let text =
            "app: a\nenvironments:\n  prod:\n    health:\n      path: /h\n      timeout: soon\n";
        let said = "environment `prod`, with its overrides: health: `soon` is not a duration (x)";
        assert_eq!(
            in_override(text, "prod", said),
            "environment `prod`, with its overrides: environments.prod.health.timeout (line 6): \
             `soon` is not a duration (x)"
        );
        assert_eq!(in_override(text, "prod", "other"), "other");
    }

    #[test]
    fn a_duplicate_key_and_a_bad_duration_have_their_own_lines() {
        let text = "app: a\nkeep_releases: 5\nhealth:\n  path: /h\n  interval: 2 apples\nkeep_releases: 4\n";
        assert_eq!(
            duplicate(text, "duplicate entry with key \"keep_releases\"", 1, 1).as_deref(),
            Some("keep_releases (line 6): written twice (first on line 2): keep one")
        );
        assert_eq!(
            bad_value(
                text,
                "health: `2 apples` is not a duration (unknown time unit \"apples\"); write e.g. 30s",
                4,
                3
            )
            .as_deref(),
            Some("health.interval (line 5): `2 apples` is not a duration (unknown time unit \"apples\"); write e.g. 30s")
        );
    }
}
