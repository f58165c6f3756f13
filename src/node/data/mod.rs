//! The app's data: `deploy restore` from the replica ([`restore`]), `deploy verify` of the
//! replica ([`verify`]), what restores set aside ([`replaced`]), and `deploy migrate-data`
//! ([`migrate`]: its journal and the moves into shared/). [`Data`] borrows what it needs of the
//! [`Node`]; the snapshots themselves are `snapshot/`'s, the replica's `replicate/`'s. The
//! commands' entry points (the lock, the fence, the swap, the state) stay on the node.

pub mod migrate;
pub mod replaced;
mod restore;
pub mod verify;

use crate::config::Config;
use crate::node::layout::Layout;
use crate::node::replicate::Replication;
use crate::node::Node;
use crate::ui::Ui;
use anyhow::Result;
use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

/// When a restore's placing began and its last database was in place.
pub(crate) type Placing = Cell<Option<(Instant, Instant)>>;

/// The app's data: what it needs of the node, borrowed.
pub struct Data<'a> {
    config: &'a Config,
    env_name: &'a str,
    layout: &'a Layout,
    home: &'a Path,
    ui: Ui,
    /// Where the placing of downloaded databases notes its span (the node's, for the report).
    placing: &'a Placing,
}

impl Node<'_> {
    /// This app's data.
    pub fn data(&self) -> Data<'_> {
        Data {
            config: self.config,
            env_name: &self.env_name,
            layout: &self.layout,
            home: &self.home,
            ui: self.ui,
            placing: &self.placing,
        }
    }
}

impl Data<'_> {
    /// The app's replication, from the same borrows.
    fn replication(&self) -> Replication<'_> {
        Replication::new(self.config, self.env_name, self.layout, self.home, self.ui)
    }

    /// The version `current` points at, if any.
    fn current(&self) -> Result<Option<String>> {
        self.layout.current_version()
    }
}
