//! The TUN port with offloads, between two network namespaces: TCP
//! transfers each way, over IPv4 and IPv6, cross two offloading queues joined by a relay, as
//! it would cross two gateways. The sender's kernel hands its queue TCP
//! super-packets, which the port cuts into segments; the other queue merges
//! them back before the receiver's kernel takes them. The bytes must
//! arrive whole and in order, and both halves of the offload must have run.

mod port_netns;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dataplane::port::tun::{TunDevice, TunPort};
use dataplane::port::Port;
use dataplane::testkit::set_int_option;
use dataplane::testkit::udp_gso::{recv_segments, set_udp_option};
use dataplane::PacketPool;
use port_netns::{in_new_netns, ip};

const BYTES: usize = 8 << 20;

/// The same bytes at both ends, not a repeating pattern a lost or doubled
/// segment could hide in.
fn pattern(seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// How a TUN device is opened: with both offloads, or TCP's only.
type Open = fn(&str, usize) -> std::io::Result<(TunDevice, Vec<TunPort>)>;

/// The two ends: this test's namespace (10.0.0.1, fd00:a::1) and the far
/// one (10.9.0.2, fd00:b::2).
#[derive(Clone, Copy)]
enum End {
    Near,
    Far,
}

/// TUN `name` opened by `open` at `end`, addressed, up and routed to the
/// other end; its one queue.
fn tun_end(open: Open, name: &str, end: End) -> TunPort {
    let (v4, v6, other4, other6) = match end {
        End::Near => ("10.0.0.1", "fd00:a::1/64", "10.9.0.0/24", "fd00:b::/64"),
        End::Far => ("10.9.0.2", "fd00:b::2/64", "10.0.0.0/24", "fd00:a::/64"),
    };
    let (dev, mut queues) = open(name, 1).unwrap();
    dev.set_mtu(1400).unwrap();
    dev.add_address(v4.parse().unwrap(), 24).unwrap();
    dev.set_up().unwrap();
    ip(&["route", "add", other4, "dev", name]);
    ip(&["addr", "add", v6, "dev", name, "nodad"]);
    ip(&["route", "add", other6, "dev", name]);
    queues.remove(0)
}

/// Moves packets between `a` and `b` until `done` says so (or 30 s pass).
fn relay(a: &mut TunPort, b: &mut TunPort, done: &mpsc::Receiver<()>) {
    let mut pool = PacketPool::with_capacity(512);
    let mut burst = Vec::with_capacity(64);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && done.try_recv().is_err() {
        let mut moved = a.rx_burst(&mut pool, &mut burst, 64).unwrap();
        b.tx_burst(&mut burst, &mut pool).unwrap();
        moved += b.rx_burst(&mut pool, &mut burst, 64).unwrap();
        a.tx_burst(&mut burst, &mut pool).unwrap();
        if moved == 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// The server's half of a transfer: reads all, then sends its own bytes.
fn serve(listener: TcpListener) -> Vec<u8> {
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::with_capacity(BYTES);
    conn.read_to_end(&mut got).unwrap();
    conn.write_all(&pattern(2)).unwrap();
    got
}

/// The client's half: sends its bytes, then reads all the server sends.
fn client(to: &str) -> Vec<u8> {
    let to = to.parse().unwrap();
    let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(10)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(&pattern(1)).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::with_capacity(BYTES);
    conn.read_to_end(&mut back).unwrap();
    back
}

#[test]
fn tcp_crosses_two_offloading_queues_whole_both_ways() {
    in_new_netns(|| {
        let mut a = tun_end(TunDevice::open_offloaded, "esp-offa", End::Near);
        assert!(a.offloaded());

        // The far end, in a namespace of its own: a server that reads all
        // the client sends, then sends its own bytes back.
        let (ready_tx, ready_rx) = mpsc::channel();
        let server = std::thread::spawn(move || {
            in_new_netns(move || {
                let b = tun_end(TunDevice::open_offloaded, "esp-offb", End::Far);
                let listener = TcpListener::bind("10.9.0.2:5201").unwrap();
                let listener6 = TcpListener::bind("[fd00:b::2]:5201").unwrap();
                let udp = UdpSocket::bind("10.9.0.2:9999").unwrap();
                ready_tx.send(b).unwrap();
                udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0u8; 64];
                let (n, _) = udp.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], b"checksum done by the port");
                [listener, listener6].map(serve)
            })
        });
        let mut b = ready_rx.recv().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let relay = std::thread::spawn(move || {
            relay(&mut a, &mut b, &done_rx);
            (a.stats(), b.stats())
        });

        // A datagram first: its checksum is left to the "device", the port.
        let udp = UdpSocket::bind("10.0.0.1:0").unwrap();
        udp.send_to(b"checksum done by the port", "10.9.0.2:9999")
            .unwrap();

        // IPv4, then IPv6: each a transfer both ways.
        let back = ["10.9.0.2:5201", "[fd00:b::2]:5201"].map(client);
        let there = server.join().unwrap();
        done_tx.send(()).unwrap();
        let (sa, sb) = relay.join().unwrap();

        for (i, family) in ["IPv4", "IPv6"].into_iter().enumerate() {
            assert!(
                there[i] == pattern(1),
                "{family} client to server: {} bytes, not the ones sent",
                there[i].len()
            );
            assert!(
                back[i] == pattern(2),
                "{family} server to client: {} bytes, not the ones sent",
                back[i].len()
            );
        }
        for (side, s) in [("a", sa), ("b", sb)] {
            assert!(
                s.rx_super_packets > 0,
                "{side}: the kernel sent super-packets: {s:?}"
            );
            assert!(
                s.tx_super_packets > 0,
                "{side}: the port merged segments: {s:?}"
            );
            assert_eq!(
                s.rx_bad_offload + s.rx_oversize + s.tx_dropped,
                0,
                "{side}: {s:?}"
            );
        }
        println!("offload counters: a {sa:?}, b {sb:?}");
    });
}

/// Datagrams of this many bytes, in `UDP_SEGMENT` batches of `BATCH`.
const DATAGRAM: usize = 64;
const BATCH: usize = 32;
const BATCHES: usize = 100;

/// Datagram `i`'s payload: its number, then bytes made from it.
fn datagram(i: usize) -> Vec<u8> {
    let mut d = (i as u32).to_be_bytes().to_vec();
    d.extend((4..DATAGRAM).map(|j| (i * 13 + j) as u8));
    d
}

/// One read's datagrams, and whether the kernel merged them.
fn recv_datagrams(sock: &UdpSocket, buf: &mut [u8]) -> Option<(Vec<Vec<u8>>, bool)> {
    let (n, seg) = recv_segments(sock, buf).ok()?;
    Some((buf[..n].chunks(seg).map(<[u8]>::to_vec).collect(), seg < n))
}

#[test]
fn udp_batches_cross_two_offloading_queues_as_super_packets() {
    udp_batches_cross(true);
}

#[test]
fn without_udp_offload_the_kernel_cuts_the_batches_and_nothing_is_merged() {
    udp_batches_cross(false);
}

/// `UDP_SEGMENT` batches from one namespace to the other, across two TUN
/// queues opened with UDP's offloads (`udp`) or TCP's only.
fn udp_batches_cross(udp: bool) {
    let open = if udp {
        TunDevice::open_offloaded
    } else {
        TunDevice::open_offloaded_tcp
    };
    in_new_netns(move || {
        let mut a = tun_end(open, "esp-usoa", End::Near);

        // The far end: an IPv4 socket with UDP_GRO, which reads merged
        // packets whole, and an IPv6 one without, to which the kernel
        // hands the datagrams one by one.
        let (ready_tx, ready_rx) = mpsc::channel();
        let server = std::thread::spawn(move || {
            in_new_netns(move || {
                let b = tun_end(open, "esp-usob", End::Far);
                let v4 = UdpSocket::bind("10.9.0.2:5301").unwrap();
                set_udp_option(&v4, libc::UDP_GRO, 1).unwrap();
                let v6 = UdpSocket::bind("[fd00:b::2]:5301").unwrap();
                // The IPv6 datagrams wait while the IPv4 ones are read:
                // 3,200 single skbs overflow a default buffer on a busy
                // machine, and the test is about offloads, not buffers.
                for sock in [&v4, &v6] {
                    let fd = sock.as_raw_fd();
                    set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20).unwrap();
                }
                ready_tx.send(b).unwrap();
                let mut buf = vec![0u8; 65536];
                [v4, v6].map(|sock| {
                    sock.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let (mut got, mut merged_reads) = (Vec::new(), 0);
                    while got.len() < BATCH * BATCHES {
                        let Some((d, merged)) = recv_datagrams(&sock, &mut buf) else {
                            break;
                        };
                        merged_reads += usize::from(merged);
                        got.extend(d);
                    }
                    (got, merged_reads)
                })
            })
        });
        let mut b = ready_rx.recv().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let relay = std::thread::spawn(move || {
            relay(&mut a, &mut b, &done_rx);
            (a.stats(), b.stats())
        });

        for (from, to) in [
            ("10.0.0.1:0", "10.9.0.2:5301"),
            ("[fd00:a::1]:0", "[fd00:b::2]:5301"),
        ] {
            let sock = UdpSocket::bind(from).unwrap();
            set_udp_option(&sock, libc::UDP_SEGMENT, DATAGRAM as libc::c_int).unwrap();
            sock.connect(to).unwrap();
            for batch in 0..BATCHES {
                let bytes: Vec<u8> = (0..BATCH)
                    .flat_map(|i| datagram(batch * BATCH + i))
                    .collect();
                assert_eq!(sock.send(&bytes).unwrap(), bytes.len());
                // Paced, so that no socket buffer overflows on a busy machine.
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        let [(v4, v4_merged), (v6, _)] = server.join().unwrap();
        done_tx.send(()).unwrap();
        let (sa, sb) = relay.join().unwrap();

        for (family, got) in [("IPv4", &v4), ("IPv6", &v6)] {
            let want: Vec<Vec<u8>> = (0..BATCH * BATCHES).map(datagram).collect();
            assert_eq!(got.len(), want.len(), "{family}: datagrams received");
            assert!(
                *got == want,
                "{family}: the datagrams arrived whole and in order"
            );
        }
        if udp {
            assert!(v4_merged > 0, "the GRO socket read merged packets");
            assert_eq!(
                sa.rx_super_packets,
                2 * BATCHES as u64,
                "a cut each send: {sa:?}"
            );
            assert!(sb.tx_super_packets > 0, "b merged datagrams: {sb:?}");
        } else {
            assert_eq!(v4_merged, 0, "nothing merged for the GRO socket");
            assert_eq!(sa.rx_super_packets, 0, "the kernel cut the batches: {sa:?}");
            assert_eq!(
                sb.tx_super_packets, 0,
                "b wrote datagrams one by one: {sb:?}"
            );
        }
        for (side, s) in [("a", sa), ("b", sb)] {
            assert_eq!(
                s.rx_bad_offload + s.rx_oversize + s.tx_dropped,
                0,
                "{side}: {s:?}"
            );
        }
        println!("USO counters: a {sa:?}, b {sb:?}; GRO reads merged: {v4_merged}");
    });
}
