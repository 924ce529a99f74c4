//! The network between the nodes of the Raft group: a TCP control channel carrying the Raft
//! RPCs in checksummed frames ([`frame`]), served by [`server::serve`] and called through
//! openraft's network traits ([`Network`]). Each node finds its peers in its own
//! [`AddressBook`], so a test can route every link through a proxy of its own.

pub mod frame;
pub mod rpc;
pub mod server;

mod client;

pub use client::{AddressBook, Network, Peer};
