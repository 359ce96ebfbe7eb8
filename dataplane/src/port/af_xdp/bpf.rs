//! The XDP side of an AF_XDP port, with the bpf(2) syscall only: an XSKMAP,
//! a five-instruction program that redirects every frame of queue i to the
//! socket in slot i (and passes it to the kernel if there is none), and a
//! BPF link attaching it to the interface (detached when the link closes).

use std::io;
use std::mem;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_PROG_LOAD: i32 = 5;
const BPF_LINK_CREATE: i32 = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE`: generic XDP, works on every driver (veth too).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: in the driver, for NICs that support it.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
/// (the low bits of the flags are the verdict when the slot is empty,
/// Linux 5.3+).
fn program(map_fd: RawFd) -> [Insn; 6] {
    [
        insn(0x61, 2, 1, 16, 0),       // r2 = *(u32 *)(r1 + 16): rx_queue_index
        insn(0x18, 1, 1, 0, map_fd),   // r1 = map (BPF_PSEUDO_MAP_FD), 1/2
        insn(0x00, 0, 0, 0, 0),        //                                2/2
        insn(0xb7, 3, 0, 0, XDP_PASS), // r3 = XDP_PASS
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        insn(0x95, 0, 0, 0, 0), // exit
    ]
}

fn bpf(cmd: i32, attr: &mut [u64; 16]) -> io::Result<i64> {
    // SAFETY: `attr` is a zeroed, 128-byte union bpf_attr the command reads
    // (and may write); its size is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            mem::size_of::<[u64; 16]>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this new fd; nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Writes `v` as u32 words into `attr` starting at 32-bit word `at`.
fn put32(attr: &mut [u64; 16], at: usize, v: u32) {
    let word = &mut attr[at / 2];
    if at.is_multiple_of(2) {
        *word = (*word & !0xffff_ffff) | u64::from(v);
    } else {
        *word = (*word & 0xffff_ffff) | (u64::from(v) << 32);
    }
}

/// The program attached to an interface, and its socket map.
pub struct XdpAttachment {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl XdpAttachment {
    /// Creates the map (`queues` slots), loads the program and attaches it
    /// to `ifindex` with `flags` (SKB or DRV mode).
    pub fn attach(ifindex: u32, queues: u32, flags: u32) -> io::Result<XdpAttachment> {
        let mut a = [0u64; 16];
        put32(&mut a, 0, BPF_MAP_TYPE_XSKMAP);
        put32(&mut a, 1, 4); // key: queue index
        put32(&mut a, 2, 4); // value: socket fd
        put32(&mut a, 3, queues.max(1));
        let map = owned(bpf(BPF_MAP_CREATE, &mut a)?);

        let prog_insns = program(std::os::fd::AsRawFd::as_raw_fd(&map));
        let license = b"GPL\0";
        let mut a = [0u64; 16];
        put32(&mut a, 0, BPF_PROG_TYPE_XDP);
        put32(&mut a, 1, prog_insns.len() as u32);
        a[1] = prog_insns.as_ptr() as u64; // insns
        a[2] = license.as_ptr() as u64; // license
                                        // expected_attach_type: after log_level, log_size, log_buf,
                                        // kern_version, prog_flags, prog_name[16], prog_ifindex = word 17.
        put32(&mut a, 17, BPF_XDP);
        let prog = owned(bpf(BPF_PROG_LOAD, &mut a)?);

        let mut a = [0u64; 16];
        put32(&mut a, 0, std::os::fd::AsRawFd::as_raw_fd(&prog) as u32);
        put32(&mut a, 1, ifindex);
        put32(&mut a, 2, BPF_XDP);
        put32(&mut a, 3, flags);
        let link = owned(bpf(BPF_LINK_CREATE, &mut a)?);
        Ok(XdpAttachment {
            map,
            _prog: prog,
            _link: link,
        })
    }

    /// Puts the AF_XDP socket `xsk` in slot `queue`.
    pub fn insert(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        let key = queue;
        let value = xsk as u32;
        let mut a = [0u64; 16];
        put32(&mut a, 0, std::os::fd::AsRawFd::as_raw_fd(&self.map) as u32);
        a[1] = &key as *const u32 as u64;
        a[2] = &value as *const u32 as u64;
        bpf(BPF_MAP_UPDATE_ELEM, &mut a)?;
        Ok(())
    }
}
