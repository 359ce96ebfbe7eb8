//! Maps key paths to byte spans of the document and back, from toml's spanned parse tree.
//!
//! serde errors carry only a span, validation errors only a key path; this index gives each the other.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::keypath::KeyPath;

struct Entry {
    path: KeyPath,
    key: Option<Range<usize>>,
    value: Range<usize>,
}

/// Every key and array element of a document with its spans.
pub(crate) struct SpanIndex {
    entries: Vec<Entry>,
}

impl SpanIndex {
    /// Indexes `text`; `None` when it is not syntactically valid TOML.
    pub(crate) fn build(text: &str) -> Option<Self> {
        let root = DeTable::parse(text).ok()?;
        let mut index = Self {
            entries: Vec::new(),
        };
        index.add_table(&KeyPath::root(), root.get_ref());
        Some(index)
    }

    fn add_table(&mut self, path: &KeyPath, table: &DeTable<'_>) {
        for (key, value) in table {
            let child = path.key(key.get_ref());
            self.add_value(child, Some(key.span()), value);
        }
    }

    fn add_value(
        &mut self,
        path: KeyPath,
        key: Option<Range<usize>>,
        value: &Spanned<DeValue<'_>>,
    ) {
        match value.get_ref() {
            DeValue::Table(table) => self.add_table(&path, table),
            DeValue::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    self.add_value(path.index(i), None, item);
                }
            }
            _ => {}
        }
        self.entries.push(Entry {
            path,
            key,
            value: value.span(),
        });
    }

    /// The span of the value at `path`, or of its nearest ancestor present in the document
    /// (a missing key is reported where its table is).
    pub(crate) fn value_span(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut path = Some(path.clone());
        while let Some(p) = path {
            if let Some(entry) = self.entries.iter().find(|e| e.path == p) {
                return match &entry.key {
                    Some(key) if entry.value.is_empty() => Some(key.clone()),
                    _ => Some(entry.value.clone()),
                };
            }
            path = p.parent();
        }
        None
    }

    /// The deepest key whose key or value span contains `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> Option<&KeyPath> {
        let contains = |r: &Range<usize>| r.start <= offset && offset < r.end.max(r.start + 1);
        self.entries
            .iter()
            .filter(|e| contains(&e.value) || e.key.as_ref().is_some_and(contains))
            .max_by_key(|e| e.path.segments().len())
            .map(|e| &e.path)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[gateway]\nike_port = 500\n\n[[manual_tunnel]]\nname = \"a\"\n[manual_tunnel.inbound]\nspi = 0x1001\n\n[[manual_tunnel]]\nname = \"b\"\nlocal_ts = [\"10.0.0.0/8\", \"bad\"]\n";

    fn line_of(index: &SpanIndex, path: &KeyPath) -> usize {
        let span = index.value_span(path).unwrap_or(0..0);
        line_col(DOC, span.start).0
    }

    #[test]
    fn finds_values_by_path() {
        let index = SpanIndex::build(DOC).unwrap_or_else(|| panic!("valid toml"));
        let tunnels = KeyPath::root().key("manual_tunnel");
        assert_eq!(
            line_of(&index, &KeyPath::root().key("gateway").key("ike_port")),
            2
        );
        assert_eq!(
            line_of(&index, &tunnels.index(0).key("inbound").key("spi")),
            7
        );
        assert_eq!(line_of(&index, &tunnels.index(1).key("name")), 10);
        assert_eq!(
            line_of(&index, &tunnels.index(1).key("local_ts").index(1)),
            11
        );
        // A key that is absent is reported at its nearest ancestor.
        assert_eq!(
            line_of(&index, &tunnels.index(0).key("inbound").key("key")),
            6
        );
    }

    #[test]
    fn finds_path_by_offset() {
        let index = SpanIndex::build(DOC).unwrap_or_else(|| panic!("valid toml"));
        let offset = DOC.find("\"bad\"").unwrap_or(0) + 1;
        let path = index.path_at(offset).map(|p| p.to_string());
        assert_eq!(path.as_deref(), Some("manual_tunnel[1].local_ts[1]"));
        let offset = DOC.find("0x1001").unwrap_or(0);
        let path = index.path_at(offset).map(|p| p.to_string());
        assert_eq!(path.as_deref(), Some("manual_tunnel[0].inbound.spi"));
    }

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 1), (1, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
