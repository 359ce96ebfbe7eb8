//! esprit configuration: the TOML schema, its validation and the diff between two versions.
