//! eBPF programs on an interface's tcx ingress hook (Linux ≥ 6.6), loaded and attached
//! with the `bpf(2)` system call alone (no libbpf, no compiler: the programs are a few
//! instructions, built by the caller with [`Insn`]).
//!
//! - [`load_classifier`]: `BPF_PROG_LOAD` of a `BPF_PROG_TYPE_SCHED_CLS` program; a
//!   verifier refusal comes back with the verifier's last line in the error.
//! - [`attach_ingress`]: `BPF_LINK_CREATE` on `BPF_TCX_INGRESS`. The link is an owned
//!   descriptor: dropping it, or the process ending in any way, detaches the program,
//!   so nothing is left on the interface after a crash.
//! - [`test_run`]: `BPF_PROG_TEST_RUN` of a loaded program on one frame, for tests.
//!
//! Programs run after the packet taps (`ETH_P_ALL` sockets and rings see the frame
//! first) and before the host's IP stack.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;

/// Return codes of a tcx program.
pub mod verdict {
    /// Go on with the next program on the hook (or the stack when there is none).
    pub const NEXT: i32 = -1;
    /// Drop the frame.
    pub const DROP: i32 = 2;
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// Destination register in the low nibble, source in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// Registers: `R0` return value, `R1` the context on entry, `R6`–`R9` kept across the
/// legacy packet loads (which clobber `R1`–`R5`).
pub type Reg = u8;
/// Loaded sizes of [`Insn::ld_abs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// One byte.
    B,
    /// Two bytes, network order turned into a number.
    H,
    /// Four bytes, network order turned into a number.
    W,
}

impl Insn {
    /// `dst = src` (64 bits).
    pub const fn mov_reg(dst: Reg, src: Reg) -> Insn {
        Insn::new(0xbf, dst, src, 0, 0)
    }
    /// `dst = imm` (sign-extended to 64 bits).
    pub const fn mov_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(0xb7, dst, 0, 0, imm)
    }
    /// `dst = *(u32 *)(src + off)` (a context field when `src` holds the context).
    pub const fn ldx_w(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(0x61, dst, src, off, 0)
    }
    /// `R0 = the frame's bytes at off` (the classic-BPF load: `R6` must hold the
    /// context; a load past the end ends the program with 0).
    pub const fn ld_abs(size: Size, off: i32) -> Insn {
        let code = match size {
            Size::W => 0x20,
            Size::H => 0x28,
            Size::B => 0x30,
        };
        Insn::new(code, 0, 0, 0, off)
    }
    /// `if (u32)dst == imm goto +off`.
    pub const fn jeq32(dst: Reg, imm: u32, off: i16) -> Insn {
        Insn::new(0x16, dst, 0, off, imm as i32)
    }
    /// `if (u32)dst != imm goto +off`.
    pub const fn jne32(dst: Reg, imm: u32, off: i16) -> Insn {
        Insn::new(0x56, dst, 0, off, imm as i32)
    }
    /// `if (u32)dst < imm goto +off` (unsigned).
    pub const fn jlt32(dst: Reg, imm: u32, off: i16) -> Insn {
        Insn::new(0xa6, dst, 0, off, imm as i32)
    }
    /// `goto +off`.
    pub const fn ja(off: i16) -> Insn {
        Insn::new(0x05, 0, 0, off, 0)
    }
    /// `return R0`.
    pub const fn exit() -> Insn {
        Insn::new(0x95, 0, 0, 0, 0)
    }
    const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (dst & 0x0f) | (src << 4),
            off,
            imm,
        }
    }
    /// The same instruction jumping `off` instead (for patching forward jumps).
    pub const fn with_off(self, off: i16) -> Insn {
        Insn { off, ..self }
    }
    /// The jump offset.
    pub const fn off(&self) -> i16 {
        self.off
    }
    /// Whether it is a jump (patched by program builders).
    pub const fn is_jump(&self) -> bool {
        matches!(self.code & 0x07, 0x05 | 0x06) && self.code != 0x95
    }
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` with its `tcx` part.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

/// `union bpf_attr` for `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `repr(C)` prefix of `union bpf_attr` for
    // `cmd`, and its size is passed with it; the kernel reads (and for some commands
    // writes) at most that many bytes. Every pointer inside it is set by the caller to
    // memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf: descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads `insns` as a tc classifier named `name` (at most 15 bytes shown). A refusal
/// by the verifier carries its last line.
pub fn load_classifier(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 16 << 10];
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| io::Error::other("program too long"))?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name,
        expected_attach_type: BPF_TCX_INGRESS,
        ..ProgLoadAttr::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => owned(fd),
        Err(e) => {
            let text = String::from_utf8_lossy(&log);
            let last = text
                .trim_end_matches('\0')
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            if last.is_empty() {
                Err(e)
            } else {
                Err(io::Error::new(e.kind(), format!("{e}: verifier: {last}")))
            }
        }
    }
}

/// Attaches `prog` at the end of interface `ifindex`'s tcx ingress chain; the program
/// stays attached while the returned link is open.
pub fn attach_ingress(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_TCX_INGRESS,
        ..LinkCreateAttr::default()
    };
    owned(bpf(BPF_LINK_CREATE, &mut attr)?)
}

/// Runs `prog` once on `frame` (an Ethernet frame, at least 14 bytes) in the kernel and
/// returns its verdict.
pub fn test_run(prog: &OwnedFd, frame: &[u8]) -> io::Result<i32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: u32::try_from(frame.len()).map_err(|_| io::Error::other("frame too long"))?,
        data_in: frame.as_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        let bytes = |i: Insn| -> [u8; 8] {
            // SAFETY: `Insn` is `repr(C)`, 8 bytes, no padding.
            unsafe { std::mem::transmute(i) }
        };
        assert_eq!(size_of::<Insn>(), 8);
        // mov64 r6, r1: BPF_ALU64|BPF_MOV|BPF_X, dst 6, src 1.
        assert_eq!(bytes(Insn::mov_reg(6, 1)), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        // r0 = -1
        assert_eq!(
            bytes(Insn::mov_imm(0, -1)),
            [0xb7, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff]
        );
        // ldxw r7, [r1 + 0]
        assert_eq!(bytes(Insn::ldx_w(7, 1, 0)), [0x61, 0x17, 0, 0, 0, 0, 0, 0]);
        // ldabsh 12
        assert_eq!(
            bytes(Insn::ld_abs(Size::H, 12)),
            [0x28, 0, 0, 0, 12, 0, 0, 0]
        );
        // if w0 != 0x86dd goto +3 (JMP32)
        assert_eq!(
            bytes(Insn::jne32(0, 0x86dd, 3)),
            [0x56, 0, 3, 0, 0xdd, 0x86, 0, 0]
        );
        assert_eq!(bytes(Insn::exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Insn::ja(1).is_jump() && Insn::jeq32(0, 1, 1).is_jump());
        assert!(!Insn::exit().is_jump() && !Insn::mov_imm(0, 0).is_jump());
    }

    /// Needs CAP_BPF (root, as the tests run); skipped with a note otherwise.
    #[test]
    fn a_tiny_program_loads_and_runs() {
        let prog = [Insn::mov_imm(0, verdict::DROP), Insn::exit()];
        let fd = match load_classifier(&prog, "fulcrum_test") {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipped: no CAP_BPF ({e})");
                return;
            }
            Err(e) => panic!("load: {e}"),
        };
        let frame = [0u8; 64];
        assert_eq!(test_run(&fd, &frame).unwrap(), verdict::DROP);
        // A program the verifier refuses (R0 unset at exit) names the reason.
        let e = load_classifier(&[Insn::exit()], "fulcrum_bad").unwrap_err();
        assert!(e.to_string().contains("verifier"), "{e}");
    }
}
