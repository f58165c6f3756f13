//! Rendering the embedded templates (`units/`, `templates/`) with minijinja: strict about
//! undefined values, no auto-escaping (values that need quoting use `tojson`; a value that a
//! unit reads where `%` starts a specifier uses `systemd`).

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
    env.add_filter("systemd", systemd_escape);
    env.add_template(name, source)?;
    let ctx = minijinja::context! {
        deploy_version => env!("CARGO_PKG_VERSION"),
        ..minijinja::Value::from(minijinja::value::Serde(ctx))
    };
    env.get_template(name)?
        .render(ctx)
        .with_context(|| format!("cannot render the template {name}"))
}

/// A value as a unit file carries it where systemd expands specifiers (`Environment=`,
/// `ExecStart=`...): each `%` doubled, so that `%h` stays `%h` and is not the home directory.
/// Control characters never get here (see the config's validation). Pure.
pub fn systemd_escape(value: &str) -> String {
    value.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_reaches_a_unit_as_itself() {
        assert_eq!(systemd_escape("/etc/ca%h.pem"), "/etc/ca%%h.pem");
        assert_eq!(systemd_escape("100%%"), "100%%%%");
        assert_eq!(systemd_escape("plain"), "plain");
        let unit = render(
            "u",
            "Environment=X={{ v | systemd }}\n",
            minijinja::context! { v => "a%nb" },
        )
        .unwrap();
        assert_eq!(unit, "Environment=X=a%%nb\n");
    }
}
