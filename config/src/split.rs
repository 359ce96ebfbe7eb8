//! Finds the `[[manual_tunnel]]` elements of a document, so that each can be parsed on its own.
//!
//! toml parses a whole document into a tree first: for 100,000 manual tunnels (a 37 MB file
//! from `esprit-pktgen gen-config`) that tree peaked at 850 MB and took 5 s, and the typed
//! config it left behind sat scattered over 430 MB of heap. Parsed one element at a time, only
//! one small tree is alive at once. The split is only done for layouts it is sure of: top-level
//! headers with bare keys, each element's sub-tables (`[manual_tunnel.inbound]`) right after
//! it. Anything else returns `None`, and the caller parses the whole document as before.

use std::ops::Range;

/// The document cut in two.
#[derive(Debug)]
pub(crate) struct Split<'a> {
    /// The document without its manual tunnels: its other tables, in order. Offsets are not
    /// kept: errors are located by parsing the whole document again.
    pub rest: String,
    /// Each element's text, in document order: its `[[manual_tunnel]]` header, its keys and
    /// its sub-tables.
    pub tunnels: Vec<&'a str>,
    /// Whether the root table (before the first header) mentions `manual_tunnel`: it may
    /// define the array itself, which only a parse can tell from a comment.
    pub root_mentions_tunnels: bool,
}

const ARRAY: &str = "manual_tunnel";

/// Splits `text`, or `None` when it has no manual tunnels or a layout this does not handle.
pub(crate) fn manual_tunnels(text: &str) -> Option<Split<'_>> {
    let headers = header_lines(text)?;
    let root = headers.first().map_or(text.len(), |h| h.start);
    let mut tunnels: Vec<Range<usize>> = Vec::new();
    // Whether the segment before this one belongs to the last element.
    let mut in_element = false;
    for (i, line) in headers.iter().enumerate() {
        let end = headers.get(i + 1).map_or(text.len(), |h| h.start);
        let header = parse_header(text.get(line.clone())?)?;
        match (header.path.first(), header.array, header.path.len()) {
            (Some(&ARRAY), true, 1) => {
                tunnels.push(line.start..end);
                in_element = true;
            }
            // A sub-table of the element just opened extends it; anywhere else it would
            // belong to an element further up the file.
            (Some(&ARRAY), _, _) if in_element => tunnels.last_mut()?.end = end,
            (Some(&ARRAY), _, _) => return None,
            _ => in_element = false,
        }
    }
    if tunnels.is_empty() {
        return None;
    }
    // Every range runs from a line's start to another's, so what is between them is whole
    // tables (and the root's keys).
    let mut rest = String::new();
    let mut from = 0;
    for r in &tunnels {
        rest.push_str(text.get(from..r.start)?);
        from = r.end;
    }
    rest.push_str(text.get(from..)?);
    Some(Split {
        rest,
        tunnels: tunnels
            .into_iter()
            .map(|r| text.get(r))
            .collect::<Option<_>>()?,
        root_mentions_tunnels: text.get(..root)?.contains(ARRAY),
    })
}

/// A table header's key path, e.g. `manual_tunnel.inbound`.
struct Header<'a> {
    array: bool,
    path: Vec<&'a str>,
}

/// Reads the header on `line` (`[a.b]` or `[[a]]`, then perhaps a comment); `None` for quoted
/// keys or anything unusual.
fn parse_header(line: &str) -> Option<Header<'_>> {
    let line = line.trim_start();
    let (array, inner) = match line.strip_prefix("[[") {
        Some(r) => (true, r.split_once("]]")?),
        None => (false, line.strip_prefix('[')?.split_once(']')?),
    };
    let (keys, after) = inner;
    let after = after.trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let path: Vec<&str> = keys.split('.').map(str::trim).collect();
    let bare = |k: &&str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    path.iter().all(bare).then_some(Header { array, path })
}

/// The byte ranges of the lines that hold a table header: lines that start with `[` outside
/// every string and every value that spans lines (`key = [` ... `]`). `None` when the
/// document does not scan cleanly (an unclosed string or bracket, a quoted header): toml will
/// say what is wrong.
fn header_lines(text: &str) -> Option<Vec<Range<usize>>> {
    let bytes = text.as_bytes();
    let mut headers = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        // At the start of a line.
        let line_end = find(bytes, i, b'\n').unwrap_or(bytes.len());
        let lead = i + bytes
            .get(i..)?
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        if depth == 0 && bytes.get(lead) == Some(&b'[') {
            let line = text.get(i..line_end)?;
            if line.contains(['"', '\'']) {
                return None;
            }
            headers.push(i..line_end);
            i = line_end + 1;
            continue;
        }
        i = scan_value_line(bytes, lead, &mut depth)?;
    }
    (depth == 0).then_some(headers)
}

/// Scans from `i` to the start of the next line, through strings that span lines, counting
/// the brackets of values in `depth`. Returns where the next line starts.
fn scan_value_line(bytes: &[u8], mut i: usize, depth: &mut usize) -> Option<usize> {
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\n' => return Some(i + 1),
            b'#' => return Some(find(bytes, i, b'\n').map_or(bytes.len(), |n| n + 1)),
            b'[' | b'{' => *depth += 1,
            b']' | b'}' => *depth = depth.checked_sub(1)?,
            b'"' | b'\'' => {
                i = skip_string(bytes, i)?;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Some(bytes.len())
}

/// Skips the string that opens at `i` (basic, literal, or either multi-line); returns the
/// offset just past it, or `None` when it is not closed where TOML says it must be.
fn skip_string(bytes: &[u8], i: usize) -> Option<usize> {
    let quote = *bytes.get(i)?;
    let tripled = bytes.get(i..i + 3) == Some(&[quote; 3][..]);
    let escapes = quote == b'"';
    let mut j = i + if tripled { 3 } else { 1 };
    while let Some(&b) = bytes.get(j) {
        if escapes && b == b'\\' {
            j += 2;
            continue;
        }
        if b == b'\n' && !tripled {
            return None;
        }
        if b == quote {
            if !tripled {
                return Some(j + 1);
            }
            // Up to two quotes may stand just before the closing three.
            let run = bytes.get(j..)?.iter().take_while(|&&c| c == quote).count();
            if run >= 3 {
                return Some(j + run);
            }
            j += run;
            continue;
        }
        j += 1;
    }
    None
}

fn find(bytes: &[u8], from: usize, byte: u8) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b == byte)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# a comment with [[manual_tunnel]] in it
[gateway]
outside = [
  \"127.0.0.1:4500\",
]

[[manual_tunnel]]
name = \"a\"
note = \"\"\"
[not.a.header]
\"\"\"
[manual_tunnel.inbound]
spi = 1

[dataplane]
workers = 1

[[manual_tunnel]] # the second
name = \"b\"
[ manual_tunnel . outbound ]
x = [
[1, 2],
]
";

    #[test]
    fn elements_are_found_with_their_sub_tables_and_the_rest_is_the_other_tables() {
        let split = manual_tunnels(DOC).expect("a layout it handles");
        assert_eq!(split.tunnels.len(), 2);
        assert!(split.tunnels[0].starts_with("[[manual_tunnel]]\nname = \"a\""));
        assert!(split.tunnels[0].ends_with("spi = 1\n\n"));
        assert!(split.tunnels[1].starts_with("[[manual_tunnel]] # the second"));
        assert!(split.tunnels[1].ends_with("[1, 2],\n]\n"));
        let head = &DOC[..DOC.find("[[manual_tunnel]]\nname").unwrap()];
        assert_eq!(split.rest, format!("{head}[dataplane]\nworkers = 1\n\n"));
        assert!(split.root_mentions_tunnels, "the comment names them");
    }

    #[test]
    fn layouts_it_is_not_sure_of_are_left_to_the_whole_parse() {
        let cases = [
            ("no tunnels", "[gateway]\nx = 1\n"),
            ("a quoted header", "[[\"manual_tunnel\"]]\nname = \"a\"\n"),
            (
                "a sub-table far from its element",
                "[[manual_tunnel]]\n[a]\n[manual_tunnel.inbound]\n",
            ),
            (
                "a sub-table first",
                "[manual_tunnel.inbound]\n[[manual_tunnel]]\n",
            ),
            ("an open bracket", "[[manual_tunnel]]\nx = [1,\n"),
            ("an open string", "[[manual_tunnel]]\nx = \"abc\n"),
            (
                "an open multi-line string",
                "[[manual_tunnel]]\nx = '''abc\n",
            ),
            ("a stray closer", "[[manual_tunnel]]\nx = 1]\n"),
            ("text after a header", "[[manual_tunnel]] x\n"),
        ];
        for (what, doc) in cases {
            assert!(manual_tunnels(doc).is_none(), "{what}");
        }
    }

    #[test]
    fn strings_end_where_toml_says() {
        for (s, end) in [
            (r#""a\"b" x"#, 6),
            (r#"'a\' x"#, 4),
            (r#""""a"b""" x"#, 9),
            (r#""""a""""" x"#, 9),
            ("'''a\n'''' x", 9),
        ] {
            assert_eq!(skip_string(s.as_bytes(), 0), Some(end), "{s}");
        }
    }
}
