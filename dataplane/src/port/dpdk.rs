//! The DPDK port (cargo feature `dpdk`): one rx and one tx queue of an
//! ethdev per worker, polled in bursts, with the L2 layer of
//! [`super::l2::L2Outside`] for an outside interface.
//!
//! First version: bursts copy between mbufs and [`Packet`]s (one memcpy per
//! packet each way; the mbufs go straight back to their pool). Zero copy
//! means a `Packet` that can wrap an mbuf, a change to `packet.rs`.
//!
//! The EAL is process-wide and can be started once ([`Eal::init`]).

mod eal;
mod queue;

pub use eal::{Eal, MbufPool};
pub use queue::{DpdkDevice, DpdkPort, DpdkStats};

/// A DPDK call failed.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("EAL init failed: {0}")]
    EalInit(String),
    #[error("{what}: {message} (errno {errno})")]
    Call {
        what: String,
        errno: i32,
        message: String,
    },
    #[error("{0} contains a NUL byte")]
    Nul(String),
}

impl DpdkError {
    /// The error of a DPDK call that returned `rc` (negative errno, or
    /// -1 with rte_errno set).
    pub(crate) fn call(what: impl Into<String>, rc: i32) -> DpdkError {
        // SAFETY: reads the calling thread's rte_errno.
        let errno = if rc == -1 || rc >= 0 {
            unsafe { dpdk_sys::esprit_errno() }
        } else {
            -rc
        };
        DpdkError::Call {
            what: what.into(),
            errno,
            message: strerror(errno),
        }
    }
}

fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string.
    let p = unsafe { dpdk_sys::rte_strerror(errno) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null, NUL-terminated, valid until the next call on this
    // thread; copied at once.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}
