//! esprit configuration: the TOML schema, its validation and the diff between two versions.
//!
//! [`load`] reads `/etc/esprit/esprit.toml`-style files; every key is documented in
//! `deploy/examples/full.toml`. Errors name the file, line, column and key of every problem,
//! with a hint:
//!
//! ```text
//! esprit.toml:14:7: manual_tunnel[1].inbound.spi: inbound SPI 0x2001001 has the same slot (low 24 bits) as 0x1001001 of manual_tunnel[0]
//!   hint: the data plane indexes inbound SAs by spi & 0xFFFFFF; change the low 24 bits of one of them
//! ```
//!
//! The daemon loads a file, and on reload loads the new one and applies only the difference:
//!
//! ```
//! let running = config::parse("", "esprit.toml")?;
//! let error = config::parse("[dataplane]\nburst = 0\n", "esprit.toml").unwrap_err();
//! assert!(error.to_string().starts_with("esprit.toml:2:9: dataplane.burst: burst 0 is not in 1..=256"));
//! let new = config::parse("[dataplane]\nworkers = 2\n", "esprit.toml")?;
//! assert_eq!(running.diff(&new).restart_required, vec!["dataplane"]);
//! # Ok::<(), config::ConfigError>(())
//! ```

mod diff;
pub mod duration;
mod error;
mod keypath;
mod locate;
mod resolve;
pub mod schema;
mod secret;
mod split;
mod validate;

use std::path::Path;

pub use diff::{ConfigDiff, NamedChanges};
pub use error::{ConfigError, Diagnostic};
pub use ipnet::IpNet;
pub use schema::control::{ControlSocket, Metrics};
pub use schema::dataplane::{Dataplane, Inside, InsideKind, PortKind};
pub use schema::gateway::Gateway;
pub use schema::identity::{Identity, IdentityPattern};
pub use schema::ike::{IkeDefaults, Retransmit};
pub use schema::manual_tunnel::{Encap, ManualSa, ManualTunnel};
pub use schema::outside_port::{Dpdk, OutsidePort, OutsideRoute, XdpMode};
pub use schema::peer::{Liveness, LivenessMode, Peer, Role};
pub use schema::proposal::{Algorithm, DhGroup, EspProposal, IkeProposal, Prf};
pub use schema::Config;
pub use secret::Secret;
pub use validate::{MAX_REPLAY_WINDOW, SPI_SLOT_MASK};

/// The document parsed in pieces (see `split`): the manual tunnels one at a time, then the
/// rest. `None` if any piece does not parse; the whole parse then says where.
fn parse_split(split: &split::Split<'_>) -> Option<schema::ConfigToml> {
    /// One `[[manual_tunnel]]` element on its own.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Element {
        manual_tunnel: [schema::manual_tunnel::ManualTunnel; 1],
    }
    let mut tunnels = Vec::with_capacity(split.tunnels.len());
    for text in &split.tunnels {
        let Element {
            manual_tunnel: [tunnel],
        } = toml::from_str(text).ok()?;
        tunnels.push(tunnel);
    }
    /// Whether a document sets `manual_tunnel` in its root table.
    #[derive(serde::Deserialize)]
    struct Root {
        manual_tunnel: Option<serde::de::IgnoredAny>,
    }
    // `manual_tunnel = [...]` at the root beside the tables: a clash the whole parse reports.
    if split.root_mentions_tunnels {
        let root: Root = toml::from_str(&split.rest).ok()?;
        if root.manual_tunnel.is_some() {
            return None;
        }
    }
    let mut raw: schema::ConfigToml = toml::from_str(&split.rest).ok()?;
    raw.manual_tunnels = tunnels;
    Some(raw)
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        origin: origin.clone(),
        source,
    })?;
    parse(&text, &origin)
}

/// Parses and validates config text; `origin` names it in errors, and relative `psk_file`
/// paths are taken from `origin`'s folder.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let raw = match split::manual_tunnels(text).and_then(|s| parse_split(&s)) {
        Some(raw) => raw,
        None => parse_whole(text, origin)?,
    };
    check_and_resolve(raw, text, origin)
}

/// The whole document at once: every layout, and the errors located in it.
fn parse_whole(text: &str, origin: &str) -> Result<schema::ConfigToml, ConfigError> {
    toml::from_str(text).map_err(|e| error::locate_toml_error(text, origin, &e))
}

fn check_and_resolve(
    raw: schema::ConfigToml,
    text: &str,
    origin: &str,
) -> Result<Config, ConfigError> {
    let mut problems = validate::check(&raw);
    let base = Path::new(origin).parent().unwrap_or(Path::new(""));
    let (config, more) = resolve::resolve(raw, base);
    problems.extend(more);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(error::locate_problems(text, origin, problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `parse` gives for `text`, as a string to compare: the config or the error.
    fn outcome(r: Result<Config, ConfigError>) -> String {
        match r {
            Ok(c) => format!("{c:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    fn whole(text: &str) -> Result<Config, ConfigError> {
        check_and_resolve(parse_whole(text, "t.toml")?, text, "t.toml")
    }

    const TUNNEL: &str = "[[manual_tunnel]]\nname = \"NAME\"\nremote = \"192.0.2.9:4500\"\n\
        local_ts = [\"10.1.0.0/16\"]\nremote_ts = [\"10.2.NET.0/24\"]\n\
        [manual_tunnel.inbound]\nspi = SPI1\nalgorithm = \"aes128gcm16\"\n\
        key = \"00112233445566778899aabbccddeeff\"\nsalt = \"01020304\"\n\
        [manual_tunnel.outbound]\nspi = SPI2\nalgorithm = \"aes128gcm16\"\n\
        key = \"ffeeddccbbaa99887766554433221100\"\nsalt = \"05060708\"\n";

    fn tunnel(name: &str, spi: u32) -> String {
        TUNNEL
            .replace("NAME", name)
            .replace("NET", &spi.to_string())
            .replace("SPI1", &format!("{:#x}", 0x1000 + spi))
            .replace("SPI2", &format!("{:#x}", 0x2000 + spi))
    }

    #[test]
    fn the_split_parse_gives_what_the_whole_parse_gives() {
        let (a, b) = (tunnel("a", 1), tunnel("b", 2));
        let docs = [
            format!("[gateway]\noutside = [\"192.0.2.1:4500\"]\n{a}{b}[dataplane]\nworkers = 1\n"),
            format!("# [[manual_tunnel]] in a comment\n{a}\n\n{b}"),
            // Errors: in a tunnel (a bad key), in the rest, across tunnels (the same SPI),
            // and a root array beside the tables.
            format!("{a}{}", b.replace("salt = \"05060708\"", "salt = \"zz\"")),
            format!("[dataplane]\nworkers = \"x\"\n{a}"),
            format!("{a}{}", tunnel("b", 1)),
            format!(
                "{a}{}",
                a.replace("name = \"a\"", "name = \"a\"\nbogus = 1")
            ),
            format!("manual_tunnel = []\n{a}"),
        ];
        for doc in &docs {
            assert!(split::manual_tunnels(doc).is_some(), "split: {doc}");
            assert_eq!(outcome(parse(doc, "t.toml")), outcome(whole(doc)), "{doc}");
        }
        for valid in &docs[..2] {
            let split = split::manual_tunnels(valid).and_then(|s| parse_split(&s));
            assert!(split.is_some(), "parsed in pieces: {valid}");
        }
        assert_eq!(parse(&docs[0], "t.toml").unwrap().manual_tunnels.len(), 2);
        assert!(parse(&docs[2], "t.toml").is_err());
    }

    /// Lines a document may be made of: headers, keys whose values hold
    /// brackets, quotes, `#` and line breaks, comments, and mistakes.
    const PIECES: &[&str] = &[
        "[[manual_tunnel]]\n",
        "[manual_tunnel.inbound]\n",
        "[manual_tunnel.outbound]\n",
        "[ manual_tunnel . inbound ] # sub-table\n",
        "[dataplane]\n",
        "[gateway]\n",
        "[[\"manual_tunnel\"]]\n",
        "manual_tunnel = []\n",
        "name = \"a\"\n",
        "name = \"b\"\n",
        "spi = 0x1001\n",
        "workers = 1\n",
        "note = \"[[manual_tunnel]] # not a header\"\n",
        "note = '''\n[gateway]\n'''\n",
        "note = \"\"\"\n[[manual_tunnel]]\n\"\"\"\n",
        "x = [\n[1, 2],\n]\n",
        "y = { a = \"]\" }\n",
        "# [[manual_tunnel]] in a comment\n",
        "\n",
        "oops = [\n",
        "\"\n",
    ];

    proptest::proptest! {
        #[test]
        fn any_document_parses_the_same_split_or_whole(
            picks in proptest::collection::vec(0..PIECES.len() + 2, 0..14),
        ) {
            // Two whole tunnels too, so that some documents are valid and
            // the split parse's answer is compared, not only its fallback.
            let whole_tunnels = [tunnel("a", 1), tunnel("b", 2)];
            let piece = |i: usize| match i.checked_sub(PIECES.len()) {
                Some(t) => whole_tunnels[t].as_str(),
                None => PIECES[i],
            };
            let doc: String = picks.iter().map(|&i| piece(i)).collect();
            proptest::prop_assert_eq!(outcome(parse(&doc, "t.toml")), outcome(whole(&doc)), "{}", doc);
        }

        #[test]
        fn the_splitter_takes_any_text(text in "\\PC{0,200}") {
            let _ = split::manual_tunnels(&text);
            let _ = parse(&text, "t.toml");
        }
    }

    #[test]
    fn the_shipped_examples_parse_the_same_split_or_whole() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples");
        let mut split_ones = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let origin = path.display().to_string();
            split_ones += usize::from(split::manual_tunnels(&text).is_some());
            let whole =
                parse_whole(&text, &origin).and_then(|raw| check_and_resolve(raw, &text, &origin));
            assert_eq!(outcome(parse(&text, &origin)), outcome(whole), "{origin}");
        }
        assert!(split_ones > 0, "no example has manual tunnels to split");
    }
}
