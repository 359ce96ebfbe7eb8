//! A UDP flood and its sink for the throughput comparisons: `sendmmsg` and
//! `recvmmsg`, 64 datagrams a system call, where iperf3 makes one `sendto`
//! per datagram and reads the clock around each. On a 2-core machine the
//! tool shares the cores with both gateways, so a cheaper tool leaves more
//! of them to the tunnels, and the figure says more about the tunnel.
//!
//! [`Batching::Gso`] goes further, as QUIC stacks do: the sender hands the
//! kernel up to 64 equal datagrams in one buffer (`UDP_SEGMENT`) and the
//! sink reads merged ones (`UDP_GRO`), so the datagrams cross the kernel's
//! stack as one packet wherever every device on the way takes such
//! packets; where one does not, the kernel cuts them up in front of it.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::testkit::{self, udp_gso};

use super::netns::NetNs;

/// Datagrams per system call.
const BATCH: usize = 64;
/// The most bytes of datagrams in one `UDP_SEGMENT` send.
const GSO_BYTES: usize = 65_000;

/// How the flood and the sink batch their datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// `sendmmsg` and `recvmmsg`: one system call, many datagrams.
    Mmsg,
    /// `UDP_SEGMENT` and `UDP_GRO`: many datagrams as one packet.
    Gso,
}
const PORT: u16 = 5301;

/// What one flood did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flood {
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
}

impl Flood {
    /// Datagrams that arrived, per second of sending.
    pub fn received_per_second(&self) -> f64 {
        self.received as f64 / self.seconds.max(0.001)
    }
}

/// Sends `payload`-byte datagrams flat out from `from` (in `client`) to
/// `to` (in `server`) for `seconds`, and counts what the sink in `server`
/// receives, including what is still in flight for half a second after.
pub fn flood(
    client: &NetNs,
    from: &str,
    server: &NetNs,
    to: &str,
    payload: usize,
    seconds: f64,
    batching: Batching,
) -> Flood {
    let dst: SocketAddr = format!("{to}:{PORT}").parse().expect("server address");
    let src: SocketAddr = format!("{from}:0").parse().expect("client address");
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sink = {
        let stop = stop.clone();
        server.run(move || {
            let sock = UdpSocket::bind(dst).expect("sink bind");
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            set_buffer(&sock, libc::SO_RCVBUF);
            ready_tx.send(()).unwrap();
            match batching {
                Batching::Mmsg => receive_until(&sock, &stop),
                Batching::Gso => {
                    set_udp_option(&sock, libc::UDP_GRO, 1);
                    receive_merged_until(&sock, &stop)
                }
            }
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("sink ready");
    let sender = client.run(move || {
        let sock = UdpSocket::bind(src).expect("flood bind");
        sock.connect(dst).expect("flood connect");
        set_buffer(&sock, libc::SO_SNDBUF);
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(seconds);
        let sent = match batching {
            Batching::Mmsg => send_until(&sock, payload, end),
            Batching::Gso => send_segmented_until(&sock, payload, end),
        };
        (sent, start.elapsed().as_secs_f64())
    });
    let (sent, secs) = sender.join().expect("flood thread");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let received = sink.join().expect("sink thread");
    Flood {
        sent,
        received,
        seconds: secs,
    }
}

/// A large socket buffer, so bursts wait in the socket, not in drops.
fn set_buffer(sock: &UdpSocket, which: libc::c_int) {
    testkit::set_int_option(sock.as_raw_fd(), libc::SOL_SOCKET, which, 8 << 20)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn set_udp_option(sock: &UdpSocket, opt: libc::c_int, value: libc::c_int) {
    udp_gso::set_udp_option(sock, opt, value).unwrap_or_else(|e| panic!("{e}"));
}

/// Sends `batches` batches of `per_batch` numbered datagrams of `payload`
/// bytes from `from` (in `client`) to `to` (in `server`), each batch one
/// `UDP_SEGMENT` send, paced; returns the datagrams in the order a plain
/// socket at `to` received them (until 3 s pass without one).
pub fn segmented_exchange(
    client: &NetNs,
    from: &str,
    server: &NetNs,
    to: &str,
    payload: usize,
    (batches, per_batch): (usize, usize),
) -> Vec<Vec<u8>> {
    let dst: SocketAddr = to.parse().expect("server address");
    let src: SocketAddr = from.parse().expect("client address");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sink = server.run(move || {
        let sock = UdpSocket::bind(dst).expect("sink bind");
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        set_buffer(&sock, libc::SO_RCVBUF);
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        while let Ok(n) = sock.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("sink ready");
    client
        .run(move || {
            let sock = UdpSocket::bind(src).expect("sender bind");
            sock.connect(dst).expect("sender connect");
            set_udp_option(&sock, libc::UDP_SEGMENT, payload as libc::c_int);
            for b in 0..batches {
                let bytes: Vec<u8> = (0..per_batch)
                    .flat_map(|i| numbered(b * per_batch + i, payload))
                    .collect();
                sock.send(&bytes).expect("UDP_SEGMENT send");
                std::thread::sleep(Duration::from_millis(2));
            }
        })
        .join()
        .expect("sender");
    sink.join().expect("sink")
}

/// Datagram `i` of a [`segmented_exchange`]: its number, then bytes made
/// from it.
pub fn numbered(i: usize, payload: usize) -> Vec<u8> {
    let mut d = (i as u32).to_be_bytes().to_vec();
    d.extend((4..payload).map(|j| (i * 13 + j) as u8));
    d
}

/// Sends batches of up to `BATCH` datagrams of `payload` bytes, each batch
/// one buffer cut by `UDP_SEGMENT`, until `end`; how many went out. A send
/// the kernel refuses ends the flood early (a short figure, not a hang).
fn send_segmented_until(sock: &UdpSocket, payload: usize, end: Instant) -> u64 {
    set_udp_option(sock, libc::UDP_SEGMENT, payload as libc::c_int);
    let count = BATCH.min(GSO_BYTES / payload).max(1);
    let buf = vec![0x5au8; count * payload];
    let mut sent = 0;
    while Instant::now() < end {
        match sock.send(&buf) {
            Ok(_) => sent += count as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                eprintln!("UDP_SEGMENT flood stopped: {e}");
                break;
            }
        }
    }
    sent
}

/// Receives with `UDP_GRO` on until `stop`: a read may hold many datagrams
/// of the size a control message gives. How many arrived.
fn receive_merged_until(sock: &UdpSocket, stop: &AtomicBool) -> u64 {
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, seg)) = udp_gso::recv_segments(sock, &mut buf) else {
            continue;
        };
        received += n.div_ceil(seg) as u64;
    }
    received
}

/// Sends `BATCH` copies of one datagram per `sendmmsg` until `end`;
/// how many went out.
fn send_until(sock: &UdpSocket, payload: usize, end: Instant) -> u64 {
    let buf = vec![0x5au8; payload];
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: zeroed mmsghdr is valid; each points at the one iovec.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut sent = 0;
    while Instant::now() < end {
        // SAFETY: msgs and the buffer they point at outlive the call.
        let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        sent += n.max(0) as u64;
    }
    sent
}

/// Receives with `recvmmsg`, up to `BATCH` datagrams a call (each call
/// waits for its first at most the socket's read timeout), until `stop`;
/// how many arrived.
fn receive_until(sock: &UdpSocket, stop: &AtomicBool) -> u64 {
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: zeroed mmsghdr is valid; each points at its own iovec.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (m, iov) in msgs.iter_mut().zip(&mut iovs) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut received = 0;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: msgs, iovs and bufs outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        received += n.max(0) as u64;
    }
    received
}
