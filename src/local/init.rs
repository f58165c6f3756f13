//! `deploy init`: a commented `deploy.yaml` (and a `Containerfile` for a single-binary app when
//! there is none) in the current directory. On a terminal it asks for the app's name and server;
//! elsewhere it asks nothing and takes the defaults.

use crate::template;
use crate::ui::Ui;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::Path;

const INIT_TEMPLATE: &str = include_str!("../../templates/deploy.init.yaml");
/// The full annotated example, every option (`deploy init --full`): the one in the repository.
pub const FULL_EXAMPLE: &str = include_str!("../../deploy.yaml.example");

/// What the template says beside the spec: the names the naming scheme gives (prod's).
#[derive(Serialize)]
struct View<'a> {
    #[serde(flatten)]
    spec: &'a InitSpec,
    unit: String,
    container: String,
    image: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct InitSpec {
    pub app: String,
    pub binary: String,
    pub build: Option<String>,
    pub assets: bool,
    pub host: String,
}

/// An app name from a directory name: lower case, `-` for anything else. Pure.
pub fn app_name(dir_name: &str) -> String {
    let mut name: String = dir_name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').chars().take(64).collect();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "my-app".into()
    } else {
        name
    }
}

/// The package name of a Cargo.toml, if it has one. Pure.
pub fn cargo_package(toml: &str) -> Option<String> {
    let mut in_package = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(v) = line.strip_prefix("name") {
                let v = v.trim_start().strip_prefix('=')?.trim().trim_matches('"');
                return Some(v.to_string());
            }
        }
    }
    None
}

/// What `init` writes for a directory. Pure.
pub fn spec(dir_name: &str, cargo_toml: Option<&str>, has_assets: bool) -> InitSpec {
    let app = app_name(dir_name);
    match cargo_toml.and_then(cargo_package) {
        Some(pkg) => InitSpec {
            binary: format!("target/release/{pkg}"),
            build: Some("cargo build --release".into()),
            app: app_name(&pkg),
            assets: has_assets,
            host: "local".into(),
        },
        None => InitSpec {
            binary: app.clone(),
            build: None,
            app,
            assets: has_assets,
            host: "local".into(),
        },
    }
}

pub fn render_config(spec: &InitSpec) -> Result<String> {
    let names = crate::names::Names::new(&spec.app, "prod");
    let view = View {
        spec,
        unit: names.unit(),
        container: names.container(),
        image: names.image("<version>"),
    };
    template::render("deploy.init.yaml", INIT_TEMPLATE, &view)
}

/// The full example for an app (`deploy init --full`): its name where the example's is. Pure.
pub fn full_config(app: &str) -> String {
    FULL_EXAMPLE.replace("my-app", app)
}

/// A `FROM scratch` image for one static binary (and its assets). Pure.
pub fn containerfile(spec: &InitSpec) -> String {
    let bin = Path::new(&spec.binary)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.app.clone());
    format!(
        "# The image of {app}: its static binary{assets_note}, nothing else (no base image).\n\
         FROM scratch\nCOPY {bin} /app/{bin}\n{assets}WORKDIR /app\nEXPOSE 8080\nENTRYPOINT [\"/app/{bin}\"]\n",
        app = spec.app,
        assets_note = if spec.assets { " and assets" } else { "" },
        assets = if spec.assets { "COPY assets /app/assets\n" } else { "" },
    )
}

fn ask(question: &str, default: &str) -> Result<String> {
    eprint!("{question} [{default}]: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    let answer = answer.trim();
    Ok(if answer.is_empty() { default } else { answer }.to_string())
}

pub fn run(config_path: &Path, full: bool, ui: Ui) -> Result<()> {
    if config_path.exists() {
        bail!(
            "{} exists already: init writes a new one only (check it with `deploy check`)",
            config_path.display()
        );
    }
    let dir = std::path::absolute(config_path)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).ok();
    let mut spec = spec(&dir_name, cargo.as_deref(), dir.join("assets").is_dir());
    if std::io::stdin().is_terminal() && !ui.json {
        spec.app = app_name(&ask("App name", &spec.app)?);
        spec.host = ask("Server (local, or user@host for SSH)", &spec.host)?;
        crate::config::parse_host(&spec.host).map_err(|m| anyhow::anyhow!(m))?;
    }
    let text = match full {
        true => full_config(&spec.app),
        false => render_config(&spec)?,
    };
    crate::config::parse(&text).context("the config init would write is invalid (a bug)")?;
    crate::sys::fsx::write_atomic(config_path, text.as_bytes(), 0o644)?;
    ui.info(&format!("wrote {}", config_path.display()));
    if !["Containerfile", "Dockerfile"]
        .iter()
        .any(|f| dir.join(f).exists())
    {
        crate::sys::fsx::write_atomic(
            &dir.join("Containerfile"),
            containerfile(&spec).as_bytes(),
            0o644,
        )?;
        ui.info(&format!("wrote {}", dir.join("Containerfile").display()));
    }
    ui.done(
        &format!(
            "next: edit {} (artifacts, ports, environments), then `deploy check prod`, `deploy \
             setup prod` and `deploy release v1 prod`",
            config_path.display()
        ),
        serde_json::json!({"action": "init", "app": spec.app}),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_binaries_come_from_the_directory_or_cargo() {
        assert_eq!(app_name("My Shop!"), "my-shop");
        assert_eq!(app_name("---"), "my-app");
        assert_eq!(
            cargo_package(
                "[workspace]\nname = \"no\"\n[package]\nname = \"shop-api\"\nversion = \"1.0.0\"\n"
            ),
            Some("shop-api".into())
        );
        let s = spec("src-dir", Some("[package]\nname = \"shop\"\n"), true);
        assert_eq!(s.binary, "target/release/shop");
        assert_eq!(s.build.as_deref(), Some("cargo build --release"));
        assert_eq!(spec("Blog", None, false).binary, "blog");
    }

    #[test]
    fn the_written_config_is_valid_and_the_containerfile_runs_the_binary() {
        for s in [
            spec("shop", Some("[package]\nname = \"shop\"\n"), true),
            spec("blog", None, false),
        ] {
            let text = render_config(&s).unwrap();
            let c = crate::config::parse(&text).unwrap();
            assert_eq!(c.app, s.app);
            assert_eq!(c.artifacts[0], s.binary);
        }
        let text = render_config(&spec("shop", None, false)).unwrap();
        assert!(text.contains("(shop_prod.service for prod)"), "{text}");
        for app in ["shop", "my-app", "a1"] {
            let c = crate::config::parse(&full_config(app)).unwrap();
            assert_eq!(c.app, app);
        }
        let cf = containerfile(&spec("shop", Some("[package]\nname = \"shop\"\n"), true));
        assert!(
            cf.contains("COPY shop /app/shop\nCOPY assets /app/assets\n"),
            "{cf}"
        );
        assert!(cf.contains("ENTRYPOINT [\"/app/shop\"]"), "{cf}");
    }
}
