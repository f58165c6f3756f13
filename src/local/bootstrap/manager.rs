//! The deploy user's world running: its systemd manager with its D-Bus bus (started by hand
//! where PID 1 is not systemd), and rootless Podman working for it. Pure builders of steps, as
//! in [`super::steps`].

use super::steps::{user_step, Server, Step};

/// The user's systemd manager and its D-Bus bus. With systemd as PID 1 lingering starts it
/// (started here too, and waited for); without, it is started by hand: what `systemd --user`
/// needs (sd_booted's directory, the runtime directory, a cgroup it may write) and then the
/// manager itself, detached. Pure.
pub fn manager_step(user: &str, server: &Server) -> Step {
    let check = r#"s=$(as_user systemctl --user is-system-running 2>/dev/null)
[ -n "$U" ] && { [ "$s" = running ] || [ "$s" = degraded ]; }
"#;
    // `|| true`: under `set -e` a failing command substitution in an assignment would end
    // the script at the first look.
    let wait = r#"for _ in $(seq 1 100); do
  s=$(as_user systemctl --user is-system-running 2>/dev/null) || true
  { [ "$s" = running ] || [ "$s" = degraded ]; } && exit 0
  sleep 0.1
done
echo "the systemd user manager of $u did not come up (state: ${s:-none})" >&2
exit 1
"#;
    let (apply, note) = if server.pid1_systemd {
        (format!("systemctl start \"user@$U.service\"\n{wait}"), None)
    } else {
        (
            format!("{START_WITHOUT_SYSTEMD}{wait}"),
            Some(format!(
                "PID 1 is not systemd here (a container?): bootstrap starts {user}'s systemd \
                 --user itself, and it does not survive a reboot; after one, run deploy \
                 bootstrap again"
            )),
        )
    };
    user_step(
        user,
        format!("Starting {user}'s systemd user manager and its D-Bus bus"),
        check,
        &apply,
        note,
    )
}

/// `systemd --user` where PID 1 is not systemd (after the user prelude): the one way the
/// tests' node (`scripts/node-setup`) and every such server start it.
const START_WITHOUT_SYSTEMD: &str = r#"mkdir -p /run/systemd/system
install -d -m 0700 -o "$U" -g "$G" "/run/user/$U"
rel="user.slice/user-$U.slice/user@$U.service"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then roots=/sys/fs/cgroup; else roots="/sys/fs/cgroup/unified /sys/fs/cgroup/systemd"; fi
set --
for r in $roots; do
  if [ -d "$r" ]; then mkdir -p "$r/$rel"; chown -R "$U:$G" "$r/$rel"; set -- "$@" "$r/$rel"; fi
done
if [ -e /dev/net/tun ]; then chmod 0666 /dev/net/tun; fi
if findmnt -no PROPAGATION / 2>/dev/null | grep -qv shared; then mount --make-rshared / || true; fi
# Nothing of the user runs: this is its boot, and its runtime directory starts empty.
if ! pgrep -u "$U" >/dev/null 2>&1; then find "/run/user/$U" -mindepth 1 -delete 2>/dev/null || true; fi
# Podman first, from here: it sees that its runtime files are gone (a reboot) and marks the
# containers its database still calls running as stopped, and its pause process (the user
# namespace every rootless podman joins) starts outside any unit; else the enabled units,
# starting all at once, would each make one of their own.
as_user podman ps --quiet >/dev/null 2>&1 || true
sd=/usr/lib/systemd/systemd; [ -x "$sd" ] || sd=/lib/systemd/systemd
export U G H u sd
setsid sh -c 'for f in "$@"; do echo $$ > "$f/cgroup.procs"; done
  exec setpriv --reuid="$U" --regid="$G" --init-groups env -i HOME="$H" USER="$u" LOGNAME="$u" \
    PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="/run/user/$U" "$sd" --user' _ "$@" \
  </dev/null >"/run/user/$U/systemd-user.log" 2>&1 &
"#;

/// Rootless Podman runs for the user. After a reboot where its runtime directory is not a
/// tmpfs (a container), or when every process of the user was killed, its database may still
/// list containers whose processes are gone, and every podman command fails until `podman
/// system migrate` marks them stopped (it removes nothing). Pure.
pub fn podman_step(user: &str) -> Step {
    user_step(
        user,
        format!("Checking that rootless Podman runs for {user}"),
        "[ -n \"$U\" ] && as_user podman ps --quiet >/dev/null 2>&1\n",
        r#"out=$(as_user podman ps --quiet 2>&1) && exit 0
case "$out" in
  *"system migrate"*) echo "podman's state outlived its processes: podman system migrate"; as_user podman system migrate ;;
  *) echo "rootless podman does not work for $u: $out" >&2; exit 1 ;;
esac
"#,
        None,
    )
}
