//! SPI steering for a SO_REUSEPORT group: every ESP-in-UDP datagram of one
//! SA lands on the same worker's socket, so that SA's sequence numbers and
//! replay window have one writer (DESIGN §3).
//!
//! The kernel runs a reuseport classic BPF program on the UDP payload (the
//! UDP header already pulled), and the value it returns indexes the group's
//! sockets in the order they were bound. The program computes
//! [`steer_worker`] of the first four payload bytes, which are the SPI for
//! ESP-in-UDP (RFC 3948 §2.2) and the zero non-ESP marker for IKE (§2.2),
//! so IKE and NAT keepalives (one 0xff byte, §2.3) go to socket 0.
//!
//! Raw ESP sockets have no reuseport group: every raw socket gets a copy of
//! every ESP packet. There each worker's socket carries a socket filter
//! ([`raw_esp_worker_program`]) that keeps only its own SPIs.
//!
//! If a socket of the group is closed, the kernel moves the last one into its
//! slot; the group must then be rebuilt to keep indices = workers.

use std::io;
use std::mem;
use std::os::fd::RawFd;

use super::sys::with_context;

/// Bits of the SPI that pick the worker. The top byte is left out so that a
/// generation counter kept there does not move an SA to another worker.
pub const SPI_STEERING_MASK: u32 = 0x00FF_FFFF;

/// `SO_ATTACH_REUSEPORT_CBPF` from `<asm-generic/socket.h>` (not exported by
/// the `libc` crate for glibc targets).
const SO_ATTACH_REUSEPORT_CBPF: i32 = 51;
/// `SO_ATTACH_FILTER` from `<asm-generic/socket.h>` (same story).
const SO_ATTACH_FILTER: i32 = 26;

/// The worker (socket index in the reuseport group) that receives packets
/// of the SA with this SPI. The data plane assigns SA ownership with it; it
/// must agree with [`spi_steering_program`].
#[inline]
pub fn steer_worker(spi: u32, n_workers: usize) -> usize {
    if n_workers <= 1 {
        return 0;
    }
    (spi & SPI_STEERING_MASK) as usize % n_workers
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The classic BPF program: `len < 4 ? 0 : (ntohl(payload[0..4]) & MASK) % n`.
/// `n_workers` of 0 or 1 gives a program that always returns 0.
pub fn spi_steering_program(n_workers: usize) -> Vec<libc::sock_filter> {
    use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_AND, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_LEN};
    use libc::{BPF_MOD, BPF_RET, BPF_W};
    let n = u32::try_from(n_workers.max(1)).unwrap_or(u32::MAX);
    vec![
        // A = payload length. A load past the end would abort the program
        // (returning 0) anyway, but say it rather than rely on it.
        stmt(BPF_LD | BPF_W | BPF_LEN, 0),
        // if A >= 4 skip the next instruction
        jump(BPF_JMP | BPF_JGE | BPF_K, 4, 1, 0),
        stmt(BPF_RET | BPF_K, 0),
        // A = first 32-bit word, loaded in network byte order = the SPI
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        stmt(BPF_ALU | BPF_AND | BPF_K, SPI_STEERING_MASK),
        stmt(BPF_ALU | BPF_MOD | BPF_K, n),
        stmt(BPF_RET | BPF_A, 0),
    ]
}

/// Attaches the SPI steering program to the reuseport group of the bound
/// socket `fd` (one call steers the whole group). The group's sockets must
/// have been bound in worker order: socket `i` is worker `i`.
pub fn attach_spi_steering(fd: RawFd, n_workers: usize) -> io::Result<()> {
    attach(
        fd,
        SO_ATTACH_REUSEPORT_CBPF,
        spi_steering_program(n_workers),
    )
    .map_err(|e| {
        with_context(
            e,
            format_args!("SO_ATTACH_REUSEPORT_CBPF on fd {fd} for {n_workers} workers"),
        )
    })
}

/// A socket filter for a raw IPv4 ESP socket (the packet starts at the IP
/// header) that keeps the packets of worker `worker` of `n_workers`:
/// `steer_worker(SPI, n) == worker`. Packets too short for an SPI are
/// dropped (a load out of bounds ends the program with 0 = drop).
pub fn raw_esp_worker_program(worker: usize, n_workers: usize) -> Vec<libc::sock_filter> {
    use libc::{BPF_ALU, BPF_AND, BPF_B, BPF_IND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX};
    use libc::{BPF_MOD, BPF_MSH, BPF_RET, BPF_W};
    let n = u32::try_from(n_workers.max(1)).unwrap_or(u32::MAX);
    let me = u32::try_from(worker).unwrap_or(u32::MAX);
    vec![
        // X = 4 * IHL: the length of the IPv4 header
        stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
        // A = the 32 bits after it: the SPI (RFC 4303 §2.1)
        stmt(BPF_LD | BPF_W | BPF_IND, 0),
        stmt(BPF_ALU | BPF_AND | BPF_K, SPI_STEERING_MASK),
        stmt(BPF_ALU | BPF_MOD | BPF_K, n),
        jump(BPF_JMP | BPF_JEQ | BPF_K, me, 0, 1),
        stmt(BPF_RET | BPF_K, u32::MAX), // keep, whole packet
        stmt(BPF_RET | BPF_K, 0),        // not ours
    ]
}

/// Attaches [`raw_esp_worker_program`] to the raw ESP socket `fd`.
pub fn attach_raw_esp_worker_filter(fd: RawFd, worker: usize, n_workers: usize) -> io::Result<()> {
    attach(
        fd,
        SO_ATTACH_FILTER,
        raw_esp_worker_program(worker, n_workers),
    )
    .map_err(|e| {
        with_context(
            e,
            format_args!("SO_ATTACH_FILTER on fd {fd} for worker {worker} of {n_workers}"),
        )
    })
}

fn attach(fd: RawFd, option: i32, mut prog: Vec<libc::sock_filter>) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&fprog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_and_small_counts_go_to_worker_zero() {
        assert_eq!(steer_worker(0, 4), 0, "non-ESP marker");
        assert_eq!(steer_worker(0xdead_beef, 1), 0);
        assert_eq!(steer_worker(0xdead_beef, 0), 0);
    }

    #[test]
    fn top_byte_does_not_move_an_sa() {
        for n in 1..9 {
            assert_eq!(steer_worker(0x0100_0005, n), steer_worker(0xff00_0005, n));
        }
        assert_eq!(steer_worker(5, 3), 2);
    }
}
