//! Fan-out: bundles of pre-rendered frames, and each shard's local subscriptions (room → the
//! connections on this shard that receive it).

pub mod bundle;
pub mod topic;

pub use bundle::{Alternative, Bundle, Frames, Routing};
pub use topic::Subscriptions;
