//! The layers of `src/`, from the bottom up, and a test that holds the code to them: which
//! top-level module imports which (`crate::...` in the code, tests left out), no circle, and
//! no import from a lower layer to a higher one but the known ones below.
//!
//! `cargo test --lib layers -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, from the bottom up: a module may import its own layer's and lower ones'.
pub const LAYERS: &[(&str, &[&str])] = &[
    (
        "facts and output",
        &["exit", "version", "names", "signals", "ui", "template"],
    ),
    ("thin wrappers over the system", &["sys"]),
    ("the configuration", &["config"]),
    ("Traefik and the gap server", &["front"]),
    ("on the server", &["node"]),
    ("where you type", &["cli", "help", "local"]),
];

/// Imports from a lower layer to a higher one that are known, with what removes them. Each
/// must still exist (remove it here when it goes); a new one fails the test.
pub const KNOWN_UPWARD: &[(&str, &str, &str)] = &[];

/// `src/node/swap/mod.rs` -> `node`; `src/cli.rs` -> `cli`; the crate's root -> None.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(stem) => Some(stem.to_string()),
        None => Some(first.to_string()),
    }
}

/// The code of a file without its comments and its `#[cfg(test)]` module. Pure.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first name after each `crate::` (each of a `crate::{a::b, c}` group's). Pure.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with('$') {
            continue; // `$crate::` in a macro: this very module.
        }
        let rest = code[i + "crate::".len()..].trim_start();
        if !rest.starts_with('{') {
            out.insert(ident(rest));
            continue;
        }
        let mut depth = 0;
        let mut at_item = true;
        for (j, c) in rest.char_indices() {
            match c {
                '{' => {
                    depth += 1;
                    at_item = depth == 1;
                }
                '}' if depth == 1 => break,
                '}' => depth -= 1,
                ',' if depth == 1 => at_item = true,
                c if c.is_whitespace() => {}
                _ if at_item && depth == 1 => {
                    out.insert(ident(&rest[j..]));
                    at_item = false;
                }
                _ => {}
            }
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// Which module imports which, and in which files.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph(src: &Path) -> Graph {
    let mut g = Graph::new();
    for entry in walkdir::WalkDir::new(src) {
        let entry = entry.expect("src/ is readable");
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(src).expect("under src/");
        let Some(from) = module_of(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(path).expect("a source file");
        for to in crate_imports(&code_of(&text)) {
            if to != from && layer_of(&to).is_some() {
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(relative.display().to_string());
            }
        }
    }
    g
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// The circles of `edges`: each strongly connected set of more than one module. Pure.
fn circles(edges: &BTreeSet<(String, String)>) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for (a, b) in edges {
                if *a == m && seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let modules: BTreeSet<String> = edges.iter().map(|(a, _)| a.clone()).collect();
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for m in &modules {
        let from_m = reach(m);
        if !from_m.contains(m) || found.iter().any(|c| c.contains(m)) {
            continue;
        }
        let circle: BTreeSet<String> = from_m
            .into_iter()
            .filter(|other| reach(other).contains(m))
            .collect();
        found.push(circle);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_modules_import_downwards_and_in_no_circle() {
        let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
        let mut edges = BTreeSet::new();
        let mut upward = BTreeSet::new();
        println!("The imports between the top-level modules of src/ (layer: module -> modules):");
        for (from, tos) in &g {
            let lf = layer_of(from).unwrap_or_else(|| panic!("{from} is in no layer of LAYERS"));
            let names: Vec<&str> = tos.keys().map(String::as_str).collect();
            println!("  {lf}: {from} -> {}", names.join(", "));
            for (to, files) in tos {
                edges.insert((from.clone(), to.clone()));
                if layer_of(to) > Some(lf) {
                    let files: Vec<&str> = files.iter().map(String::as_str).collect();
                    println!("     up to {to}: {}", files.join(", "));
                    upward.insert((from.clone(), to.clone()));
                }
            }
        }
        let known: BTreeSet<(String, String)> = KNOWN_UPWARD
            .iter()
            .map(|(a, b, _)| (a.to_string(), b.to_string()))
            .collect();
        for c in circles(&edges) {
            println!("  a circle, through the known upward imports: {c:?}");
        }
        let new: Vec<_> = upward.difference(&known).collect();
        assert!(
            new.is_empty(),
            "imports from a lower layer to a higher one: {new:?} (see LAYERS)"
        );
        let gone: Vec<_> = known.difference(&upward).collect();
        assert!(gone.is_empty(), "gone, remove from KNOWN_UPWARD: {gone:?}");
        let without_known: BTreeSet<_> = edges.difference(&known).cloned().collect();
        let left = circles(&without_known);
        assert!(left.is_empty(), "import circles: {left:?}");
    }

    #[test]
    fn imports_are_read_from_paths_and_groups() {
        let code = code_of(
            "use crate::config::Config;\nuse crate::{\n    node::layout, sys::{fsx, podman},\n    ui,\n};\n\
             // crate::front in a comment\nlet x = crate::version::check(v);\n$crate::cli::Command\n\
             #[cfg(test)]\nmod tests {\n    use crate::local;\n}\n",
        );
        let found: Vec<String> = crate_imports(&code).into_iter().collect();
        assert_eq!(found, ["config", "node", "sys", "ui", "version"]);
        assert_eq!(
            module_of(Path::new("node/swap/mod.rs")).as_deref(),
            Some("node")
        );
        assert_eq!(module_of(Path::new("cli.rs")).as_deref(), Some("cli"));
        assert_eq!(module_of(Path::new("lib.rs")), None);
        let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let c = circles(&edges);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].iter().cloned().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
