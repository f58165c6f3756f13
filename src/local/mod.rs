//! What runs where you type: command dispatch, the build and local hooks, `init`, a remote node
//! driven over SSH, and a local node-side run followed while it runs detached.

pub mod bootstrap;
pub mod commands;
pub mod detached;
pub mod git;
pub mod init;
pub mod preview;
pub mod remote;
