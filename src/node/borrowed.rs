//! What an owner of a part of the app ([`Front`](crate::node::front::Front),
//! [`Runtime`](crate::node::runtime::Runtime),
//! [`Replication`](crate::node::replicate::Replication), [`Data`](crate::node::data::Data))
//! borrows of the [`Node`](crate::node::Node): one type, which each owner derefs to.

use crate::config::{Config, Environment};
use crate::names::Names;
use crate::node::layout::Layout;
use crate::ui::Ui;
use std::path::Path;

/// The config, the environment, the layout, home and the output of one app on this server.
#[derive(Clone, Copy)]
pub struct Borrowed<'a> {
    pub config: &'a Config,
    pub env_name: &'a str,
    pub env: &'a Environment,
    pub layout: &'a Layout,
    pub home: &'a Path,
    pub ui: Ui,
}

impl Borrowed<'_> {
    /// The names of this app in this environment (units, containers, images, routers).
    pub fn names(&self) -> Names {
        Names::new(&self.config.app, self.env_name)
    }
}

/// An owner that is [`Borrowed`] and derefs to it (`self.config`, `self.layout`, ...).
macro_rules! owner_of_borrowed {
    ($owner:ident) => {
        impl<'a> std::ops::Deref for $owner<'a> {
            type Target = $crate::node::borrowed::Borrowed<'a>;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    };
}
pub(crate) use owner_of_borrowed;
