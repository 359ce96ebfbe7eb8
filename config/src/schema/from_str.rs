//! Deserializes a value from a TOML string through a parse function.
//!
//! The parse runs inside the deserializer's `visit_str`, so toml puts the error at the string
//! itself; an error raised after `String::deserialize` returned would be placed at the
//! enclosing array (or table) instead.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

struct ParseVisitor<T, F> {
    parse: F,
    expecting: &'static str,
    value: PhantomData<T>,
}

impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for ParseVisitor<T, F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

/// Reads a string and parses it with `parse`; `expecting` names the form in type errors.
pub(crate) fn parse_str<'de, D, T, F>(
    d: D,
    expecting: &'static str,
    parse: F,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    d.deserialize_str(ParseVisitor {
        parse,
        expecting,
        value: PhantomData,
    })
}
