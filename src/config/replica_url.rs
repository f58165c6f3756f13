//! A replica URL (`replicate.url`) may hold an SFTP password (`sftp://user:password@host/...`,
//! Litestream's documented way): it is shown nowhere and written only into Litestream's own
//! 0600 config. Pure.

/// A replica URL split into what may be shown and written anywhere (the URL without a
/// password) and the password of `sftp://user:password@host/...` (Litestream's documented
/// way), percent-decoded as Litestream reads it: it goes only into Litestream's 0600 config
/// (its `password:` field, which wins over the URL's). Pure.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_string(), None);
    };
    match userinfo.split_once(':') {
        Some((user, password)) => (
            format!("{scheme}://{user}@{host}{path}"),
            Some(percent_decode(password)),
        ),
        None => (url.to_string(), None),
    }
}

/// The URL as it may be shown: never with its password. Pure.
pub fn shown_url(url: &str) -> String {
    split_password(url).0
}

/// `%XX` escapes decoded (as Go's url package does for a URL's password). Pure.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_taken_out_and_decoded() {
        assert_eq!(
            split_password("sftp://backup:s3cr%40t@h:22/srv/x"),
            ("sftp://backup@h:22/srv/x".into(), Some("s3cr@t".into()))
        );
        assert_eq!(
            split_password("sftp://backup@h/x"),
            ("sftp://backup@h/x".into(), None)
        );
        assert_eq!(
            split_password("s3://bucket/a@b"),
            ("s3://bucket/a@b".into(), None)
        );
        assert_eq!(shown_url("file:///srv/r"), "file:///srv/r");
    }
}
