//! Where an environment's node is: `local`, or a server over SSH (`host:` parsed).

/// Where an environment's node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Local,
    Ssh {
        /// `user@host` or `host` (or an ssh config alias), as ssh takes it.
        destination: String,
        port: Option<u16>,
    },
}

/// Parses `local`, `host`, `user@host`, `user@host:port` (also `[v6]:port`). No part begins with
/// `-` (ssh and rsync would read it as an option: `-oProxyCommand=...`), and none holds white
/// space or a control character.
pub fn parse_host(text: &str) -> std::result::Result<Host, String> {
    let text = text.trim();
    if text == "local" {
        return Ok(Host::Local);
    }
    let bad = || {
        format!(
            "`{}`: use `local`, `host`, `user@host` or `user@host:port` (or an ssh alias), no \
             part beginning with `-`",
            text.escape_debug()
        )
    };
    if text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '\'')
    {
        return Err(bad());
    }
    let (user, rest) = match text.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() && !u.starts_with('-') && !r.is_empty() => (Some(u), r),
        Some(_) => return Err(bad()),
        None => (None, text),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.starts_with('-') {
        return Err(bad());
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?),
        None => None,
    };
    Ok(Host::Ssh {
        destination: match user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_string(),
        },
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(destination: &str, port: Option<u16>) -> Host {
        Host::Ssh {
            destination: destination.into(),
            port,
        }
    }

    #[test]
    fn hosts_parse_as_ssh_takes_them() {
        assert_eq!(parse_host("local"), Ok(Host::Local));
        assert_eq!(parse_host("vps"), Ok(ssh("vps", None)));
        assert_eq!(
            parse_host("deploy@vps.example.com:22"),
            Ok(ssh("deploy@vps.example.com", Some(22)))
        );
        assert_eq!(
            parse_host("deploy@10.0.0.1"),
            Ok(ssh("deploy@10.0.0.1", None))
        );
        assert_eq!(parse_host("d@[::1]:2222"), Ok(ssh("d@::1", Some(2222))));
        for bad in [
            "",
            "a b",
            "@h",
            "u@",
            "h:0",
            "h:x",
            "-oProxyCommand=x",
            "-oProxyCommand=x@vps",
            "-l@vps",
            "u@-oProxyCommand=x",
            "u@[-x]:22",
            "u@h\0",
            "u\r@h",
            "u@h\x1b",
            "u@h/x",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }
}
