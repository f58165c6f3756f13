//! The node user's locks (files in [`fsx::deploy_data`]): `apps.lock` around reading the records,
//! checking against them and writing one; `traefik.lock`, which a restart or a stop of the
//! user's Traefik takes exclusive and every gap (a swap's, or one of setup's) takes shared, so
//! a restart never lands inside another app's gap.

use crate::sys::fsx;
use anyhow::{Context, Result};
use std::fs::{File, TryLockError};
use std::path::Path;

/// The lock a restart of Traefik takes exclusive and a gap shared.
pub(super) const TRAEFIK_LOCK: &str = "traefik.lock";
/// The lock around reading the records, checking against them and writing one.
pub(super) const APPS_LOCK: &str = "apps.lock";

/// A lock of the node user's (a file in [`fsx::deploy_data`]), released when dropped or when the
/// process dies.
pub struct UserLock {
    _file: File,
}

/// Takes the lock `name`, shared or exclusive; `waiting` is called once if it must wait.
pub(super) fn user_lock(
    home: &Path,
    name: &str,
    shared: bool,
    waiting: impl FnOnce(),
) -> Result<UserLock> {
    let path = fsx::deploy_data(home).join(name);
    fsx::ensure_dir(&fsx::deploy_data(home), 0o755)?;
    let file = fsx::open_lock_file(&path)?;
    let tried = match shared {
        true => file.try_lock_shared(),
        false => file.try_lock(),
    };
    match tried {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            waiting();
            match shared {
                true => file.lock_shared(),
                false => file.lock(),
            }
            .with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
    Ok(UserLock { _file: file })
}

/// `traefik.lock`: shared from before a gap to after it (a swap's, or one of `deploy setup` or
/// `deploy restart` moving a live app), exclusive for a restart or a stop of the user's
/// Traefik, so a restart never lands inside another app's gap. `waiting` is called once if it
/// must wait.
pub fn traefik_lock(home: &Path, shared: bool, waiting: impl FnOnce()) -> Result<UserLock> {
    user_lock(home, TRAEFIK_LOCK, shared, waiting)
}

/// `apps.lock`: held around reading the records, checking against them and writing one.
pub fn apps_lock(home: &Path) -> Result<UserLock> {
    user_lock(home, APPS_LOCK, false, || {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_hold_keeps_a_restart_out_and_the_other_way_round() {
        let h = std::env::temp_dir().join(format!("deploy-locks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&h);
        let swap = user_lock(&h, TRAEFIK_LOCK, true, || panic!("free")).unwrap();
        let other_swap = user_lock(&h, TRAEFIK_LOCK, true, || panic!("shared")).unwrap();
        let file = File::open(fsx::deploy_data(&h).join(TRAEFIK_LOCK)).unwrap();
        assert!(matches!(file.try_lock(), Err(TryLockError::WouldBlock)));
        drop((swap, other_swap));
        let restart = user_lock(&h, TRAEFIK_LOCK, false, || panic!("free")).unwrap();
        assert!(matches!(
            file.try_lock_shared(),
            Err(TryLockError::WouldBlock)
        ));
        drop(restart);
        file.try_lock_shared().unwrap();
        std::fs::remove_dir_all(h).unwrap();
    }
}
