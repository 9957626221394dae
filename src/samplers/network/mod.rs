//! Network.

mod interface;
