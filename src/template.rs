//! Rendering the embedded templates (`units/`, `templates/`) with minijinja: strict about
//! undefined values, no auto-escaping (values that need quoting use `tojson`).

use anyhow::{Context, Result};
use serde::Serialize;

pub fn render(name: &str, source: &str, ctx: impl Serialize) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .context("the template syntax")?,
    );
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_template(name, source)?;
    let ctx = minijinja::context! {
        deploy_version => env!("CARGO_PKG_VERSION"),
        ..minijinja::Value::from(minijinja::value::Serde(ctx))
    };
    env.get_template(name)?
        .render(ctx)
        .with_context(|| format!("cannot render the template {name}"))
}
