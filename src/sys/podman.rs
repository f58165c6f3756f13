//! Rootless Podman: building a release's image and removing old ones.

use super::build_cache::BuildCache;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// `podman build` of a release, with or without its cache of layers (see [`BuildCache`]). The
/// label names the image in its own config, so that no two apps or environments ever share an
/// image id (identical builds otherwise do): a removal by another app's prune can then only
/// untag what it owns, never take this one. (Two versions of one app may share one: a release
/// of the same files names the live release's assembled image again; every removal of a
/// version's image is by its name, which untags it.) Pure.
pub fn build_args(dir: &Path, image: &str, cache: BuildCache) -> Vec<String> {
    vec![
        "build".into(),
        "--tag".into(),
        image.into(),
        "--label".into(),
        format!("deploy.image={image}"),
        cache.flag().into(),
        dir.display().to_string(),
    ]
}

/// Last `n` lines of some output.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A build that failed because a cached layer went away under it: another app's image was
/// removed (pruned) at the same moment. Building again uses what is there now.
pub fn cache_race(output: &str) -> bool {
    output.contains("layer not known")
        || output.contains("checking if cached image exists")
        || output.contains("getting source imageReference for")
        || output.contains("image not known")
}

/// How an image was made: what a release says of it after its build step.
#[derive(Debug, PartialEq, Eq)]
pub enum Made {
    /// Assembled (see [`super::assemble`]): its layer in words (a `--verbose` detail).
    Assembled(String),
    /// Built by `podman build`: why it was not assembled (a `--verbose` detail).
    Built(String),
    /// Built by `podman build` after the assembly failed: the failure (a warning).
    BuiltAfter(String),
}

impl Made {
    /// Shows what is worth saying of it.
    pub fn tell(&self, ui: &crate::ui::Ui) {
        match self {
            Made::Assembled(how) => ui.detail(&format!("   assembled: {how}")),
            Made::Built(why) => {
                ui.detail(&format!("   built by podman build, not assembled: {why}"))
            }
            Made::BuiltAfter(e) => ui.warn(&format!(
                "the image could not be assembled ({e}); podman build built it"
            )),
        }
    }
}

/// Makes the image of the release directory `dir`: assembled when its Containerfile only copies
/// files (see [`super::assemble`]; its files written in `work`, on top of the `previous`
/// release's image when it can), else built (its cache decided by what it holds); on failure,
/// the error carries the build's last lines.
pub fn build(
    dir: &Path,
    image: &str,
    work: &Path,
    previous: Option<super::assemble::Previous>,
    verbose: bool,
) -> Result<Made> {
    let made = match super::assemble::assemble(dir, image, work, previous) {
        Ok(Ok(done)) => return Ok(Made::Assembled(done.0)),
        Ok(Err(why)) => Made::Built(why.0),
        Err(e) => Made::BuiltAfter(format!("{e:#}")),
    };
    podman_build(dir, image, verbose).map(|()| made)
}

/// `podman build` of the release directory `dir`.
fn podman_build(dir: &Path, image: &str, verbose: bool) -> Result<()> {
    let cache = BuildCache::of_dir(dir);
    let mut attempt = 1;
    loop {
        let out = super::own_group(duct::cmd("podman", build_args(dir, image, cache)))
            .dir(dir)
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .context(
                "cannot run podman: install it (apt-get install podman) and check `podman info`",
            )?;
        let text = String::from_utf8_lossy(&out.stdout);
        if verbose {
            eprint!("{text}");
        }
        if !out.status.success() && cache_race(&text) && attempt < 5 {
            attempt += 1;
            std::thread::sleep(std::time::Duration::from_millis(200));
            continue;
        }
        return check_build(out.status, &text, dir, image);
    }
}

fn check_build(
    status: std::process::ExitStatus,
    text: &str,
    dir: &Path,
    image: &str,
) -> Result<()> {
    if !status.success() {
        bail!(
            "podman build of {image} in {} failed ({status}):\n{}",
            dir.display(),
            tail(text, 20)
        );
    }
    Ok(())
}

/// Rootless Podman's state outlived its processes: its database says containers run, but their
/// processes and the pause process are gone (after a reboot where the runtime directory is not
/// a tmpfs, or when every process of the user was killed). Every podman command then fails.
pub fn stale_state(output: &str) -> bool {
    output.contains("invalid internal status") && output.contains("system migrate")
}

/// Whether rootless Podman's pause process, named in `$XDG_RUNTIME_DIR/libpod/tmp/pause.pid`,
/// runs: the condition the unit's start checks too (units/app.service).
fn pause_process_alive() -> bool {
    let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") else {
        return false;
    };
    std::fs::read_to_string(Path::new(&dir).join("libpod/tmp/pause.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Checks that rootless Podman works for this user, and resets a stale state (see
/// [`stale_state`]) with `podman system migrate`, which only marks the dead containers stopped.
/// Returns whether it had to. With `fix` false (`deploy check`), a stale state is an error.
/// With `fix`, a running pause process is enough (the state is live then): no podman command
/// is run, which keeps this off a release's and a rollback's time.
pub fn check_runtime(fix: bool) -> Result<bool> {
    if fix && pause_process_alive() {
        return Ok(false);
    }
    let run = |args: &[&str]| {
        duct::cmd("podman", args)
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .context("cannot run podman: install it (as root: apt-get install podman)")
    };
    let out = run(&["ps", "--quiet"])?;
    if out.status.success() {
        return Ok(false);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if stale_state(&text) && !fix {
        bail!(
            "podman's state outlived its processes (after a reboot?): `podman system migrate` \
             resets it, as the next release or rollback does by itself"
        );
    }
    if stale_state(&text) {
        let migrated = run(&["system", "migrate"])?;
        let again = run(&["ps", "--quiet"])?;
        if migrated.status.success() && again.status.success() {
            return Ok(true);
        }
        let text = String::from_utf8_lossy(&again.stdout);
        bail!(
            "podman's state is stale and `podman system migrate` did not reset it:\n{}",
            tail(&text, 10)
        );
    }
    bail!(
        "rootless podman does not work for this user (`podman ps` failed):\n{}\ncheck \
         `podman info`, and that the user has ranges in /etc/subuid and /etc/subgid",
        tail(&text, 10)
    )
}

/// `podman create ARGS` (arguments from a builder such as `unit::exec_args`): the container
/// exists, not started, or the error says what podman said.
pub fn create(args: &[String]) -> Result<()> {
    let out = duct::cmd("podman", args)
        .stdout_null()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run podman")?;
    if !out.status.success() {
        let name = args
            .iter()
            .skip_while(|a| *a != "--name")
            .nth(1)
            .map(String::as_str)
            .unwrap_or("the container");
        bail!(
            "podman could not create {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Stops a container (SIGTERM, then a kill after `timeout`), then removes it, confirmed gone.
pub fn stop_and_remove(name: &str, timeout: std::time::Duration) -> Result<()> {
    let _ = duct::cmd!(
        "podman",
        "stop",
        "--ignore",
        "-t",
        timeout.as_secs().max(1).to_string(),
        name
    )
    .stdout_null()
    .stderr_null()
    .unchecked()
    .run();
    remove_container_now(name)
}

/// Removes a container at once (no grace period) and confirms it is gone.
pub fn remove_container_now(name: &str) -> Result<()> {
    let out = duct::cmd!("podman", "rm", "--force", "--time", "0", name)
        .stderr_capture()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot run podman")?;
    let still = duct::cmd!("podman", "container", "exists", name)
        .unchecked()
        .run()
        .context("cannot run podman")?;
    if still.status.success() {
        bail!(
            "`podman rm --force --time 0 {name}` did not remove it: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes every container (running or not) labelled `label` (`key=value`) and confirms that
/// none is left, trying up to three times; returns the names removed.
pub fn remove_labelled(label: &str) -> Result<Vec<String>> {
    let filter = format!("label={label}");
    let list = || lines_of(&["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"]);
    let mut removed = Vec::new();
    for attempt in 0..3 {
        let names = list()?;
        if names.is_empty() {
            return Ok(removed);
        }
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        for name in names {
            if remove_container_now(&name).is_ok() {
                removed.push(name);
            }
        }
    }
    let left = list()?;
    if left.is_empty() {
        return Ok(removed);
    }
    bail!(
        "the container(s) {} (label {label}) could not be removed: remove them (`podman rm \
         --force NAME`), then run the command again",
        left.join(", ")
    )
}

/// Podman's default init (`--init`) when no containers.conf names another.
const DEFAULT_INIT: &str = "/usr/libexec/podman/catatonit";

/// The `init_path` a containers.conf sets, if any (`init_path = "/x"`). Pure.
fn init_path_in(conf: &str) -> Option<String> {
    conf.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("init_path"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .next_back()
}

/// The init `podman run --init` uses here: the user's containers.conf, then the system's, then
/// podman's default; an error, saying how to install it, when it is not there. catatonit is
/// static (so it runs in a `FROM scratch` image) and passes socket activation's `LISTEN_PID`
/// on to its child.
pub fn init_binary(home: &Path) -> Result<PathBuf> {
    let confs = [
        home.join(".config/containers/containers.conf"),
        PathBuf::from("/etc/containers/containers.conf"),
        PathBuf::from("/usr/share/containers/containers.conf"),
    ];
    let path = confs
        .iter()
        .find_map(|c| init_path_in(&std::fs::read_to_string(c).ok()?))
        .unwrap_or_else(|| DEFAULT_INIT.to_string());
    let path = PathBuf::from(path);
    let runs = std::fs::metadata(&path).is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    });
    if !runs {
        bail!(
            "podman's init {} is not installed (container.init runs the app under it, so that \
             it stops on SIGTERM): install catatonit (`apt-get install catatonit` as root), or \
             set container.init: false for an app that handles SIGTERM or an image with its own \
             init",
            path.display()
        );
    }
    Ok(path)
}

/// What a release's start and stop need to know of its image: whether its entrypoint is an
/// init of its own, and the signal that stops it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRun {
    /// Its entrypoint when that is an init of its own (s6-overlay's `/init`, tini,
    /// dumb-init): `--init` would put another in front of it, which s6-overlay refuses (it
    /// must be PID 1).
    pub own_init: Option<String>,
    /// The number of the signal its `STOPSIGNAL` names (SIGTERM's, 15, when it names none);
    /// `None` for one deploy does not know.
    pub stop_signal: Option<u8>,
}

/// Asks podman what [`ImageRun`] holds of `image` (one `podman image inspect`).
pub fn image_run(image: &str) -> Result<ImageRun> {
    let out = lines_of(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}\n{{json .Config.StopSignal}}",
        image,
    ])?;
    Ok(ImageRun::of(
        out.first().map(String::as_str).unwrap_or_default(),
        out.get(1).map(String::as_str).unwrap_or_default(),
    ))
}

impl ImageRun {
    /// From the image's entrypoint and stop signal, each as JSON. Pure.
    pub fn of(entrypoint: &str, stop_signal: &str) -> ImageRun {
        let entry: Vec<String> = serde_json::from_str(entrypoint).unwrap_or_default();
        let first = entry.first().map(String::as_str).unwrap_or_default();
        let name = first.rsplit('/').next().unwrap_or_default();
        let own_init = (first == "/init"
            || ["tini", "dumb-init", "catatonit", "s6-svscan"].contains(&name))
        .then(|| first.to_string());
        let signal: String = serde_json::from_str(stop_signal).unwrap_or_default();
        ImageRun {
            own_init,
            stop_signal: signal_number(&signal),
        }
    }
}

/// The number of a signal as an image's `STOPSIGNAL` names it (`SIGQUIT`, `QUIT`, `3`,
/// `SIGRTMIN+3`; none: SIGTERM), on Linux; `None` for a name it does not know. Pure.
pub fn signal_number(name: &str) -> Option<u8> {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let valid = |n: u32| (1..=64).contains(&n).then_some(n as u8);
    if bare.is_empty() {
        return Some(15);
    }
    if let Ok(n) = bare.parse::<u32>() {
        return valid(n);
    }
    if let Some(i) = NAMES.iter().position(|n| *n == bare) {
        return Some(i as u8 + 1);
    }
    match bare {
        "IOT" => Some(6),
        "POLL" => Some(29),
        "RTMIN" => Some(34),
        "RTMAX" => Some(64),
        _ => {
            let (base, off) = bare.split_once(['+', '-'])?;
            let off: u32 = off.parse().ok()?;
            match (base, bare.contains('+')) {
                ("RTMIN", true) => valid(34 + off),
                ("RTMAX", false) => valid(64u32.checked_sub(off)?),
                _ => None,
            }
        }
    }
}

/// Runs podman with `args`, its output captured; a failure is the caller's to read.
fn captured(args: &[&str]) -> Result<std::process::Output> {
    duct::cmd("podman", args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run podman")
}

/// `podman image inspect` of `name`; `None` if the store does not have it.
pub fn inspect_image(name: &str) -> Result<Option<serde_json::Value>> {
    let out = captured(&["image", "inspect", name])?;
    if !out.status.success() {
        return Ok(None);
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("podman image inspect printed no list")?;
    Ok(list.into_iter().next())
}

pub fn lines_of(args: &[&str]) -> Result<Vec<String>> {
    let out = captured(args)?;
    if !out.status.success() {
        bail!(
            "podman {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// The storage driver Podman uses for this user (`overlay`, `vfs`...).
pub fn storage_driver() -> Result<String> {
    Ok(
        lines_of(&["info", "--format", "{{.Store.GraphDriverName}}"])?
            .into_iter()
            .next()
            .unwrap_or_default(),
    )
}

/// What Podman's store holds, as far as a switch of driver is concerned.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Store {
    pub driver: String,
    /// Container names, volume names and image names (`repo:tag`; `<none>` for build cache).
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub images: Vec<String>,
}

/// The driver, and on vfs what the store holds (what a switch would delete). A listing that
/// raced with an image removed meanwhile (another app's prune) is taken again.
pub fn store() -> Result<Store> {
    let driver = storage_driver()?;
    if driver != "vfs" {
        return Ok(Store {
            driver,
            ..Default::default()
        });
    }
    let list = |args: &[&str]| {
        let mut attempt = 0;
        loop {
            match lines_of(args) {
                Err(e) if attempt < 5 && cache_race(&format!("{e:#}")) => attempt += 1,
                other => return other,
            }
        }
    };
    Ok(Store {
        driver,
        containers: list(&["ps", "--all", "--format", "{{.Names}}"])?,
        volumes: list(&["volume", "ls", "--format", "{{.Name}}"])?,
        images: list(&["images", "--all", "--format", "{{.Repository}}:{{.Tag}}"])?,
    })
}

/// `podman system reset --force`: every container, image and volume of this user goes.
pub fn reset_store() -> Result<()> {
    lines_of(&["system", "reset", "--force"]).map(|_| ())
}

/// Where Podman keeps images and containers (`podman info`'s GraphRoot).
pub fn graph_root() -> Result<std::path::PathBuf> {
    Ok(lines_of(&["info", "--format", "{{.Store.GraphRoot}}"])?
        .into_iter()
        .next()
        .unwrap_or_default()
        .into())
}

/// The image store's path, asked of podman (about 250 ms) only when the user's storage config
/// changed since it was last asked: kept in `~/.local/share/deploy/graphroot` with the config's
/// time.
pub fn graph_root_cached(home: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::metadata(home.join(".config/containers/storage.conf"))
        .map(|m| format!("{}.{}", m.mtime(), m.mtime_nsec()))
        .unwrap_or_else(|_| "none".into());
    let cache = super::fsx::deploy_data(home).join("graphroot");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some((k, path)) = text.trim_end().split_once('\t') {
            if k == key && Path::new(path).is_dir() {
                return Ok(PathBuf::from(path));
            }
        }
    }
    let path = graph_root()?;
    if let Some(dir) = cache.parent() {
        let _ = crate::sys::fsx::ensure_dir(dir, 0o700);
    }
    let _ = crate::sys::fsx::write_atomic(
        &cache,
        format!("{key}\t{}\n", path.display()).as_bytes(),
        0o600,
    );
    Ok(path)
}

/// Flushes the filesystems that hold `paths` to disk (syncfs(2), through `sync -f`).
pub fn sync_filesystems(paths: &[&Path]) -> Result<()> {
    let out = duct::cmd(
        "sync",
        std::iter::once("-f".as_ref()).chain(paths.iter().map(|p| p.as_os_str())),
    )
    .stderr_capture()
    .unchecked()
    .run()
    .context("cannot run sync")?;
    if !out.status.success() {
        bail!(
            "sync -f failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Gives an image another name.
pub fn tag(image: &str, name: &str) -> Result<()> {
    lines_of(&["tag", image, name]).map(|_| ())
}

pub fn image_exists(image: &str) -> Result<bool> {
    let out = duct::cmd!("podman", "image", "exists", image)
        .unchecked()
        .stderr_null()
        .run()
        .context("cannot run podman")?;
    Ok(out.status.success())
}

/// Whether the image store at `store` (its graph root) lists `image` by name, read from the
/// store's own index (`<driver>-images/images.json`) with no podman process (which costs
/// 100-250 ms before a rollback's gap). `None` when no index can be read: ask podman then.
/// Only a listed name is trusted: a caller that finds none asks [`image_exists`].
pub fn image_listed(store: &Path, image: &str) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        names: Vec<String>,
    }
    let mut read_one = false;
    for entry in std::fs::read_dir(store).ok()?.flatten() {
        if !entry.file_name().to_string_lossy().ends_with("-images") {
            continue;
        }
        let Ok(text) = std::fs::read(entry.path().join("images.json")) else {
            continue;
        };
        let Ok(images) = serde_json::from_slice::<Vec<Entry>>(&text) else {
            continue;
        };
        read_one = true;
        if images.iter().any(|i| i.names.iter().any(|n| n == image)) {
            return Some(true);
        }
    }
    read_one.then_some(false)
}

/// The images labelled by deploy (`deploy.image`), as `(id, label)`; with `dangling`, only
/// those without a name left (a release built again, a name moved).
pub fn labelled_images(dangling: bool) -> Result<Vec<(String, String)>> {
    let mut args = vec!["images", "--filter", "label=deploy.image"];
    if dangling {
        args.extend(["--filter", "dangling=true"]);
    }
    args.extend(["--format", "{{.ID}}|{{index .Labels \"deploy.image\"}}"]);
    Ok(image_lines(&args)?
        .iter()
        .filter_map(|l| l.split_once('|'))
        .map(|(id, label)| (id.to_string(), label.to_string()))
        .collect())
}

/// The ids among `images` (`(id, label)`) whose `deploy.image` label names an image of
/// `repository` (`localhost/<app>_<env>`): an app's own, whatever layers they share with
/// other apps' images. Pure.
pub fn ids_of(images: &[(String, String)], repository: &str) -> Vec<String> {
    let prefix = format!("{repository}:");
    let mut ids: Vec<String> = images
        .iter()
        .filter(|(_, label)| label.starts_with(&prefix))
        .map(|(id, _)| id.clone())
        .collect();
    ids.dedup();
    ids
}

/// The names (`repository:tag`) of the images in `repository`.
pub fn names_in(repository: &str) -> Result<Vec<String>> {
    let filter = format!("reference={repository}");
    let prefix = format!("{repository}:");
    Ok(image_lines(&[
        "images",
        "--filter",
        &filter,
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])?
    .into_iter()
    .filter(|n| n.starts_with(&prefix))
    .collect())
}

/// A listing of images, tried again when an image went away while podman listed it (another
/// app's prune at the same moment: podman 4 then fails the whole listing).
fn image_lines(args: &[&str]) -> Result<Vec<String>> {
    let mut attempt = 1;
    loop {
        match lines_of(args) {
            Err(e) if attempt < 5 && cache_race(&format!("{e:#}")) => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Removes an image; an image that is already gone is fine.
pub fn remove_image(image: &str) -> Result<()> {
    let out = duct::cmd!("podman", "image", "rm", image)
        .unchecked()
        .stdout_null()
        .stderr_capture()
        .run()
        .context("cannot run podman")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || err.contains("image not known") {
        return Ok(());
    }
    bail!("podman image rm {image} failed: {}", err.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_path_is_read_from_containers_conf() {
        let conf = "[containers]\n#init_path = \"/nope\"\ninit_path = \"/usr/bin/catatonit\"\n";
        assert_eq!(init_path_in(conf).as_deref(), Some("/usr/bin/catatonit"));
        assert_eq!(init_path_in("[engine]\nruntime = \"runc\"\n"), None);
    }

    #[test]
    fn an_apps_images_are_found_by_their_label() {
        let images = [
            ("a1".to_string(), "localhost/shop_prod:v1".to_string()),
            ("b2".to_string(), "localhost/shop_prod-eu:v1".to_string()),
            ("c3".to_string(), "localhost/shop_prod:v2".to_string()),
        ];
        assert_eq!(ids_of(&images, "localhost/shop_prod"), ["a1", "c3"]);
        assert!(ids_of(&images, "localhost/shop").is_empty());
    }

    #[test]
    fn an_image_is_listed_by_name_in_the_store_index() {
        let store = std::env::temp_dir().join(format!("deploy-store-{}", std::process::id()));
        std::fs::create_dir_all(&store).unwrap();
        assert_eq!(image_listed(&store, "localhost/a:1"), None);
        std::fs::create_dir(store.join("overlay-images")).unwrap();
        std::fs::write(
            store.join("overlay-images/images.json"),
            r#"[{"id":"1","names":["localhost/a:1"]},{"id":"2"}]"#,
        )
        .unwrap();
        assert_eq!(image_listed(&store, "localhost/a:1"), Some(true));
        assert_eq!(image_listed(&store, "localhost/a:2"), Some(false));
        std::fs::remove_dir_all(&store).unwrap();
    }

    #[test]
    fn an_images_stop_signal_and_init() {
        let r = ImageRun::of(r#"["/init"]"#, r#""SIGQUIT""#);
        assert_eq!(
            (r.own_init.as_deref(), r.stop_signal),
            (Some("/init"), Some(3))
        );
        let r = ImageRun::of("null", r#""""#);
        assert_eq!((r.own_init, r.stop_signal), (None, Some(15)));
        assert_eq!(
            ImageRun::of(r#"["/usr/bin/tini","--"]"#, "").stop_signal,
            Some(15)
        );
        for (name, n) in [
            ("SIGWINCH", Some(28)),
            ("term", Some(15)),
            ("9", Some(9)),
            ("SIGRTMIN+3", Some(37)),
            ("RTMAX-1", Some(63)),
            ("SIGRTMIN-1", None),
            ("65", None),
            ("0", None),
            ("SIGNOPE", None),
            ("TERM; rm -rf ~", None),
        ] {
            assert_eq!(signal_number(name), n, "{name}");
        }
    }

    #[test]
    fn build_command() {
        assert_eq!(
            build_args(Path::new("/srv/a/releases/v1"), "localhost/a:v1", BuildCache::Layers).join(" "),
            "build --tag localhost/a:v1 --label deploy.image=localhost/a:v1 --layers=true /srv/a/releases/v1"
        );
        let off = build_args(Path::new("/r"), "localhost/a:v1", BuildCache::Off);
        assert_eq!(off[5..], ["--layers=false", "/r"]);
    }

    #[test]
    fn a_vanished_cache_layer_is_a_race_not_a_failure() {
        assert!(cache_race("Error: checking if cached image exists from a previous build: getting top layer info: layer not known"));
        assert!(cache_race("Error: getting source imageReference for \"1673551d\": parsing named reference \"1673551d\": invalid repository name"));
        assert!(!cache_race(
            "Error: building at STEP \"COPY missing /app\": no such file"
        ));
    }

    #[test]
    fn a_state_outliving_its_processes_is_recognised() {
        assert!(stale_state("time=\"2026-11-22T20:37:08Z\" level=error msg=\"invalid internal status, try resetting the pause process with \\\"podman system migrate\\\": could not find any running process: no such process\""));
        assert!(!stale_state("Error: cannot connect to Podman"));
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
