//! Config errors located at `FILE:LINE:COL: key.path: message` with a hint for the operator.

use std::fmt;

use crate::keypath::KeyPath;
use crate::locate::{line_col, SpanIndex};

/// Separates a message from its hint inside serde custom errors, which carry only one string.
pub(crate) const HINT_MARK: &str = "\n\u{1}hint: ";

/// A serde custom error message carrying a hint.
pub(crate) fn with_hint(message: impl fmt::Display, hint: impl fmt::Display) -> String {
    format!("{message}{HINT_MARK}{hint}")
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name (or the origin given to [`crate::parse`]).
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The key path, like `manual_tunnel[0].inbound.spi`; empty for syntax errors.
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read the config file: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, in document order.
    #[error("{}", DiagnosticList(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The located problems (empty for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Read { .. } => &[],
            Self::Invalid(list) => list,
        }
    }
}

struct DiagnosticList<'a>(&'a [Diagnostic]);

impl fmt::Display for DiagnosticList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// A semantic problem found by validation, located by key path until it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub path: KeyPath,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub(crate) fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Renders problems at their line and column, sorted in document order.
pub(crate) fn locate_problems(text: &str, origin: &str, problems: Vec<Problem>) -> ConfigError {
    let index = SpanIndex::build(text);
    let mut list: Vec<Diagnostic> = problems
        .into_iter()
        .map(|problem| {
            let offset = index
                .as_ref()
                .and_then(|i| i.value_span(&problem.path))
                .map_or(0, |span| span.start);
            let (line, column) = line_col(text, offset);
            Diagnostic {
                origin: origin.to_owned(),
                line,
                column,
                key: problem.path.to_string(),
                message: problem.message,
                hint: problem.hint,
            }
        })
        .collect();
    list.sort_by_key(|d| (d.line, d.column));
    ConfigError::Invalid(list)
}

/// Renders a toml syntax or type error, finding its key path from its span.
pub(crate) fn locate_toml_error(text: &str, origin: &str, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start);
    let key = SpanIndex::build(text)
        .and_then(|index| index.path_at(offset).map(KeyPath::to_string))
        .unwrap_or_default();
    let (line, column) = line_col(text, offset);
    let (message, hint) = match error.message().split_once(HINT_MARK) {
        Some((message, hint)) => (message.to_owned(), Some(hint.to_owned())),
        None => {
            let message = error.message().trim_end().to_owned();
            let hint = hint_for_serde(&message);
            (message, hint)
        }
    };
    ConfigError::Invalid(vec![Diagnostic {
        origin: origin.to_owned(),
        line,
        column,
        key,
        message,
        hint,
    }])
}

/// Hints for toml's and serde's own messages: the closest valid key for a misspelt one.
fn hint_for_serde(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return Some(format!(
            "add `{field} = ...` to this table; see deploy/examples/full.toml"
        ));
    }
    if message.starts_with("duplicate key") {
        return Some(
            "a key or [table] may appear only once; [[name]] starts a list of tables".to_owned(),
        );
    }
    if message.starts_with("invalid IP address syntax") {
        return Some(
            "write an address like \"10.1.0.1\", or a prefix like \"10.1.0.0/24\"".to_owned(),
        );
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        return Some("see deploy/examples/full.toml for the form of each key".to_owned());
    }
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let closest = expected
        .iter()
        .map(|candidate| (edit_distance(unknown, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2.max(unknown.len() / 3))
        .min_by_key(|(distance, _)| *distance);
    match closest {
        Some((_, candidate)) => Some(format!("did you mean `{candidate}`?")),
        None if expected.is_empty() => Some("this table takes no keys".to_owned()),
        None => Some("see deploy/examples/full.toml for every key".to_owned()),
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous
                .get(j)
                .map_or(usize::MAX, |d| d + usize::from(ca != *cb));
            let delete = previous.get(j + 1).map_or(usize::MAX, |d| d + 1);
            let insert = current.get(j).map_or(usize::MAX, |d| d + 1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_key_and_hint() {
        let diagnostic = Diagnostic {
            origin: "esprit.toml".into(),
            line: 3,
            column: 7,
            key: "dataplane.burst".into(),
            message: "must be 1..=256".into(),
            hint: Some("32 is a good start".into()),
        };
        assert_eq!(
            diagnostic.to_string(),
            "esprit.toml:3:7: dataplane.burst: must be 1..=256\n  hint: 32 is a good start"
        );
    }

    #[test]
    fn suggests_the_closest_key() {
        let hint =
            hint_for_serde("unknown field `bursts`, expected one of `workers`, `burst`, `port`");
        assert_eq!(hint.as_deref(), Some("did you mean `burst`?"));
        let hint = hint_for_serde("unknown field `zzzzzz`, expected `name`");
        assert_eq!(
            hint.as_deref(),
            Some("see deploy/examples/full.toml for every key")
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let hint = hint_for_serde("missing field `remote`");
        assert_eq!(
            hint.as_deref(),
            Some("add `remote = ...` to this table; see deploy/examples/full.toml")
        );
    }
}
