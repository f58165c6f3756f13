//! The `traefik` section: the rule, the API (on the loopback), the entry points, TLS and the
//! managed Traefik's HTTPS.

use super::{invalid, port_of, Invalid};
use crate::config::Traefik;

/// The rule, the API, the entry points, TLS, the hold, HTTPS and the managed Traefik's entry
/// points.
pub(super) fn validate_traefik(t: &Traefik) -> Result<(), Invalid> {
    if t.rule.trim().is_empty() {
        return Err(invalid(
            &["traefik", "rule"],
            "is empty: e.g. Host(`my-app.example.com`)",
        ));
    }
    validate_api(&t.api)?;
    validate_entrypoint_names(t)?;
    match &t.tls {
        None | Some(serde_json::Value::Bool(_)) | Some(serde_json::Value::Object(_)) => {}
        Some(other) => {
            return Err(invalid(
                &["traefik", "tls"],
                format!("must be true, false or a mapping of Traefik's TLS options, not {other}"),
            ))
        }
    }
    if t.hold.is_zero() {
        return Err(invalid(&["traefik", "hold"], "must be above zero"));
    }
    validate_https(t)?;
    validate_managed(t)
}

/// Traefik's API: plain http:// on the server's loopback, named by its address.
fn validate_api(api: &str) -> Result<(), Invalid> {
    if api.starts_with("https://") {
        return Err(invalid(
            &["traefik", "api"],
            format!(
                "`{api}`: deploy talks to Traefik's API without TLS; serve the API on the loopback \
                 (e.g. http://127.0.0.1:8099, as traefik.manage does) and name that"
            ),
        ));
    }
    if !api.starts_with("http://") {
        return Err(invalid(
            &["traefik", "api"],
            format!("`{api}` is not an http:// URL"),
        ));
    }
    if !on_the_loopback(api) {
        return Err(invalid(
            &["traefik", "api"],
            format!(
                "`{api}`: deploy talks to Traefik's API without TLS or credentials, so it must be \
                 on the server's loopback, named by its address (deploy resolves no names): \
                 http://127.0.0.1:PORT (any of 127.0.0.0/8) or http://[::1]:PORT"
            ),
        ));
    }
    Ok(())
}

/// At least one entry point; each (and each of the managed Traefik's) a plain word: the names
/// are written into Traefik's YAML as keys.
fn validate_entrypoint_names(t: &Traefik) -> Result<(), Invalid> {
    if t.entrypoints.is_empty() {
        return Err(invalid(&["traefik", "entrypoints"], "names no entry point"));
    }
    let plain = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let managed: Vec<String> = t
        .managed()
        .map(|m| m.entrypoints.into_keys().collect())
        .unwrap_or_default();
    for ep in t.entrypoints.iter().chain(&managed) {
        if !plain(ep) {
            return Err(invalid(
                &["traefik", "entrypoints"],
                format!(
                    "`{}` is not a usable entry point name: letters, digits, `-` and `_`",
                    ep.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}

/// With `traefik.manage`: the app's entry points are among its, and each of its has an address.
fn validate_managed(t: &Traefik) -> Result<(), Invalid> {
    let Some(m) = t.managed() else {
        return Ok(());
    };
    for ep in &t.entrypoints {
        if !m.entrypoints.contains_key(ep) {
            return Err(invalid(
                &["traefik", "entrypoints"],
                format!("`{ep}` is not one of the entry points of traefik.manage"),
            ));
        }
    }
    for (name, address) in &m.entrypoints {
        if port_of(address).is_none() || name == "traefik" {
            return Err(invalid(
                &["traefik", "manage", "entrypoints", name],
                format!("`{address}` is not an address like \":80\" or \"127.0.0.1:8000\" (and `traefik` is the API's name)"),
            ));
        }
    }
    Ok(())
}

/// Whether an `http://` URL names a loopback address (127.0.0.0/8, `[::1]`), with a port or
/// without; a host name, even `localhost`, does not. Pure.
fn on_the_loopback(url: &str) -> bool {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let rest = url.strip_prefix("http://").unwrap_or_default();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let ip = match authority.parse::<SocketAddr>() {
        Ok(a) => Some(a.ip()),
        Err(_) => match authority
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
        {
            Some(v6) => v6.parse::<IpAddr>().ok().filter(IpAddr::is_ipv6),
            None => authority.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        },
    };
    ip.is_some_and(|ip| ip.is_loopback())
}

/// `acme` and `redirect_https` are the managed Traefik's, on its `web`/`websecure` entry points.
fn validate_https(t: &Traefik) -> Result<(), Invalid> {
    use crate::config::AcmeChallenge;
    let (needs, key) = match (&t.acme, t.redirect_https) {
        (Some(a), _) if a.challenge == AcmeChallenge::Http => (vec!["web"], "acme"),
        (Some(_), _) => (vec!["websecure"], "acme"),
        (None, true) => (vec![], "redirect_https"),
        (None, false) => return Ok(()),
    };
    let Some(m) = t.managed() else {
        return Err(invalid(
            &["traefik", key],
            "needs traefik.manage (deploy writes it into the Traefik it runs); with your own \
             Traefik, define a resolver there and set traefik.tls: {certResolver: NAME}",
        ));
    };
    let redirect: &[&str] = if t.redirect_https {
        &["web", "websecure"]
    } else {
        &[]
    };
    for ep in needs.iter().chain(redirect) {
        if !m.entrypoints.contains_key(*ep) {
            return Err(invalid(
                &["traefik", key],
                format!("needs the entry point `{ep}` in traefik.manage.entrypoints"),
            ));
        }
    }
    if let Some(a) = &t.acme {
        if !a.email.contains('@') {
            return Err(invalid(
                &["traefik", "acme", "email"],
                format!("`{}` is not an email address", a.email),
            ));
        }
        if !a.ca_server.starts_with("https://") {
            return Err(invalid(
                &["traefik", "acme", "ca_server"],
                "must be an https:// URL",
            ));
        }
        // Written into Traefik's unit (an `Environment=` line): one word, nothing systemd
        // would split or unquote there.
        if let Some(ca) = &a.ca_certificates {
            if let Some(c) = ca
                .chars()
                .find(|c| c.is_whitespace() || ['"', '\'', '\\'].contains(c))
            {
                return Err(invalid(
                    &["traefik", "acme", "ca_certificates"],
                    format!(
                        "`{}` contains {c:?}: give a path without white space or quotes",
                        ca.escape_debug()
                    ),
                ));
            }
        }
    }
    Ok(())
}
