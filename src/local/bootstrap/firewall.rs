//! firewalld: the managed Traefik's ports opened where firewalld runs, for good (`--permanent`)
//! and now, without a `--reload` (which would drop the rules an admin or a tool such as fail2ban
//! added for the running firewall only). Each port is queried first: a second run says they are
//! open already. Pure: the runner runs the step, the tests read it as a string.

use super::steps::Step;

/// The ports the managed Traefik listens on for the world, from its entry point addresses
/// (`:80`, `0.0.0.0:443`, `[::]:8443`), sorted, each once; those on a loopback address
/// (`127.0.0.1:8081`, `[::1]:81`, `localhost:82`) need no opening. Pure.
pub fn public_ports<'a>(addresses: impl IntoIterator<Item = &'a String>) -> Vec<u16> {
    let mut ports: Vec<u16> = addresses
        .into_iter()
        .filter_map(|a| {
            let (host, port) = a.rsplit_once(':')?;
            let loopback = host.starts_with("127.") || host == "[::1]" || host == "localhost";
            (!loopback).then(|| port.parse().ok()).flatten()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// `firewall-cmd ARGS` for each port, `P/tcp` in place of `{}`. Pure.
fn each(ports: &[u16], args: &str) -> Vec<String> {
    ports
        .iter()
        .map(|p| format!("firewall-cmd {}", args.replace("{}", &format!("{p}/tcp"))))
        .collect()
}

/// The step that opens `ports` (TCP, firewalld's default zone) for good and now. Its check
/// queries each in the running firewall and in the permanent one. Pure.
pub fn open_ports_step(ports: &[u16]) -> Step {
    let list = ports
        .iter()
        .map(|p| format!("{p}/tcp"))
        .collect::<Vec<_>>()
        .join(" ");
    let query = |args: &str| {
        each(ports, args)
            .into_iter()
            .map(|q| format!("{q} >/dev/null || exit 1\n"))
            .collect::<String>()
    };
    let add = |query: &str, add: &str| {
        each(ports, query)
            .into_iter()
            .zip(each(ports, add))
            .map(|(q, a)| format!("{q} >/dev/null || {a}\n"))
            .collect::<String>()
    };
    Step {
        name: format!("Opening Traefik's ports in firewalld ({list})"),
        check: format!(
            "{}{}echo '{list}: already open'\n",
            query("--query-port={}"),
            query("--permanent --query-port={}")
        ),
        apply: format!(
            "set -e\n{}{}",
            add("--permanent --query-port={}", "--permanent --add-port={}"),
            add("--query-port={}", "--add-port={}")
        ),
        input: None,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_ports_of_traefiks_entry_points() {
        let addrs = [
            ":443",
            "0.0.0.0:80",
            "[::]:443",
            "127.0.0.1:8081",
            "[::1]:81",
        ]
        .map(String::from);
        assert_eq!(public_ports(&addrs), [80, 443]);
        assert!(public_ports(&["localhost:80".to_string()]).is_empty());
    }

    #[test]
    fn each_port_is_queried_then_opened_for_good_and_now() {
        let s = open_ports_step(&[80, 443]);
        assert_eq!(
            s.name,
            "Opening Traefik's ports in firewalld (80/tcp 443/tcp)"
        );
        assert_eq!(
            s.check,
            "firewall-cmd --query-port=80/tcp >/dev/null || exit 1\n\
             firewall-cmd --query-port=443/tcp >/dev/null || exit 1\n\
             firewall-cmd --permanent --query-port=80/tcp >/dev/null || exit 1\n\
             firewall-cmd --permanent --query-port=443/tcp >/dev/null || exit 1\n\
             echo '80/tcp 443/tcp: already open'\n"
        );
        assert_eq!(
            s.apply,
            "set -e\n\
             firewall-cmd --permanent --query-port=80/tcp >/dev/null || \
             firewall-cmd --permanent --add-port=80/tcp\n\
             firewall-cmd --permanent --query-port=443/tcp >/dev/null || \
             firewall-cmd --permanent --add-port=443/tcp\n\
             firewall-cmd --query-port=80/tcp >/dev/null || firewall-cmd --add-port=80/tcp\n\
             firewall-cmd --query-port=443/tcp >/dev/null || firewall-cmd --add-port=443/tcp\n"
        );
        assert!(!s.apply.contains("--reload"));
    }
}
