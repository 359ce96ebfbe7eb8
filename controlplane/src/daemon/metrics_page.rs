//! The Prometheus page: rendered by the control loop about once a second.

use dataplane::DropReason;

use super::Daemon;
use crate::metrics::Exposition;

/// Tunnels listed one by one (the busiest); the rest only count.
const TOP_TUNNELS: usize = 10;

impl Daemon {
    pub(super) fn render_metrics(&self) -> String {
        let mut e = Exposition::default();
        let snaps: Vec<_> = self.stats.iter().map(|s| s.snapshot()).collect();

        e.family(
            "esprit_worker_packets_total",
            "counter",
            "Packets handled by each worker, by what happened to them.",
        );
        for (w, s) in snaps.iter().enumerate() {
            let w = w.to_string();
            for (kind, v) in [
                ("outside_rx", s.outside_rx),
                ("outside_tx", s.outside_tx),
                ("inside_rx", s.inside_rx),
                ("inside_tx", s.inside_tx),
                ("decrypted", s.decrypted),
                ("encrypted", s.encrypted),
                ("to_control", s.to_control),
                ("handed_off", s.handed_off),
                ("keepalives", s.keepalives),
                ("mss_clamped", s.mss_clamped),
                ("icmp_too_big_sent", s.icmp_too_big_sent),
                ("icmp_too_big_limited", s.icmp_too_big_limited),
                ("fragmented", s.fragmented),
                ("tun_rx_super_packets", s.inside_rx_super),
                ("tun_tx_super_packets", s.inside_tx_super),
            ] {
                e.sample(
                    "esprit_worker_packets_total",
                    &[("worker", &w), ("kind", kind)],
                    v,
                );
            }
        }
        e.family(
            "esprit_drops_total",
            "counter",
            "Packets dropped by each worker, by reason.",
        );
        for (w, s) in snaps.iter().enumerate() {
            let w = w.to_string();
            for r in DropReason::ALL {
                e.sample(
                    "esprit_drops_total",
                    &[("worker", &w), ("reason", r.name())],
                    s.drops(r),
                );
            }
        }

        let manual_up = self.manual.values().filter(|m| m.up).count() as u64;
        let manual_down = self.manual.len() as u64 - manual_up;
        let ike = self.ike.status();
        let ike_in = |st: &str| ike.iter().filter(|r| r["state"] == st).count() as u64;
        e.family("esprit_tunnels", "gauge", "Tunnels by kind and state.");
        e.sample(
            "esprit_tunnels",
            &[("kind", "manual"), ("state", "up")],
            manual_up,
        );
        e.sample(
            "esprit_tunnels",
            &[("kind", "manual"), ("state", "down")],
            manual_down,
        );
        for st in ["established", "connecting", "deleting"] {
            e.sample(
                "esprit_tunnels",
                &[("kind", "ike"), ("state", st)],
                ike_in(st),
            );
        }

        let s = &self.ike.stats;
        e.family(
            "esprit_ike_sas_established_total",
            "counter",
            "IKE SAs established.",
        );
        e.sample(
            "esprit_ike_sas_established_total",
            &[],
            s.ike_sas_established,
        );
        e.family(
            "esprit_ike_sas_failed_total",
            "counter",
            "IKE SAs that ended in an error or a timeout.",
        );
        e.sample("esprit_ike_sas_failed_total", &[], s.ike_sas_failed);
        e.family(
            "esprit_peer_moves_total",
            "counter",
            "Tunnels whose client was followed to a new NAT mapping (an authentic ping from a new address).",
        );
        e.sample("esprit_peer_moves_total", &[], s.peer_moves);
        e.family(
            "esprit_epoch_switches_total",
            "counter",
            "Epoch switches of esp-ping tunnels: data moved to a new CHILD SA pair once its ping was answered.",
        );
        e.sample("esprit_epoch_switches_total", &[], s.epoch_switches);
        e.family(
            "esprit_child_sas_installed_total",
            "counter",
            "CHILD SAs installed in the data plane (rekeys included).",
        );
        e.sample(
            "esprit_child_sas_installed_total",
            &[],
            s.child_sas_installed,
        );
        e.family(
            "esprit_child_sas_removed_total",
            "counter",
            "CHILD SAs removed from the data plane.",
        );
        e.sample("esprit_child_sas_removed_total", &[], s.child_sas_removed);

        // The busiest tunnels by bytes sent, from the current outbound SAs.
        let tables = self.publisher.published();
        let mut busiest: Vec<(u64, u32, u64)> = tables
            .outbound
            .iter()
            .map(|(_, sa)| (sa.counters.bytes(), sa.tunnel, sa.counters.packets()))
            .collect();
        busiest.sort_unstable_by(|a, b| b.cmp(a));
        e.family(
            "esprit_tunnel_tx_bytes",
            "gauge",
            "Bytes sent on the current outbound SA of the busiest tunnels.",
        );
        for (bytes, tunnel, _) in busiest.iter().take(TOP_TUNNELS) {
            let name = self.tunnel_name(*tunnel);
            e.sample("esprit_tunnel_tx_bytes", &[("tunnel", &name)], *bytes);
        }
        e.finish()
    }

    /// A manual tunnel's name, or the IKE tunnel's number.
    fn tunnel_name(&self, tunnel: u32) -> String {
        self.manual
            .iter()
            .find(|(_, m)| m.tunnel.tunnel == tunnel)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| format!("ike-{tunnel}"))
    }
}
