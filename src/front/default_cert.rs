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
/// `APP-ENV.yaml`, and no app or environment name begins with `_`).
pub const DYNAMIC_FILE: &str = "_deploy-default-certificate.yaml";
/// The name in the certificate, its subject's and its one DNS name.
pub const NAME: &str = "deploy-default-certificate.invalid";

/// The certificate and its key, beside the static config.
pub struct DefaultCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DefaultCert {
    pub fn beside(static_config: &Path) -> DefaultCert {
        DefaultCert {
            cert: static_config.with_file_name("default-certificate.pem"),
            key: static_config.with_file_name("default-certificate-key.pem"),
        }
    }

    /// The dynamic config that makes it the default store's certificate. Pure.
    pub fn dynamic_config(&self) -> String {
        let json = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("a string");
        format!(
            "# Written by deploy (traefik.manage). Do not edit: `deploy setup` rewrites it.\n\
             # The certificate for a name no other covers. Without one, Traefik makes a new key\n\
             # at every change of its dynamic config, and each switch of a router waits for it.\n\
             tls:\n  stores:\n    default:\n      defaultCertificate:\n        \
             certFile: {}\n        keyFile: {}\n",
            json(&self.cert),
            json(&self.key)
        )
    }

    /// Makes the certificate if it is not there (a key of mode 0600, then the certificate), and
    /// writes the dynamic config that names it into `dynamic_dir` when it says something else.
    pub fn ensure(&self, dynamic_dir: &Path) -> Result<()> {
        if !(self.cert.is_file() && self.key.is_file()) {
            let (key, cert) = make().context("making the managed Traefik's default certificate")?;
            fsx::ensure_dir(self.key.parent().expect("a directory"), 0o755)?;
            fsx::write_atomic(&self.key, key.as_bytes(), 0o600)?;
            fsx::write_atomic(&self.cert, cert.as_bytes(), 0o644)?;
        }
        let file = dynamic_dir.join(DYNAMIC_FILE);
        let text = self.dynamic_config();
        if std::fs::read_to_string(&file).ok().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        fsx::ensure_dir(dynamic_dir, 0o755)?;
        fsx::write_atomic_staged(
            &file,
            &dynamic_dir.join(super::traefik::STAGING_DIR),
            text.as_bytes(),
            0o644,
        )
    }
}

/// A new key and a certificate of it, signed by itself, named [`NAME`]: both PEM.
fn make() -> Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(vec![NAME.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, NAME);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((key.serialize_pem(), cert.pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dynamic_config_names_the_files_as_yaml_strings() {
        let c = DefaultCert::beside(Path::new("/home/u/.config/traefik/traefik.yaml"));
        let v: serde_json::Value = yaml_serde::from_str(&c.dynamic_config()).unwrap();
        let d = &v["tls"]["stores"]["default"]["defaultCertificate"];
        assert_eq!(
            d["certFile"],
            "/home/u/.config/traefik/default-certificate.pem"
        );
        assert_eq!(
            d["keyFile"],
            "/home/u/.config/traefik/default-certificate-key.pem"
        );
    }

    #[test]
    fn a_certificate_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("deploy-default-cert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = DefaultCert::beside(&dir.join("traefik.yaml"));
        let dynamic = dir.join("dynamic");
        c.ensure(&dynamic).unwrap();
        let cert = std::fs::read_to_string(&c.cert).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&c.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        c.ensure(&dynamic).unwrap();
        assert_eq!(std::fs::read_to_string(&c.cert).unwrap(), cert);
        let written = std::fs::read_to_string(dynamic.join(DYNAMIC_FILE)).unwrap();
        assert_eq!(written, c.dynamic_config());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
