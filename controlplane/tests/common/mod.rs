pub mod daemon;
pub mod natlab;
pub mod netns;
pub mod strongswan;
pub mod udp_flood;
