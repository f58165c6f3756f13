//! Traefik (for `traefik.manage`) and Litestream (for `replicate:`) are in neither apt nor dnf.
//! Bootstrap installs a binary you give (`--traefik-bin`/`--litestream-bin`), or else, for one
//! the server needs and lacks, downloads a pinned release from the upstream project's own
//! release page, here (where deploy runs), and checks the archive against the SHA-256 below
//! before anything is taken out of it. Either way the binary must be a Linux program for the
//! server's architecture, and it is installed unless the one there has the same SHA-256.
//!
//! Where each pinned value was found is said in the commit that set it. A new version is a
//! change of this table: its archives' SHA-256 from the release's own checksums file.

use super::probe::Facts;
use super::steps::Upload;
use crate::ui::Ui;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub use crate::cli::Program;

impl Program {
    pub const ALL: [Program; 2] = [Program::Traefik, Program::Litestream];

    /// Its name, in /usr/local/bin too.
    pub fn name(self) -> &'static str {
        match self {
            Program::Traefik => "traefik",
            Program::Litestream => "litestream",
        }
    }

    /// The option that gives a binary of one's own.
    pub fn flag(self) -> &'static str {
        match self {
            Program::Traefik => "--traefik-bin",
            Program::Litestream => "--litestream-bin",
        }
    }

    /// What in a config needs it.
    pub fn needed_by(self) -> &'static str {
        match self {
            Program::Traefik => "traefik.manage",
            Program::Litestream => "replicate:",
        }
    }

    /// The release bootstrap downloads.
    pub fn pinned(self) -> &'static Pinned {
        match self {
            Program::Traefik => &TRAEFIK,
            Program::Litestream => &LITESTREAM,
        }
    }
}

/// A pinned release: its archives by architecture, and where the program is in them.
#[derive(Debug)]
pub struct Pinned {
    pub version: &'static str,
    /// `(uname -m, the archive's URL, its SHA-256)`.
    pub archives: &'static [(&'static str, &'static str, &'static str)],
    /// The program's path inside the archive.
    pub member: &'static str,
}

/// Traefik's release, from github.com/traefik/traefik.
pub const TRAEFIK: Pinned = Pinned {
    version: "3.7.1",
    archives: &[
        (
            "x86_64",
            "https://github.com/traefik/traefik/releases/download/v3.7.1/traefik_v3.7.1_linux_amd64.tar.gz",
            "e92bcfb03fa1e6a70c4e7ad4eb4f1604967e6fa3c21d8e7605aca5407a40162c",
        ),
        (
            "aarch64",
            "https://github.com/traefik/traefik/releases/download/v3.7.1/traefik_v3.7.1_linux_arm64.tar.gz",
            "911ad9f4c21a58fdcbf09c75d967a280c9eec22b3d056fc7f4950cd3294c22b8",
        ),
    ],
    member: "traefik",
};

/// Litestream's release, from github.com/benbjohnson/litestream.
pub const LITESTREAM: Pinned = Pinned {
    version: "0.5.17",
    archives: &[
        (
            "x86_64",
            "https://github.com/benbjohnson/litestream/releases/download/v0.5.17/litestream-0.5.17-linux-x86_64.tar.gz",
            "cfb371176d164437ae869f8351cfde49bd1804ae71c61923f75c9cba9c9c006d",
        ),
        (
            "aarch64",
            "https://github.com/benbjohnson/litestream/releases/download/v0.5.17/litestream-0.5.17-linux-arm64.tar.gz",
            "f8ca4a050095c1efbda2c4365172e61bf9d955ea0d9ac42f448b52e51819baa5",
        ),
    ],
    member: "litestream",
};

impl Pinned {
    /// The archive for a server's architecture (`uname -m`), if one is pinned: `(URL, SHA-256)`.
    /// Pure.
    pub fn archive(&self, arch: &str) -> Option<(&'static str, &'static str)> {
        self.archives
            .iter()
            .find(|(a, _, _)| *a == arch)
            .map(|(_, url, sum)| (*url, *sum))
    }
}

/// The SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The `curl` command line that downloads `url` to `dest` (redirects followed, an HTTP error
/// an error, tried again on a passing failure). Pure.
pub fn curl_args(url: &str, dest: &Path) -> Vec<String> {
    [
        "-fsSL",
        "--retry",
        "2",
        "--connect-timeout",
        "20",
        "-o",
        &dest.display().to_string(),
        "--",
        url,
    ]
    .map(String::from)
    .to_vec()
}

/// Downloads the archive at `url` into `dir` (a private directory), checks its SHA-256
/// against `sha256`, and only then takes `member` out of it; returns the program's path. An
/// archive whose SHA-256 differs is deleted and nothing is taken out of it.
pub fn fetch(url: &str, sha256: &str, member: &str, dir: &Path) -> Result<PathBuf> {
    let archive = dir.join(format!("{member}.tar.gz"));
    let out = captured(duct::cmd("curl", curl_args(url, &archive)))
        .context("cannot run curl (install it, or download the archive yourself)")?;
    if !out.status.success() {
        bail!(
            "downloading {url} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    verify(&archive, sha256).inspect_err(|_| {
        let _ = std::fs::remove_file(&archive);
    })?;
    extract(&archive, member, dir)
}

/// Runs a command with no stdin, its output captured, whatever its exit status.
fn captured(cmd: duct::Expression) -> std::io::Result<std::process::Output> {
    cmd.stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
}

/// Refuses a file whose SHA-256 is not `sha256`.
pub fn verify(file: &Path, sha256: &str) -> Result<()> {
    let got = sha256_file(file)?;
    if !got.eq_ignore_ascii_case(sha256) {
        bail!(
            "{} has the SHA-256 {got}, not the {sha256} deploy knows for it: it is not the \
             release deploy pins (a changed or broken download); nothing was taken out of it",
            file.display()
        );
    }
    Ok(())
}

/// Takes one regular file out of a .tar.gz (with the system's tar; the archive's owners are
/// not kept) into `dir/extracted/`; returns its path.
pub fn extract(archive: &Path, member: &str, dir: &Path) -> Result<PathBuf> {
    let into = dir.join("extracted");
    std::fs::create_dir_all(&into).with_context(|| format!("cannot create {}", into.display()))?;
    let out = captured(duct::cmd!(
        "tar", "-x", "-z", "-o", "-f", archive, "-C", &into, member
    ))
    .context("cannot run tar")?;
    let path = into.join(member);
    let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
    if !out.status.success() || !regular {
        bail!(
            "{} holds no file {member}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(path)
}

/// The pinned release of `program` for the server's architecture, downloaded into `dir` and
/// checked; the refusal says what to do instead.
pub fn pinned_binary(program: Program, arch: &str, dir: &Path) -> Result<PathBuf> {
    let pinned = program.pinned();
    let instead = format!(
        "download a {} binary for linux/{arch} yourself and pass {} PATH",
        program.name(),
        program.flag()
    );
    let (url, sha256) = pinned.archive(arch).ok_or_else(|| {
        anyhow!(
            "deploy pins no {} release for the server's architecture ({}): {instead}",
            program.name(),
            if arch.is_empty() { "?" } else { arch }
        )
    })?;
    fetch(url, sha256, pinned.member, dir).with_context(|| {
        format!(
            "{} {} (pinned) could not be installed: {instead}. Nothing was changed",
            program.name(),
            pinned.version
        )
    })
}

/// A program bootstrap installs: a binary of one's own, or (when `needed`) the pinned release
/// unless the server has one.
pub struct Want {
    pub program: Program,
    pub own: Option<PathBuf>,
    pub needed: bool,
}

/// A private directory here for the downloads (0700, a random name), made when first needed
/// and removed with everything in it at the end.
#[derive(Default)]
pub struct Scratch(Option<PathBuf>);

impl Scratch {
    pub fn dir(&mut self) -> Result<PathBuf> {
        if let Some(dir) = &self.0 {
            return Ok(dir.clone());
        }
        let dir = crate::sys::ssh::private_dir_name_with("deploy-bootstrap")?;
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        self.0 = Some(dir.clone());
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The binaries to install, in the order of `wants`: one's own, or a pinned release
/// downloaded and checked (said as a step), for one the server needs and lacks.
pub fn uploads(
    wants: &[Want],
    facts: &Facts,
    scratch: &mut Scratch,
    ui: Ui,
) -> Result<Vec<Upload>> {
    let mut uploads = Vec::new();
    for w in wants {
        let name = w.program.name();
        if let Some(own) = &w.own {
            uploads.push(upload(w.program, own, facts)?);
        } else if w.needed && !facts.programs.contains_key(name) {
            let pinned = w.program.pinned();
            let dir = scratch.dir()?;
            let path = ui.step(
                &format!(
                    "Downloading {name} {} (the server has none; checked against its pinned SHA-256)",
                    pinned.version
                ),
                || pinned_binary(w.program, &facts.arch, &dir),
            )?;
            uploads.push(upload(w.program, &path, facts)?);
        }
    }
    Ok(uploads)
}

/// A local binary to upload: it must be an ELF program for the server's architecture.
pub fn upload(program: Program, path: &Path, facts: &Facts) -> Result<Upload> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = program.name();
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        bail!(
            "{} is not a Linux program (an ELF binary): pass the {name} binary itself, taken \
             out of its archive",
            path.display()
        );
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if let Some(want) = elf_machine(&facts.arch) {
        if machine != want {
            bail!(
                "{} is built for another architecture than the server's ({}): pass a {name} \
                 binary for linux/{}",
                path.display(),
                facts.arch,
                facts.arch
            );
        }
    }
    Ok(Upload {
        program: name,
        local: path.to_path_buf(),
        sha256: format!("{:x}", Sha256::digest(&bytes)),
    })
}

/// The ELF `e_machine` of an architecture as `uname -m` names it (little-endian ones). Pure.
pub fn elf_machine(arch: &str) -> Option<u16> {
    match arch {
        "x86_64" => Some(62),
        "aarch64" => Some(183),
        "riscv64" => Some(243),
        "ppc64le" => Some(21),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
