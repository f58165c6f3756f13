//! The pinned table, and the download path for real: curl against an HTTP server of the
//! test's own (127.0.0.1:18750) serving a .tar.gz made here, whose SHA-256 the test passes.

use super::*;
use std::io::{Read, Write};
use std::net::TcpListener;

#[test]
fn every_pinned_archive_is_the_projects_own_release_with_a_sha256() {
    for program in Program::ALL {
        let p = program.pinned();
        for arch in ["x86_64", "aarch64"] {
            let (url, sum) = p.archive(arch).expect("pinned for x86_64 and aarch64");
            assert!(
                url.starts_with(&format!(
                    "https://github.com/{}/releases/download/v{}/",
                    match program {
                        Program::Traefik => "traefik/traefik",
                        Program::Litestream => "benbjohnson/litestream",
                    },
                    p.version
                )),
                "{url}"
            );
            assert!(url.ends_with(".tar.gz") && url.contains(p.version), "{url}");
            assert!(
                sum.len() == 64 && sum.chars().all(|c| c.is_ascii_hexdigit()),
                "{sum}"
            );
        }
        assert_eq!(p.archive("s390x"), None);
        assert_eq!(p.member, program.name());
    }
    assert!(TRAEFIK
        .archive("x86_64")
        .unwrap()
        .0
        .ends_with("_linux_amd64.tar.gz"));
    assert!(LITESTREAM
        .archive("aarch64")
        .unwrap()
        .0
        .ends_with("-linux-arm64.tar.gz"));
    assert_eq!(
        curl_args("https://x/a.tar.gz", Path::new("/d/a.tar.gz")).join(" "),
        "-fsSL --retry 2 --connect-timeout 20 -o /d/a.tar.gz -- https://x/a.tar.gz"
    );
}

/// Answers `GET /NAME` with the file `NAME` of `dir`, 404 otherwise, until the test ends.
fn serve(dir: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:18750").expect("port 18750 is free");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request).into_owned();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = match std::fs::read(dir.join(path.trim_start_matches('/'))) {
                Ok(body) => ("200 OK", body),
                Err(_) => ("404 Not Found", b"no such file".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    18750
}

/// A fresh directory of the test's.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deploy-download-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_download_is_checked_before_anything_is_taken_out_of_it() {
    // A release archive as the projects make them: the program at the top, beside others.
    let site = scratch("site");
    let content = scratch("content");
    std::fs::write(content.join("prog"), b"#!/bin/sh\necho pinned\n").unwrap();
    std::fs::write(content.join("LICENSE"), b"MIT\n").unwrap();
    let made = std::process::Command::new("tar")
        .args(["-czf"])
        .arg(site.join("prog.tar.gz"))
        .args(["-C"])
        .arg(&content)
        .args(["prog", "LICENSE"])
        .status()
        .unwrap();
    assert!(made.success());
    let sum = sha256_file(&site.join("prog.tar.gz")).unwrap();
    let port = serve(site.clone());
    let url = format!("http://127.0.0.1:{port}/prog.tar.gz");

    // The right SHA-256: the program, as it was put in.
    let dir = scratch("right");
    let got = fetch(&url, &sum, "prog", &dir).unwrap();
    assert_eq!(got, dir.join("extracted/prog"));
    assert_eq!(std::fs::read(&got).unwrap(), b"#!/bin/sh\necho pinned\n");
    assert!(!dir.join("extracted/LICENSE").exists(), "only the program");

    // A wrong one: refused, the archive deleted, nothing taken out.
    let dir = scratch("wrong");
    let wrong = format!("{:0>64}", "1");
    let e = format!("{:#}", fetch(&url, &wrong, "prog", &dir).unwrap_err());
    assert!(
        e.contains(&format!("has the SHA-256 {sum}, not the {wrong}")),
        "{e}"
    );
    assert!(e.contains("nothing was taken out of it"), "{e}");
    assert!(!dir.join("extracted").exists(), "something was extracted");
    assert!(
        !dir.join("prog.tar.gz").exists(),
        "the refused archive was kept"
    );

    // No such archive (an HTTP error), and an archive without the program.
    let e = format!(
        "{:#}",
        fetch(&format!("{url}.gone"), &sum, "prog", &scratch("gone")).unwrap_err()
    );
    assert!(
        e.contains("downloading http://127.0.0.1:18750/prog.tar.gz.gone failed"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        fetch(&url, &sum, "traefik", &scratch("member")).unwrap_err()
    );
    assert!(e.contains("holds no file traefik"), "{e}");

    // A server whose architecture has no pinned archive: what to do instead, and no download.
    let e = format!(
        "{:#}",
        pinned_binary(Program::Traefik, "s390x", &scratch("arch")).unwrap_err()
    );
    assert!(e.contains("for the server's architecture (s390x)"), "{e}");
    assert!(e.contains("pass --traefik-bin PATH"), "{e}");
    for name in [
        "site", "content", "right", "wrong", "gone", "member", "arch",
    ] {
        let _ = std::fs::remove_dir_all(scratch(name));
    }
}
