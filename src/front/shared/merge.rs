//! What the apps of one user ask of their Traefik, put together: what fits is merged (an entry
//! point added, the same entry point at the same address shared, several ACME accounts as
//! several resolvers), what does not is a conflict, said as this app's setting against the
//! other app's, with what to do. Pure.

use super::{AcmeRequest, AppRecord, TraefikRequest};
use crate::config::port_of;
use std::collections::BTreeMap;

/// The static config of the user's Traefik, as every app that manages it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// Name -> address.
    pub entrypoints: BTreeMap<String, String>,
    pub api: String,
    pub dynamic_dir: String,
    /// Name -> account.
    pub resolvers: BTreeMap<String, AcmeRequest>,
    pub ca_certificates: Option<String>,
    /// A Traefik set up before its apps shared it redirected all of `web` to https; an app
    /// seeded from it still relies on that.
    pub redirect_web: bool,
    /// The apps it serves, as [`AppRecord::short_label`]s.
    pub apps: Vec<String>,
}

/// The host and port of an address like `:80`, `127.0.0.1:8000` or `[::1]:443`.
fn host_port(address: &str) -> (String, Option<u16>) {
    match address.rsplit_once(':') {
        Some((host, _)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port_of(address),
        ),
        None => (address.to_string(), None),
    }
}

/// Whether two listening addresses would take the same port: the same port on the same host,
/// or on any host when one of them listens on every address.
pub fn overlap(a: &str, b: &str) -> bool {
    let ((ha, pa), (hb, pb)) = (host_port(a), host_port(b));
    let any = |h: &str| matches!(h, "" | "0.0.0.0" | "::");
    pa.is_some() && pa == pb && (ha == hb || any(&ha) || any(&hb))
}

/// `http://127.0.0.1:8099` -> `127.0.0.1:8099` (what the API listens on).
fn api_address(api: &str) -> String {
    api.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Conflicts within one app's own request: two of its entry points, or one and the API, on
/// one address; its own port where its Traefik listens.
pub fn own_conflicts(mine: &AppRecord) -> Vec<String> {
    let Some(t) = mine.managed() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (port, _, key) in mine.own_ports() {
        for (p, what, _) in mine.traefik_ports() {
            if p == port {
                out.push(format!(
                    "{key}: port {port} is also {what} here: choose another port"
                ));
            }
        }
    }
    let eps: Vec<(&String, &String)> = t.entrypoints.iter().collect();
    for (i, (name, address)) in eps.iter().enumerate() {
        for (other, other_address) in &eps[i + 1..] {
            if overlap(address, other_address) {
                out.push(format!(
                    "traefik.manage.entrypoints: {name} (`{address}`) and {other} \
                     (`{other_address}`) take the same port: Traefik binds each address once; \
                     give one of them another port"
                ));
            }
        }
        if overlap(address, &api_address(&t.api)) {
            out.push(format!(
                "traefik.manage.entrypoints.{name}: `{address}` is where traefik.api ({}) \
                 listens: give one of them another port",
                t.api
            ));
        }
    }
    out
}

/// What this app's Traefik request and another's cannot both have: one Traefik per user has
/// one API, one dynamic directory, one set of CA roots for ACME, and each address once.
pub fn traefik_conflicts(mine: &AppRecord, other: &AppRecord) -> Vec<String> {
    let (Some(m), Some(o)) = (mine.managed(), other.managed()) else {
        return Vec::new();
    };
    let who = other.label();
    let mut out = Vec::new();
    if m.api != o.api {
        out.push(format!(
            "traefik.api: `{}` here, but {who} has `{}`: the Traefik of this user has one API; \
             use `{}` here too",
            m.api, o.api, o.api
        ));
    }
    if m.dynamic_dir != o.dynamic_dir {
        out.push(format!(
            "traefik.dynamic_dir: `{}` here, but {who} has `{}`: the Traefik of this user \
             watches one directory; use `{}` here too",
            m.dynamic_dir, o.dynamic_dir, o.dynamic_dir
        ));
    }
    out.extend(entrypoint_conflicts(m, o, &who));
    out.extend(acme_conflicts(m, o, &who));
    if o.redirect_web && m.router_entrypoints.iter().any(|e| e == "web") && !m.redirect_https {
        out.push(format!(
            "traefik.entrypoints: this app is served on `web` over plain HTTP, but {who} was set \
             up before deploy shared Traefik and redirects all of `web` to https: run `deploy \
             setup` for {who} first (its redirect then moves onto its own router), or set \
             traefik.redirect_https here"
        ));
    }
    out
}

/// The same entry point at another address, or another entry point (or the API) at the same
/// address.
fn entrypoint_conflicts(m: &TraefikRequest, o: &TraefikRequest, who: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (name, address) in &m.entrypoints {
        match o.entrypoints.get(name) {
            Some(theirs) if theirs != address => out.push(format!(
                "traefik.manage.entrypoints.{name}: `{address}` here, but {who} has the entry \
                 point {name} at `{theirs}` on the Traefik this user's apps share: use \
                 `{theirs}` here too (the entry point is then shared), or give this one another \
                 name (e.g. {name}2) and the router's traefik.entrypoints with it"
            )),
            _ => {}
        }
        for (other, theirs) in &o.entrypoints {
            if other != name && overlap(address, theirs) {
                out.push(format!(
                    "traefik.manage.entrypoints.{name}: `{address}` takes the port of {who}'s \
                     entry point {other} (`{theirs}`): Traefik binds each address once; name \
                     it {other} here too (it is then shared), or choose another address"
                ));
            }
        }
        if overlap(address, &api_address(&o.api)) && m.api != o.api {
            out.push(format!(
                "traefik.manage.entrypoints.{name}: `{address}` is where {who}'s traefik.api \
                 ({}) listens: choose another address",
                o.api
            ));
        }
    }
    out
}

/// Traefik's ACME client trusts one set of roots (LEGO_CA_CERTIFICATES, process-wide); a
/// resolver's name is one account.
fn acme_conflicts(m: &TraefikRequest, o: &TraefikRequest, who: &str) -> Vec<String> {
    let (Some(ma), Some(oa)) = (&m.acme, &o.acme) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if m.ca_certificates != o.ca_certificates {
        let shown = |c: &Option<String>| match c {
            Some(c) => format!("`{c}`"),
            None => "none (the system's roots)".into(),
        };
        out.push(format!(
            "traefik.acme.ca_certificates: {} here, but {who} has {}: Traefik's ACME client \
             trusts one set of roots for every resolver; use the same file (or none) in both",
            shown(&m.ca_certificates),
            shown(&o.ca_certificates)
        ));
    }
    if ma.resolver == oa.resolver && !ma.same_account(oa) {
        out.push(format!(
            "traefik.acme: the resolver {} is {who}'s, with other settings (email {}, CA {}): \
             run `deploy setup` again (it names this app's resolver anew)",
            oa.resolver, oa.email, oa.ca_server
        ));
    }
    out
}

/// This app's ports (its own, its gap server's) against every port another app uses (its
/// own, its gap server's, its managed Traefik's entry points and API), and this app's Traefik
/// ports against the other's own.
pub fn port_conflicts(mine: &AppRecord, other: &AppRecord) -> Vec<String> {
    let who = other.label();
    let mut out = Vec::new();
    let theirs: Vec<(u16, String)> = other
        .own_ports()
        .into_iter()
        .map(|(p, what, _)| (p, what))
        .chain(
            other
                .traefik_ports()
                .into_iter()
                .map(|(p, what, _)| (p, what)),
        )
        .collect();
    for (port, _, key) in mine.own_ports() {
        for (p, what) in &theirs {
            if *p == port {
                out.push(format!(
                    "{key}: port {port} is {what} of {who}, running or not: choose another port"
                ));
            }
        }
    }
    for (port, what_here, key) in mine.traefik_ports() {
        for (p, what, _) in other.own_ports() {
            if p == port {
                out.push(format!(
                    "{key}: port {port} ({what_here}) is {what} of {who}: choose another address"
                ));
            }
        }
    }
    out
}

/// Every conflict of this app's request with its own and with the other apps'.
pub fn conflicts(mine: &AppRecord, others: &[&AppRecord]) -> Vec<String> {
    let mut out = own_conflicts(mine);
    for other in others {
        out.extend(port_conflicts(mine, other));
        out.extend(traefik_conflicts(mine, other));
    }
    out
}

/// The static config every app that manages Traefik asks for (none if none does), or the
/// conflicts that stop it.
pub fn merge(records: &[&AppRecord]) -> Result<Option<Merged>, Vec<String>> {
    match merge_leaving_out(records) {
        (merged, left_out) if left_out.is_empty() => Ok(merged),
        (_, left_out) => Err(left_out),
    }
}

/// The static config the apps that manage Traefik ask for, in their order: an app whose request
/// does not go with those before it is left out, said as `app: conflict`. (Apps set up by a
/// deploy that kept no records can disagree among themselves: the first ones win.)
pub fn merge_leaving_out(records: &[&AppRecord]) -> (Option<Merged>, Vec<String>) {
    let mut merged: Option<Merged> = None;
    let mut seen: Vec<&AppRecord> = Vec::new();
    let mut errors = Vec::new();
    for r in records {
        let Some(t) = r.managed() else {
            continue;
        };
        let found: Vec<String> = own_conflicts(r)
            .into_iter()
            .chain(seen.iter().flat_map(|s| traefik_conflicts(r, s)))
            .map(|e| format!("{}: {e}", r.label()))
            .collect();
        if !found.is_empty() {
            errors.extend(found);
            continue;
        }
        seen.push(r);
        let m = merged.get_or_insert_with(|| Merged {
            entrypoints: BTreeMap::new(),
            api: t.api.clone(),
            dynamic_dir: t.dynamic_dir.clone(),
            resolvers: BTreeMap::new(),
            ca_certificates: None,
            redirect_web: false,
            apps: Vec::new(),
        });
        m.entrypoints.extend(t.entrypoints.clone());
        if let Some(a) = &t.acme {
            m.resolvers.insert(a.resolver.clone(), a.clone());
            m.ca_certificates = t.ca_certificates.clone();
        }
        m.redirect_web |= t.redirect_web;
        m.apps.push(r.short_label());
    }
    (merged, errors)
}

/// The name of the resolver for `acme`'s account: the one it had (`previous`) when no other
/// app took that name for another account, else another app's of the same account, else
/// `deploy` when free, else `deploy-2`, `deploy-3`...
pub fn resolver_name(
    acme: &AcmeRequest,
    previous: Option<&AcmeRequest>,
    others: &[&AppRecord],
) -> String {
    let taken: Vec<&AcmeRequest> = others
        .iter()
        .filter_map(|o| o.managed().and_then(|t| t.acme.as_ref()))
        .collect();
    let free_for = |name: &str| {
        taken
            .iter()
            .all(|t| t.resolver != name || t.same_account(acme))
    };
    if let Some(p) = previous.filter(|p| p.same_account(acme) && free_for(&p.resolver)) {
        return p.resolver.clone();
    }
    if let Some(same) = taken.iter().find(|t| t.same_account(acme)) {
        return same.resolver.clone();
    }
    std::iter::once(crate::config::ACME_RESOLVER.to_string())
        .chain((2..).map(|n| format!("{}-{n}", crate::config::ACME_RESOLVER)))
        .find(|n| free_for(n))
        .expect("an endless list has a free name")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, port: u16, eps: &[(&str, &str)]) -> AppRecord {
        AppRecord {
            app: name.into(),
            env: "prod".into(),
            path: format!("/srv/{name}"),
            port,
            gap_port: Some(port + 1),
            health_path: Some("/healthz".into()),
            traefik: Some(TraefikRequest {
                managed: true,
                api: "http://127.0.0.1:8099".into(),
                dynamic_dir: "/h/.config/traefik/dynamic".into(),
                rule: format!("Host(`{name}.example.com`)"),
                router_entrypoints: eps.iter().map(|(n, _)| n.to_string()).collect(),
                entrypoints: eps
                    .iter()
                    .map(|(n, a)| (n.to_string(), a.to_string()))
                    .collect(),
                acme: None,
                ca_certificates: None,
                redirect_https: false,
                redirect_web: false,
            }),
            seeded: false,
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn acme(resolver: &str, email: &str) -> AcmeRequest {
        AcmeRequest {
            resolver: resolver.into(),
            email: email.into(),
            ca_server: "https://acme.example/dir".into(),
            challenge: "http".into(),
        }
    }

    fn t(r: &mut AppRecord) -> &mut TraefikRequest {
        r.traefik.as_mut().unwrap()
    }

    #[test]
    fn a_new_entry_point_is_added_and_the_same_one_shared() {
        let a = app("a", 9000, &[("web", ":80")]);
        let b = app("b", 9010, &[("web", ":80"), ("alt", ":8443")]);
        assert!(
            conflicts(&b, &[&a]).is_empty(),
            "{:?}",
            conflicts(&b, &[&a])
        );
        let m = merge(&[&a, &b]).unwrap().unwrap();
        assert_eq!(
            m.entrypoints,
            BTreeMap::from([("alt".into(), ":8443".into()), ("web".into(), ":80".into())])
        );
        assert_eq!(m.apps, ["a (prod)", "b (prod)"]);
        // An app without Traefik, or with its own, only counts for ports.
        let mut c = app("c", 9020, &[]);
        c.traefik = None;
        assert_eq!(merge(&[&c]).unwrap(), None);
        assert_eq!(merge(&[&a, &c]).unwrap().unwrap().apps.len(), 1);
    }

    #[test]
    fn the_same_entry_point_at_another_address_is_refused_naming_the_other_app() {
        let a = app("a", 9000, &[("web", ":19610")]);
        let b = app("b", 9010, &[("web", ":19611")]);
        let c = conflicts(&b, &[&a]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(
            c[0].starts_with("traefik.manage.entrypoints.web: `:19611` here, but a (prod, /srv/a) has the entry point web at `:19610`"),
            "{}",
            c[0]
        );
        assert!(c[0].contains("use `:19610` here too"), "{}", c[0]);
        assert!(merge(&[&a, &b]).is_err());
    }

    #[test]
    fn two_names_on_one_address_are_refused() {
        let a = app("a", 9000, &[("web", "127.0.0.1:19610")]);
        let b = app("b", 9010, &[("front", ":19610")]);
        let c = conflicts(&b, &[&a]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(
            c[0].contains("takes the port of a (prod, /srv/a)'s entry point web"),
            "{}",
            c[0]
        );
        // Other hosts on the same port are no conflict; the same host is.
        let b = app("b", 9010, &[("front", "127.0.0.2:19610")]);
        assert!(conflicts(&b, &[&a]).is_empty());
        let b = app("b", 9010, &[("front", "127.0.0.1:19610")]);
        assert_eq!(conflicts(&b, &[&a]).len(), 1);
        // Within one app, and with the API.
        let own = app(
            "o",
            9000,
            &[
                ("web", ":80"),
                ("alt", "0.0.0.0:80"),
                ("x", "127.0.0.1:8099"),
            ],
        );
        let c = own_conflicts(&own);
        assert_eq!(c.len(), 2, "{c:?}");
    }

    #[test]
    fn an_app_that_does_not_go_with_those_before_it_is_left_out() {
        let a = app("a", 9000, &[("web", ":80")]);
        let b = app("b", 9010, &[("web", ":81")]);
        let c = app("c", 9020, &[("alt", ":82")]);
        let (merged, left_out) = merge_leaving_out(&[&a, &b, &c]);
        let m = merged.unwrap();
        assert_eq!(m.apps, ["a (prod)", "c (prod)"]);
        assert_eq!(m.entrypoints["web"], ":80");
        assert_eq!(left_out.len(), 1, "{left_out:?}");
        assert!(
            left_out[0].starts_with("b (prod, /srv/b): traefik.manage.entrypoints.web"),
            "{left_out:?}"
        );
    }

    #[test]
    fn process_wide_settings_must_agree() {
        let a = app("a", 9000, &[("web", ":80")]);
        let mut b = app("b", 9010, &[("web", ":80")]);
        t(&mut b).api = "http://127.0.0.1:8098".into();
        t(&mut b).dynamic_dir = "/elsewhere".into();
        let c = conflicts(&b, &[&a]);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].starts_with("traefik.api: `http://127.0.0.1:8098` here, but a (prod, /srv/a) has `http://127.0.0.1:8099`"), "{}", c[0]);
        assert!(c[1].starts_with("traefik.dynamic_dir:"), "{}", c[1]);

        let mut a = app("a", 9000, &[("web", ":80")]);
        let mut b = app("b", 9010, &[("web", ":80")]);
        t(&mut a).acme = Some(acme("deploy", "a@x.org"));
        t(&mut b).acme = Some(acme("deploy-2", "b@x.org"));
        t(&mut b).ca_certificates = Some("/h/ca.pem".into());
        let c = conflicts(&b, &[&a]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(
            c[0].starts_with(
                "traefik.acme.ca_certificates: `/h/ca.pem` here, but a (prod, /srv/a) has none"
            ),
            "{}",
            c[0]
        );
        // An app without ACME does not care about its roots.
        t(&mut a).acme = None;
        assert!(conflicts(&b, &[&a]).is_empty());
    }

    #[test]
    fn several_acme_accounts_are_several_resolvers() {
        let mut a = app("a", 9000, &[("web", ":80"), ("websecure", ":443")]);
        let mut b = app("b", 9010, &[("web", ":80"), ("websecure", ":443")]);
        let mut c = app("c", 9020, &[("web", ":80"), ("websecure", ":443")]);
        let first = acme("?", "a@x.org");
        t(&mut a).acme = Some(AcmeRequest {
            resolver: resolver_name(&first, None, &[]),
            ..first
        });
        assert_eq!(t(&mut a).acme.as_ref().unwrap().resolver, "deploy");
        let other = acme("?", "b@x.org");
        let name = resolver_name(&other, None, &[&a]);
        assert_eq!(name, "deploy-2");
        t(&mut b).acme = Some(AcmeRequest {
            resolver: name,
            ..other
        });
        // The same account shares the resolver; a name kept from before stays.
        assert_eq!(
            resolver_name(&acme("?", "a@x.org"), None, &[&a, &b]),
            "deploy"
        );
        let kept = acme("deploy-7", "c@x.org");
        assert_eq!(
            resolver_name(&acme("?", "c@x.org"), Some(&kept), &[&a, &b]),
            "deploy-7"
        );
        t(&mut c).acme = Some(acme("deploy-3", "c@x.org"));
        let m = merge(&[&a, &b, &c]).unwrap().unwrap();
        assert_eq!(
            m.resolvers.keys().collect::<Vec<_>>(),
            ["deploy", "deploy-2", "deploy-3"]
        );
        assert_eq!(m.resolvers["deploy-2"].email, "b@x.org");
    }

    #[test]
    fn a_whole_entry_point_redirect_from_before_refuses_plain_http_on_web() {
        let mut old = app("old", 9000, &[("web", ":80"), ("websecure", ":443")]);
        t(&mut old).redirect_web = true;
        let plain = app("plain", 9010, &[("web", ":80")]);
        let c = conflicts(&plain, &[&old]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(
            c[0].contains("run `deploy setup` for old (prod, /srv/old) first"),
            "{}",
            c[0]
        );
        let mut secure = app("secure", 9010, &[("web", ":80")]);
        t(&mut secure).redirect_https = true;
        assert!(conflicts(&secure, &[&old]).is_empty());
        assert!(merge(&[&old, &secure]).unwrap().unwrap().redirect_web);
    }

    #[test]
    fn ports_of_another_app_are_refused_running_or_not() {
        let a = app("a", 19600, &[("web", "127.0.0.1:19610")]);
        let b = app("b", 19601, &[("web", "127.0.0.1:19610")]);
        let c = conflicts(&b, &[&a]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            c[0],
            "environments.prod.port: port 19601 is the gap server's port of a (prod, /srv/a), \
             running or not: choose another port"
        );
        let mut b = app("b", 19620, &[("web", "127.0.0.1:19610")]);
        b.gap_port = Some(19610);
        let c = conflicts(&b, &[&a]);
        assert_eq!(c.len(), 2, "its own entry point and the other app's: {c:?}");
        assert!(
            c[1].starts_with(
                "environments.prod.gap_port: port 19610 is Traefik's entry point web of a"
            ),
            "{c:?}"
        );
        let b = app("b", 19630, &[("web", "127.0.0.1:19610"), ("alt", ":19600")]);
        let c = conflicts(&b, &[&a]);
        assert!(c[0].starts_with("traefik.manage.entrypoints.alt: port 19600 (Traefik's entry point alt) is the port of a"), "{c:?}");
    }

    #[test]
    fn overlapping_addresses() {
        assert!(overlap(":80", "0.0.0.0:80"));
        assert!(overlap(":80", "127.0.0.1:80"));
        assert!(overlap("[::]:80", "[::1]:80"));
        assert!(!overlap("127.0.0.1:80", "127.0.0.2:80"));
        assert!(!overlap(":80", ":81"));
    }
}
