//! The command line without a node: help and configuration errors.

use std::process::Command;

fn deploy(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn project(name: &str, yaml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("deploy-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("deploy.yaml"), yaml).unwrap();
    dir
}

#[test]
fn help_lists_the_commands() {
    let (code, out, _) = deploy(std::path::Path::new("."), &["--help"]);
    assert_eq!(code, 0);
    for c in ["setup", "release", "rollback", "releases", "status"] {
        assert!(out.contains(c), "{out}");
    }
}

#[test]
fn no_config_says_where_it_looked() {
    let dir = project("none", "");
    std::fs::remove_file(dir.join("deploy.yaml")).unwrap();
    let (code, _, err) = deploy(&dir, &["status"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read deploy.yaml") && err.contains("-c FILE"),
        "{err}"
    );
}

#[test]
fn config_errors_name_the_key_and_line() {
    let base = include_str!("../deploy.yaml.example");
    let dir = project(
        "unknown",
        &base.replace("  interval: 250ms", "  interval: 250ms\n  retry: 3"),
    );
    let (code, _, err) = deploy(&dir, &["status"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown field `retry`") && err.contains("line"),
        "{err}"
    );

    let dir = project("type", &base.replace("port: 18080", "port: eighteen"));
    let (_, _, err) = deploy(&dir, &["status"]);
    assert!(
        err.contains("environments.prod.port") && err.contains("line 79"),
        "{err}"
    );

    let dir = project("malformed", &base.replace("app: my-app", "app: \"my-app"));
    let (code, _, err) = deploy(&dir, &["status"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid config deploy.yaml")
            && err.contains("did not find expected key")
            && err.contains(" column "),
        "{err}"
    );

    let dir = project("missing", &base.replace("app: my-app\n", ""));
    let (_, _, err) = deploy(&dir, &["status"]);
    assert!(err.contains("missing field `app`"), "{err}");

    let (code, _, err) = deploy(&dir, &["-c", "elsewhere.yaml", "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("elsewhere.yaml"), "{err}");
}
