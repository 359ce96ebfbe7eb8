//! The few libc calls the socket and TUN ports share: errors that say which
//! socket failed, socket addresses in their C form, socket options, and
//! waiting for sockets to become readable.

use std::fmt::Display;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The current `errno` as an error that names what failed.
pub(crate) fn last_error(what: impl Display) -> io::Error {
    with_context(io::Error::last_os_error(), what)
}

/// `err` with `what` in front of its message; the kind is kept.
pub(crate) fn with_context(err: io::Error, what: impl Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Whether an errno means "nothing more right now" on a non-blocking fd.
pub(crate) fn would_block(errno: i32) -> bool {
    errno == libc::EAGAIN || errno == libc::EWOULDBLOCK
}

/// The raw errno of the last failed call.
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A new non-blocking, close-on-exec socket.
pub(crate) fn socket(domain: i32, ty: i32, proto: i32, what: impl Display) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(last_error(format_args!("socket() for {what}")));
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets an `int` socket option.
pub(crate) fn set_int_option(
    fd: RawFd,
    level: i32,
    name: i32,
    value: i32,
    what: impl Display,
) -> io::Result<()> {
    // SAFETY: the option value is a live `c_int` and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(last_error(what));
    }
    Ok(())
}

/// Binds `fd` to `addr`.
pub(crate) fn bind(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    let (storage, len) = to_raw(addr, false);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    let rc = unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if rc < 0 {
        return Err(last_error(format_args!("bind to {addr}")));
    }
    Ok(())
}

/// The address `fd` is bound to.
pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are live and `len` is the storage's size.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(last_error("getsockname"));
    }
    from_raw(&storage, len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "getsockname: not an IP socket"))
}

/// `addr` as a C socket address. With `v6_socket`, an IPv4 address becomes
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`), which a dual-stack socket needs.
pub(crate) fn to_raw(
    addr: &SocketAddr,
    v6_socket: bool,
) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let v6 = match addr {
        SocketAddr::V4(a) if v6_socket => {
            SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0)
        }
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            return (
                storage,
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
        }
        SocketAddr::V6(a) => *a,
    };
    let sin6 = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: v6.port().to_be(),
        sin6_flowinfo: v6.flowinfo().to_be(),
        sin6_addr: libc::in6_addr {
            s6_addr: v6.ip().octets(),
        },
        sin6_scope_id: v6.scope_id(),
    };
    // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
    unsafe {
        (&mut storage as *mut libc::sockaddr_storage)
            .cast::<libc::sockaddr_in6>()
            .write(sin6)
    };
    (
        storage,
        mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
    )
}

/// A C socket address as a `SocketAddr`; IPv4-mapped IPv6 comes back as
/// IPv4 so a peer has one name whichever socket it arrived on. `None` for
/// other families or a short length.
pub(crate) fn from_raw(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it
            // is large enough and aligned for one.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            match ip.to_ipv4_mapped() {
                Some(v4) => Some(SocketAddr::V4(SocketAddrV4::new(v4, port))),
                None => Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    u32::from_be(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id,
                ))),
            }
        }
        _ => None,
    }
}

/// Sleeps until one of `fds` is readable or `wait` has passed (no fds:
/// just sleeps). `pollfds` is the caller's scratch, kept so that an idle
/// loop allocates nothing.
pub fn wait_readable(fds: &[RawFd], pollfds: &mut Vec<libc::pollfd>, wait: Duration) {
    pollfds.clear();
    pollfds.extend(fds.iter().map(|&fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }));
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `pollfds` is a valid array of `pollfds.len()` pollfds for the
    // call, which only writes their `revents`; `ts` lives across it; a null
    // signal mask keeps the current one.
    unsafe {
        libc::ppoll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_round_trip() {
        let v4: SocketAddr = "192.0.2.7:4500".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:4500".parse().unwrap();
        for a in [v4, v6] {
            let (s, l) = to_raw(&a, false);
            assert_eq!(from_raw(&s, l), Some(a));
        }
        let (s, l) = to_raw(&v4, true);
        assert_eq!(i32::from(s.ss_family), libc::AF_INET6);
        assert_eq!(from_raw(&s, l), Some(v4), "mapped comes back as IPv4");
        assert_eq!(from_raw(&s, 4), None, "short length is refused");
    }
}
