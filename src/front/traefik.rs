//! Traefik in front of the app, driven through its file provider: the app's dynamic config (a
//! router to the app, or to the gap server during a release), the optional static config and
//! unit of a managed Traefik, and the API calls that confirm a change is live.
//!
//! Rendering is pure; `Api` and `Router` do the I/O.

use crate::config::{port_of, Environment, Traefik};
use crate::sys::fsx;
use crate::template::render;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DYNAMIC: &str = include_str!("../../templates/traefik-dynamic.yaml");
const STATIC: &str = include_str!("../../templates/traefik-static.yaml");
const PAGE: &str = include_str!("../../templates/maintenance.html");
const GAP_UNIT: &str = include_str!("../../units/gap.service");
const TRAEFIK_UNIT: &str = include_str!("../../units/traefik.service");

/// Where a router's dynamic config is written before its rename into the dynamic directory (a
/// directory in it: the same file system, and no event in the directory Traefik watches but the
/// rename; Traefik skips what is in it, no file there having a config's extension). Measured
/// on a busy 2-core machine: a switch applied in 75 ms (median) instead of 172 ms with the
/// temporary file beside the config.
pub const STAGING_DIR: &str = ".deploy-staging";
/// How long a change may take to show in the API (Traefik's default throttle is 2 s).
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// A duration as the gap server's arguments take it: `1500ms` (humantime's own rendering,
/// `1s 500ms`, is two arguments on a command line).
pub fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

pub const TRAEFIK_UNIT_NAME: &str = "traefik.service";

/// `http://127.0.0.1:8099` -> `127.0.0.1:8099`.
pub fn api_address(api: &str) -> Result<String> {
    let rest = api.strip_prefix("http://").ok_or_else(|| {
        anyhow!("traefik.api `{api}` must be http://HOST:PORT for a managed Traefik")
    })?;
    let host_port = rest.trim_end_matches('/');
    if port_of(host_port).is_none() || host_port.contains('/') {
        bail!("traefik.api `{api}` must be http://HOST:PORT for a managed Traefik");
    }
    Ok(host_port.to_string())
}

#[derive(Debug, Clone, Serialize)]
pub struct DynamicSpec {
    pub app: String,
    pub env: String,
    /// The router's name, the app's service's, and the file's stem.
    pub name: String,
    pub gap_service: String,
    pub rule: String,
    pub entrypoints: Vec<String>,
    /// `Some({})` for `tls: true`, the mapping for options, `None` without TLS.
    pub tls: Option<serde_json::Value>,
    pub port: u16,
    pub gap_port: u16,
    /// `traefik.redirect_https`: a router of its own on `web` redirects the rule's requests to
    /// https (not the whole entry point: other apps may serve plain HTTP there).
    pub redirect: bool,
    /// The port https is on, when it is not 443 (the `websecure` entry point's).
    pub redirect_port: Option<u16>,
    /// A preview's router: `X-Robots-Tag: noindex` on every answer.
    pub noindex: bool,
    /// A preview's router: the users of its basic authentication (htpasswd lines).
    pub basic_auth: Vec<String>,
}

impl DynamicSpec {
    pub fn new(
        app: &str,
        env_name: &str,
        env: &Environment,
        t: &Traefik,
        names: &crate::names::Names,
    ) -> DynamicSpec {
        let tls = match (&t.tls, &t.acme) {
            (Some(serde_json::Value::Object(o)), _) => Some(serde_json::Value::Object(o.clone())),
            // ACME, and `tls` left out or `true`: the managed Traefik's resolver.
            (None | Some(serde_json::Value::Bool(true)), Some(_)) => {
                Some(serde_json::json!({"certResolver": crate::config::ACME_RESOLVER}))
            }
            (Some(serde_json::Value::Bool(true)), None) => Some(serde_json::json!({})),
            _ => None,
        };
        DynamicSpec {
            app: app.into(),
            env: env_name.into(),
            name: names.router(),
            gap_service: names.gap_service(),
            rule: t.rule.clone(),
            entrypoints: t.entrypoints.clone(),
            tls,
            port: env.port,
            gap_port: env.gap_port(),
            redirect: t.redirect_https && t.managed().is_some(),
            redirect_port: t
                .managed()
                .and_then(|m| m.entrypoints.get("websecure").and_then(|a| port_of(a)))
                .filter(|p| *p != 443),
            noindex: t.noindex,
            basic_auth: t.basic_auth.clone(),
        }
    }

    /// The router's certificates from `resolver` (the managed Traefik's resolver this app's
    /// ACME settings have), where it would name the default one.
    pub fn with_resolver(mut self, resolver: &str) -> DynamicSpec {
        let default = serde_json::json!({"certResolver": crate::config::ACME_RESOLVER});
        if self.tls.as_ref() == Some(&default) {
            self.tls = Some(serde_json::json!({ "certResolver": resolver }));
        }
        self
    }

    /// The service the router uses: the app's, or the gap server's.
    pub fn service(&self, to_gap: bool) -> String {
        if to_gap {
            self.gap_service.clone()
        } else {
            self.name.clone()
        }
    }
}

pub fn render_dynamic(spec: &DynamicSpec, to_gap: bool) -> Result<String> {
    #[derive(Serialize)]
    struct Ctx<'a> {
        #[serde(flatten)]
        spec: &'a DynamicSpec,
        to_gap: bool,
    }
    render("traefik-dynamic.yaml", DYNAMIC, Ctx { spec, to_gap })
}

/// The managed Traefik's HTTPS settings: its ACME resolvers (one per set of ACME settings of
/// the apps it serves, all stored in one file, 0600 in the user's directory) and, for a Traefik
/// set up before its apps shared it, the whole `web` entry point redirected to `websecure`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Https {
    pub resolvers: Vec<AcmeResolver>,
    pub redirect: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AcmeResolver {
    pub name: String,
    pub email: String,
    pub ca_server: String,
    pub storage: String,
    /// `http` or `tls`.
    pub challenge: String,
}

impl Https {
    pub fn new(t: &Traefik, storage: &Path) -> Https {
        Https {
            resolvers: Vec::from_iter(t.acme.as_ref().map(|a| AcmeResolver {
                name: crate::config::ACME_RESOLVER.into(),
                email: a.email.clone(),
                ca_server: a.ca_server.clone(),
                storage: storage.display().to_string(),
                challenge: match a.challenge {
                    crate::config::AcmeChallenge::Http => "http".into(),
                    crate::config::AcmeChallenge::Tls => "tls".into(),
                },
            })),
            // Each app's own router redirects (see DynamicSpec::redirect).
            redirect: false,
        }
    }
}

pub fn render_static(
    entrypoints: &[(String, String)],
    api: &str,
    dynamic_dir: &Path,
    https: &Https,
) -> Result<String> {
    #[derive(Serialize)]
    struct Ep<'a> {
        name: &'a str,
        address: &'a str,
    }
    let eps: Vec<Ep> = entrypoints
        .iter()
        .map(|(name, address)| Ep { name, address })
        .collect();
    render(
        "traefik-static.yaml",
        STATIC,
        minijinja::context! {
            entrypoints => minijinja::Value::from(minijinja::value::Serde(&eps)),
            api_address => api_address(api)?,
            dynamic_dir => dynamic_dir.display().to_string(),
            resolvers => minijinja::Value::from(minijinja::value::Serde(&https.resolvers)),
            redirect => https.redirect,
        },
    )
}

pub fn render_page(app: &str) -> Result<String> {
    render("maintenance.html", PAGE, minijinja::context! { app })
}

#[derive(Debug, Clone, Serialize)]
pub struct GapUnitSpec {
    pub app: String,
    pub env: String,
    pub root: String,
    pub deploy_bin: String,
    pub gap_port: u16,
    pub port: u16,
    pub mode: String,
    pub hold: String,
    pub retry_after: u64,
    pub control: String,
    pub page: String,
}

pub fn render_gap_unit(spec: &GapUnitSpec) -> Result<String> {
    render("gap.service", GAP_UNIT, spec)
}

/// `ca_certificates`: traefik.acme.ca_certificates, the roots its ACME client trusts.
pub fn render_traefik_unit(
    traefik_bin: &Path,
    static_config: &Path,
    ca_certificates: Option<&str>,
) -> Result<String> {
    render(
        "traefik.service",
        TRAEFIK_UNIT,
        minijinja::context! {
            traefik_bin => traefik_bin.display().to_string(),
            static_config => static_config.display().to_string(),
            ca_certificates,
        },
    )
}

/// Entry points a rootless Traefik cannot bind: those below
/// `net.ipv4.ip_unprivileged_port_start`.
pub fn privileged_ports(entrypoints: &[(String, String)], unprivileged_start: u16) -> Vec<String> {
    entrypoints
        .iter()
        .filter(|(_, a)| port_of(a).is_some_and(|p| p < unprivileged_start))
        .map(|(n, a)| format!("{n} ({a})"))
        .collect()
}

// ---------------------------------------------------------------- doers

/// Traefik's API.
pub struct Api {
    pub base: String,
    agent: ureq::Agent,
}

/// What the API says of a router.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterState {
    pub service: String,
    pub status: String,
    pub error: Option<String>,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3)))
            .proxy(None)
            .build()
            .into();
        Api {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>> {
        let url = format!("{}{path}", self.base);
        let mut resp = self.agent.get(&url).call().map_err(|e| {
            anyhow!(
                "Traefik's API does not answer at {} ({e}): is Traefik running, with its API \
                 enabled there (api.insecure and an entry point `traefik`, or traefik.manage)?",
                self.base
            )
        })?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(
                serde_json::from_reader(resp.body_mut().as_reader())
                    .with_context(|| format!("{url} did not answer JSON"))?,
            )),
            s => bail!("{url} answered HTTP {s}"),
        }
    }

    /// Checks that the API answers, waiting up to `wait` for a Traefik that is starting.
    pub fn ping(&self, wait: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.get_json("/api/overview") {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() >= wait => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The names of the HTTP routers it has loaded from its file provider (`NAME@file`).
    pub fn file_routers(&self) -> Result<std::collections::BTreeSet<String>> {
        let all = self
            .get_json("/api/http/routers?per_page=10000")?
            .unwrap_or_default();
        Ok(all
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .filter(|name| name.ends_with("@file"))
            .map(String::from)
            .collect())
    }

    pub fn router(&self, name: &str) -> Result<Option<RouterState>> {
        Ok(self
            .get_json(&format!("/api/http/routers/{name}@file"))?
            .map(|v| {
                let error = v
                    .get("error")
                    .filter(|e| !e.is_null())
                    .map(|e| e.to_string());
                RouterState {
                    service: v["service"].as_str().unwrap_or_default().to_string(),
                    status: v["status"].as_str().unwrap_or_default().to_string(),
                    error,
                }
            }))
    }

    /// Waits until the router shows `service`, enabled and without error.
    pub fn wait_router(&self, name: &str, service: &str, dynamic_file: &Path) -> Result<Duration> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < LIVE_TIMEOUT {
            let r = self.router(name)?;
            if let Some(r) = &r {
                let same = r.service == service || r.service == format!("{service}@file");
                if same && r.status == "enabled" && r.error.is_none() {
                    return Ok(start.elapsed());
                }
            }
            last = r;
            // A managed Traefik applies a switch in a few milliseconds (it has a default
            // certificate): asked often at first, then less.
            let often = start.elapsed() < Duration::from_millis(200);
            std::thread::sleep(Duration::from_millis(if often { 2 } else { 20 }));
        }
        match last {
            None => bail!(
                "Traefik at {} has not loaded the router {name}@file from {} within {LIVE_TIMEOUT:?}: \
                 is its file provider watching that directory (providers.file.directory, watch: true)?",
                self.base,
                dynamic_file.display()
            ),
            Some(r) => bail!(
                "Traefik's router {name}@file did not switch to {service} within {LIVE_TIMEOUT:?} \
                 (it shows service {}, status {}{})",
                r.service,
                r.status,
                r.error.map(|e| format!(", error {e}")).unwrap_or_default()
            ),
        }
    }
}

/// The app's router: writes its dynamic config and confirms through the API that it is live.
pub struct Router {
    pub spec: DynamicSpec,
    pub file: PathBuf,
    pub api: Api,
}

impl Router {
    pub fn new(spec: DynamicSpec, dynamic_dir: &Path, api: &str) -> Router {
        let file = dynamic_dir.join(format!("{}.yaml", spec.name));
        Router {
            spec,
            file,
            api: Api::new(api),
        }
    }

    /// Writes the dynamic config that routes to the gap server or the app, without waiting for
    /// Traefik: what a Traefik that is down will read when it comes back.
    pub fn write(&self, to_gap: bool) -> Result<()> {
        let text = render_dynamic(&self.spec, to_gap)?;
        let dir = self
            .file
            .parent()
            .expect("a router's file is in the dynamic directory");
        fsx::ensure_dir(dir, 0o755)?;
        fsx::write_atomic_staged(&self.file, &dir.join(STAGING_DIR), text.as_bytes(), 0o644)
    }

    /// Routes to the gap server (`true`) or the app, and waits until Traefik serves it.
    pub fn route(&self, to_gap: bool) -> Result<Duration> {
        self.write(to_gap)?;
        self.api
            .wait_router(&self.spec.name, &self.spec.service(to_gap), &self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tls: Option<serde_json::Value>) -> DynamicSpec {
        let config = crate::config::parse(&format!(
            "app: shop\nartifacts: [shop]\ncontainer: {{port: 8080}}\n\
             traefik: {{rule: 'Host(`shop.example.com`) && PathPrefix(`/`)', entrypoints: [websecure]{}}}\n\
             environments: {{prod: {{host: local, path: /srv/shop, port: 18080}}}}\n",
            match &tls {
                Some(v) => format!(", tls: {v}"),
                None => String::new(),
            }
        ))
        .unwrap();
        DynamicSpec::new(
            "shop",
            "prod",
            &config.environments["prod"],
            config.traefik.as_ref().unwrap(),
            &crate::names::Names::new("shop", "prod"),
        )
    }

    #[test]
    fn a_previews_router_says_noindex_and_asks_for_its_users() {
        let mut s = spec(None);
        let plain: serde_json::Value =
            yaml_serde::from_str(&render_dynamic(&s, false).unwrap()).unwrap();
        assert_eq!(
            plain["http"]["routers"]["shop_prod"]["middlewares"],
            serde_json::json!(["shop_prod_errors"])
        );
        s.noindex = true;
        s.basic_auth = vec!["alice:$2y$05$abc/def".into()];
        let parsed: serde_json::Value =
            yaml_serde::from_str(&render_dynamic(&s, false).unwrap()).unwrap();
        assert_eq!(
            parsed["http"]["routers"]["shop_prod"]["middlewares"],
            serde_json::json!(["shop_prod_auth", "shop_prod_noindex", "shop_prod_errors"])
        );
        let m = &parsed["http"]["middlewares"];
        assert_eq!(
            m["shop_prod_noindex"]["headers"]["customResponseHeaders"]["X-Robots-Tag"],
            "noindex, nofollow"
        );
        assert_eq!(
            m["shop_prod_auth"]["basicAuth"]["users"],
            serde_json::json!(["alice:$2y$05$abc/def"])
        );
    }

    #[test]
    fn dynamic_config_routes_to_app_or_gap() {
        let s = spec(Some(serde_json::json!(true)));
        let app = render_dynamic(&s, false).unwrap();
        let gap = render_dynamic(&s, true).unwrap();
        let parsed: serde_json::Value = yaml_serde::from_str(&app).unwrap();
        let router = &parsed["http"]["routers"]["shop_prod"];
        assert_eq!(
            router["rule"],
            "Host(`shop.example.com`) && PathPrefix(`/`)"
        );
        assert_eq!(router["entryPoints"], serde_json::json!(["websecure"]));
        assert_eq!(router["service"], "shop_prod");
        assert_eq!(router["tls"], serde_json::json!({}));
        let services = &parsed["http"]["services"];
        assert_eq!(
            services["shop_prod"]["loadBalancer"]["servers"][0]["url"],
            "http://127.0.0.1:18080"
        );
        assert_eq!(
            services["shop_prod_gap"]["loadBalancer"]["servers"][0]["url"],
            "http://127.0.0.1:18081"
        );
        let errors = &parsed["http"]["middlewares"]["shop_prod_errors"]["errors"];
        assert_eq!(errors["service"], "shop_prod_gap");
        let parsed: serde_json::Value = yaml_serde::from_str(&gap).unwrap();
        assert_eq!(
            parsed["http"]["routers"]["shop_prod"]["service"],
            "shop_prod_gap"
        );
    }

    #[test]
    fn tls_options_and_no_tls() {
        let with = render_dynamic(
            &spec(Some(serde_json::json!({"certResolver": "le"}))),
            false,
        )
        .unwrap();
        let parsed: serde_json::Value = yaml_serde::from_str(&with).unwrap();
        assert_eq!(
            parsed["http"]["routers"]["shop_prod"]["tls"]["certResolver"],
            "le"
        );
        let without = render_dynamic(&spec(None), false).unwrap();
        assert!(!without.contains("tls:"), "{without}");
    }

    #[test]
    fn static_config() {
        let text = render_static(
            &[("web".into(), ":80".into())],
            "http://127.0.0.1:8099",
            Path::new("/home/u/.config/traefik/dynamic"),
            &Https::default(),
        )
        .unwrap();
        let parsed: serde_json::Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(parsed["entryPoints"]["web"]["address"], ":80");
        assert_eq!(
            parsed["entryPoints"]["traefik"]["address"],
            "127.0.0.1:8099"
        );
        assert_eq!(parsed["providers"]["file"]["watch"], true);
        assert_eq!(parsed["providers"]["providersThrottleDuration"], "10ms");
        assert_eq!(parsed["global"]["checkNewVersion"], false);
        assert_eq!(parsed["global"]["sendAnonymousUsage"], false);
        assert!(parsed.get("certificatesResolvers").is_none());
        assert!(parsed["entryPoints"]["web"].get("http").is_none());
        assert!(render_static(
            &[],
            "http://127.0.0.1:8099/x",
            Path::new("/d"),
            &Https::default()
        )
        .is_err());
    }

    #[test]
    fn acme_makes_a_resolver_the_router_uses_and_web_redirects() {
        let config = crate::config::parse(
            "app: shop\nartifacts: [shop]\ncontainer: {port: 8080}\n\
             traefik:\n  rule: Host(`shop.example.com`)\n  entrypoints: [websecure]\n  \
             manage: {entrypoints: {web: ':80', websecure: ':443'}}\n  \
             acme: {email: ops@example.com}\n  redirect_https: true\n\
             environments: {prod: {host: local, path: /srv/shop, port: 18080}}\n",
        )
        .unwrap();
        let t = config.traefik.as_ref().unwrap();
        let https = Https::new(t, Path::new("/h/.config/traefik/acme.json"));
        let eps = [
            ("web".into(), ":80".into()),
            ("websecure".into(), ":443".into()),
        ];
        let text = render_static(&eps, &t.api, Path::new("/d"), &https).unwrap();
        let parsed: serde_json::Value = yaml_serde::from_str(&text).unwrap();
        let acme = &parsed["certificatesResolvers"]["deploy"]["acme"];
        assert_eq!(acme["email"], "ops@example.com");
        assert_eq!(acme["storage"], "/h/.config/traefik/acme.json");
        assert_eq!(
            acme["caServer"],
            "https://acme-v02.api.letsencrypt.org/directory"
        );
        assert_eq!(acme["httpChallenge"]["entryPoint"], "web");
        // The redirect is the app's router's, not the whole entry point's.
        assert!(parsed["entryPoints"]["web"].get("http").is_none(), "{text}");
        let env = &config.environments["prod"];
        let names = crate::names::Names::new("shop", "prod");
        let spec = DynamicSpec::new("shop", "prod", env, t, &names);
        assert_eq!(
            spec.tls,
            Some(serde_json::json!({"certResolver": "deploy"}))
        );
        let dynamic: serde_json::Value =
            yaml_serde::from_str(&render_dynamic(&spec, false).unwrap()).unwrap();
        let redirect = &dynamic["http"]["routers"]["shop_prod_https"];
        assert_eq!(redirect["entryPoints"], serde_json::json!(["web"]));
        assert_eq!(redirect["rule"], "Host(`shop.example.com`)");
        assert_eq!(
            redirect["middlewares"],
            serde_json::json!(["shop_prod_https"])
        );
        let scheme = &dynamic["http"]["middlewares"]["shop_prod_https"]["redirectScheme"];
        assert_eq!(scheme["scheme"], "https");
        assert!(scheme.get("port").is_none(), "443 is https's own: {scheme}");
        let named = DynamicSpec::new("shop", "prod", env, t, &names).with_resolver("deploy-2");
        assert_eq!(
            named.tls,
            Some(serde_json::json!({"certResolver": "deploy-2"}))
        );
        let unit =
            render_traefik_unit(Path::new("/t"), Path::new("/s"), Some("/h/ca.pem")).unwrap();
        assert!(unit.contains("Environment=LEGO_CA_CERTIFICATES=/h/ca.pem\n"));
        // A `%` is the path's, not a specifier of systemd's.
        let unit =
            render_traefik_unit(Path::new("/t"), Path::new("/s"), Some("/h/ca%h.pem")).unwrap();
        assert!(
            unit.contains("Environment=LEGO_CA_CERTIFICATES=/h/ca%%h.pem\n"),
            "{unit}"
        );
        // Without manage there is no Traefik of deploy's to hold the resolver.
        let e = crate::config::parse(
            "app: shop\nartifacts: [shop]\ncontainer: {port: 8080}\n\
             traefik:\n  rule: Host(`s`)\n  acme: {email: ops@example.com}\n\
             environments: {prod: {host: local, path: /srv/shop, port: 18080}}\n",
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("traefik.acme (line 6): needs traefik.manage"),
            "{e}"
        );
    }

    #[test]
    fn privileged_ports_are_named() {
        let eps = [
            ("web".to_string(), ":80".to_string()),
            ("alt".into(), ":8080".into()),
        ];
        assert_eq!(privileged_ports(&eps, 1024), ["web (:80)"]);
        assert!(privileged_ports(&eps, 80).is_empty());
    }

    fn gap_spec(hold: &str) -> GapUnitSpec {
        GapUnitSpec {
            app: "shop".into(),
            env: "prod".into(),
            root: "/srv/shop".into(),
            deploy_bin: "/srv/shop/.deploy/bin/deploy".into(),
            gap_port: 18081,
            port: 18080,
            mode: "hold".into(),
            hold: hold.into(),
            retry_after: 5,
            control: "/srv/shop/.deploy".into(),
            page: "/srv/shop/.deploy/maintenance.html".into(),
        }
    }

    #[test]
    fn the_gap_units_command_line_parses_whatever_the_hold() {
        use clap::Parser;
        for hold in [Duration::from_millis(1500), Duration::from_secs(90)] {
            let unit = render_gap_unit(&gap_spec(&millis(hold))).unwrap();
            let exec = unit
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap();
            let cli = crate::cli::Cli::try_parse_from(exec.split_whitespace())
                .unwrap_or_else(|e| panic!("{exec}: {e}"));
            let crate::cli::Command::GapServer(o) = cli.command else {
                panic!("{exec}")
            };
            assert_eq!(o.hold, hold);
        }
    }

    #[test]
    fn page_and_units() {
        assert!(render_page("shop")
            .unwrap()
            .contains("shop is being updated"));
        let unit = render_gap_unit(&gap_spec("5s")).unwrap();
        assert!(unit.contains("ExecStart=/srv/shop/.deploy/bin/deploy gap-server --listen 127.0.0.1:18081 --mode hold --hold 5s"));
        assert!(unit.contains("--upstream http://127.0.0.1:18080"));
        assert!(
            unit.contains("--retry-after 5s "),
            "humantime needs the unit: {unit}"
        );
        let t = render_traefik_unit(
            Path::new("/usr/local/bin/traefik"),
            Path::new("/h/t.yaml"),
            None,
        )
        .unwrap();
        assert!(!t.contains("LEGO_CA_CERTIFICATES"));
        assert!(t.contains("ExecStart=/usr/local/bin/traefik --configFile=/h/t.yaml\n"));
    }
}
