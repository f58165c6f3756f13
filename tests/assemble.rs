//! A Containerfile that only copies files: its image is assembled without `podman build`, and
//! holds what `podman build` makes of the same release directory.

mod common;

use common::{Options, Project};

/// A base image of a few directories (Debian's `/bin` link into `/usr/bin`, `/srv` of mode
/// 0750) and settings: a working directory, a variable, a port over UDP.
#[track_caller]
fn base_image(p: &Project, name: &str) {
    let root = p.dir.join("base-root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("srv")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    common::chmod(&root.join("srv"), 0o750);
    common::chown_to_node_user(&p.dir);
    let tar = p.dir.join("base.tar");
    let r = std::process::Command::new("tar")
        .args(["--owner=0", "--group=0", "-C"])
        .arg(&root)
        .args(["-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(r.success());
    common::chown_to_node_user(&tar);
    let changes = ["WORKDIR /srv", "ENV LANG=C.UTF-8", "EXPOSE 53/udp"];
    let mut args = vec!["import", "-q"];
    for c in &changes {
        args.extend(["--change", c]);
    }
    args.extend([tar.to_str().unwrap(), name]);
    p.user("podman", &args).ok();
}

/// Each path of an image as `find` lists it: type and mode, owner, size, link target (not
/// times: a build stamps its own directories).
#[track_caller]
fn tree(p: &Project, image: &str) -> String {
    const SCRIPT: &str = r#"m=$(podman image mount "$1") || exit 3
cd "$m" && find . -printf '%p %M %U %G %s %l\n' | sort
podman image umount "$1" >/dev/null"#;
    p.user("podman", &["unshare", "sh", "-c", SCRIPT, "sh", image])
        .ok()
        .stdout
}

#[track_caller]
fn inspect(p: &Project, image: &str, format: &str) -> String {
    p.user("podman", &["image", "inspect", "--format", format, image])
        .ok()
        .stdout
}

const SETTINGS: &str = "{{.Config.Entrypoint}} {{.Config.Cmd}} {{.Config.Env}} \
                        {{.Config.WorkingDir}} {{.Config.ExposedPorts}} {{.Config.User}}";

#[test]
fn an_assembled_image_holds_what_podman_build_makes_and_a_link_above_a_copy_is_built() {
    let p = Project::new("t-assemble", 18452, Options::default());
    let base = "localhost/t-assemble-base:1";
    base_image(&p, base);
    p.write("assets/css/site.css", "body {}");
    p.write(
        "Containerfile",
        &format!(
            "FROM {base}\nWORKDIR /app\nCOPY . .\nCOPY assets/greeting.txt /srv/\n\
             COPY assets/greeting.txt /opt/tools/\nENV GREETING_FROM=image\nEXPOSE 8080 53\nENTRYPOINT [\"/app/example-app\"]\n"
        ),
    );
    std::fs::rename(p.dir.join("dist/example-app"), p.dir.join("example-app")).unwrap();
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    p.write(
        "deploy.yaml",
        &yaml.replace("  - dist/example-app\n", "  - example-app\n"),
    );
    p.deploy(&["setup"]).ok();
    let r = p.deploy(&["release", "v1", "--dry-run"]).ok();
    r.prints("assembled: the base's layers and one layer of the copied files");
    p.deploy(&["release", "v1"]).ok();
    assert!(p.body("/").starts_with("example-app v1 "));
    let image = p.names().image("v1");
    assert!(
        inspect(&p, &image, "{{range .History}}{{.CreatedBy}};{{end}}")
            .contains("deploy: assembled"),
        "v1 was assembled"
    );

    // podman build of the same release directory makes the same files and settings.
    let reference = "localhost/t-assemble-ref:v1";
    let release = p.root().join("releases/v1");
    p.user(
        "podman",
        &[
            "build",
            "-q",
            "--layers=false",
            "-t",
            reference,
            release.to_str().unwrap(),
        ],
    )
    .ok();
    let ours = tree(&p, &image);
    assert_eq!(ours, tree(&p, reference));
    for line in [
        "./srv drwxr-x--- 0 0",
        "./srv/greeting.txt -rw-r--r-- 0 0",
        "./bin lrwxrwxrwx 0 0 7 usr/bin",
        // Below a directory the base does not have: made, as podman build makes it.
        "./opt drwxr-xr-x 0 0",
        "./opt/tools/greeting.txt -rw-r--r-- 0 0",
    ] {
        assert!(ours.contains(line), "{line} in\n{ours}");
    }
    for left_out in [
        "./app/.deploy",
        "./app/data",
        "./app/.env",
        "./app/.containerignore",
    ] {
        assert!(
            !ours.contains(&format!("{left_out} ")),
            "{left_out} in\n{ours}"
        );
    }
    assert_eq!(
        inspect(&p, &image, SETTINGS),
        inspect(&p, reference, SETTINGS)
    );
    let settings = inspect(&p, &image, SETTINGS);
    for said in ["GREETING_FROM=image", "LANG=C.UTF-8", "53/udp", "8080/tcp"] {
        assert!(settings.contains(said), "{said} in {settings}");
    }
    assert!(!settings.contains("53/tcp"), "{settings}");
    let cached = p.user.home.join(".local/share/deploy/bases");
    assert!(
        std::fs::read_dir(&cached)
            .map(|d| d.count() > 0)
            .unwrap_or(false),
        "what the base holds is kept in {}",
        cached.display()
    );

    // A copy through the base's link (/bin -> usr/bin) is left to podman build, which follows it.
    let text = std::fs::read_to_string(p.dir.join("Containerfile")).unwrap();
    p.write(
        "Containerfile",
        &text.replace(
            "COPY assets/greeting.txt /srv/",
            "COPY assets/greeting.txt /bin/",
        ),
    );
    let r = p.deploy(&["release", "v2", "-v"]).ok();
    r.says("built by podman build, not assembled: /bin is not a directory in the base");
    assert!(p.body("/").starts_with("example-app v2 "));
    let v2 = p.names().image("v2");
    assert!(
        !inspect(&p, &v2, "{{range .History}}{{.CreatedBy}};{{end}}").contains("deploy: assembled")
    );
    let built = tree(&p, &v2);
    assert!(built.contains("./usr/bin/greeting.txt "), "{built}");
    assert!(built.contains("./bin lrwxrwxrwx"), "{built}");
    p.user("podman", &["rmi", reference, base]);
}

#[track_caller]
fn layers(p: &Project, version: &str) -> usize {
    inspect(p, &p.names().image(version), "{{len .RootFS.Layers}}")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_release_adds_a_layer_of_what_changed_and_a_change_within_the_second_is_released() {
    let p = Project::new("t-assemble-delta", 18453, Options::default());
    p.with_v1_live();
    assert!(p.body("/").contains("greeting=hello one"));
    assert_eq!(layers(&p, "v1"), 1);
    // A file added: v2 is v1's layer and one of the new file.
    p.write("assets/more.txt", "more");
    p.deploy(&["release", "v2"]).ok();
    assert_eq!(layers(&p, "v2"), 2);
    // The greeting changed at the same size within the second of v2's copy: rsync compares
    // times to the nanosecond, so it is sent, and the layer of what changed holds it.
    let greeting = p.dir.join("assets/greeting.txt");
    let was = std::fs::metadata(&greeting)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let (secs, nanos) = match was.subsec_nanos() {
        500_000_000 => (was.as_secs(), 400_000_000),
        _ => (was.as_secs(), 500_000_000),
    };
    p.write("assets/greeting.txt", "hello two");
    let f = std::fs::File::options()
        .write(true)
        .open(&greeting)
        .unwrap();
    let within = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    f.set_modified(within).unwrap();
    p.deploy(&["release", "v3"]).ok();
    assert!(
        p.body("/").contains("greeting=hello two"),
        "{}",
        p.body("/")
    );
    assert_eq!(layers(&p, "v3"), 3);
    // A file removed: a layer of all the files again (a removal would need a whiteout).
    p.remove("assets/more.txt");
    p.deploy(&["release", "v4"]).ok();
    assert_eq!(layers(&p, "v4"), 1);
    assert!(p.body("/").contains("greeting=hello two"));
    // The same files again (a release of its config alone): v4's image named again, with no
    // empty layer stacked on it.
    let r = p.deploy(&["release", "v5", "-v"]).ok();
    r.says("the same files as");
    let id = |v: &str| inspect(&p, &p.names().image(v), "{{.Id}}");
    assert_eq!(id("v5"), id("v4"));
    assert!(
        p.body("/").starts_with("example-app v5 "),
        "{}",
        p.body("/")
    );
    p.deploy(&["rollback", "--to", "v2"]).ok();
    assert!(
        p.body("/").contains("greeting=hello one"),
        "{}",
        p.body("/")
    );
    // Back to v5, then the same files again with keep_releases 1: the prune takes v4's name
    // from the image that v5 and v6 share, and nothing else.
    p.deploy(&["rollback", "--to", "v5"]).ok();
    let yaml = std::fs::read_to_string(p.dir.join("deploy.yaml")).unwrap();
    assert!(yaml.contains("keep_releases: 5"), "{yaml}");
    p.write(
        "deploy.yaml",
        &yaml.replace("keep_releases: 5", "keep_releases: 1"),
    );
    p.deploy(&["release", "v6"]).ok();
    assert_eq!(id("v6"), id("v5"));
    assert!(!p.image_exists("v4"), "v4's name was pruned");
    assert!(
        p.body("/").starts_with("example-app v6 "),
        "{}",
        p.body("/")
    );
    p.deploy(&["rollback"]).ok();
    assert!(
        p.body("/").starts_with("example-app v5 "),
        "{}",
        p.body("/")
    );
}
