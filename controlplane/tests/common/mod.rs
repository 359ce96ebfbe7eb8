pub mod daemon;
pub mod natlab;
pub mod netns;
pub mod strongswan;
