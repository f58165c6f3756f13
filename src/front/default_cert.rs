//! The managed Traefik's default certificate: the one it serves to a TLS client whose name no
//! other certificate covers.
//!
//! Without one, Traefik makes a new key for a certificate of its own at every change of its
//! dynamic config (its TLS manager falls back to its internal generated certificate). On a
//! 2-core machine that took 20 to 200 ms of each switch of a router (67 ms median, by hand,
//! Traefik 3.7), and a release or rollback switches twice; with a default certificate the same
//! switch is applied in about 5 ms. So `deploy setup` gives the Traefik it manages a
//! self-signed one, made once and kept: a client sees a certificate it does not trust, as with
//! Traefik's own.

use crate::sys::fsx;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The dynamic config that names the certificate (no app's router file: an app's is
/// `APP_ENV.yaml`, and no app or environment name begins with `_`).
pub const DYNAMIC_FILE: &str = "_deploy-default-certificate.yaml";
/// The name in the certificate, its subject's and its one DNS name.
pub const NAME: &str = "deploy-default-certificate.invalid";

/// What [`DefaultCert::ensure`] found.
#[derive(Debug, PartialEq)]
pub enum Ensured {
    /// The dynamic config names deploy's certificate.
    Ours,
    /// Another file of the dynamic directory names a default certificate (the user's own):
    /// deploy's is not named, so as not to replace it.
    Theirs(PathBuf),
}

/// The certificate and its key in one file (mode 0600), beside the static config: one write
/// makes both, so they always go together.
pub struct DefaultCert {
    pub pem: PathBuf,
}

impl DefaultCert {
    pub fn beside(static_config: &Path) -> DefaultCert {
        DefaultCert {
            pem: static_config.with_file_name("default-certificate.pem"),
        }
    }

    /// The dynamic config that makes it the default store's certificate (Traefik takes the
    /// certificate and the key from the same file: each is read from its own PEM block). Pure.
    pub fn dynamic_config(&self) -> String {
        let path = serde_json::to_string(&self.pem.display().to_string()).expect("a string");
        format!(
            "# Written by deploy (traefik.manage). Do not edit: `deploy setup` rewrites it.\n\
             # The certificate for a name no other covers. Without one, Traefik makes a new key\n\
             # at every change of its dynamic config, and each switch of a router waits for it.\n\
             tls:\n  stores:\n    default:\n      defaultCertificate:\n        \
             certFile: {path}\n        keyFile: {path}\n"
        )
    }

    /// Makes the certificate if it is not there, and writes the dynamic config that names it
    /// into `dynamic_dir` when it says something else; unless another file there names a
    /// default certificate, when deploy's config is removed.
    pub fn ensure(&self, dynamic_dir: &Path) -> Result<Ensured> {
        let file = dynamic_dir.join(DYNAMIC_FILE);
        if let Some(theirs) = names_a_default(dynamic_dir) {
            fsx::remove_durable(&file)?;
            return Ok(Ensured::Theirs(theirs));
        }
        if !self.pem.is_file() {
            let pem = make().context("making the managed Traefik's default certificate")?;
            fsx::ensure_dir(self.pem.parent().expect("a directory"), 0o755)?;
            fsx::write_atomic(&self.pem, pem.as_bytes(), 0o600)?;
        }
        let text = self.dynamic_config();
        if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            fsx::ensure_dir(dynamic_dir, 0o755)?;
            let staging = dynamic_dir.join(super::traefik::STAGING_DIR);
            fsx::write_atomic_staged(&file, &staging, text.as_bytes(), 0o644)?;
        }
        Ok(Ensured::Ours)
    }
}

/// A file of `dir` (not deploy's) that names a default certificate of a TLS store.
fn names_a_default(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| {
        let config = matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "toml")
        );
        config
            && p.file_name().is_some_and(|n| n != DYNAMIC_FILE)
            && std::fs::read_to_string(p).is_ok_and(|t| {
                t.contains("defaultCertificate") || t.contains("defaultGeneratedCert")
            })
    })
}

/// A new key and a certificate of it, signed by itself, named [`NAME`]: one PEM, the key first.
fn make() -> Result<String> {
    let mut params = rcgen::CertificateParams::new(vec![NAME.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, NAME);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(key.serialize_pem() + &cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dynamic_config_names_the_file_as_yaml_strings() {
        let c = DefaultCert::beside(Path::new("/home/u/.config/traefik/traefik.yaml"));
        let v: serde_json::Value = yaml_serde::from_str(&c.dynamic_config()).unwrap();
        let d = &v["tls"]["stores"]["default"]["defaultCertificate"];
        assert_eq!(
            d["certFile"],
            "/home/u/.config/traefik/default-certificate.pem"
        );
        assert_eq!(d["keyFile"], d["certFile"]);
    }

    #[test]
    fn a_certificate_is_made_once_and_kept_and_the_users_own_is_left_alone() {
        let dir = std::env::temp_dir().join(format!("deploy-default-cert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = DefaultCert::beside(&dir.join("traefik.yaml"));
        let dynamic = dir.join("dynamic");
        assert_eq!(c.ensure(&dynamic).unwrap(), Ensured::Ours);
        let pem = std::fs::read_to_string(&c.pem).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&c.pem).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(c.ensure(&dynamic).unwrap(), Ensured::Ours);
        assert_eq!(std::fs::read_to_string(&c.pem).unwrap(), pem);
        let ours = dynamic.join(DYNAMIC_FILE);
        assert_eq!(std::fs::read_to_string(&ours).unwrap(), c.dynamic_config());
        // The user's own default certificate: deploy's config goes.
        let theirs = dynamic.join("tls.yaml");
        std::fs::write(
            &theirs,
            "tls:\n  stores:\n    default:\n      defaultCertificate: {}\n",
        )
        .unwrap();
        assert_eq!(c.ensure(&dynamic).unwrap(), Ensured::Theirs(theirs));
        assert!(!ours.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
