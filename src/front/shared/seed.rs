//! The apps of a node set up before deploy kept records, read from what is there: their units
//! in the user's systemd directory (their directory and ports) and, for those the managed
//! Traefik serves, their router in its dynamic directory and what of its static config they
//! rely on. Best effort: what cannot be read is left out.

use super::{AcmeRequest, AppRecord, TraefikRequest};
use crate::front::traefik::TRAEFIK_UNIT_NAME;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A record for every app whose units are in the user's systemd directory and whose directory
/// is there.
pub fn from_server(home: &Path) -> Vec<AppRecord> {
    let units = crate::sys::systemd::user_unit_dir(home);
    let Ok(entries) = std::fs::read_dir(&units) else {
        return Vec::new();
    };
    let bases: BTreeSet<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let base = name
                .strip_suffix(".service")
                .or_else(|| name.strip_suffix(".socket"))?;
            app_env(base).map(|_| base.to_string())
        })
        .collect();
    let front = Front::read(home);
    bases
        .iter()
        .filter_map(|base| seed_one(&units, base, front.as_ref()))
        .collect()
}

/// `shop_prod` -> (shop, prod), when both are names deploy makes (the units of other roles,
/// `shop_prod_gap`, are not an app's).
fn app_env(base: &str) -> Option<(&str, &str)> {
    let (app, env) = base.split_once('_')?;
    let ok = crate::names::check("app", app).is_ok() && crate::names::check("env", env).is_ok();
    ok.then_some((app, env))
}

/// A unit file's text; empty when it is not there.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The value of the first line beginning with `key` (e.g. `ConditionPathExists=`).
fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.trim().strip_prefix(key))
}

/// The word after `marker` (e.g. `--control `).
fn word_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    rest.split_whitespace().next()
}

/// The port after `marker` (e.g. `--listen 127.0.0.1:`).
fn port_after(text: &str, marker: &str) -> Option<u16> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// One app from its units (`<base>.service` or `.socket`, `<base>_gap.service`).
fn seed_one(units: &Path, base: &str, front: Option<&Front>) -> Option<AppRecord> {
    let (app, env) = app_env(base)?;
    let service = read(&units.join(format!("{base}.service")));
    let socket = read(&units.join(format!("{base}.socket")));
    let gap = read(&units.join(format!("{base}_gap.service")));
    let root = value(&service, "ConditionPathExists=")
        .and_then(|p| p.strip_suffix("/current/.deploy/release.env"))
        .or_else(|| word_after(&gap, "--control ").and_then(|c| c.strip_suffix("/.deploy")))
        .or_else(|| value(&socket, "Description=").and_then(|d| Some(d.rsplit_once(" for ")?.1)))?;
    if !Path::new(root).is_dir() {
        return None;
    }
    let port = port_after(&service, "--publish 127.0.0.1:")
        .or_else(|| port_after(&socket, "ListenStream=127.0.0.1:"))
        .or_else(|| port_after(&gap, "--upstream http://127.0.0.1:"))?;
    let gap_port = port_after(&gap, "--listen 127.0.0.1:");
    Some(AppRecord {
        app: app.into(),
        env: env.into(),
        path: root.into(),
        port,
        gap_port,
        health_path: None,
        traefik: gap_port.and(front).and_then(|f| f.request(base)),
        seeded: true,
        updated_at: crate::sys::now(),
    })
}

/// The managed Traefik as it is: its static config and the CA roots its unit names.
struct Front {
    config: serde_json::Value,
    ca_certificates: Option<String>,
}

impl Front {
    fn read(home: &Path) -> Option<Front> {
        let text = std::fs::read_to_string(crate::front::managed_static_config(home)).ok()?;
        let config = yaml_serde::from_str(&text).ok()?;
        let unit = read(&crate::sys::systemd::user_unit_dir(home).join(TRAEFIK_UNIT_NAME));
        let ca_certificates =
            value(&unit, "Environment=LEGO_CA_CERTIFICATES=").map(|v| v.replace("%%", "%"));
        Some(Front {
            config,
            ca_certificates,
        })
    }

    /// What the app of router `base` relies on, if the managed Traefik serves it (its router's
    /// file is in the watched directory): the entry points its router is on (and `web` for an
    /// HTTP challenge or the redirect to its https), the API, the directory, its resolver.
    fn request(&self, base: &str) -> Option<TraefikRequest> {
        let st = &self.config;
        let dynamic_dir = st["providers"]["file"]["directory"].as_str()?;
        let file = Path::new(dynamic_dir).join(format!("{base}.yaml"));
        let dynamic: serde_json::Value =
            yaml_serde::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
        let routers = &dynamic["http"]["routers"];
        let router = &routers[base];
        let router_entrypoints: Vec<String> = router["entryPoints"]
            .as_array()?
            .iter()
            .filter_map(|e| e.as_str().map(String::from))
            .collect();
        let acme = self.resolver(router["tls"]["certResolver"].as_str());
        let redirect_web = st["entryPoints"]["web"]["http"]["redirections"].is_object()
            && router_entrypoints.iter().any(|e| e == "websecure");
        let mut wanted: BTreeSet<&str> = router_entrypoints.iter().map(String::as_str).collect();
        if redirect_web || acme.as_ref().is_some_and(|a| a.challenge == "http") {
            wanted.insert("web");
        }
        let entrypoints: BTreeMap<String, String> = st["entryPoints"]
            .as_object()?
            .iter()
            .filter(|(name, _)| wanted.contains(name.as_str()))
            .filter_map(|(name, ep)| Some((name.clone(), ep["address"].as_str()?.to_string())))
            .collect();
        Some(TraefikRequest {
            managed: true,
            api: format!(
                "http://{}",
                st["entryPoints"]["traefik"]["address"].as_str()?
            ),
            dynamic_dir: dynamic_dir.into(),
            rule: router["rule"].as_str()?.into(),
            router_entrypoints,
            entrypoints,
            ca_certificates: acme.as_ref().and(self.ca_certificates.clone()),
            acme,
            redirect_https: routers.get(format!("{base}_https")).is_some(),
            redirect_web,
        })
    }

    /// The static config's resolver `name`, as an account.
    fn resolver(&self, name: Option<&str>) -> Option<AcmeRequest> {
        let name = name?;
        let a = &self.config["certificatesResolvers"][name]["acme"];
        Some(AcmeRequest {
            resolver: name.into(),
            email: a["email"].as_str()?.into(),
            ca_server: a["caServer"].as_str()?.into(),
            challenge: match a.get("httpChallenge") {
                Some(_) => "http".into(),
                None => "tls".into(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node as the code before the records left it: units, the managed Traefik's static
    /// config with a whole-entry-point redirect and a resolver, a router on `websecure`.
    #[test]
    fn apps_and_their_traefik_are_read_from_a_node_set_up_before() {
        let home = std::env::temp_dir().join(format!("deploy-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        let units = home.join(".config/systemd/user");
        let dynamic = home.join(".config/traefik/dynamic");
        let root = home.join("web/shop");
        for d in [&units, &dynamic, &root] {
            std::fs::create_dir_all(d).unwrap();
        }
        let r = root.display();
        let write = |p: std::path::PathBuf, t: String| std::fs::write(p, t).unwrap();
        write(
            units.join("shop_prod.service"),
            format!(
                "[Unit]\nConditionPathExists={r}/current/.deploy/release.env\n[Service]\n\
                 ExecStart=/usr/bin/podman run \\\n    --publish 127.0.0.1:18080:${{DEPLOY_CONTAINER_PORT}} \\\n"
            ),
        );
        write(
            units.join("shop_prod_gap.service"),
            format!(
                "[Service]\nExecStart=/d gap-server --listen 127.0.0.1:18081 --mode hold \
                 --upstream http://127.0.0.1:18080 --control {r}/.deploy --page {r}/.deploy/m.html\n"
            ),
        );
        // Another role's unit, a unit of no app, an app whose directory is gone.
        write(units.join("shop_prod_litestream.service"), String::new());
        write(
            units.join("traefik.service"),
            "[Service]\nEnvironment=LEGO_CA_CERTIFICATES=/h/ca%%1.pem\n".into(),
        );
        write(
            units.join("old_prod.socket"),
            "[Unit]\nDescription=old socket for /nowhere/old\n[Socket]\nListenStream=127.0.0.1:9\n"
                .into(),
        );
        write_old_traefik(&home, &dynamic);
        let seeded = from_server(&home);
        assert_eq!(seeded.len(), 1, "{seeded:?}");
        let s = &seeded[0];
        assert_eq!((s.app.as_str(), s.env.as_str()), ("shop", "prod"));
        assert_eq!(s.path, r.to_string());
        assert_eq!((s.port, s.gap_port, s.seeded), (18080, Some(18081), true));
        let t = s.traefik.as_ref().unwrap();
        assert!(t.managed && t.redirect_web && !t.redirect_https);
        assert_eq!(t.api, "http://127.0.0.1:8099");
        assert_eq!(t.rule, "Host(`shop.example.com`)");
        assert_eq!(t.router_entrypoints, ["websecure"]);
        // What it relies on, not every entry point of the static config.
        assert_eq!(
            t.entrypoints,
            BTreeMap::from([
                ("web".into(), ":80".into()),
                ("websecure".into(), ":443".into())
            ])
        );
        let a = t.acme.as_ref().unwrap();
        assert_eq!(
            (a.resolver.as_str(), a.email.as_str(), a.challenge.as_str()),
            ("deploy", "ops@example.com", "http")
        );
        assert_eq!(t.ca_certificates.as_deref(), Some("/h/ca%1.pem"));
        std::fs::remove_dir_all(&home).unwrap();
    }

    /// The managed Traefik's static config as the code before the records wrote it (a
    /// whole-entry-point redirect, a resolver), and the app's router on `websecure`.
    fn write_old_traefik(home: &std::path::Path, dynamic: &std::path::Path) {
        let write = |p: std::path::PathBuf, t: String| std::fs::write(p, t).unwrap();
        write(
                home.join(".config/traefik/traefik.yaml"),
                format!(
                    "entryPoints:\n  web:\n    address: \":80\"\n    http:\n      redirections:\n        \
                     entryPoint:\n          to: websecure\n          scheme: https\n  websecure:\n    \
                     address: \":443\"\n  other:\n    address: \":8000\"\n  traefik:\n    address: \
                     \"127.0.0.1:8099\"\nproviders:\n  file:\n    directory: \"{}\"\n    watch: true\n\
                     certificatesResolvers:\n  deploy:\n    acme:\n      email: ops@example.com\n      \
                     caServer: https://ca.example/dir\n      httpChallenge:\n        entryPoint: web\n",
                    dynamic.display()
                ),
            );
        write(
                dynamic.join("shop_prod.yaml"),
                "http:\n  routers:\n    shop_prod:\n      rule: Host(`shop.example.com`)\n      \
                 entryPoints: [\"websecure\"]\n      service: shop_prod\n      tls: {\"certResolver\": \"deploy\"}\n"
                    .into(),
            );
    }
}
