//! An assembled image as an OCI archive that `podman load` takes: the layer's tar, the image's
//! config (the base's, with the recipe's settings and the base's layers by their digests,
//! which the store already holds, so they are not in the archive), its manifest and index.

use super::layer::{Entry, Inode, Layer, Meta};
use super::recipe::Recipe;
use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// A writer that counts and hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn header(kind: tar::EntryType, m: &Meta, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(m.mode);
    h.set_uid(m.uid.into());
    h.set_gid(m.gid.into());
    h.set_mtime(m.mtime);
    h.set_size(size);
    h
}

/// Writes the layer's tar to `to`; its digest (`sha256:...`) and size.
pub fn write_layer(layer: &Layer, to: &Path) -> Result<(String, u64)> {
    let file =
        std::fs::File::create(to).with_context(|| format!("cannot write {}", to.display()))?;
    let mut out = Hashing {
        inner: std::io::BufWriter::new(file),
        hash: Sha256::new(),
        len: 0,
    };
    {
        let mut tar = tar::Builder::new(&mut out);
        for (path, entry) in layer {
            match entry {
                Entry::Dir(m) => {
                    let mut h = header(tar::EntryType::Directory, m, 0);
                    tar.append_data(&mut h, format!("{path}/"), std::io::empty())?;
                }
                Entry::File(src, m, planned) => {
                    let f = open_planned(src, planned)?;
                    let mut h = header(tar::EntryType::Regular, m, planned.size);
                    let exact = Exact {
                        inner: std::io::Read::take(f, planned.size),
                        left: planned.size,
                    };
                    tar.append_data(&mut h, path, exact)
                        .with_context(|| format!("cannot copy {}", src.display()))?;
                }
                Entry::Link(target, m) => {
                    let mut h = header(tar::EntryType::Symlink, m, 0);
                    tar.append_link(&mut h, path, target)?;
                }
            }
        }
        tar.finish()?;
    }
    out.flush()?;
    let digest = format!("sha256:{:x}", out.hash.finalize_reset());
    Ok((digest, out.len))
}

/// Opens the file a layer's entry was planned from: not through a link, and still the same
/// file (inode and size), or the assembly fails (and `podman build` builds the image).
fn open_planned(src: &Path, planned: &Inode) -> Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .with_context(|| format!("cannot read {}", src.display()))?;
    let m = f.metadata()?;
    if (m.dev(), m.ino(), m.len()) != (planned.dev, planned.ino, planned.size) {
        anyhow::bail!("{} changed while the image was made", src.display());
    }
    Ok(f)
}

/// A reader of exactly `left` bytes: one that ends sooner is an error, not a short entry that
/// would break the tar.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file got shorter while it was copied",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The layers an image's new layer goes on, and their history: the base's, or those of the
/// image it is assembled on top of (as `podman image inspect` shows either).
pub struct Lower {
    pub diff_ids: Vec<Value>,
    pub history: Vec<Value>,
}

impl Lower {
    pub fn of(image: &Value) -> Lower {
        let list = |p: &str| {
            image
                .pointer(p)
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
        };
        Lower {
            diff_ids: list("/RootFS/Layers"),
            history: list("/History"),
        }
    }
}

/// The labels that name an assembled image and what it holds.
pub struct Labels<'a> {
    pub image: &'a str,
    pub files: &'a str,
}

/// The new layer: its digest, and the time it is made.
pub struct Top<'a> {
    pub digest: &'a str,
    pub created: &'a str,
}

/// The image config: the base's settings (`base` as `podman image inspect` shows it, `{}` for
/// `FROM scratch`) with the recipe's, the labels, and the new layer over `lower`. Pure.
pub fn config(r: &Recipe, base: &Value, lower: Lower, labels: Labels, top: Top) -> Value {
    let Labels { image, files } = labels;
    let Top { digest, created } = top;
    let mut c: Map<String, Value> = base
        .get("Config")
        .and_then(|c| c.as_object().cloned())
        .unwrap_or_default();
    let mut env: Vec<String> = c
        .get("Env")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    // As `podman build`: the default PATH after the base's variables, then the recipe's.
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    for (k, v) in &r.env {
        env.retain(|e| e.split('=').next() != Some(k.as_str()));
        env.push(format!("{k}={v}"));
    }
    c.insert("Env".into(), env.into());
    if r.drops_cmd {
        c.remove("Cmd");
    }
    for (k, v) in &r.settings {
        c.insert(k.clone(), v.clone());
    }
    let labels = object(&mut c, "Labels");
    for (k, v) in &r.labels {
        labels[k] = v.clone().into();
    }
    labels["deploy.image"] = image.into();
    labels[super::stack::FILES_LABEL] = files.into();
    let ports = object(&mut c, "ExposedPorts");
    for p in &r.exposed {
        // A port exposed already, whatever its protocol, is left as it is (as `podman build`).
        let number = p.split('/').next().unwrap_or(p);
        let known = ports
            .as_object()
            .is_some_and(|o| o.keys().any(|k| k.split('/').next() == Some(number)));
        if !known {
            ports[p] = json!({});
        }
    }
    let Lower {
        mut diff_ids,
        mut history,
    } = lower;
    diff_ids.push(digest.into());
    history.push(json!({"created": created, "created_by": "deploy: assembled (COPY, no RUN)"}));
    let field = |k: &str, dflt: &str| {
        base.get(k)
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| dflt.to_string())
    };
    json!({
        "created": created,
        "architecture": field("Architecture", host_arch()),
        "os": field("Os", "linux"),
        "config": c,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    })
}

/// The object at `key` of a config, made if missing or not an object.
fn object<'a>(c: &'a mut Map<String, Value>, key: &str) -> &'a mut Value {
    let v = c.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v
}

/// Podman's default `PATH`, which `podman build` sets when the base has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// Writes the OCI archive of the image `image` to `to`: the config, the layer's tar at
/// `layer_file` (`layer`: its digest and size), and the base's layers named by digest only.
pub fn write_archive(
    to: &Path,
    image: &str,
    config: &Value,
    layer: (&str, u64),
    layer_file: &Path,
) -> Result<()> {
    let config_bytes = serde_json::to_vec(config)?;
    let config_digest = sha256(&config_bytes);
    let mut layers: Vec<Value> = config["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|d| json!({"mediaType": LAYER_TYPE, "digest": d, "size": 0}))
        .collect();
    if let Some(last) = layers.last_mut() {
        last["size"] = layer.1.into();
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_bytes.len()},
        "layers": layers,
    }))?;
    let manifest_digest = sha256(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": image},
        }],
    }))?;
    let file =
        std::fs::File::create(to).with_context(|| format!("cannot write {}", to.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    const FILE: Meta = Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
    };
    let mut add = |name: &str, size: u64, data: &mut dyn std::io::Read| -> Result<()> {
        let mut h = header(tar::EntryType::Regular, &FILE, size);
        tar.append_data(&mut h, name, data)?;
        Ok(())
    };
    let small: [(&str, &[u8]); 4] = [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", &index),
        (&blob(&config_digest), &config_bytes),
        (&blob(&manifest_digest), &manifest),
    ];
    for (name, mut data) in small {
        add(name, data.len() as u64, &mut data)?;
    }
    let mut f = std::fs::File::open(layer_file)?;
    add(&blob(layer.0), layer.1, &mut f)?;
    tar.into_inner()?.flush()?;
    Ok(())
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

fn blob(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

#[cfg(test)]
mod tests {
    use super::super::recipe::parse;
    use super::*;

    #[test]
    fn the_config_sets_the_recipe_over_the_base() {
        let r = parse("FROM localhost/b\nENV A=2\nENTRYPOINT [\"/x\"]\nEXPOSE 8080\nLABEL k=v\n")
            .unwrap();
        let base = json!({
            "Config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Labels": null},
            "Architecture": "arm64", "Os": "linux",
            "RootFS": {"Type": "layers", "Layers": ["sha256:aa"]},
            "History": [{"created_by": "base"}],
        });
        let made = |r: &Recipe, base: &Value| {
            let labels = Labels {
                image: "localhost/a:v1",
                files: "f",
            };
            let top = Top {
                digest: "sha256:bb",
                created: "T",
            };
            config(r, base, Lower::of(base), labels, top)
        };
        let c = made(&r, &base);
        assert_eq!(c["config"]["Env"], json!(["PATH=/bin", "A=2"]));
        assert_eq!(
            c["config"]["Cmd"],
            Value::Null,
            "ENTRYPOINT drops the base's CMD"
        );
        assert_eq!(c["config"]["Entrypoint"], json!(["/x"]));
        assert_eq!(
            c["config"]["Labels"],
            json!({"k": "v", "deploy.image": "localhost/a:v1", "deploy.files": "f"})
        );
        assert_eq!(c["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(c["rootfs"]["diff_ids"], json!(["sha256:aa", "sha256:bb"]));
        assert_eq!(c["architecture"], "arm64");
        assert_eq!(c["history"].as_array().unwrap().len(), 2);
        let scratch = parse("FROM scratch\nCOPY a /a\n").unwrap();
        let none = json!({});
        let c = made(&scratch, &none);
        assert_eq!(c["config"]["Env"], json!([format!("PATH={DEFAULT_PATH}")]));
        assert_eq!(c["rootfs"]["diff_ids"], json!(["sha256:bb"]));
    }
}
