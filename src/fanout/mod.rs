//! Fan-out: bundles of pre-rendered frames, each shard's local subscriptions (room → the
//! connections on this shard that receive it), and the delivery loop that hands a bundle to them.

pub mod bundle;
pub mod deliver;
pub mod topic;

pub use bundle::{Alternative, Bundle, Deflated, Frames, Routing};
pub use deliver::{deliver, Recipient};
pub use topic::{ConnKey, Subscriptions};
