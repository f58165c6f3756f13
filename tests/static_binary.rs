//! A deploy for any Linux server with Podman: a static build (scripts/build-static) needs no
//! shared library, and `setup --server-binary` installs it over SSH, once it ran there; a binary
//! that cannot run there is refused with its own error, and nothing is replaced.

mod common;
use common::{Options, Project};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The static build, made once for all the tests here (the dev profile: the build is what is
/// tested, not its optimisation).
fn static_build() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = std::process::Command::new(common::repo().join("scripts/build-static"))
            .args(["--profile", "dev"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/build-static: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string();
        // Where the node's user can read it (the tests' own directory).
        let copy =
            Path::new("/tmp/deploy-tests/bin").join(format!("static-{}", std::process::id()));
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&path, &copy).unwrap();
        copy
    })
}

/// What an ELF file asks of the dynamic loader: its interpreter (PT_INTERP) and how many
/// shared libraries it needs (DT_NEEDED).
fn loader_needs(elf: &[u8]) -> (bool, usize) {
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "ELF64");
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let mut interp = false;
    let mut needed = 0;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = u32::from_le_bytes(elf[ph..ph + 4].try_into().unwrap());
        match kind {
            3 => interp = true,
            2 => {
                let (offset, size) = (u64_at(ph + 8), u64_at(ph + 32));
                for d in (offset..offset + size).step_by(16) {
                    match u64_at(d) {
                        0 => break,
                        1 => needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (interp, needed)
}

#[test]
fn a_static_build_needs_no_shared_library() {
    let ordinary = std::fs::read(env!("CARGO_BIN_EXE_deploy")).unwrap();
    let (interp, needed) = loader_needs(&ordinary);
    assert!(
        interp && needed > 0,
        "the ordinary build is dynamic: the reader works"
    );
    let bytes = std::fs::read(static_build()).unwrap();
    assert_eq!(
        loader_needs(&bytes),
        (false, 0),
        "no loader, no shared library"
    );
    let out = std::process::Command::new(static_build())
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("deploy {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn setup_installs_a_server_binary_once_it_ran_there() {
    let p = Project::new(
        "t-day-static",
        18514,
        Options {
            remote: true,
            ..Options::default()
        },
    );
    let bin = p.root().join(".deploy/bin/deploy");
    // What a dynamic build says on a server whose glibc is older than the laptop's.
    p.write(
        "old-glibc",
        "#!/bin/sh\necho \"deploy: /lib/x86_64-linux-gnu/libc.so.6: version \\`GLIBC_2.99' not found (required by deploy)\" >&2\nexit 1\n",
    );
    common::chmod(&p.dir.join("old-glibc"), 0o755);
    let r = p
        .deploy_remote(&["setup", "--server-binary", "old-glibc"])
        .failed();
    r.says("cannot run there; nothing was changed there:");
    r.says("  | deploy: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.99' not found");
    r.says("scripts/build-static");
    assert!(!bin.exists(), "nothing installed");
    assert!(!p.root().join(".deploy/bin/deploy.new").exists());

    p.write("other-version", "#!/bin/sh\necho deploy 9.9.9\n");
    common::chmod(&p.dir.join("other-version"), 0o755);
    p.deploy_remote(&["setup", "--server-binary", "other-version"])
        .failed()
        .says("says `deploy 9.9.9`");
    p.deploy_remote(&["setup", "--server-binary", "missing"])
        .failed()
        .says("--server-binary missing: no such file");

    let static_bin = static_build().to_str().unwrap();
    let r = p
        .deploy_remote(&["setup", "--server-binary", static_bin])
        .ok();
    r.says("Installing deploy");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(static_build()).unwrap()
    );
    // This build drives the static one it installed, and installs nothing again.
    let r = p
        .deploy_remote(&["setup", "--server-binary", static_bin])
        .ok();
    assert!(!r.stderr.contains("Installing deploy"), "{}", r.stderr);
    p.deploy_remote(&["release", "v1"])
        .ok()
        .says("t-day-static v1 is live on test");
    p.deploy_remote(&["status"]).ok().prints("current:      v1");
    // A local environment runs this deploy: the option is refused there.
    let local = Project::new("t-day-static2", 18516, Options::default());
    local
        .deploy(&["setup", "--server-binary", static_bin])
        .failed()
        .says("--server-binary is for a remote environment");
}
