//! A gateway's IKE driver run in process, its outside port played by the
//! caller: datagrams go in through the control link the way a worker hands
//! them over, and what the driver sends comes back out as transmits. Tests
//! and benchmarks get the whole control plane (IKE, tunnel book, epochs,
//! lifetime timers) with simulated time and no sockets, and publish the
//! SA tables the way espritd does, after each poll that changed them.

use std::io::{Error, ErrorKind};
use std::net::SocketAddr;
use std::time::Instant;

use dataplane::packet::{Encap, Packet};
use dataplane::sa::{SaPublisher, SaTables};
use dataplane::worker::ControlLink;

use super::{IkeDriver, SpiSlots};
use crate::ike::sa::Transmit;
use crate::ike::wire::NON_ESP_MARKER;

pub struct InProcessGateway {
    pub driver: IkeDriver,
    /// The data plane's tables, published as espritd publishes them (so
    /// edits after a publication copy what they share with it).
    publisher: SaPublisher,
    /// The worker's end of the driver's control link.
    link: ControlLink,
    /// Control messages (pongs) the driver asked a worker to seal: the
    /// outbound SPI and the message.
    sealed: Vec<(u32, Vec<u8>)>,
    /// The gateway's IKE address (UDP 500) and NAT-T address (4500).
    pub ike: SocketAddr,
    pub natt: SocketAddr,
}

impl InProcessGateway {
    /// The config's port must own its interface (IKE through the workers),
    /// so the driver binds no socket.
    pub fn new(cfg: &config::Config) -> std::io::Result<InProcessGateway> {
        if !cfg.dataplane.port.owns_interface() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "an in-process gateway needs a port that owns its interface",
            ));
        }
        let link = ControlLink::new(4096);
        let worker_end = ControlLink {
            to_control: link.to_control.clone(),
            from_control: link.from_control.clone(),
            seal: link.seal.clone(),
        };
        let natt = cfg
            .gateway
            .outside
            .first()
            .copied()
            .unwrap_or(([0, 0, 0, 0], 4500).into());
        let mut gw = InProcessGateway {
            driver: IkeDriver::new(cfg, vec![link], SpiSlots::new(), 1)?,
            publisher: SaPublisher::new(),
            link: worker_end,
            sealed: Vec::new(),
            ike: SocketAddr::new(natt.ip(), cfg.gateway.ike_port),
            natt,
        };
        gw.index_pools(cfg);
        Ok(gw)
    }

    /// Host routes in the pools indexed by address, as espritd has them
    /// (a pool the table refuses stays hashed, as there); not yet
    /// published.
    fn index_pools(&mut self, cfg: &config::Config) {
        let _refused = self
            .publisher
            .edit()
            .routes
            .set_pools(&super::route_pools(cfg));
    }

    /// Applies a reloaded config as espritd does: the pools' host routes
    /// indexed anew, then the driver's peers.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        cfg: &config::Config,
        peers: &config::NamedChanges,
    ) {
        self.index_pools(cfg);
        self.driver.reconfigure(now, cfg, peers);
    }

    /// Hands the driver a datagram a peer sent to `t.remote` (our 500 or
    /// 4500), as a worker does: on 500 with the non-ESP marker the port
    /// put in front. When the link is full the driver runs first.
    pub fn deliver(&mut self, now: Instant, t: &Transmit) {
        let on_ike_port = t.remote.port() == self.ike.port();
        let data = if on_ike_port {
            [&NON_ESP_MARKER[..], &t.payload].concat()
        } else {
            t.payload.clone()
        };
        let Some(mut p) = Packet::from_slice(&data) else {
            return;
        };
        p.meta.remote = t.local;
        p.meta.local_port = t.remote.port();
        p.meta.encap = Encap::EspInUdp;
        self.hand_to_control(now, p);
    }

    /// Hands the driver a control message (a ping) that arrived from `from`
    /// inside ESP on `inbound_spi`, as a worker does after opening it.
    pub fn deliver_control(
        &mut self,
        now: Instant,
        inbound_spi: u32,
        payload: &[u8],
        from: SocketAddr,
    ) {
        let Some(mut p) = Packet::from_slice(payload) else {
            return;
        };
        p.meta.remote = from;
        p.meta.spi = inbound_spi;
        p.meta.encap = Encap::Control;
        self.hand_to_control(now, p);
    }

    /// The control messages the driver had sealed since the last call.
    pub fn take_sealed(&mut self) -> Vec<(u32, Vec<u8>)> {
        std::mem::take(&mut self.sealed)
    }

    /// Runs the driver at `now`; returns what it sent, from our address
    /// to the peer's.
    pub fn poll(&mut self, now: Instant) -> Vec<Transmit> {
        self.poll_driver(now);
        self.driver.flush();
        let mut out = Vec::new();
        while let Some(p) = self.link.from_control.pop() {
            out.push(Transmit {
                local: if p.meta.local_port == self.ike.port() {
                    self.ike
                } else {
                    self.natt
                },
                remote: p.meta.remote,
                payload: p.data().to_vec(),
            });
        }
        out
    }

    /// The tables as the driver left them (workers would see them after
    /// the next publication).
    pub fn tables(&mut self) -> &SaTables {
        self.publisher.edit()
    }

    /// The tables as the workers see them now.
    pub fn published(&self) -> std::sync::Arc<SaTables> {
        self.publisher.published()
    }

    /// Queues `p` for the driver as a worker does; when the link is full
    /// the driver runs first.
    fn hand_to_control(&mut self, now: Instant, mut p: Packet) {
        while let Err(back) = self.link.to_control.push(p) {
            self.poll_driver(now);
            p = back;
        }
    }

    /// What espritd's control step does with the driver and the tables.
    fn poll_driver(&mut self, now: Instant) {
        if self.driver.poll(now, self.publisher.edit()) {
            self.publisher.publish();
        }
        while let Some(r) = self.link.seal.pop() {
            self.sealed.push((r.sa.spi, r.packet.data().to_vec()));
        }
    }
}
