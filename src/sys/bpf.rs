//! eBPF by hand: instruction encoding, an `XSKMAP`, loading an XDP program and attaching
//! it to an interface with a BPF link — what direct mode's `--ring xdp` needs, without
//! libbpf or a compiler.
//!
//! - [`Insn`] is `struct bpf_insn` (8 bytes: opcode, registers, offset, immediate); the
//!   constructors below encode the few instructions the XDP program uses, and
//!   [`Asm`] resolves forward jumps to labels.
//! - [`XskMap::new`] is `bpf(BPF_MAP_CREATE)` of a `BPF_MAP_TYPE_XSKMAP` (queue index →
//!   AF_XDP socket), [`XskMap::set`] its `BPF_MAP_UPDATE_ELEM`.
//! - [`Program::load_xdp`] is `bpf(BPF_PROG_LOAD)` of type XDP, licence "GPL" (needed
//!   for the redirect helper); on refusal the verifier's log is in the error.
//! - [`Link::attach_xdp`] is `bpf(BPF_LINK_CREATE)` with attach type `BPF_XDP`: the
//!   program stays attached while the link's descriptor is open, so a crash or a kill
//!   leaves nothing attached behind.
//!
//! - [`Program::load_classifier`] and [`Link::attach_tcx_ingress`]: the same for a tc
//!   classifier on the tcx ingress hook (Linux >= 6.6), the direct-mode host sink.
//!
//! Nothing here decides what the programs do: see `direct::filter::{xdp, sink}`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `bpf(2)` commands.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_F_NO_PREALLOC: u32 = 1;
/// `link_create.flags`: attach before the relative program (none: at the head).
const BPF_F_BEFORE: u32 = 1 << 3;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `SO_ATTACH_BPF` (asm-generic/socket.h).
const SO_ATTACH_BPF: libc::c_int = 50;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
/// `src_reg` of a 64-bit immediate load that names a map by its descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// XDP verdicts (`enum xdp_action`).
pub const XDP_DROP: i32 = 1;
/// Let the kernel's stack have the frame.
pub const XDP_PASS: i32 = 2;
/// tcx program verdicts: go on with the next program (or the stack), drop.
pub const TCX_NEXT: i32 = -1;
/// See [`TCX_NEXT`].
pub const TCX_DROP: i32 = 2;
/// `offsetof(struct __sk_buff, len)` and `vlan_present`.
pub const SKB_LEN: i16 = 0;
/// See [`SKB_LEN`].
pub const SKB_VLAN_PRESENT: i16 = 20;
/// Helper function ids (`enum bpf_func_id`).
pub const FN_REDIRECT_MAP: i32 = 51;
/// `struct xdp_md` field offsets.
pub const XDP_MD_DATA: i16 = 0;
/// End of the frame's data.
pub const XDP_MD_DATA_END: i16 = 4;
/// The receive queue the frame arrived on.
pub const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
/// tcx verdict: the program redirected the packet (`bpf_redirect` returns it).
pub const TCX_REDIRECT: i32 = 7;
/// Helper `bpf_map_lookup_elem(map, key)`: a pointer to the value, or 0.
pub const FN_MAP_LOOKUP_ELEM: i32 = 1;
/// Helper `bpf_ktime_get_ns()`: `CLOCK_MONOTONIC` in nanoseconds.
pub const FN_KTIME_GET_NS: i32 = 5;
/// Helper `bpf_skb_store_bytes(skb, offset, from, len, flags)`.
pub const FN_SKB_STORE_BYTES: i32 = 9;
/// Helper `bpf_redirect(ifindex, flags)`: flags 0 = out of that interface.
pub const FN_REDIRECT: i32 = 23;

/// Sizes of [`Insn::ld_abs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// One byte.
    B,
    /// Two bytes (network order, read as a number).
    H,
    /// Four bytes (network order, read as a number).
    W,
}

/// Opcode parts (linux/bpf_common.h, linux/bpf.h).
mod op {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;
    pub const ATOMIC: u8 = 0xc0;
    pub const AND: u8 = 0x50;
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    pub const ADD: u8 = 0x00;
    pub const MOV: u8 = 0xb0;
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JLT: u8 = 0xa0;
    pub const ABS: u8 = 0x20;
    pub const JNE: u8 = 0x50;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
}

/// A register, r0–r10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

/// `struct bpf_insn`, as the kernel reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high one.
    pub regs: u8,
    /// Jump or memory offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (dst.0 & 0x0f) | (src.0 << 4),
            off,
            imm,
        }
    }

    /// `dst = src` (64-bit).
    pub fn mov64_reg(dst: Reg, src: Reg) -> Insn {
        Insn::new(op::ALU64 | op::MOV | op::X, dst, src, 0, 0)
    }

    /// `dst = imm` (64-bit, sign-extended).
    pub fn mov64_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(op::ALU64 | op::MOV | op::K, dst, Reg(0), 0, imm)
    }

    /// `dst += imm` (64-bit).
    pub fn add64_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(op::ALU64 | op::ADD | op::K, dst, Reg(0), 0, imm)
    }

    /// `dst = *(u32 *)(src + off)`.
    pub fn ldx_w(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(op::LDX | op::MEM | op::W, dst, src, off, 0)
    }

    /// `dst = *(u16 *)(src + off)`.
    pub fn ldx_h(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(op::LDX | op::MEM | op::H, dst, src, off, 0)
    }

    /// `dst = *(u8 *)(src + off)`.
    pub fn ldx_b(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(op::LDX | op::MEM | op::B, dst, src, off, 0)
    }

    /// `*(u32 *)(dst + off) = src`.
    pub fn stx_w(dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::new(op::STX | op::MEM | op::W, dst, src, off, 0)
    }

    /// `*(u64 *)(dst + off) = src`.
    pub fn stx_dw(dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::new(op::STX | op::MEM | op::DW, dst, src, off, 0)
    }

    /// `lock *(u64 *)(dst + off) += src` (an atomic add: several CPUs run the program).
    pub fn atomic_add_dw(dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::new(
            op::STX | op::ATOMIC | op::DW,
            dst,
            src,
            off,
            i32::from(op::ADD),
        )
    }

    /// `dst = (u32)dst & imm`.
    pub fn and32_imm(dst: Reg, imm: u32) -> Insn {
        Insn::new(op::ALU | op::AND | op::K, dst, Reg(0), 0, imm as i32)
    }

    /// `if dst == imm goto +off` (64-bit: the null test of a looked-up pointer).
    pub fn jeq_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(op::JMP | op::JEQ | op::K, dst, Reg(0), off, imm)
    }

    /// `if dst > src goto +off` (64-bit, unsigned).
    pub fn jgt_reg(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(op::JMP | op::JGT | op::X, dst, src, off, 0)
    }

    /// `if (u32)dst == imm goto +off` (32-bit compare: no sign extension of `imm`).
    pub fn jeq32_imm(dst: Reg, imm: u32, off: i16) -> Insn {
        Insn::new(op::JMP32 | op::JEQ | op::K, dst, Reg(0), off, imm as i32)
    }

    /// `if (u32)dst != imm goto +off`.
    pub fn jne32_imm(dst: Reg, imm: u32, off: i16) -> Insn {
        Insn::new(op::JMP32 | op::JNE | op::K, dst, Reg(0), off, imm as i32)
    }

    /// `if (u32)dst < imm goto +off` (unsigned).
    pub fn jlt32_imm(dst: Reg, imm: u32, off: i16) -> Insn {
        Insn::new(op::JMP32 | op::JLT | op::K, dst, Reg(0), off, imm as i32)
    }

    /// `r0 = the frame's `size` bytes at `off`, as a number` (the classic-BPF packet load
    /// of socket filters and tc programs: `r6` must hold the context, `r1`–`r5` are
    /// clobbered, and a load past the end ends the program with 0).
    pub fn ld_abs(size: Size, off: i32) -> Insn {
        let size = match size {
            Size::B => op::B,
            Size::H => op::H,
            Size::W => op::W,
        };
        Insn::new(op::LD | op::ABS | size, Reg(0), Reg(0), 0, off)
    }

    /// `goto +off`.
    pub fn ja(off: i16) -> Insn {
        Insn::new(op::JMP | op::JA, Reg(0), Reg(0), off, 0)
    }

    /// Call helper `id`.
    pub fn call(id: i32) -> Insn {
        Insn::new(op::JMP | op::CALL, Reg(0), Reg(0), 0, id)
    }

    /// `return r0`.
    pub fn exit() -> Insn {
        Insn::new(op::JMP | op::EXIT, Reg(0), Reg(0), 0, 0)
    }

    /// `dst = map` (the map's address, from its descriptor): two instruction slots.
    pub fn ld_map_fd(dst: Reg, fd: RawFd) -> [Insn; 2] {
        [
            Insn::new(
                op::LD | op::DW | op::IMM,
                dst,
                Reg(BPF_PSEUDO_MAP_FD),
                0,
                fd,
            ),
            Insn::default(),
        ]
    }
}

/// A program under construction, with forward jumps to named labels.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    /// (instruction index, label) of jumps whose offset is filled in by [`Asm::finish`].
    fixups: Vec<(usize, &'static str)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Appends an instruction.
    pub fn push(&mut self, i: Insn) -> &mut Asm {
        self.insns.push(i);
        self
    }

    /// Appends a jump instruction whose offset will point at `label`.
    pub fn jump(&mut self, i: Insn, label: &'static str) -> &mut Asm {
        self.fixups.push((self.insns.len(), label));
        self.insns.push(i);
        self
    }

    /// Marks the next instruction as `label`.
    pub fn label(&mut self, label: &'static str) -> &mut Asm {
        self.labels.push((label, self.insns.len()));
        self
    }

    /// The instructions with every jump resolved; an error names a label that is missing,
    /// or a jump that would not fit its 16-bit offset or would go backwards.
    pub fn finish(mut self) -> Result<Vec<Insn>, String> {
        for (at, label) in &self.fixups {
            let to = self
                .labels
                .iter()
                .find(|(l, _)| l == label)
                .map(|(_, i)| *i)
                .ok_or_else(|| format!("no label {label}"))?;
            let off = to
                .checked_sub(at + 1)
                .and_then(|o| i16::try_from(o).ok())
                .ok_or_else(|| format!("jump from {at} to {label} ({to}) out of range"))?;
            self.insns[*at].off = off;
        }
        Ok(self.insns)
    }
}

/// `bpf(cmd, attr, size)`.
fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<RawFd> {
    // SAFETY: `attr` is a live, zero-padded 128-byte `union bpf_attr` (larger than any
    // member used here); the kernel reads at most its size and writes nothing we keep.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of::<[u64; 16]>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        RawFd::try_from(r).map_err(|_| io::Error::other("bpf: result out of range"))
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by bpf(2) and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Writes `v` as the `i`-th 32-bit word of a `bpf_attr`.
fn put32(attr: &mut [u64; 16], i: usize, v: u32) {
    let mut b = attr[i / 2].to_ne_bytes();
    let at = 4 * (i % 2);
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    attr[i / 2] = u64::from_ne_bytes(b);
}

/// Reads the `i`-th 32-bit word of a `bpf_attr`.
fn get32(attr: &[u64; 16], i: usize) -> u32 {
    let b = attr[i / 2].to_ne_bytes();
    let at = 4 * (i % 2);
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A `BPF_MAP_TYPE_XSKMAP`: receive-queue index → AF_XDP socket.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
}

impl XskMap {
    /// A map for queues `0..entries`.
    pub fn new(entries: u32) -> io::Result<XskMap> {
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, BPF_MAP_TYPE_XSKMAP);
        put32(&mut attr, 1, 4); // key: u32 queue index
        put32(&mut attr, 2, 4); // value: u32 socket descriptor
        put32(&mut attr, 3, entries.max(1));
        Ok(XskMap {
            fd: owned(bpf(BPF_MAP_CREATE, &mut attr)?),
        })
    }

    /// Points queue `queue` at the AF_XDP socket `xsk`.
    pub fn set(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        let key = queue;
        let value = u32::try_from(xsk).map_err(|_| io::Error::other("bad descriptor"))?;
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, self.fd.as_raw_fd() as u32);
        attr[1] = (&key as *const u32) as u64;
        attr[2] = (&value as *const u32) as u64;
        attr[3] = 0; // BPF_ANY
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }
}

impl AsRawFd for XskMap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The programs' clock (`bpf_ktime_get_ns`: `CLOCK_MONOTONIC`) now, in ns.
pub fn ktime_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: passes a live timespec for the kernel to fill.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    if r != 0 {
        return 0;
    }
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// A `BPF_MAP_TYPE_HASH` with fixed-size keys and values, shared between the programs
/// that hold its descriptor and this process (`BPF_MAP_*_ELEM`). The kernel's hash map
/// takes concurrent readers and writers: programs on every CPU, and several threads here.
#[derive(Debug)]
pub struct HashMap {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl HashMap {
    /// A map of up to `entries` keys of `key_size` bytes to values of `value_size`.
    /// Its memory grows with its entries (`BPF_F_NO_PREALLOC`): a map sized for the
    /// largest flow table costs nothing while it is empty.
    pub fn new(key_size: u32, value_size: u32, entries: u32) -> io::Result<HashMap> {
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, BPF_MAP_TYPE_HASH);
        put32(&mut attr, 1, key_size);
        put32(&mut attr, 2, value_size);
        put32(&mut attr, 3, entries.max(1));
        put32(&mut attr, 4, BPF_F_NO_PREALLOC);
        Ok(HashMap {
            fd: owned(bpf(BPF_MAP_CREATE, &mut attr)?),
            key_size: key_size as usize,
            value_size: value_size as usize,
        })
    }

    fn check(&self, key: &[u8], value: usize) -> io::Result<()> {
        if key.len() == self.key_size && value == self.value_size {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bpf map: key or value of the wrong size",
            ))
        }
    }

    /// `attr` for an element command on `key` with the value buffer at `value`.
    fn elem_attr(&self, key: &[u8], value: u64, flags: u64) -> [u64; 16] {
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, self.fd.as_raw_fd() as u32);
        attr[1] = key.as_ptr() as u64;
        attr[2] = value;
        attr[3] = flags;
        attr
    }

    /// Sets `key` to `value` (creating it, or replacing the value). `E2BIG` when full.
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.check(key, value.len())?;
        let mut attr = self.elem_attr(key, value.as_ptr() as u64, 0); // BPF_ANY
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }

    /// Copies `key`'s value into `value`; false when the key is absent.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        self.check(key, value.len())?;
        let mut attr = self.elem_attr(key, value.as_mut_ptr() as u64, 0);
        absent_is_false(bpf(BPF_MAP_LOOKUP_ELEM, &mut attr))
    }

    /// Removes `key`, copying its last value into `value` first (one step: nothing the
    /// programs add in between is lost); false when the key is absent.
    pub fn take(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        self.check(key, value.len())?;
        let mut attr = self.elem_attr(key, value.as_mut_ptr() as u64, 0);
        absent_is_false(bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr))
    }

    /// Removes `key`; false when it was absent.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        self.check(key, self.value_size)?;
        let mut attr = self.elem_attr(key, 0, 0);
        absent_is_false(bpf(BPF_MAP_DELETE_ELEM, &mut attr))
    }
}

fn absent_is_false(r: io::Result<RawFd>) -> io::Result<bool> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

impl AsRawFd for HashMap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A loaded (verified, JIT-compiled) program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` as an XDP program named `name` (up to 15 bytes). On refusal the
    /// error carries the verifier's log (loaded a second time with the log on).
    pub fn load_xdp(name: &str, insns: &[Insn]) -> io::Result<Program> {
        Program::load_logged(name, insns, (BPF_PROG_TYPE_XDP, BPF_XDP))
    }

    /// Loads `insns` as a tc classifier for the tcx ingress hook (see [`Link::attach_tcx_ingress`]).
    pub fn load_classifier(name: &str, insns: &[Insn]) -> io::Result<Program> {
        Program::load_logged(name, insns, (BPF_PROG_TYPE_SCHED_CLS, BPF_TCX_INGRESS))
    }

    /// Loads `insns` as a socket filter (see [`Program::attach_to_socket`]).
    pub fn load_socket_filter(name: &str, insns: &[Insn]) -> io::Result<Program> {
        Program::load_logged(name, insns, (BPF_PROG_TYPE_SOCKET_FILTER, 0))
    }

    /// Makes this socket filter the filter of socket `fd` (`SO_ATTACH_BPF`), replacing
    /// the one it had: from this call on the kernel runs it on every frame before
    /// queueing it to the socket.
    pub fn attach_to_socket(&self, fd: RawFd) -> io::Result<()> {
        let prog: libc::c_int = self.fd.as_raw_fd();
        super::packet::setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_BPF, &prog)
    }

    /// Loads without the verifier's log, and again with it when refused.
    fn load_logged(name: &str, insns: &[Insn], kind: (u32, u32)) -> io::Result<Program> {
        match Program::load(name, insns, kind, None) {
            Ok(p) => Ok(p),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(e),
            Err(e) => {
                let mut log = vec![0u8; 64 << 10];
                let r = Program::load(name, insns, kind, Some(&mut log));
                let text = String::from_utf8_lossy(&log);
                let text = text.trim_end_matches('\0').trim();
                let tail: String = text
                    .lines()
                    .rev()
                    .take(6)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join(" | ");
                match r {
                    Ok(p) => Ok(p),
                    Err(_) => Err(io::Error::new(
                        e.kind(),
                        format!("program {name} refused: {e}; verifier: {tail}"),
                    )),
                }
            }
        }
    }

    /// `kind`: (program type, expected attach type).
    fn load(
        name: &str,
        insns: &[Insn],
        kind: (u32, u32),
        log: Option<&mut Vec<u8>>,
    ) -> io::Result<Program> {
        let license = b"GPL\0";
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, kind.0);
        put32(
            &mut attr,
            1,
            u32::try_from(insns.len()).map_err(|_| io::Error::other("program too long"))?,
        );
        attr[1] = insns.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        if let Some(log) = log {
            put32(&mut attr, 6, 1); // log_level
            put32(&mut attr, 7, log.len() as u32);
            attr[4] = log.as_mut_ptr() as u64;
        }
        // prog_name: bytes 48..64 (words 12..16), NUL-terminated.
        let mut nm = [0u8; 16];
        for (d, s) in nm.iter_mut().zip(name.bytes().take(15)) {
            *d = if s.is_ascii_alphanumeric() || s == b'_' {
                s
            } else {
                b'_'
            };
        }
        attr[6] = u64::from_ne_bytes(nm[..8].try_into().unwrap_or([0; 8]));
        attr[7] = u64::from_ne_bytes(nm[8..].try_into().unwrap_or([0; 8]));
        put32(&mut attr, 17, kind.1); // expected_attach_type
        Ok(Program {
            fd: owned(bpf(BPF_PROG_LOAD, &mut attr)?),
        })
    }
}

impl Program {
    /// Runs the program once on `frame` (`BPF_PROG_TEST_RUN`) and returns its verdict:
    /// how the tests check what the program does without a network.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        self.test_run_out(frame).map(|(verdict, _)| verdict)
    }

    /// [`Program::test_run`], also returning the frame as the program left it.
    pub fn test_run_out(&self, frame: &[u8]) -> io::Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; frame.len() + 512];
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, self.fd.as_raw_fd() as u32);
        put32(&mut attr, 2, frame.len() as u32);
        put32(&mut attr, 3, out.len() as u32);
        attr[2] = frame.as_ptr() as u64;
        attr[3] = out.as_mut_ptr() as u64;
        put32(&mut attr, 8, 1); // repeat
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        out.truncate(get32(&attr, 3) as usize);
        Ok((get32(&attr, 1), out))
    }
}

impl AsRawFd for Program {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A program attached to an interface (XDP, or tcx ingress) for as long as this value
/// lives.
#[derive(Debug)]
pub struct Link {
    _fd: OwnedFd,
}

impl Link {
    /// Attaches `prog` to interface `ifindex` (driver mode when the driver has it,
    /// generic otherwise). Fails with `EBUSY`/`EEXIST` when another program is attached.
    pub fn attach_xdp(prog: &Program, ifindex: u32) -> io::Result<Link> {
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, prog.as_raw_fd() as u32);
        put32(&mut attr, 1, ifindex);
        put32(&mut attr, 2, BPF_XDP);
        put32(&mut attr, 3, 0);
        Ok(Link {
            _fd: owned(bpf(BPF_LINK_CREATE, &mut attr)?),
        })
    }

    /// Attaches the classifier `prog` at the end of interface `ifindex`'s tcx ingress
    /// chain (Linux >= 6.6), after the packet taps and before the IP stack; the programs
    /// already there keep running.
    pub fn attach_tcx_ingress(prog: &Program, ifindex: u32) -> io::Result<Link> {
        Link::tcx_ingress(prog, ifindex, 0)
    }

    /// The same at the head of the chain (`BPF_F_BEFORE` with no relative program):
    /// it runs before every program attached so far, and before those appended later.
    pub fn attach_tcx_ingress_first(prog: &Program, ifindex: u32) -> io::Result<Link> {
        Link::tcx_ingress(prog, ifindex, BPF_F_BEFORE)
    }

    fn tcx_ingress(prog: &Program, ifindex: u32, flags: u32) -> io::Result<Link> {
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, prog.as_raw_fd() as u32);
        put32(&mut attr, 1, ifindex);
        put32(&mut attr, 2, BPF_TCX_INGRESS);
        put32(&mut attr, 3, flags);
        Ok(Link {
            _fd: owned(bpf(BPF_LINK_CREATE, &mut attr)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(i: Insn) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = i.code;
        b[1] = i.regs;
        b[2..4].copy_from_slice(&i.off.to_le_bytes());
        b[4..8].copy_from_slice(&i.imm.to_le_bytes());
        b
    }

    #[test]
    fn encodings_match_the_kernel_s() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // Reference encodings as `llvm-objdump` prints them.
        assert_eq!(
            bytes(Insn::mov64_reg(Reg(6), Reg(1))),
            [0xbf, 0x16, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::mov64_imm(Reg(0), 2)),
            [0xb7, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::ldx_w(Reg(2), Reg(6), 4)),
            [0x61, 0x62, 4, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::ldx_h(Reg(5), Reg(2), 12)),
            [0x69, 0x25, 12, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::ldx_b(Reg(5), Reg(2), 23)),
            [0x71, 0x25, 23, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::add64_imm(Reg(4), 34)),
            [0x07, 4, 0, 0, 34, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::jgt_reg(Reg(4), Reg(3), 7)),
            [0x2d, 0x34, 7, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::jeq32_imm(Reg(5), 0xfeff_0000, 1)),
            [0x16, 5, 1, 0, 0, 0, 0xff, 0xfe]
        );
        assert_eq!(
            bytes(Insn::jne32_imm(Reg(5), 6, -1)),
            [0x56, 5, 0xff, 0xff, 6, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::jlt32_imm(Reg(7), 54, 9)),
            [0xa6, 7, 9, 0, 54, 0, 0, 0]
        );
        // The classic packet loads (ldabsb/h/w): opcode 0x30/0x28/0x20, offset in imm.
        assert_eq!(
            bytes(Insn::ld_abs(Size::B, 20)),
            [0x30, 0, 0, 0, 20, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::ld_abs(Size::H, 12)),
            [0x28, 0, 0, 0, 12, 0, 0, 0]
        );
        assert_eq!(
            bytes(Insn::ld_abs(Size::W, 38)),
            [0x20, 0, 0, 0, 38, 0, 0, 0]
        );
        assert_eq!(bytes(Insn::ja(3)), [0x05, 0, 3, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(Insn::call(51)), [0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(bytes(Insn::exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        let [a, b] = Insn::ld_map_fd(Reg(1), 7);
        assert_eq!(bytes(a), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes(b), [0; 8]);
    }

    #[test]
    fn labels_resolve_forward_and_bad_ones_are_refused() {
        let mut a = Asm::new();
        a.jump(Insn::ja(0), "end")
            .push(Insn::mov64_imm(Reg(0), 1))
            .label("end")
            .push(Insn::exit());
        let p = a.finish().unwrap();
        assert_eq!(p[0].off, 1);
        let mut a = Asm::new();
        a.jump(Insn::ja(0), "nowhere").push(Insn::exit());
        assert!(a.finish().is_err());
        let mut a = Asm::new();
        a.label("back").push(Insn::exit()).jump(Insn::ja(0), "back");
        assert!(a.finish().is_err(), "backward jumps are not emitted");
    }

    #[test]
    fn attr_words_land_where_the_kernel_reads_them() {
        let mut attr = [0u64; 16];
        put32(&mut attr, 0, 0x1111_1111);
        put32(&mut attr, 1, 0x2222_2222);
        put32(&mut attr, 17, 37);
        // SAFETY: viewing the u64 array as its bytes (same size, u8 has no alignment).
        let b: [u8; 128] = unsafe { std::mem::transmute(attr) };
        assert_eq!(&b[0..4], &0x1111_1111u32.to_ne_bytes());
        assert_eq!(&b[4..8], &0x2222_2222u32.to_ne_bytes());
        assert_eq!(&b[68..72], &37u32.to_ne_bytes());
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// The kernel accepts a map and a trivial program, and refuses an unchecked packet
    /// read with the verifier's words in the error (needs root).
    #[test]
    fn kernel_loads_a_redirecting_program_and_explains_a_refusal() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let map = XskMap::new(4).expect("xskmap");
        let mut a = Asm::new();
        a.push(Insn::ldx_w(Reg(2), Reg(1), XDP_MD_RX_QUEUE_INDEX));
        let [l0, l1] = Insn::ld_map_fd(Reg(1), map.as_raw_fd());
        a.push(l0)
            .push(l1)
            .push(Insn::mov64_imm(Reg(3), XDP_PASS))
            .push(Insn::call(FN_REDIRECT_MAP))
            .push(Insn::exit());
        Program::load_xdp("fulcrum_test", &a.finish().unwrap()).expect("verifier accepts");
        // Reading the frame without a bounds check must be refused.
        let bad = [
            Insn::ldx_w(Reg(2), Reg(1), XDP_MD_DATA),
            Insn::ldx_w(Reg(0), Reg(2), 0),
            Insn::exit(),
        ];
        let e = Program::load_xdp("fulcrum_bad", &bad).unwrap_err();
        assert!(e.to_string().contains("verifier"), "{e}");
    }
}
