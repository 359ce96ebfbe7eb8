//! Turns the checked document into a [`Config`]: `[ike]` defaults applied, PSK files read.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::Problem;
use crate::keypath::KeyPath;
use crate::schema::identity::Identity;
use crate::schema::ike::IkeDefaults;
use crate::schema::peer::{Liveness, Peer, PeerToml};
use crate::schema::{Config, ConfigToml};
use crate::secret::{psk_from_text, Secret};

/// Builds the config; reading PSK files can add problems. `base` is the config file's folder,
/// against which relative `psk_file` paths are taken.
pub(crate) fn resolve(raw: ConfigToml, base: &Path) -> (Config, Vec<Problem>) {
    let mut problems = Vec::new();
    let peers = raw
        .peers
        .into_iter()
        .enumerate()
        .map(|(i, peer)| {
            resolve_peer(
                peer,
                &raw.ike,
                base,
                &KeyPath::root().key("peer").index(i),
                &mut problems,
            )
        })
        .collect();
    let config = Config {
        gateway: raw.gateway,
        dataplane: raw.dataplane,
        manual_tunnels: raw.manual_tunnels,
        ike: raw.ike,
        peers,
        control: raw.control,
        metrics: raw.metrics,
    };
    (config, problems)
}

fn resolve_peer(
    peer: PeerToml,
    ike: &IkeDefaults,
    base: &Path,
    path: &KeyPath,
    problems: &mut Vec<Problem>,
) -> Peer {
    let psk_file = peer.psk_file.as_ref().map(|file| base.join(file));
    let psk = match (&peer.psk, &psk_file) {
        (Some(psk), _) => psk.clone(),
        (None, Some(file)) => read_psk_file(file, &path.key("psk_file"), problems),
        (None, None) => Secret::new(Vec::new()),
    };
    let remote_ts = if peer.remote_ts.is_empty() {
        peer.pool.clone()
    } else {
        peer.remote_ts
    };
    Peer {
        name: peer.name,
        role: peer.role,
        local_id: peer
            .local_id
            .or_else(|| ike.local_id.clone())
            .unwrap_or(Identity::Fqdn(String::new())),
        remote_id: peer.remote_id,
        psk,
        psk_file,
        remote: peer.remote,
        local_ts: peer.local_ts,
        remote_ts,
        pool: peer.pool,
        dns: peer.dns,
        virtual_ip: peer.virtual_ip,
        virtual_ip6: peer.virtual_ip6,
        proposals: peer.proposals.unwrap_or_else(|| ike.proposals.clone()),
        esp_proposals: peer
            .esp_proposals
            .unwrap_or_else(|| ike.esp_proposals.clone()),
        ike_lifetime: peer.ike_lifetime.unwrap_or(ike.ike_lifetime),
        child_lifetime: peer.child_lifetime.unwrap_or(ike.child_lifetime),
        liveness: Liveness {
            mode: peer.liveness,
            ping_timeout: peer.ping_timeout,
            ping_retries: peer.ping_retries,
            idle_ping_after: peer.idle_ping_after,
            rekey_attempts: peer.rekey_attempts,
            ignore_peer_rekey: peer.ignore_peer_rekey,
            grace_period: peer.grace_period,
        },
    }
}

/// Reads a PSK file that only its owner may access; one trailing newline is dropped.
fn read_psk_file(file: &Path, path: &KeyPath, problems: &mut Vec<Problem>) -> Secret {
    let empty = Secret::new(Vec::new());
    let shown = file.display();
    let metadata = match fs::metadata(file) {
        Ok(metadata) => metadata,
        Err(e) => {
            problems.push(
                Problem::new(path.clone(), format!("cannot read {shown}: {e}"))
                    .hint("the path is relative to the config file's folder unless absolute"),
            );
            return empty;
        }
    };
    let mode = metadata.permissions().mode() & 0o777;
    if !metadata.is_file() {
        problems.push(
            Problem::new(path.clone(), format!("{shown} is not a regular file"))
                .hint("point psk_file at a file holding the key"),
        );
        return empty;
    }
    if mode & 0o077 != 0 {
        problems.push(
            Problem::new(
                path.clone(),
                format!("{shown} is accessible by group or others (mode 0o{mode:03o})"),
            )
            .hint(format!("chmod 600 {shown}")),
        );
        return empty;
    }
    let bytes = match fs::read(file) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) => {
            problems.push(
                Problem::new(path.clone(), format!("cannot read {shown}: {e}"))
                    .hint("check that espritd may read it"),
            );
            return empty;
        }
    };
    let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let psk = match std::str::from_utf8(text) {
        Ok(text) => psk_from_text(text).ok(),
        Err(_) => Some(Secret::new(text.to_vec())),
    };
    match psk {
        Some(psk) if !psk.is_empty() => psk,
        Some(_) => {
            problems.push(
                Problem::new(path.clone(), format!("{shown} is empty"))
                    .hint("write the key into the file, or use psk"),
            );
            empty
        }
        None => {
            problems.push(
                Problem::new(
                    path.clone(),
                    format!("{shown} starts with 0x but is not valid hex"),
                )
                .hint("a key starting with 0x is read as hex; otherwise it is taken as text"),
            );
            empty
        }
    }
}
