//! `listen: publish | socket`. In socket mode systemd holds the app's port (a socket unit named
//! like the app's unit) and hands it to each release; `deploy setup` writes and starts it, and
//! switching a live app between the two modes happens in a gap: Podman's port forwarder holds
//! the port until the old container stops.

use crate::config::Listen;
use crate::node::runtime::Runtime;
use crate::node::unit;
use crate::sys::systemd::{Active, Systemd};
use anyhow::Result;
use std::time::Duration;

impl Runtime<'_> {
    fn socket_listening(&self, systemd: &Systemd) -> bool {
        systemd
            .state(&self.names().socket_unit())
            .is_ok_and(|s| s.active == Active::Active)
    }

    /// The socket unit as the config says: written and listening in socket mode, gone in
    /// publish mode; a live app moves between the two in a gap.
    pub(crate) fn setup_listen(&self, systemd: &Systemd) -> Result<()> {
        let front = self.front();
        let socket_unit = self.names().socket_unit();
        let want = self.config.listen == Listen::Socket;
        if want {
            self.ui.step(&format!("Writing {socket_unit}"), || {
                let text = unit::render_socket(&self.unit_spec())?;
                systemd.install_unit(&self.user_unit_dir(), &socket_unit, &text)
            })?;
        }
        let listening = self.socket_listening(systemd);
        if want == listening {
            return Ok(());
        }
        let app_running = systemd
            .state(&self.unit_name())
            .is_ok_and(|s| !s.active.is_down());
        let router = front.router()?.filter(|_| app_running);
        front.in_gap(router.as_ref(), || {
            self.ui.step(
                &format!(
                    "Moving the app's port {} to {}",
                    self.env.port,
                    if want {
                        "its socket unit"
                    } else {
                        "its container"
                    }
                ),
                || {
                    systemd.stop(&self.unit_name(), self.stop_timeout())?;
                    if want {
                        systemd.start(&socket_unit, Duration::from_secs(30))?;
                    } else {
                        systemd.remove_unit(
                            &self.user_unit_dir(),
                            &socket_unit,
                            Duration::from_secs(30),
                        )?;
                    }
                    if app_running && self.current()?.is_some() {
                        self.start_healthy(systemd, &self.unit_name())?;
                    }
                    Ok(())
                },
            )
        })
    }
}
