//! The app's data: `deploy restore` from the replica ([`restore`]), `deploy verify` of the
//! replica ([`verify`]), what restores set aside ([`replaced`]), and `deploy migrate-data`
//! ([`migrate`]: its journal and the moves into shared/). [`Data`] borrows what it needs of the
//! [`Node`]; the snapshots themselves are `snapshot/`'s, the replica's `replicate/`'s. The
//! commands' entry points (the lock, the fence, the swap, the state) stay on the node.

pub mod migrate;
pub mod replaced;
mod restore;
pub mod verify;

use crate::node::borrowed::Borrowed;
use crate::node::replicate::Replication;
use crate::node::Node;
use anyhow::Result;
use std::cell::Cell;
use std::time::Instant;

/// When a restore's placing began and its last database was in place.
pub(crate) type Placing = Cell<Option<(Instant, Instant)>>;

/// The app's data: what it needs of the node, borrowed.
pub struct Data<'a> {
    app: Borrowed<'a>,
    /// Where the placing of downloaded databases notes its span (the node's, for the report).
    placing: &'a Placing,
}

impl Node<'_> {
    /// This app's data.
    pub fn data(&self) -> Data<'_> {
        Data {
            app: self.borrowed(),
            placing: &self.placing,
        }
    }
}

impl<'a> std::ops::Deref for Data<'a> {
    type Target = Borrowed<'a>;
    fn deref(&self) -> &Borrowed<'a> {
        &self.app
    }
}

impl Data<'_> {
    /// The app's replication, from the same borrows.
    fn replication(&self) -> Replication<'_> {
        Replication(self.app)
    }

    /// The version `current` points at, if any.
    fn current(&self) -> Result<Option<String>> {
        self.layout.current_version()
    }
}
