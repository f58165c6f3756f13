//! An image assembled over the live release's: that image's layers, and one layer of what
//! changed since. Whether it can be is decided by [`stackable`] (pure) and [`over`], which
//! plans the live release's directory again and compares it with what that image records.

use super::layer::{self, InBase, Layer};
use super::recipe::Recipe;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The release before: its directory and image, whose layers an image assembled from the
/// same Containerfile and base goes on top of, adding only what changed.
pub struct Previous<'a> {
    pub dir: &'a Path,
    pub image: &'a str,
}

/// The most layers an assembled image has over its base: the image after one that has this
/// many starts again from one layer of all its files.
pub const MAX_STACK: usize = 8;

/// The label in which an assembled image records what it holds ([`layer::fingerprint`]).
pub const FILES_LABEL: &str = "deploy.files";

/// What the base is, for the fingerprint: its id, or `scratch`.
pub fn base_id(base: &Value) -> &str {
    base["Id"].as_str().unwrap_or("scratch")
}

/// Whether an image can go over `prev` (as `podman image inspect` shows it) on the base
/// `base`: `prev` was assembled (it has its label) over that base's layers, and holds fewer
/// than [`MAX_STACK`] layers over them. Its recorded fingerprint, or why not. Pure.
pub fn stackable<'a>(prev: &'a Value, base: &Value) -> Result<&'a str, String> {
    let recorded = prev
        .pointer(&format!("/Config/Labels/{FILES_LABEL}"))
        .and_then(Value::as_str)
        .ok_or("the live release's image was built, not assembled")?;
    let layers = |v: &Value| super::archive::Lower::of(v).diff_ids;
    let (ours, under) = (layers(prev), layers(base));
    if ours.len() <= under.len() || !ours.starts_with(&under) {
        return Err("the base image changed".into());
    }
    if ours.len() - under.len() >= MAX_STACK {
        return Err(format!(
            "the live release's image has {MAX_STACK} layers over its base"
        ));
    }
    Ok(recorded)
}

/// What the new image adds over `p`'s image, the layer `full` would make whole: the layer of
/// what changed, and that image as inspected; or why it cannot be (said with `--verbose`).
pub fn over(
    p: &Previous,
    recipe: (&Recipe, &[String]),
    base: &Value,
    in_base: &HashMap<String, InBase>,
    full: &Layer,
    now: u64,
) -> Result<(Layer, Value), String> {
    let (r, ignored) = super::recipe_of(p.dir).map_err(|_| "the live release is not assembled")?;
    if (&r, ignored.as_slice()) != recipe {
        return Err("the Containerfile or its ignore rules changed".into());
    }
    let prev = crate::sys::podman::inspect_image(p.image)
        .ok()
        .flatten()
        .ok_or("the live release's image is not in the store")?;
    let recorded = stackable(&prev, base)?;
    let old = layer::plan(&r, p.dir, &ignored, in_base, now).map_err(|e| e.0)?;
    if layer::fingerprint(base_id(base), &old) != recorded {
        return Err("the live release's image does not hold what its directory makes".into());
    }
    let delta = layer::delta(&old, full)
        .ok_or("files were removed or changed kind, or more than half of the bytes changed")?;
    Ok((delta, prev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(layers: &[&str], files: Option<&str>) -> Value {
        json!({
            "RootFS": {"Layers": layers},
            "Config": {"Labels": files.map(|f| json!({FILES_LABEL: f}))},
        })
    }

    #[test]
    fn an_image_goes_over_the_last_one_only_on_the_same_base_and_up_to_the_limit() {
        let base = image(&["b1"], None);
        assert_eq!(stackable(&image(&["b1", "a1"], Some("f")), &base), Ok("f"));
        assert!(
            stackable(&image(&["b1", "a1"], None), &base).is_err(),
            "built"
        );
        // (A base whose tag moved to an image of fewer layers passes here: the fingerprint,
        // which holds the base's id, tells it.)
        assert!(stackable(
            &image(&["b1", "b2", "a1"], Some("f")),
            &image(&["b1", "b2"], None)
        )
        .is_ok());
        assert!(stackable(&image(&["c1", "a1"], Some("f")), &base).is_err());
        assert!(
            stackable(&image(&["b1"], Some("f")), &base).is_err(),
            "no layer over it"
        );
        let mut full = vec!["b1"];
        full.extend(["a"; MAX_STACK]);
        assert!(stackable(&image(&full, Some("f")), &base).is_err());
        full.pop();
        assert!(stackable(&image(&full, Some("f")), &base).is_ok());
    }
}
