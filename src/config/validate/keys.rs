//! A key of the YAML text and its line, both ways.

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
pub(in crate::config) fn key_at(text: &str, line: usize) -> Vec<String> {
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
