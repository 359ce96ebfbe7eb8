//! One tunnel's epochs and pings, sans-IO (DESIGN.md 4, docs/ping.md).
//!
//! An epoch is one CHILD SA pair. The client pings on a new epoch and sends
//! no data on it until the pong comes back on that same epoch: the pong
//! proves the ESP path through the NAT, not only the IKE path. The server
//! keeps sending on the old epoch until the client's ping arrives on the
//! new one. Old inbound SAs stay for a grace period so nothing in flight is
//! lost. No pong within `ping_timeout`: re-ping, `ping_retries` times, then
//! rekey; `rekey_attempts` failed rekeys in a row: start IKE from scratch.
//!
//! Fed with `handle_*(now, ..)`, drained with `poll_action()` and
//! `next_timeout()`; tested in simulated time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ping_msg::{Kind, PingMsg, PING_LEN};

/// Which end of the tunnel this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Pings, and decides when its data moves to a new epoch.
    Client,
    /// Answers pings, and moves its data when the client's ping arrives.
    Server,
}

/// How liveness is checked (config `liveness`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// esprit's ping inside ESP, with the epoch rules.
    EspPing,
    /// Standard IKEv2 liveness (INFORMATIONAL), for peers without the ping.
    Ike,
    Off,
}

/// A peer's settings, from its config section.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub mode: Mode,
    pub ping_timeout: Duration,
    pub ping_retries: u32,
    pub idle_ping_after: Duration,
    pub rekey_attempts: u32,
    pub ignore_peer_rekey: bool,
    pub grace_period: Duration,
}

/// The SPIs of one epoch's CHILD SA pair, as this side sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochSpis {
    pub inbound: u32,
    pub outbound: u32,
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Seal this message on that outbound SA (next header 253) and send it.
    SendControl {
        outbound_spi: u32,
        payload: [u8; PING_LEN],
    },
    /// Data goes on this epoch's outbound SA from now on.
    SwitchOutbound { epoch: u32, outbound_spi: u32 },
    /// The grace period of an old inbound SA is over.
    RemoveInbound { spi: u32 },
    /// The grace period of a pair that never carried data is over: a
    /// pending epoch given up because a newer one was proven first. No
    /// rekey deletes such a pair (the peer may never have learnt of it, its
    /// IKE answer lost), so this side's IKE must.
    DeleteUnused { spi: u32 },
    /// Ask IKE for a new CHILD SA (a new epoch).
    Rekey,
    /// Tear the IKE SA down and start a new one, with INITIAL_CONTACT.
    RestartIke,
    /// Run an IKEv2 liveness check (mode `ike`).
    CheckLiveness,
}

/// Where the tunnel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No epoch yet (IKE is setting the first one up).
    Connecting,
    /// A new epoch waits for its pong (client) or ping (server).
    Probing,
    Up,
    /// A rekey was asked for and its epoch has not arrived yet.
    Rekeying,
    /// A new IKE session was asked for.
    Restarting,
}

/// Counters for logs and the control socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelStats {
    pub epoch: u32,
    pub last_rtt: Option<Duration>,
    pub pings_sent: u64,
    pub retries: u64,
    pub pongs_received: u64,
    /// Pongs (or pings) that matched nothing: replayed, forged, stale.
    pub rejected: u64,
    pub rekeys: u64,
    pub restarts: u64,
}

#[derive(Clone, Copy, Debug)]
struct Epoch {
    number: u32,
    spis: EpochSpis,
}

/// The ping waiting for its pong.
#[derive(Clone, Copy, Debug)]
struct Outstanding {
    epoch: Epoch,
    nonce: u64,
    sent: Instant,
    tries: u32,
}

/// At most this many old inbound SAs wait out their grace period.
const GRACE_SLOTS: usize = 4;

/// The first ping on an epoch the peer created waits this long: the peer
/// installs its side only when our IKE response reaches it, and a ping sent
/// at once can arrive first and meet an unknown SPI.
pub const PEER_EPOCH_SETTLE: Duration = Duration::from_millis(20);

/// One tunnel. Small and allocation-free but for its short action queue:
/// a concentrator holds one per client.
pub struct Tunnel {
    role: Role,
    /// Shared by every tunnel of a peer template.
    settings: Arc<Settings>,
    state: State,
    /// The epoch data uses.
    current: Option<Epoch>,
    /// A newer epoch not yet confirmed.
    pending: Option<Epoch>,
    /// The epoch that was pending before `pending` came (after a rekey
    /// collision both may exist until IKE deletes the redundant one).
    older_pending: Option<Epoch>,
    next_epoch: u32,
    /// The ping on `pending` (or an idle ping on `current`).
    outstanding: Option<Outstanding>,
    /// The ping on `older_pending` when a newer epoch came: its pong still
    /// counts, but it is not retried.
    older_outstanding: Option<Outstanding>,
    /// When the first ping on `pending` goes (see [`PEER_EPOCH_SETTLE`]).
    first_ping_at: Option<Instant>,
    last_rx: Instant,
    rekey_failures: u32,
    /// Retired inbound SPIs, when their grace ends, and whether their
    /// epoch never carried data.
    grace: [Option<(u32, Instant, bool)>; GRACE_SLOTS],
    /// The newest pending epoch given up because a newer one was proven
    /// first. If IKE then deletes that newer one (the loser of a rekey
    /// collision), this one is pending again instead of being deleted.
    given_up: Option<Epoch>,
    nonce: u64,
    base: Instant,
    actions: VecDeque<Action>,
    stats: TunnelStats,
}

impl Tunnel {
    /// A tunnel whose first epoch IKE is about to set up. `nonce_seed`
    /// should be random: pong nonces must not be guessable.
    pub fn new(role: Role, settings: Arc<Settings>, now: Instant, nonce_seed: u64) -> Tunnel {
        Tunnel {
            role,
            settings,
            state: State::Connecting,
            current: None,
            pending: None,
            older_pending: None,
            next_epoch: 1,
            outstanding: None,
            older_outstanding: None,
            first_ping_at: None,
            last_rx: now,
            rekey_failures: 0,
            grace: [None; GRACE_SLOTS],
            given_up: None,
            nonce: nonce_seed,
            base: now,
            actions: VecDeque::new(),
            stats: TunnelStats::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn stats(&self) -> TunnelStats {
        self.stats
    }

    /// The inbound SPI of the epoch data uses now, or else of the newest
    /// epoch (what a rekey should replace).
    pub fn latest_inbound(&self) -> Option<u32> {
        self.pending.or(self.current).map(|e| e.spis.inbound)
    }

    /// The outbound SPI data may use now, if any.
    pub fn data_outbound(&self) -> Option<u32> {
        self.current.map(|e| e.spis.outbound)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        let a = self.actions.pop_front();
        if a.is_none() && self.actions.capacity() > 0 {
            // Actions come now and then; a concentrator holds a machine per
            // client, and an idle queue's buffer would stay with each.
            self.actions = VecDeque::new();
        }
        a
    }

    /// IKE installed a new CHILD SA pair (its inbound SA is in the data
    /// plane; its outbound SA is not yet used for data) from an exchange
    /// this side initiated, or the first pair of an IKE SA we initiated:
    /// the peer has its side already.
    pub fn handle_epoch_ready(&mut self, now: Instant, spis: EpochSpis) {
        self.epoch_ready(now, spis, Duration::ZERO);
    }

    /// As [`Tunnel::handle_epoch_ready`], for a pair the peer's exchange
    /// created: the peer installs it only when our answer arrives, so the
    /// first ping waits [`PEER_EPOCH_SETTLE`].
    pub fn handle_peer_epoch_ready(&mut self, now: Instant, spis: EpochSpis) {
        self.epoch_ready(now, spis, PEER_EPOCH_SETTLE);
    }

    fn epoch_ready(&mut self, now: Instant, spis: EpochSpis, settle: Duration) {
        let epoch = Epoch {
            number: self.next_epoch,
            spis,
        };
        self.next_epoch += 1;
        if self.settings.mode != Mode::EspPing {
            // Without the ping there is nothing to wait for.
            self.switch_to(now, epoch);
            return;
        }
        // A third unconfirmed epoch: the oldest is given up.
        if let Some(oldest) = self.older_pending.take() {
            self.give_up(now, oldest);
        }
        self.older_pending = self.pending.replace(epoch);
        let on_older =
            |o: &Outstanding| Some(o.epoch.number) == self.older_pending.map(|e| e.number);
        self.older_outstanding = self.outstanding.take().filter(on_older);
        self.state = State::Probing;
        if self.role == Role::Client {
            if settle.is_zero() {
                self.ping(now, epoch, 1);
            } else {
                self.first_ping_at = Some(now + settle);
            }
        }
    }

    /// IKE deleted a CHILD SA pair (for example the redundant one of a
    /// rekey collision, RFC 7296 2.8.1): an epoch still pending on it is
    /// forgotten, and the other pending one, if any, is probed instead.
    /// A current epoch deleted under it leaves data waiting for the pending
    /// one's proof; with none pending, the epoch it had won over (in a
    /// collision, IKE keeps that one) is pending again.
    pub fn handle_epoch_deleted(&mut self, now: Instant, inbound_spi: u32) {
        let on = |e: Option<Epoch>| e.is_some_and(|e| e.spis.inbound == inbound_spi);
        if on(self.given_up) {
            self.given_up = None;
        }
        if on(self.older_pending) {
            self.older_pending = None;
            self.older_outstanding = None;
        }
        if on(self.current) {
            self.current = None;
        }
        if on(self.pending) {
            // The older pending epoch's ping may have been lost while the
            // newer one was probed: ping it afresh (an answer to the earlier
            // ping, in `older_outstanding`, still counts).
            self.pending = self.older_pending.take();
            self.outstanding = None;
            if let (Some(e), Role::Client) = (self.pending, self.role) {
                if self.first_ping_at.is_none() {
                    self.ping(now, e, 1);
                }
            }
        }
        if self.pending.is_none() && self.current.is_none() {
            if let Some(e) = self.take_given_up() {
                self.pending = Some(e);
                if self.role == Role::Client {
                    self.ping(now, e, 1);
                }
            }
        }
        self.state = match (self.pending, self.current) {
            (Some(_), _) => State::Probing,
            (None, Some(_)) => State::Up,
            (None, None) if self.state == State::Restarting => State::Restarting,
            (None, None) => State::Connecting,
        };
    }

    /// A control message arrived on inbound SA `inbound_spi`. Returns
    /// whether it was a ping on one of this tunnel's epochs (answered): the
    /// peer is where that packet came from.
    pub fn handle_control(&mut self, now: Instant, inbound_spi: u32, payload: &[u8]) -> bool {
        let Ok(msg) = PingMsg::decode(payload) else {
            self.stats.rejected += 1;
            return false;
        };
        self.last_rx = now;
        match (msg.kind, self.role) {
            (Kind::Pong, Role::Client) => {
                self.on_pong(now, inbound_spi, msg);
                false
            }
            (Kind::Ping, _) => self.on_ping(now, inbound_spi, msg),
            (Kind::Pong, Role::Server) => {
                self.stats.rejected += 1;
                false
            }
        }
    }

    /// Data arrived on the tunnel: the path works, the idle timer restarts.
    pub fn handle_traffic_seen(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// The rekey asked for did not produce a CHILD SA.
    pub fn handle_rekey_failed(&mut self, now: Instant) {
        self.rekey_failed(now);
    }

    /// The IKE SA is gone; a new one will bring a new first epoch.
    pub fn handle_ike_down(&mut self, _now: Instant) {
        self.restart();
    }

    /// Every epoch and ping is forgotten: a new IKE session comes.
    fn restart(&mut self) {
        self.current = None;
        self.pending = None;
        self.older_pending = None;
        self.outstanding = None;
        self.older_outstanding = None;
        self.first_ping_at = None;
        self.given_up = None;
        self.state = State::Restarting;
    }

    /// The peer wants to rekey: whether to accept (`ignore_peer_rekey`
    /// makes a client refuse, and keep its own rhythm).
    pub fn handle_peer_rekey_request(&mut self, _now: Instant) -> bool {
        !(self.role == Role::Client && self.settings.ignore_peer_rekey)
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let ping = self
            .outstanding
            .map(|o| o.sent + self.settings.ping_timeout);
        let idle = match (self.state, self.settings.mode, self.role) {
            (State::Up, Mode::EspPing, Role::Client) if self.outstanding.is_none() => {
                Some(self.last_rx + self.settings.idle_ping_after)
            }
            (State::Up, Mode::Ike, _) => Some(self.last_rx + self.settings.idle_ping_after),
            _ => None,
        };
        let older = self
            .older_outstanding
            .map(|o| o.sent + self.settings.ping_timeout);
        let grace = self.grace.iter().flatten().map(|(_, t, _)| *t).min();
        [ping, older, self.first_ping_at, idle, grace]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for slot in self.grace.iter_mut() {
            if let Some((spi, at, unused)) = *slot {
                if at <= now {
                    self.actions.push_back(grace_over(spi, unused));
                    *slot = None;
                    if self.given_up.is_some_and(|e| e.spis.inbound == spi) {
                        self.given_up = None;
                    }
                }
            }
        }
        if self.first_ping_at.is_some_and(|t| t <= now) {
            self.first_ping_at = None;
            if let Some(e) = self.pending {
                self.ping(now, e, 1);
            }
        }
        if self
            .older_outstanding
            .is_some_and(|o| o.sent + self.settings.ping_timeout <= now)
        {
            self.older_outstanding = None;
        }
        if let Some(o) = self.outstanding {
            if o.sent + self.settings.ping_timeout <= now {
                if o.tries <= self.settings.ping_retries {
                    self.stats.retries += 1;
                    self.ping(now, o.epoch, o.tries + 1);
                } else {
                    // The path is dead, or this epoch never worked.
                    self.outstanding = None;
                    self.rekey_failed(now);
                }
            }
        }
        if self.state == State::Up && self.last_rx + self.settings.idle_ping_after <= now {
            match (self.settings.mode, self.role) {
                (Mode::EspPing, Role::Client) if self.outstanding.is_none() => {
                    if let Some(e) = self.current {
                        self.ping(now, e, 1);
                    }
                }
                (Mode::Ike, _) => {
                    self.last_rx = now;
                    self.actions.push_back(Action::CheckLiveness);
                }
                _ => {}
            }
        }
    }

    fn ping(&mut self, now: Instant, epoch: Epoch, tries: u32) {
        self.nonce = self
            .nonce
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let msg = PingMsg {
            kind: Kind::Ping,
            epoch: epoch.number,
            nonce: self.nonce,
            sent_ns: now.saturating_duration_since(self.base).as_nanos() as u64,
        };
        self.outstanding = Some(Outstanding {
            epoch,
            nonce: self.nonce,
            sent: now,
            tries,
        });
        self.stats.pings_sent += 1;
        self.actions.push_back(Action::SendControl {
            outbound_spi: epoch.spis.outbound,
            payload: msg.encode(),
        });
    }

    fn on_pong(&mut self, now: Instant, inbound_spi: u32, msg: PingMsg) {
        // Same ping, and back on the epoch it probed.
        let answers = |o: &Outstanding| {
            msg.nonce == o.nonce
                && msg.epoch == o.epoch.number
                && inbound_spi == o.epoch.spis.inbound
        };
        let o = if let Some(o) = self.outstanding.filter(answers) {
            self.outstanding = None;
            o
        } else if let Some(o) = self.older_outstanding.filter(answers) {
            self.older_outstanding = None;
            o
        } else {
            self.stats.rejected += 1;
            return;
        };
        self.stats.pongs_received += 1;
        self.stats.last_rtt = Some(now.saturating_duration_since(o.sent));
        self.confirm(now, o.epoch);
    }

    /// `epoch` is proven (its pong, or the client's ping on it): if it is
    /// a pending one, data moves there. Older pending epochs are given up;
    /// a newer one stays pending.
    fn confirm(&mut self, now: Instant, epoch: Epoch) {
        let is = |p: Option<Epoch>| p.is_some_and(|p| p.number == epoch.number);
        if is(self.pending) {
            if let Some(older) = self.older_pending.take() {
                self.give_up(now, older);
            }
            self.pending = None;
            self.older_outstanding = None;
            self.first_ping_at = None;
            self.switch_to(now, epoch);
        } else if is(self.older_pending) {
            self.older_pending = None;
            self.switch_to(now, epoch);
            self.state = State::Probing;
        }
    }

    fn on_ping(&mut self, now: Instant, inbound_spi: u32, msg: PingMsg) -> bool {
        // Answer on the epoch the ping came on.
        let on = [self.pending, self.older_pending, self.current]
            .into_iter()
            .flatten()
            .find(|e| e.spis.inbound == inbound_spi);
        let Some(epoch) = on else {
            self.stats.rejected += 1;
            return false;
        };
        if self.role == Role::Server {
            // The client reached us on a new epoch: our data follows.
            self.confirm(now, epoch);
        }
        let pong = PingMsg {
            kind: Kind::Pong,
            ..msg
        };
        self.actions.push_back(Action::SendControl {
            outbound_spi: epoch.spis.outbound,
            payload: pong.encode(),
        });
        true
    }

    /// Data moves to `epoch`; the old inbound SA waits out its grace.
    fn switch_to(&mut self, now: Instant, epoch: Epoch) {
        if let Some(old) = self.current.replace(epoch) {
            if old.spis.inbound != epoch.spis.inbound {
                self.retire(now, old.spis.inbound, false);
            }
        }
        self.stats.epoch = epoch.number;
        self.state = State::Up;
        self.rekey_failures = 0;
        self.last_rx = now;
        self.actions.push_back(Action::SwitchOutbound {
            epoch: epoch.number,
            outbound_spi: epoch.spis.outbound,
        });
    }

    /// A pending epoch loses to a newer one that was proven first.
    fn give_up(&mut self, now: Instant, epoch: Epoch) {
        self.given_up = Some(epoch);
        self.retire(now, epoch.spis.inbound, true);
    }

    /// The epoch given up last, back from its grace period: the epoch it
    /// lost to is gone.
    fn take_given_up(&mut self) -> Option<Epoch> {
        let e = self.given_up.take()?;
        for slot in self.grace.iter_mut() {
            if slot.is_some_and(|(spi, _, _)| spi == e.spis.inbound) {
                *slot = None;
            }
        }
        Some(e)
    }

    /// The inbound SA `spi` carries no new data; after the grace period
    /// it goes. `unused`: its epoch never carried any.
    fn retire(&mut self, now: Instant, spi: u32, unused: bool) {
        let at = now + self.settings.grace_period;
        match self.grace.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some((spi, at, unused)),
            // Too many epochs in a grace period: retire this one now.
            None => self.actions.push_back(grace_over(spi, unused)),
        }
    }

    fn rekey_failed(&mut self, _now: Instant) {
        self.rekey_failures += 1;
        if self.rekey_failures > self.settings.rekey_attempts {
            self.rekey_failures = 0;
            self.restart();
            self.stats.restarts += 1;
            self.actions.push_back(Action::RestartIke);
        } else {
            self.state = State::Rekeying;
            self.stats.rekeys += 1;
            self.actions.push_back(Action::Rekey);
        }
    }
}

/// What the end of a retired inbound SA's grace period asks for.
fn grace_over(spi: u32, unused: bool) -> Action {
    if unused {
        Action::DeleteUnused { spi }
    } else {
        Action::RemoveInbound { spi }
    }
}
