//! UDP sockets that batch through the kernel (`UDP_SEGMENT`, `UDP_GRO`),
//! for tests and floods that drive the TUN port's UDP offload.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// Sets the `SOL_UDP` option `opt` (`libc::UDP_SEGMENT`, `libc::UDP_GRO`).
pub fn set_udp_option(sock: &UdpSocket, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    let what = format_args!("UDP option {opt}");
    crate::port::sys::set_int_option(sock.as_raw_fd(), libc::SOL_UDP, opt, value, what)
}

/// One read of a socket with `UDP_GRO` on: its bytes in `buf` and the
/// size of the datagrams they hold (the GRO control message's, or the
/// whole read when the kernel merged nothing; at least 1).
pub fn recv_segments(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, usize)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: zeroed msghdr is valid; it points at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg and what it points at outlive the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // Never 0: an empty datagram is one datagram.
    let mut seg = n.max(1);
    // SAFETY: walking the control messages the kernel wrote into `msg`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let s = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                seg = (s as usize).max(1);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, seg))
}
