//! Rootless Podman: building a release's image and removing old ones.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The command line that builds a release directory into an image. Pure.
pub fn build_args(dir: &Path, image: &str) -> Vec<String> {
    vec![
        "build".into(),
        "--tag".into(),
        image.into(),
        "--layers=true".into(),
        dir.display().to_string(),
    ]
}

/// Last `n` lines of some output.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Builds the image; on failure, the error carries the build's last lines.
pub fn build(dir: &Path, image: &str, verbose: bool) -> Result<()> {
    let expr = duct::cmd("podman", build_args(dir, image))
        .dir(dir)
        .stderr_to_stdout()
        .unchecked();
    let out = if verbose {
        expr.run()
    } else {
        expr.stdout_capture().run()
    }
    .context("cannot run podman: install it (apt-get install podman) and check `podman info`")?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        bail!(
            "podman build of {image} in {} failed ({}):\n{}",
            dir.display(),
            out.status,
            tail(&text, 20)
        );
    }
    Ok(())
}

pub fn image_exists(image: &str) -> Result<bool> {
    let out = duct::cmd!("podman", "image", "exists", image)
        .unchecked()
        .stderr_null()
        .run()
        .context("cannot run podman")?;
    Ok(out.status.success())
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
    fn build_command() {
        assert_eq!(
            build_args(Path::new("/srv/a/releases/v1"), "localhost/a:v1").join(" "),
            "build --tag localhost/a:v1 --layers=true /srv/a/releases/v1"
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
