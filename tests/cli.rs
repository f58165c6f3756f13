//! The command line without a node: help, configuration errors and their exit code, init and
//! check.

use std::process::Command;

#[track_caller]
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

/// [`deploy`] with variables in its environment.
fn deploy_env(
    dir: &std::path::Path,
    vars: &[(&str, &str)],
    args: &[&str],
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(args)
        .envs(vars.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config with no build (so none can come in by a value), the app's variables as given.
fn minimal(clear: &str, more: &str) -> String {
    format!(
        "app: shop\nartifacts: [shop]\ncontainer: {{port: 8080}}\nenv:\n  clear:\n{clear}\
         environments:\n  prod:\n    host: local\n    path: /srv/shop\n    port: 18080\n{more}"
    )
}

#[track_caller]
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
    for c in [
        "init",
        "check",
        "setup",
        "release",
        "rollback",
        "releases",
        "status",
        "logs",
        "maintenance",
        "migrate-data",
        "completions",
    ] {
        assert!(out.contains(c), "{out}");
    }
}

#[test]
fn no_config_says_where_it_looked() {
    let dir = project("none", "");
    std::fs::remove_file(dir.join("deploy.yaml")).unwrap();
    let (code, _, err) = deploy(&dir, &["status"]);
    assert_eq!(code, 3, "the exit code of a config error");
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
    assert_eq!(code, 3);
    assert!(
        err.contains("unknown field `retry`") && err.contains("line"),
        "{err}"
    );

    let dir = project("type", &base.replace("port: 18080", "port: eighteen"));
    let (_, _, err) = deploy(&dir, &["status"]);
    let line = 1 + base
        .lines()
        .position(|l| l.contains("port: 18080"))
        .unwrap();
    assert!(
        err.contains("environments.prod.port") && err.contains(&format!("line {line}")),
        "{err}"
    );

    let dir = project("malformed", &base.replace("app: my-app", "app: \"my-app"));
    let (code, _, err) = deploy(&dir, &["status"]);
    assert_eq!(code, 3);
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
    assert_eq!(code, 3);
    assert!(err.contains("elsewhere.yaml"), "{err}");
    // DEPLOY_CONFIG is the default of -c (CI jobs set it once).
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .arg("status")
        .env("DEPLOY_CONFIG", "from-the-environment.yaml")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("from-the-environment.yaml"), "{err}");
}

#[test]
fn init_writes_a_config_that_check_validates() {
    let dir = std::env::temp_dir().join(format!("deploy-cli-init-{}/Blog", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Not on a terminal: it asks nothing.
    let (code, _, err) = deploy(&dir, &["init"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("wrote"), "{err}");
    let yaml = std::fs::read_to_string(dir.join("deploy.yaml")).unwrap();
    assert!(yaml.contains("app: blog\n"), "{yaml}");
    assert!(
        yaml.starts_with("# deploy.yaml for blog"),
        "commented: {yaml}"
    );
    let cf = std::fs::read_to_string(dir.join("Containerfile")).unwrap();
    assert!(
        cf.contains("FROM scratch") && cf.contains("ENTRYPOINT [\"/app/blog\"]"),
        "{cf}"
    );
    // It never overwrites.
    let (code, _, err) = deploy(&dir, &["init"]);
    assert_eq!(code, 1);
    assert!(err.contains("exists already"), "{err}");

    // check: the config is valid, but the binary it names is not built yet.
    let (code, _, err) = deploy(&dir, &["check"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Checking the artifacts ... failed"), "{err}");
    assert!(err.contains("blog"), "{err}");
    std::fs::write(dir.join("blog"), "#!/bin/sh\n").unwrap();
    let (code, _, err) = deploy(&dir, &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is valid (environments: prod)"), "{err}");
    let (code, out, _) = deploy(&dir, &["check", "--json"]);
    assert_eq!(code, 0);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["event"].is_string(), "{line}");
    }
    assert!(
        out.lines().last().unwrap().contains("\"event\":\"done\""),
        "{out}"
    );
    // An unknown environment is a config error, and a close name is offered.
    let (code, _, err) = deploy(&dir, &["check", "staging"]);
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = deploy(&dir, &["status", "prd"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("unknown environment `prd`") && err.contains("did you mean `prod`?"),
        "{err}"
    );
}

#[test]
fn completions_and_a_man_page_come_from_the_cli() {
    let dir = std::path::Path::new(".");
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = deploy(dir, &["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("DEPLOY_COMPLETE="), "{shell}: {out}");
    }
    // What a shell asks: commands, and the config's environments where an ENV goes.
    let project = project(
        "complete",
        &minimal(
            "    A: b\n",
            "  staging:\n    host: local\n    path: /srv/s\n    port: 18081\n",
        ),
    );
    let complete = |words: &[&str]| {
        deploy_env(
            &project,
            &[("DEPLOY_COMPLETE", "fish")],
            &[&["--", "deploy"], words].concat(),
        )
        .1
    };
    assert!(complete(&["mig"]).contains("migrate-data"));
    let envs = complete(&["status", ""]);
    assert!(envs.contains("prod") && envs.contains("staging"), "{envs}");
    let envs = complete(&["lock", "acquire", "st"]);
    assert!(envs.contains("staging"), "{envs}");

    let (code, out, err) = deploy(dir, &["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(".TH deploy"), "{out}");
    assert!(
        out.contains(".SH \"EXIT STATUS\"") && out.contains(".SH EXAMPLES"),
        "{out}"
    );
    // One page per command.
    let pages = std::env::temp_dir().join(format!("deploy-cli-man-{}", std::process::id()));
    let (code, _, err) = deploy(dir, &["man", "--dir", pages.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in [
        "deploy.1",
        "deploy-release.1",
        "deploy-lock.1",
        "deploy-remove.1",
    ] {
        let text = std::fs::read_to_string(pages.join(page)).unwrap();
        assert!(text.contains(".SH \"EXIT STATUS\""), "{page}");
    }
    assert!(
        !pages.join("deploy-gap-server.1").exists(),
        "no page of a hidden command"
    );
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = project("pipe", &minimal("    A: b\n", ""));
    for args in [
        &["man"][..],
        &["completions", "bash"],
        &["config"],
        &["--help"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deploy"))
            .args(args)
            .current_dir(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn help_lists_the_commands_in_the_order_of_work_with_global_options_and_exit_codes() {
    let (code, out, _) = deploy(std::path::Path::new("."), &["--help"]);
    assert_eq!(code, 0);
    let at = |c: &str| {
        out.find(&format!("\n  {c} "))
            .unwrap_or_else(|| panic!("{c}: {out}"))
    };
    let order = [
        "init", "check", "setup", "release", "rollback", "status", "stop", "remove",
    ];
    for pair in order.windows(2) {
        assert!(at(pair[0]) < at(pair[1]), "{pair:?}: {out}");
    }
    assert!(out.contains("Global options:\n  -c, --config"), "{out}");
    assert!(out.contains("Exit codes:\n  0  done\n"), "{out}");
    assert!(out.contains("  3  the configuration is invalid"), "{out}");
    for command in ["release", "stop", "logs", "maintenance"] {
        let (_, out, _) = deploy(std::path::Path::new("."), &[command, "--help"]);
        assert!(
            out.lines().any(|l| l.trim_start().starts_with("[ENV]")
                && l.contains("The environment, a name under `environments:`")),
            "{command}: {out}"
        );
    }
    let (code, _, err) = deploy(std::path::Path::new("."), &["lock"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn config_json_and_init_full() {
    let dir = project("json", &minimal("    A: b\n", ""));
    let (code, out, err) = deploy(&dir, &["config", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["app"], "shop");
    assert_eq!(v["environments"]["prod"]["port"], 18080);

    let dir = std::env::temp_dir().join(format!("deploy-cli-full-{}/Shop", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (code, _, err) = deploy(&dir, &["init", "--full"]);
    assert_eq!(code, 0, "{err}");
    let yaml = std::fs::read_to_string(dir.join("deploy.yaml")).unwrap();
    let example = include_str!("../deploy.yaml.example");
    assert_eq!(
        yaml,
        example.replace("my-app", "shop"),
        "the example, from the binary"
    );
    assert!(yaml.contains("(shop_prod.service)"), "{yaml}");
    let (code, _, err) = deploy(&dir, &["config", "prod"]);
    assert_eq!(code, 0, "the full example is valid: {err}");
}

#[test]
fn config_errors_are_in_the_users_words_at_the_right_line() {
    let base = include_str!("../deploy.yaml.example");
    let line_of = |yaml: &str, text: &str| 1 + yaml.lines().position(|l| l.contains(text)).unwrap();
    for (name, yaml, says) in [
        (
            "duration",
            base.replace("  interval: 250ms", "  interval: 250 apples"),
            format!(
                "health.interval (line {}): `250 apples` is not a duration",
                line_of(base, "  interval: 250ms")
            ),
        ),
        (
            "twice",
            base.replace("keep_releases: 5\n", "keep_releases: 5\nkeep_releases: 4\n"),
            format!(
                "keep_releases (line {}): written twice (first on line {})",
                line_of(base, "keep_releases: 5") + 1,
                line_of(base, "keep_releases: 5")
            ),
        ),
        (
            "port",
            base.replace("port: 18080", "port: 70000"),
            "expected a port number, 1 to 65535".to_string(),
        ),
        (
            "typo",
            base.replace("  interval: 250ms", "  intervall: 250ms"),
            "unknown field `intervall`".to_string(),
        ),
    ] {
        let dir = project(name, &yaml);
        let (code, _, err) = deploy(&dir, &["check"]);
        assert_eq!(code, 3, "{name}: {err}");
        assert!(err.contains(&says), "{name}: {err}");
        assert!(!err.contains("u16"), "{name}: {err}");
        if name == "typo" {
            assert!(err.contains("(did you mean `interval`?)"), "{err}");
        }
    }
}

#[test]
fn values_come_from_the_environment() {
    let base = include_str!("../deploy.yaml.example");
    let yaml = base.replace("port: 18080", "port: ${PROD_PORT}");
    assert_ne!(yaml, base);
    let dir = project("envvars", &yaml);
    let line = 1 + yaml
        .lines()
        .position(|l| l.contains("${PROD_PORT}"))
        .unwrap();
    let (code, _, err) = deploy(&dir, &["check"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("PROD_PORT is not set")
            && err.contains(&format!("environments.prod.port (line {line})")),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .arg("check")
        .env("PROD_PORT", "18090")
        .current_dir(&dir)
        .output()
        .unwrap();
    // Past the config (valid with the variable set): on to the artifacts, which this bare
    // project lacks.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("Checking the artifacts") && !err.contains("PROD_PORT"),
        "{err}"
    );
}

#[test]
fn a_value_from_the_environment_stays_one_value() {
    let dir = project(
        "one-value",
        &minimal(
            "    HASH: a#b ${H}\n    RAW: $${X}\n    GREETING: ${G}\n",
            "    hooks:\n      before_upload: [\"echo ${S}\"]\n",
        ),
    );
    // A newline and `key:` in a variable: no `build:` section comes in (pasted into the text,
    // it made one), the value stays one string, which an env file cannot hold.
    let injected = "hi\nbuild:\n  command: touch /tmp/deploy-injected";
    let vars = [("G", injected), ("H", "x"), ("S", "s")];
    let (code, out, err) = deploy_env(&dir, &vars, &["config"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(!out.contains("build:"), "{out}");
    assert!(
        err.contains("env.clear.GREETING (line 8): holds a control character (`\\n`)"),
        "{err}"
    );

    let vars = [("G", "hello"), ("H", "c # d"), ("X", "laptop"), ("S", "s")];
    let (code, out, err) = deploy_env(&dir, &vars, &["config"]);
    assert_eq!(code, 0, "{err}");
    let shown: yaml_serde::Value = yaml_serde::from_str(&out).unwrap();
    let clear = &shown["env"]["clear"];
    assert_eq!(clear["HASH"], "a#b c # d", "a `#` cuts nothing: {out}");
    assert_eq!(clear["RAW"], "${X}", "`$$` is a `$`, once: {out}");
    assert_eq!(clear["GREETING"], "hello");
    // An environment's hooks are the shell's, as the top level's are: no value of this shell
    // in them (nor in the step labels and JSON events that show them).
    assert_eq!(shown["hooks"]["before_upload"][0], "echo ${S}", "{out}");

    // The node side of a remote environment reads the resolved config as it is: `${X}` is the
    // value the laptop resolved, not the server's X.
    std::fs::write(dir.join("resolved.yaml"), &out).unwrap();
    let (code, there, err) = deploy_env(
        &dir,
        &[("X", "server")],
        &["--node", "--resolved", "-c", "resolved.yaml", "config"],
    );
    assert_eq!(code, 0, "{err}");
    let there: yaml_serde::Value = yaml_serde::from_str(&there).unwrap();
    assert_eq!(there["env"]["clear"]["RAW"], "${X}");
}

#[test]
fn a_host_that_ssh_would_read_as_an_option_is_refused() {
    let dir = project(
        "dash-host",
        &minimal("    A: b\n", "").replace("host: local", "host: -oProxyCommand=x@vps"),
    );
    let (code, _, err) = deploy(&dir, &["check"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("environments.prod.host (line "), "{err}");
}

#[test]
fn a_control_character_in_a_value_is_refused_with_its_key() {
    let base = minimal("    A: b\n", "");
    let managed = "traefik:\n  rule: Host(`a.test`)\n  manage: true\n  acme:\n    email: a@b.c\n";
    for (name, yaml, key) in [
        (
            "cr-path",
            base.replace("path: /srv/shop", "path: \"/srv/shop\\r\""),
            "environments.prod.path (line 10)",
        ),
        (
            "nl-ca",
            format!("{base}{managed}    ca_certificates: \"/ca.pem\\nExecStartPre=/bin/id\"\n"),
            "traefik.acme.ca_certificates (line 17)",
        ),
        (
            "nul-url",
            format!("{base}replicate:\n  url: \"file:///srv/replica\\0\"\n"),
            "replicate.url (line 13)",
        ),
    ] {
        let dir = project(name, &yaml);
        let (code, _, err) = deploy(&dir, &["check"]);
        assert_eq!(code, 3, "{name}: {err}");
        assert!(
            err.contains(&format!("{key}: holds a control character")),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_traefik_api_off_the_loopback_is_refused() {
    let base = minimal("    A: b\n", "");
    for api in ["http://10.0.0.5:8099", "http://localhost:8099"] {
        let dir = project(
            "api",
            &format!("{base}traefik:\n  rule: Host(`a.test`)\n  api: {api}\n"),
        );
        let (code, _, err) = deploy(&dir, &["check"]);
        assert_eq!(code, 3, "{api}: {err}");
        assert!(
            err.contains("traefik.api (line 14):") && err.contains("loopback"),
            "{api}: {err}"
        );
    }
}
