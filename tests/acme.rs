//! HTTPS with certificates from an ACME CA, for real: Pebble (Let's Encrypt's test CA) issues
//! a certificate to the managed Traefik over a real HTTP-01 challenge (Pebble's own mock DNS
//! points the name at this machine; nothing is always-valid). A binary of its own: it gives the
//! managed Traefik that every test shares an HTTPS entry point and a redirect for a while.

mod common;
use common::{node, Options, Project, TRAEFIK_API, TRAEFIK_WEB};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const ACME: u16 = 18414;
const ACME_MANAGEMENT: u16 = 18415;
const DNS: u16 = 18453;
const CHALLTESTSRV_MANAGEMENT: u16 = 18455;
const WEBSECURE: u16 = 18443;

/// Pebble and its mock DNS server, stopped when dropped.
struct Pebble {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[track_caller]
fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pebble {
    /// A CA for Pebble's own HTTPS (its ACME API), then Pebble, validating challenges on the
    /// managed Traefik's `web` port and resolving every name to 127.0.0.1.
    fn start() -> Pebble {
        let dir = PathBuf::from("/tmp/deploy-tests/pebble");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        make_certificates(&dir);
        let children = spawn_servers(&dir);
        let p = Pebble { dir, children };
        p.wait_for(&format!("https://127.0.0.1:{ACME}/dir"));
        p
    }

    /// GETs `url` trusting the CA of Pebble's own server.
    fn get(&self, url: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "5", "--cacert"])
            .arg(self.dir.join("ca.pem"))
            .arg(url)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[track_caller]
    fn wait_for(&self, url: &str) {
        let t = Instant::now();
        while self.get(url).is_none() {
            assert!(t.elapsed() < Duration::from_secs(20), "{url} answers");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A CA for Pebble's own HTTPS and its server certificate (for 127.0.0.1), in `dir`.
#[track_caller]
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=deploy test ACME server CA",
    ]);
    run("openssl", &ca, dir);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run("openssl", &csr, dir);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
        dir,
    );
    common::chmod(&dir.join("ca.pem"), 0o644);
    common::chmod(dir, 0o755);
}

/// Pebble's mock DNS server (every name is 127.0.0.1) and Pebble, validating challenges on the
/// managed Traefik's `web` port.
fn spawn_servers(dir: &Path) -> Vec<Child> {
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{ACME}"),
        "managementListenAddress": format!("127.0.0.1:{ACME_MANAGEMENT}"),
        "certificate": "cert.pem",
        "privateKey": "key.pem",
        "httpPort": TRAEFIK_WEB,
        "tlsPort": WEBSECURE,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let dns = Command::new("pebble-challtestsrv")
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .args(["-dns01", &format!("127.0.0.1:{DNS}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args([
            "-management",
            &format!("127.0.0.1:{CHALLTESTSRV_MANAGEMENT}"),
        ])
        .stdout(log("challtestsrv.log"))
        .stderr(log("challtestsrv.err"))
        .spawn()
        .expect("pebble-challtestsrv (apt-get install pebble)");
    let pebble = Command::new("pebble")
        .args([
            "-config",
            "pebble.json",
            "-dnsserver",
            &format!("127.0.0.1:{DNS}"),
        ])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .current_dir(dir)
        .stdout(log("pebble.log"))
        .stderr(log("pebble.err"))
        .spawn()
        .expect("pebble (apt-get install pebble)");
    vec![dns, pebble]
}

fn traefik(https: &str) -> String {
    format!(
        "traefik:\n  api: http://127.0.0.1:{TRAEFIK_API}\n  rule: Host(`t-acme.test`)\n{https}  \
         manage:\n    entrypoints:\n      web: 127.0.0.1:{TRAEFIK_WEB}\n"
    )
}

#[test]
fn a_release_is_served_over_https_with_a_certificate_pebble_issued() {
    let pebble = Pebble::start();
    let https = format!(
        "  entrypoints: [websecure]\n  redirect_https: true\n  acme:\n    email: ops@example.com\n    \
         ca_server: https://127.0.0.1:{ACME}/dir\n    ca_certificates: {}\n",
        pebble.dir.join("ca.pem").display()
    );
    let mut section = traefik(&https);
    section += &format!("      websecure: 127.0.0.1:{WEBSECURE}\n");
    let p = Project::new(
        "t-acme",
        18376,
        Options {
            traefik: Some(section),
            ..Options::default()
        },
    );
    let acme_json = node().home.join(".config/traefik/acme.json");
    let _ = std::fs::remove_file(&acme_json);
    p.with_v1_live();

    // The certificate comes from Pebble (its root is trusted here, nothing else), for the name.
    let root = pebble.dir.join("root.pem");
    let roots = pebble
        .get(&format!("https://127.0.0.1:{ACME_MANAGEMENT}/roots/0"))
        .expect("Pebble's root");
    std::fs::write(&root, roots).unwrap();
    let url = format!("https://t-acme.test:{WEBSECURE}/");
    let resolve = format!("t-acme.test:{WEBSECURE}:127.0.0.1");
    let body = first_https_answer(&pebble, &root, &resolve, &url);
    assert!(body.starts_with("example-app v1 "), "{body}");
    let issued = std::fs::read_to_string(pebble.dir.join("pebble.log")).unwrap_or_default();
    assert!(
        issued.contains("t-acme.test"),
        "Pebble's log names the order: {issued}"
    );
    // Traefik keeps the account and certificate private, in the user's directory.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&acme_json).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Plain http on `web` redirects to https.
    assert_web_redirects_to_https();
    // A release keeps serving over https.
    p.deploy(&["release", "v2"]).ok();
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "5", "--resolve", &resolve, "--cacert"])
        .arg(&root)
        .arg(&url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("example-app v2 "));

    // The shared Traefik goes back to plain http for the other tests.
    back_to_plain_http(&p, &https);
}

/// Polls `url` over https (trusting only Pebble's `root`) until the release answers 200: the
/// body it answered with.
#[track_caller]
fn first_https_answer(pebble: &Pebble, root: &Path, resolve: &str, url: &str) -> String {
    let t = Instant::now();
    loop {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--resolve", resolve, "--cacert"])
            .arg(root)
            .args(["-w", "\n%{http_code}", url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.ends_with("\n200") {
            return text;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "no certificate from Pebble: {}\npebble: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(pebble.dir.join("pebble.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[track_caller]
fn assert_web_redirects_to_https() {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-H",
            "Host: t-acme.test",
        ])
        .arg(format!("http://127.0.0.1:{TRAEFIK_WEB}/x"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        (said.starts_with("301 ") || said.starts_with("308 "))
            && said.contains("https://t-acme.test"),
        "{said}"
    );
}

/// Takes the https entry point and the redirect out of the project's config, and sets up.
#[track_caller]
fn back_to_plain_http(p: &Project, https: &str) {
    p.write(
        "deploy.yaml",
        &std::fs::read_to_string(p.dir.join("deploy.yaml"))
            .unwrap()
            .replace(https, "  entrypoints: [web]\n")
            .replace(&format!("      websecure: 127.0.0.1:{WEBSECURE}\n"), ""),
    );
    p.deploy(&["setup"]).ok();
    let static_config =
        std::fs::read_to_string(node().home.join(".config/traefik/traefik.yaml")).unwrap();
    assert!(
        !static_config.contains("certificatesResolvers"),
        "{static_config}"
    );
}
