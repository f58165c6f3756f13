//! Quoting for a POSIX shell: words into a command line and back. Pure; at the bottom of the
//! import graph (the config, the node and the laptop all use it).

/// Quotes a word for a POSIX shell. Pure.
pub fn sh_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A shell command line from words.
pub fn sh_join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| sh_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits a command line into words the way a POSIX shell would (single quotes, double quotes
/// with `\\` escapes, backslashes), without expanding anything. The inverse of [`sh_join`].
/// Pure.
pub fn sh_split(line: &str) -> std::result::Result<Vec<String>, String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err("a ' is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                            Some(ch) => word.extend(['\\', ch]),
                            None => return Err("a \" is not closed".into()),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err("a \" is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("a \\ ends the line")?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(sh_quote("abc-1.2"), "abc-1.2");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
        assert_eq!(sh_join(&["echo", "a b", "c"]), "echo 'a b' c");
        for words in [
            vec!["run-sql", "/app/my file.sql"],
            vec!["it's", "\"q\"", "", "a\\b", "$HOME"],
        ] {
            assert_eq!(
                sh_split(&sh_join(&words)).unwrap(),
                words,
                "{}",
                sh_join(&words)
            );
        }
        assert_eq!(
            sh_split(r#"migrate --name "a b" c\ d 'e f'"#).unwrap(),
            ["migrate", "--name", "a b", "c d", "e f"]
        );
        assert!(sh_split("echo 'open").is_err());
    }
}
