//! A Containerfile that only copies files and sets settings, read as a [`Recipe`]: what an
//! assembled image holds. Anything else it may say is a [`Refusal`], and `podman build` builds
//! it as before. Pure.

use serde_json::{Map, Value};

/// Why a build context is built by `podman build` rather than assembled: said by `--verbose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(why.into()))
}

/// One `COPY`: sources relative to the context (`""` is the context itself), and where they go
/// (absolute; a trailing `/` kept, as it decides where a file goes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<String>,
    pub dest: String,
}

/// What a Containerfile of `FROM`, `COPY` and settings makes, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recipe {
    /// The base image; `None` for `FROM scratch`.
    pub base: Option<String>,
    pub copies: Vec<Copy>,
    /// Directories `WORKDIR` names (absolute), made when the base lacks them.
    pub workdirs: Vec<String>,
    /// The settings, as OCI image config fields, set over the base's.
    pub settings: Map<String, Value>,
    /// `ENV` pairs, in order (set over the base's of the same name).
    pub env: Vec<(String, String)>,
    /// `LABEL` pairs.
    pub labels: Vec<(String, String)>,
    /// Ports `EXPOSE` names, as `8080/tcp`.
    pub exposed: Vec<String>,
    /// Whether `ENTRYPOINT` was set and `CMD` not: the base's `CMD` is then dropped, as
    /// `podman build` does.
    pub drops_cmd: bool,
    /// Whether a relative path was made absolute from `/` before any `WORKDIR`: `podman build`
    /// starts from the base's working directory, so this holds only when that is `/`.
    pub relative_from_root: bool,
}

/// Reads a Containerfile's text. Pure.
pub fn parse(text: &str) -> Result<Recipe, Refusal> {
    let mut r = Recipe::default();
    let mut from = false;
    let (mut entrypoint, mut cmd) = (false, false);
    let mut workdir = String::from("/");
    let mut workdir_set = false;
    for line in text.lines() {
        let line = line.trim();
        if line.chars().any(char::is_control) {
            return refuse("a control character");
        }
        if line.starts_with('#') && !from && line.contains('=') {
            return refuse("a parser directive");
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.ends_with('\\') {
            return refuse("a continued line");
        }
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let word = word.to_ascii_uppercase();
        if word != "FROM" && !from {
            return refuse(format!("{word} before FROM"));
        }
        if word != "ENTRYPOINT" && word != "CMD" && rest.contains('$') {
            return refuse(format!("a variable in {word}"));
        }
        match word.as_str() {
            "FROM" if !from => {
                from = true;
                if rest.is_empty() || rest.contains(char::is_whitespace) || rest.starts_with('-') {
                    return refuse("a FROM with options or a stage name");
                }
                r.base = (rest != "scratch").then(|| rest.to_string());
            }
            "COPY" => {
                let (c, was_absolute) = copy(rest, &workdir)?;
                r.relative_from_root |= !workdir_set && !was_absolute;
                r.copies.push(c);
            }
            "WORKDIR" => {
                let w = single(rest, "WORKDIR")?;
                r.relative_from_root |= !workdir_set && !w.starts_with('/');
                workdir_set = true;
                workdir = absolute(w, &workdir)?;
                r.workdirs.push(workdir.clone());
                r.settings
                    .insert("WorkingDir".into(), workdir.clone().into());
            }
            "LABEL" | "ENV" | "EXPOSE" if rest.is_empty() => {
                return refuse(format!("an empty {word}"));
            }
            "ENV" => r.env.extend(pairs(rest, true)?),
            "LABEL" => {
                let labels = pairs(rest, false)?;
                // deploy's own labels are its to write.
                if labels.iter().any(|(k, _)| k.starts_with("deploy.")) {
                    return refuse("a LABEL deploy.*");
                }
                r.labels.extend(labels);
            }
            "EXPOSE" => {
                for p in rest.split_whitespace() {
                    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    if port.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return refuse(format!("EXPOSE {p}"));
                    }
                    r.exposed.push(format!("{port}/{proto}"));
                }
            }
            "ENTRYPOINT" => {
                entrypoint = true;
                r.settings.insert("Entrypoint".into(), command(rest)?);
            }
            "CMD" => {
                let list = command(rest)?;
                // `CMD []` counts as no CMD, as for `podman build`.
                cmd |= list.as_array().is_some_and(|l| !l.is_empty());
                r.settings.insert("Cmd".into(), list);
            }
            "USER" => {
                r.settings
                    .insert("User".into(), single(rest, "USER")?.into());
            }
            "STOPSIGNAL" => {
                let signal = single(rest, "STOPSIGNAL")?;
                if crate::sys::podman::signal_number(signal).is_none() {
                    return refuse(format!("STOPSIGNAL {signal}"));
                }
                r.settings.insert("StopSignal".into(), signal.into());
            }
            other => return refuse(format!("a {other} instruction")),
        }
    }
    if !from {
        return refuse("no FROM");
    }
    r.drops_cmd = entrypoint && !cmd;
    Ok(r)
}

fn single<'a>(rest: &'a str, what: &str) -> Result<&'a str, Refusal> {
    if rest.is_empty() || rest.contains(char::is_whitespace) || rest.contains(['"', '\'', '\\']) {
        return refuse(format!("{what} {rest}"));
    }
    Ok(rest)
}

/// A `COPY` line's arguments, its destination made absolute from the working directory; and
/// whether the destination was absolute already.
fn copy(rest: &str, workdir: &str) -> Result<(Copy, bool), Refusal> {
    let mut args: Vec<String> = if rest.starts_with('[') {
        serde_json::from_str(rest).or_else(|_| refuse("a COPY that is not a list of strings"))?
    } else {
        rest.split_whitespace().map(String::from).collect()
    };
    if args.len() < 2 || args.iter().any(|a| a.starts_with("--")) {
        return refuse("a COPY with options or without a destination");
    }
    let dest = args.pop().unwrap_or_default();
    if args
        .iter()
        .chain([&dest])
        .any(|a| a.chars().any(char::is_control))
    {
        return refuse("a control character in a COPY path");
    }
    let was_absolute = dest.starts_with('/');
    let slash = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    let mut dest = absolute(&dest, workdir)?;
    if slash && dest != "/" {
        dest.push('/');
    }
    let sources = args
        .iter()
        .map(|s| source(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Copy { sources, dest }, was_absolute))
}

/// A source inside the context, as a plain relative path (`""`: the context itself).
fn source(s: &str) -> Result<String, Refusal> {
    if s.contains(['*', '?', '[', '\\']) || s.starts_with('/') || s.contains("://") {
        return refuse(format!("the COPY source {s}"));
    }
    normal(s).ok_or_else(|| Refusal(format!("the COPY source {s}")))
}

/// A relative path without `.`, empty or `..` parts; `None` if it would leave its root.
pub fn normal(s: &str) -> Option<String> {
    let mut parts = Vec::new();
    for p in s.split('/') {
        match p {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// `p` made absolute from `dir`, normalised (no trailing `/`).
fn absolute(p: &str, dir: &str) -> Result<String, Refusal> {
    if p.contains(['\\', '"', '\'']) {
        return refuse(format!("the path {p}"));
    }
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{dir}/{p}")
    };
    normal(&joined)
        .map(|n| format!("/{n}"))
        .ok_or_else(|| Refusal(format!("the path {p}")))
}

/// `ENTRYPOINT` or `CMD`: a JSON list of strings, or a shell form run by `/bin/sh -c`.
fn command(rest: &str) -> Result<Value, Refusal> {
    if rest.starts_with('[') {
        let list: Vec<String> =
            serde_json::from_str(rest).or_else(|_| refuse("a command that is not a list"))?;
        return Ok(list.into());
    }
    if rest.is_empty() {
        return refuse("an empty command");
    }
    Ok(vec!["/bin/sh".to_string(), "-c".into(), rest.into()].into())
}

/// `KEY=VALUE` pairs (values bare or in double quotes without escapes), or for `ENV` the old
/// `KEY VALUE` form.
fn pairs(rest: &str, env: bool) -> Result<Vec<(String, String)>, Refusal> {
    let (first, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if env && !first.contains('=') && !first.is_empty() {
        let value = after.trim();
        if value.is_empty() || value.contains(['"', '\'', '\\']) {
            return refuse(format!("ENV {first} with quotes"));
        }
        return Ok(vec![(first.to_string(), value.to_string())]);
    }
    let mut out = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, tail) = s
            .split_once('=')
            .ok_or_else(|| Refusal(format!("the pair {s}")))?;
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains(['"', '\'']) {
            return refuse(format!("the key {key}"));
        }
        let (value, tail) = if let Some(q) = tail.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| Refusal("an unclosed quote".into()))?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
            (&tail[..end], &tail[end..])
        };
        if value.contains(['\\', '\'', '"']) || !(tail.is_empty() || tail.starts_with(' ')) {
            return refuse(format!("the value of {key}"));
        }
        out.push((key.to_string(), value.to_string()));
        s = tail.trim_start();
    }
    Ok(out)
}

/// The context's ignore file, when it lists plain paths only (deploy's own lines: its files
/// and the links into `shared/`): those paths, relative. Patterns and exceptions refuse.
pub fn ignored(text: &str) -> Result<Vec<String>, Refusal> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Podman trims only slashes: spaces or a carriage return are part of its rule.
        if line.contains(['*', '?', '[', '\\', '!', '\r']) || line.trim() != line {
            return refuse(format!("the ignore rule {line}"));
        }
        match normal(line) {
            Some(p) if !p.is_empty() => out.push(p),
            _ => return refuse(format!("the ignore rule {line}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containerfile_that_copies_files_is_a_recipe() {
        let r = parse(
            "# The app\nFROM scratch\nCOPY example-app /app/example-app\nCOPY assets /app/assets\n\
             WORKDIR /app\nEXPOSE 8080\nENTRYPOINT [\"/app/example-app\"]\n",
        )
        .unwrap();
        assert_eq!(r.base, None);
        assert_eq!(r.copies[0].sources, ["example-app"]);
        assert_eq!(r.copies[1].dest, "/app/assets");
        assert_eq!(r.workdirs, ["/app"]);
        assert_eq!(r.exposed, ["8080/tcp"]);
        assert_eq!(
            r.settings["Entrypoint"],
            serde_json::json!(["/app/example-app"])
        );
        assert!(r.drops_cmd);
    }

    #[test]
    fn destinations_follow_workdir_and_keep_their_slash() {
        let r = parse("FROM localhost/base:1\nWORKDIR /srv\nWORKDIR app\nCOPY . .\nCOPY a b/\nCMD python3 app.py\nENV A=1 B=\"two words\"\nENV C some value\nLABEL x.y=z\n").unwrap();
        assert_eq!(r.base.as_deref(), Some("localhost/base:1"));
        assert_eq!(r.workdirs, ["/srv", "/srv/app"]);
        assert_eq!(
            r.copies[0],
            Copy {
                sources: vec!["".into()],
                dest: "/srv/app/".into()
            }
        );
        assert_eq!(r.copies[1].dest, "/srv/app/b/");
        assert_eq!(
            r.settings["Cmd"],
            serde_json::json!(["/bin/sh", "-c", "python3 app.py"])
        );
        assert_eq!(
            r.env,
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "some value".into())
            ]
        );
        assert_eq!(r.labels, [("x.y".to_string(), "z".to_string())]);
        assert!(!r.drops_cmd);
    }

    #[test]
    fn anything_else_is_built_by_podman() {
        for text in [
            "FROM debian\nRUN apt-get update\n",
            "FROM debian AS build\nCOPY a /a\n",
            "FROM --platform=linux/amd64 debian\n",
            "ARG V=1\nFROM debian\n",
            "# syntax=docker/dockerfile:1\nFROM debian\n",
            "FROM debian\nCOPY --chown=1:1 a /a\n",
            "FROM debian\nCOPY *.py /app/\n",
            "FROM debian\nCOPY ../secret /app/\n",
            "FROM debian\nCOPY /etc/passwd /app/\n",
            "FROM debian\nCOPY a $DEST\n",
            "FROM debian\nADD a.tar /app\n",
            "FROM debian\nCOPY a \\\n /app\n",
            "FROM debian\nENV A='x'\n",
            "FROM debian\nENV A\n",
            "FROM debian\nLABEL deploy.files=x\n",
            "FROM debian\nENV\n",
            "FROM debian\nEXPOSE\n",
            "FROM debian\nSTOPSIGNAL NOPE\n",
            "FROM debian\nUSER 'app'\n",
            "FROM debian\nCOPY [\"a\", \"/x\\n/bin\"]\n",
            "FROM a\nFROM b\n",
            "COPY a /a\n",
            "",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn only_plain_ignore_paths_are_understood() {
        let deploys = "# Added by deploy: x\n.deploy\n.containerignore\ndata\npublic/uploads/\n";
        assert_eq!(
            ignored(deploys).unwrap(),
            [".deploy", ".containerignore", "data", "public/uploads"]
        );
        for rule in ["*.log", "!keep", "**/tmp", "../x", "node_modules\r", " x"] {
            assert!(ignored(rule).is_err(), "{rule}");
        }
    }

    #[test]
    fn relative_paths_before_a_workdir_depend_on_the_bases() {
        assert!(parse("FROM b\nCOPY a app/\n").unwrap().relative_from_root);
        assert!(parse("FROM b\nWORKDIR app\n").unwrap().relative_from_root);
        let absolute = parse("FROM b\nWORKDIR /app\nCOPY . .\nWORKDIR x\n").unwrap();
        assert!(!absolute.relative_from_root);
        assert_eq!(
            parse("FROM SCRATCH\n").unwrap().base.as_deref(),
            Some("SCRATCH")
        );
        assert!(
            parse("FROM b\nCMD []\nENTRYPOINT [\"/x\"]\n")
                .unwrap()
                .drops_cmd
        );
    }
}
