//! The EAL (started once per process) and mbuf pools.

use std::ffi::{c_char, CString};
use std::ptr::NonNull;
use std::sync::OnceLock;

use super::DpdkError;

/// The started EAL. DPDK cannot start it twice in one process, so the
/// first [`Eal::init`] wins and later calls get the same one.
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
}

static EAL: OnceLock<Result<Eal, String>> = OnceLock::new();

impl Eal {
    /// Starts the EAL with `args` (argv[0] first, e.g. `["espritd",
    /// "--no-huge", "--no-pci", "-m", "256", "--vdev=net_ring0"]`), or
    /// returns the EAL already started (whatever its arguments were).
    pub fn init(args: &[&str]) -> Result<&'static Eal, DpdkError> {
        let r = EAL.get_or_init(|| {
            let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let mut cstrs = Vec::with_capacity(args.len());
            for a in args {
                cstrs.push(CString::new(*a).map_err(|_| format!("argument {a:?} has a NUL"))?);
            }
            // EAL keeps pointers into argv (and may reorder it): leak it,
            // once per process.
            let mut argv: Vec<*mut c_char> = cstrs.into_iter().map(CString::into_raw).collect();
            let argc = argv.len() as i32;
            let argv_ptr = argv.as_mut_ptr();
            std::mem::forget(argv);
            // SAFETY: argc/argv describe leaked, NUL-terminated strings that
            // live for the rest of the process.
            let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv_ptr) };
            if rc < 0 {
                // SAFETY: reads this thread's rte_errno.
                let errno = unsafe { dpdk_sys::esprit_errno() };
                return Err(format!("{} (errno {errno})", super::strerror(errno)));
            }
            Ok(Eal { args: owned })
        });
        r.as_ref().map_err(|e| DpdkError::EalInit(e.clone()))
    }

    /// The arguments the EAL was started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Creates the device `devargs` (e.g. `net_af_packet0,iface=eth1`) now.
    /// Drivers that open sockets (af_packet, tap) do so in the calling
    /// thread's network namespace.
    pub fn probe(&self, devargs: &str) -> Result<(), DpdkError> {
        let c = CString::new(devargs).map_err(|_| DpdkError::Nul(devargs.into()))?;
        // SAFETY: `c` is a valid C string for the call; EAL is started.
        let rc = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
        if rc < 0 {
            return Err(DpdkError::call(format!("rte_dev_probe({devargs})"), rc));
        }
        Ok(())
    }

    /// The ethdev port id of the device called `name`.
    pub fn port_by_name(&self, name: &str) -> Result<u16, DpdkError> {
        let c = CString::new(name).map_err(|_| DpdkError::Nul(name.into()))?;
        let mut id = 0u16;
        // SAFETY: `c` is a valid C string and `id` a live u16.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if rc < 0 {
            return Err(DpdkError::call(format!("no ethdev named {name}"), rc));
        }
        Ok(id)
    }

    /// The NUMA node of ethdev `port` (-1 when unknown, as for virtual
    /// devices): its mbufs belong there, next to the NIC's DMA.
    pub fn port_socket(&self, port: u16) -> i32 {
        // SAFETY: plain query on a port id; an invalid one returns < 0.
        let s = unsafe { dpdk_sys::rte_eth_dev_socket_id(port) };
        if s < 0 {
            -1
        } else {
            s
        }
    }
}

/// A pool of packet mbufs, on the NUMA node of the device it feeds.
#[derive(Debug)]
pub struct MbufPool {
    ptr: NonNull<dpdk_sys::rte_mempool>,
    name: String,
}

// SAFETY: rte_mempool is multi-producer/multi-consumer safe; the pointer is
// only freed on drop, when no port holds the pool any more (ports hold an
// Arc to it).
unsafe impl Send for MbufPool {}
// SAFETY: as above.
unsafe impl Sync for MbufPool {}

impl MbufPool {
    /// `n` mbufs with the default data room (2 KiB + headroom), a per-lcore
    /// cache of `cache`, on NUMA node `socket` (-1: any).
    pub fn create(
        _eal: &Eal,
        name: &str,
        n: u32,
        cache: u32,
        socket: i32,
    ) -> Result<MbufPool, DpdkError> {
        let c = CString::new(name).map_err(|_| DpdkError::Nul(name.into()))?;
        // SAFETY: `c` is a valid C string; EAL is started (witnessed by `_eal`).
        let p = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                c.as_ptr(),
                n,
                cache,
                0,
                dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        let ptr =
            NonNull::new(p).ok_or_else(|| DpdkError::call(format!("mbuf pool {name}"), -1))?;
        Ok(MbufPool {
            ptr,
            name: name.to_string(),
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.as_ptr()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mbufs out of the pool now (in packets, queues or the driver's rings).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is live; counting only reads it.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }
}

impl Drop for MbufPool {
    fn drop(&mut self) {
        // Packets may still hold mbufs lent to workers (in a queue, or on
        // their way to the control plane) and give them back later: a pool
        // with mbufs out is left to the EAL's cleanup rather than freed
        // under them.
        let out = self.in_use();
        if out > 0 {
            tracing::debug!(pool = %self.name, out, "mbufs still lent: pool kept");
            return;
        }
        // SAFETY: nothing uses the pool any more: no port holds it, no mbuf
        // of it is out.
        unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}
