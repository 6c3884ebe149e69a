//! The classic-BPF programs direct mode attaches to its packet sockets, so the kernel
//! wakes the data plane only for what it forwards or answers. Everything they let
//! through is checked again by [`super::frame`]; the filters only save work. The data
//! plane splits the traffic in two:
//! - [`data`], on the receive rings (one per worker, in one fanout group): IPv4
//!   addressed to a VIP, and IPv6 whose next header is TCP addressed to a VIP;
//! - [`neighbour`], on each worker's own small socket outside the group, so that every
//!   worker sees them: ARP, and ICMPv6 neighbour solicitations and advertisements.
//!
//! Built once at start-up from the VIP list. Each comparison that matches is followed
//! by its own `ret accept`, so every jump is short and forward (classic BPF jump
//! offsets are one byte): at most [`MAX_VIPS_PER_FAMILY`] addresses per family.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Most VIP addresses of one family the program can hold (jump offsets fit a byte).
pub const MAX_VIPS_PER_FAMILY: usize = 16;

const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// Accept up to 256 KiB (a super-frame is taken whole: the ring and its virtio-net
/// header carry it on).
const ACCEPT: u32 = 0x0004_0000;
/// Accept a neighbour frame: ARP is 42–60 bytes, NS/NA with options under 100.
const ACCEPT_NEIGHBOUR: u32 = 256;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The receive rings' program for these VIP addresses (each list at most
/// [`MAX_VIPS_PER_FAMILY`] long, extra ones are left out; the configuration refuses
/// them before this point).
pub fn data(v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Vec<libc::sock_filter> {
    let v4 = &v4[..v4.len().min(MAX_VIPS_PER_FAMILY)];
    let v6 = &v6[..v6.len().min(MAX_VIPS_PER_FAMILY)];
    let mut p = Vec::with_capacity(8 + 2 * v4.len() + 9 * v6.len());
    p.push(ins(LD_H_ABS, 0, 0, 12)); // A = ethertype
                                     // IPv4 block: ld dst; (jeq vip; ret accept)*; ret 0.
    let v4_len = 2 + 2 * v4.len();
    p.push(ins(JEQ_K, 0, v4_len as u8, 0x0800));
    p.push(ins(LD_W_ABS, 0, 0, 30)); // A = IPv4 destination
    for ip in v4 {
        p.push(ins(JEQ_K, 0, 1, u32::from(*ip)));
        p.push(ins(RET_K, 0, 0, ACCEPT));
    }
    p.push(ins(RET_K, 0, 0, 0));
    // IPv6 block: next header TCP, destination a VIP.
    let tcp_len = 9 * v6.len() + 1;
    let v6_len = 2 + tcp_len;
    p.push(ins(JEQ_K, 0, v6_len as u8, 0x86dd));
    p.push(ins(LD_B_ABS, 0, 0, 20)); // A = next header
    p.push(ins(JEQ_K, 0, tcp_len as u8, 6));
    for ip in v6 {
        let o = ip.octets();
        let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
        // Four 32-bit words of the destination (bytes 38..54); a mismatch skips to
        // the next VIP.
        p.push(ins(LD_W_ABS, 0, 0, 38));
        p.push(ins(JEQ_K, 0, 7, w(0)));
        p.push(ins(LD_W_ABS, 0, 0, 42));
        p.push(ins(JEQ_K, 0, 5, w(4)));
        p.push(ins(LD_W_ABS, 0, 0, 46));
        p.push(ins(JEQ_K, 0, 3, w(8)));
        p.push(ins(LD_W_ABS, 0, 0, 50));
        p.push(ins(JEQ_K, 0, 1, w(12)));
        p.push(ins(RET_K, 0, 0, ACCEPT));
    }
    p.push(ins(RET_K, 0, 0, 0));
    p.push(ins(RET_K, 0, 0, 0)); // neither IPv4 nor IPv6
    p
}

/// The neighbour sockets' program: ARP, and ICMPv6 (directly after the fixed header)
/// of type neighbour solicitation or advertisement.
pub fn neighbour() -> Vec<libc::sock_filter> {
    vec![
        ins(LD_H_ABS, 0, 0, 12),  // A = ethertype
        ins(JEQ_K, 0, 1, 0x0806), // ARP → accept
        ins(RET_K, 0, 0, ACCEPT_NEIGHBOUR),
        ins(JEQ_K, 0, 6, 0x86dd), // not IPv6 → drop
        ins(LD_B_ABS, 0, 0, 20),  // A = next header
        ins(JEQ_K, 0, 4, 58),     // not ICMPv6 → drop
        ins(LD_B_ABS, 0, 0, 54),  // A = ICMPv6 type
        ins(JEQ_K, 1, 0, 135),    // neighbour solicitation
        ins(JEQ_K, 0, 1, 136),    // neighbour advertisement
        ins(RET_K, 0, 0, ACCEPT_NEIGHBOUR),
        ins(RET_K, 0, 0, 0),
    ]
}

/// The host stack's share, as a tcx ingress program (loaded by
/// [`crate::sys::bpf::Program::load_classifier`]): the frames [`data`] takes — IPv4 to a
/// VIP, IPv6 TCP to a VIP, untagged — are dropped after the rings have copied them,
/// everything else goes on. The VIP is not a local address and forwarding is off (both
/// checked at start-up), so the kernel would only route each of these frames to find it
/// has nowhere to put it: a fifth of the machine's work per frame when forwarding alone
/// in the lab (`docs/benchmarks.md`), now skipped.
pub fn sink(v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Result<Vec<crate::sys::bpf::Insn>, String> {
    use crate::sys::bpf::{Asm, Insn, Reg, SKB_LEN, SKB_VLAN_PRESENT};
    let (r0, r1, r6, r7) = (Reg(0), Reg(1), Reg(6), Reg(7));
    let mut a = Asm::new();
    a.push(Insn::mov64_reg(r6, r1)) // the context, for the packet loads
        .push(Insn::ldx_w(r7, r1, SKB_LEN))
        .push(Insn::ldx_w(r0, r1, SKB_VLAN_PRESENT))
        .jump(Insn::jne32_imm(r0, 0, 0), "next"); // tagged: the rings drop it too
    vip_match(&mut a, v4, v6, "drop", "next");
    tcx_exits(&mut a);
    a.finish()
}

/// The two ends of a tcx program: label `next` returns "next" (on down the chain, then
/// the stack), label `drop` drops.
pub(crate) fn tcx_exits(a: &mut crate::sys::bpf::Asm) {
    use crate::sys::bpf::{Insn, Reg, TCX_DROP, TCX_NEXT};
    a.label("next")
        .push(Insn::mov64_imm(Reg(0), TCX_NEXT))
        .push(Insn::exit())
        .label("drop")
        .push(Insn::mov64_imm(Reg(0), TCX_DROP))
        .push(Insn::exit());
}

/// eBPF for "does [`data`] take this frame?" (an untagged one: the callers test the
/// tag first): jumps to `hit` for IPv4 to a VIP and IPv6 TCP to a VIP, to `miss` for
/// the rest. Expects the context in `r6` (for the packet loads) and the frame's length
/// in `r7`; uses the label `vip_v6`.
pub(crate) fn vip_match(
    a: &mut crate::sys::bpf::Asm,
    v4: &[Ipv4Addr],
    v6: &[Ipv6Addr],
    hit: &'static str,
    miss: &'static str,
) {
    use crate::sys::bpf::{Insn, Reg, Size};
    let (r0, r7) = (Reg(0), Reg(7));
    a.push(Insn::ld_abs(Size::H, 12))
        .jump(Insn::jne32_imm(r0, 0x0800, 0), "vip_v6");
    // IPv4: the destination is bytes 30..34.
    a.jump(Insn::jlt32_imm(r7, 34, 0), miss)
        .push(Insn::ld_abs(Size::W, 30));
    for ip in v4 {
        a.jump(Insn::jeq32_imm(r0, u32::from(*ip), 0), hit);
    }
    a.jump(Insn::ja(0), miss).label("vip_v6");
    // IPv6 with TCP next: the destination is bytes 38..54, four words.
    a.jump(Insn::jne32_imm(r0, 0x86dd, 0), miss)
        .jump(Insn::jlt32_imm(r7, 54, 0), miss)
        .push(Insn::ld_abs(Size::B, 20))
        .jump(Insn::jne32_imm(r0, 6, 0), miss);
    for ip in v6 {
        let o = ip.octets();
        // A mismatching word skips the rest of this address (7, 5, 3, 1 instructions).
        for (k, at) in [0usize, 4, 8, 12].into_iter().enumerate() {
            let w = u32::from_be_bytes([o[at], o[at + 1], o[at + 2], o[at + 3]]);
            a.push(Insn::ld_abs(Size::W, 38 + at as i32))
                .push(Insn::jne32_imm(r0, w, 7 - 2 * k as i16));
        }
        a.jump(Insn::ja(0), hit);
    }
    a.jump(Insn::ja(0), miss);
}

/// The XDP program of `--ring xdp` (eBPF, see [`crate::sys::bpf`]): frames the receive
/// rings' [`data`] program would accept — IPv4 addressed to a VIP, IPv6 whose next
/// header is TCP addressed to a VIP — are redirected to the AF_XDP socket of their
/// receive queue in the `XSKMAP` `map_fd` (`XDP_PASS` when that queue has none);
/// everything else (ARP, neighbour discovery, the host's own traffic) goes to the kernel
/// as if no program were attached. The VIPs are immediates; at most
/// [`MAX_VIPS_PER_FAMILY`] per family (extra ones are left out, as in [`data`]).
/// `miss`: the verdict for a frame to redirect when its queue has no socket (`XDP_PASS`;
/// the tests use `XDP_DROP` to tell the two outcomes apart).
pub fn xdp(
    v4: &[Ipv4Addr],
    v6: &[Ipv6Addr],
    map_fd: std::os::fd::RawFd,
    miss: i32,
) -> Result<Vec<crate::sys::bpf::Insn>, String> {
    use crate::sys::bpf::{
        Asm, Insn, Reg, FN_REDIRECT_MAP, XDP_MD_DATA, XDP_MD_DATA_END, XDP_MD_RX_QUEUE_INDEX,
        XDP_PASS,
    };
    let v4 = &v4[..v4.len().min(MAX_VIPS_PER_FAMILY)];
    let v6 = &v6[..v6.len().min(MAX_VIPS_PER_FAMILY)];
    let (ctx, data, end, tmp, val) = (Reg(6), Reg(2), Reg(3), Reg(4), Reg(5));
    // Loads from the frame are in network byte order; compare with what a native load
    // of the same bytes gives.
    let w = |b: [u8; 4]| u32::from_ne_bytes(b);
    let h = |b: [u8; 2]| u32::from(u16::from_ne_bytes(b));
    let mut a = Asm::new();
    a.push(Insn::mov64_reg(ctx, Reg(1)))
        .push(Insn::ldx_w(data, ctx, XDP_MD_DATA))
        .push(Insn::ldx_w(end, ctx, XDP_MD_DATA_END))
        // Ethernet + IPv4 header up to the destination: 34 bytes.
        .push(Insn::mov64_reg(tmp, data))
        .push(Insn::add64_imm(tmp, 34))
        .jump(Insn::jgt_reg(tmp, end, 0), "pass")
        .push(Insn::ldx_h(val, data, 12))
        .jump(Insn::jeq32_imm(val, h([0x08, 0x00]), 0), "v4")
        .jump(Insn::jne32_imm(val, h([0x86, 0xdd]), 0), "pass")
        // IPv6: fixed header up to the end of the destination, 54 bytes.
        .push(Insn::mov64_reg(tmp, data))
        .push(Insn::add64_imm(tmp, 54))
        .jump(Insn::jgt_reg(tmp, end, 0), "pass")
        .push(Insn::ldx_b(val, data, 20))
        .jump(Insn::jne32_imm(val, 6, 0), "pass");
    for ip in v6 {
        let o = ip.octets();
        // Four words of the destination (bytes 38..54); a mismatch skips to the next
        // VIP, i.e. past the remaining words and the jump to "redirect".
        for (k, at) in [38i16, 42, 46, 50].into_iter().enumerate() {
            let i = 4 * k;
            a.push(Insn::ldx_w(val, data, at)).push(Insn::jne32_imm(
                val,
                w([o[i], o[i + 1], o[i + 2], o[i + 3]]),
                (2 * (3 - k) + 1) as i16,
            ));
        }
        a.jump(Insn::ja(0), "redirect");
    }
    a.jump(Insn::ja(0), "pass").label("v4");
    a.push(Insn::ldx_w(val, data, 30));
    for ip in v4 {
        a.jump(Insn::jeq32_imm(val, w(ip.octets()), 0), "redirect");
    }
    a.jump(Insn::ja(0), "pass").label("redirect");
    let [m0, m1] = Insn::ld_map_fd(Reg(1), map_fd);
    a.push(Insn::ldx_w(Reg(2), ctx, XDP_MD_RX_QUEUE_INDEX))
        .push(m0)
        .push(m1)
        .push(Insn::mov64_imm(Reg(3), miss))
        .push(Insn::call(FN_REDIRECT_MAP))
        .push(Insn::exit())
        .label("pass")
        .push(Insn::mov64_imm(Reg(0), XDP_PASS))
        .push(Insn::exit());
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the opcodes used above.
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            pc += 1;
            let k = i.k as usize;
            match i.code {
                LD_H_ABS => match pkt.get(k..k + 2) {
                    Some(b) => a = u32::from(u16::from_be_bytes([b[0], b[1]])),
                    None => return 0,
                },
                LD_W_ABS => match pkt.get(k..k + 4) {
                    Some(b) => a = u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    None => return 0,
                },
                LD_B_ABS => match pkt.get(k) {
                    Some(b) => a = u32::from(*b),
                    None => return 0,
                },
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    fn v6_frame(next: u8, dst: Ipv6Addr, icmp_type: u8) -> Vec<u8> {
        let mut f = vec![0u8; 86];
        f[12] = 0x86;
        f[13] = 0xdd;
        f[20] = next;
        f[38..54].copy_from_slice(&dst.octets());
        f[54] = icmp_type;
        f
    }

    fn v4_frame(dst: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[12] = 0x08;
        f[30..34].copy_from_slice(&dst.octets());
        f
    }

    #[test]
    fn data_and_neighbour_programs_split_the_traffic() {
        let vip = Ipv4Addr::new(10, 99, 0, 100);
        let (data, nb) = (data(&[vip], &[]), neighbour());
        assert!(
            run(&data, &v4_frame(vip)) > 0 && run(&nb, &v4_frame(vip)) == 0,
            "IPv4 to the VIP"
        );
        let other = Ipv4Addr::new(10, 99, 0, 101);
        assert_eq!(
            run(&data, &v4_frame(other)) + run(&nb, &v4_frame(other)),
            0,
            "IPv4 elsewhere"
        );
        let mut arp = vec![0u8; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(run(&data, &arp) == 0 && run(&nb, &arp) > 0, "ARP");
        let v6: Ipv6Addr = "fd99::100".parse().unwrap();
        assert_eq!(run(&data, &v6_frame(6, v6, 0)), 0, "IPv6 TCP, no v6 VIP");
        assert_eq!(run(&data, &[0u8; 10]) + run(&nb, &[0u8; 10]), 0, "runt");
        let mut lldp = vec![0u8; 60];
        lldp[12] = 0x88;
        lldp[13] = 0xcc;
        assert_eq!(run(&data, &lldp) + run(&nb, &lldp), 0, "LLDP");
    }

    #[test]
    fn several_vips_of_both_families() {
        let a = Ipv4Addr::new(10, 99, 0, 100);
        let b = Ipv4Addr::new(10, 99, 0, 101);
        let x: Ipv6Addr = "fd99::100".parse().unwrap();
        let y: Ipv6Addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let prog = data(&[a, b], &[x, y]);
        let nb = neighbour();
        for ip in [a, b] {
            assert!(run(&prog, &v4_frame(ip)) > 0, "{ip}");
        }
        assert_eq!(run(&prog, &v4_frame(Ipv4Addr::new(10, 99, 0, 102))), 0);
        assert!(run(&prog, &v6_frame(6, x, 0)) > 0, "TCP to x");
        assert!(run(&prog, &v6_frame(6, y, 0)) > 0, "TCP to y");
        assert_eq!(
            run(&nb, &v6_frame(6, x, 0)),
            0,
            "TCP is not for the neighbour socket"
        );
        // Each word of the address matters.
        for i in [0usize, 5, 10, 15] {
            let mut o = y.octets();
            o[i] ^= 1;
            assert_eq!(
                run(&prog, &v6_frame(6, Ipv6Addr::from(o), 0)),
                0,
                "byte {i}"
            );
        }
        assert_eq!(run(&prog, &v6_frame(17, x, 0)), 0, "UDP to the VIP");
        assert_eq!(run(&prog, &v6_frame(0, x, 0)), 0, "hop-by-hop header");
        let elsewhere: Ipv6Addr = "fd99::1".parse().unwrap();
        for t in [135, 136] {
            assert!(run(&nb, &v6_frame(58, elsewhere, t)) > 0, "ND {t}");
            assert_eq!(
                run(&prog, &v6_frame(58, elsewhere, t)),
                0,
                "ND {t} on the ring"
            );
        }
        assert_eq!(run(&nb, &v6_frame(58, x, 128)), 0, "echo request");
        assert_eq!(run(&nb, &v6_frame(58, x, 134)), 0, "router advert");
    }

    #[test]
    fn jump_offsets_fit_with_the_maximum_vip_count() {
        let v4: Vec<Ipv4Addr> = (0..MAX_VIPS_PER_FAMILY as u8)
            .map(|i| Ipv4Addr::new(10, 0, 0, i))
            .collect();
        let v6: Vec<Ipv6Addr> = (0..MAX_VIPS_PER_FAMILY as u16)
            .map(|i| Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, i))
            .collect();
        let prog = data(&v4, &v6);
        // Every jump lands inside the program.
        for p in [&prog, &neighbour()] {
            for (pc, i) in p.iter().enumerate() {
                if i.code == JEQ_K {
                    assert!(pc + 1 + usize::from(i.jt.max(i.jf)) < p.len(), "{pc}");
                }
            }
        }
        let last = *v6.last().unwrap();
        assert!(run(&prog, &v6_frame(6, last, 0)) > 0);
        assert!(run(&prog, &v4_frame(*v4.last().unwrap())) > 0);
    }

    /// The tcx sink drops exactly what the ring program takes, run in the kernel on the
    /// same frames (`BPF_PROG_TEST_RUN`; needs CAP_BPF, as the tests have as root).
    #[test]
    fn the_sink_drops_what_the_rings_take_and_nothing_else() {
        use crate::sys::bpf::{Program, TCX_DROP, TCX_NEXT};
        let v4 = [Ipv4Addr::new(10, 99, 0, 100), Ipv4Addr::new(192, 168, 7, 1)];
        let v6: [Ipv6Addr; 2] = ["fd99::100".parse().unwrap(), "2001:db8::6".parse().unwrap()];
        let prog = match Program::load_classifier("fulcrum_sink", &sink(&v4, &v6).unwrap()) {
            Ok(p) => p,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipped: no CAP_BPF ({e})");
                return;
            }
            Err(e) => panic!("the verifier refused the sink: {e}"),
        };
        let ring = data(&v4, &v6);
        let mut frames = vec![
            v4_frame(v4[0]),
            v4_frame(v4[1]),
            v4_frame(Ipv4Addr::new(10, 99, 0, 101)),
            v4_frame(Ipv4Addr::new(192, 168, 7, 129)), // sign bit set, one bit off
            v6_frame(6, v6[0], 0),
            v6_frame(6, v6[1], 0),
            v6_frame(17, v6[0], 0),
            v6_frame(58, v6[1], 135),
            v6_frame(6, "fd99::101".parse().unwrap(), 0),
            v6_frame(6, "2001:db8::7".parse().unwrap(), 0),
            v4_frame(v4[0])[..20].to_vec(), // a runt claiming IPv4
            v4_frame(v4[0])[..34].to_vec(), // just long enough
        ];
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        frames.push(arp);
        // Each word of an IPv6 VIP wrong on its own.
        for i in [0, 4, 8, 12] {
            let mut o = v6[1].octets();
            o[i] ^= 1;
            frames.push(v6_frame(6, Ipv6Addr::from(o), 0));
        }
        let mut dropped = 0;
        for (n, f) in frames.iter().enumerate() {
            let got = match prog.test_run(f) {
                Ok(v) => v as i32,
                // The test runner itself refuses frames shorter than the header their
                // ethertype names; the program's own length checks cover the wire.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && f.len() < 34 => continue,
                Err(e) => panic!("frame {n} ({} bytes): {e}", f.len()),
            };
            let taken = f.len() >= 34 && run(&ring, f) > 0;
            let want = if taken { TCX_DROP } else { TCX_NEXT };
            assert_eq!(got, want, "frame {n}: {f:02x?}");
            dropped += usize::from(taken);
        }
        assert_eq!(
            dropped, 5,
            "two VIPs of each family, and the shortest IPv4 frame"
        );
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// The XDP program, loaded by the kernel's verifier and run on frames with
    /// `BPF_PROG_TEST_RUN`: redirected (to an empty map, so the `miss` verdict DROP
    /// shows) exactly where the ring's classic program accepts (needs root).
    #[test]
    fn xdp_program_loads_and_redirects_what_the_ring_filter_admits() {
        use crate::sys::bpf::{Program, XskMap, XDP_DROP, XDP_PASS};
        use std::os::fd::AsRawFd;
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let mut v4: Vec<Ipv4Addr> = (0..MAX_VIPS_PER_FAMILY as u8)
            .map(|i| Ipv4Addr::new(10, 99, 0, 100 + i))
            .collect();
        // High bit set: the 32-bit compares must not sign-extend.
        v4[15] = Ipv4Addr::new(200, 1, 2, 3);
        let v6: Vec<Ipv6Addr> = (0..MAX_VIPS_PER_FAMILY as u16)
            .map(|i| Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 0x100 + i))
            .collect();
        let map = XskMap::new(1).expect("xskmap");
        let ring = data(&v4, &v6);
        let prog = Program::load_xdp(
            "fulcrum_test",
            &xdp(&v4, &v6, map.as_raw_fd(), XDP_DROP).unwrap(),
        )
        .expect("the verifier accepts the program");
        let verdict = |f: &[u8]| {
            let mut f = f.to_vec();
            // BPF_PROG_TEST_RUN wants at least an Ethernet header.
            f.resize(f.len().max(14), 0);
            prog.test_run(&f).expect("test run") as i32
        };
        let mut frames = vec![
            v4_frame(v4[0]),
            v4_frame(v4[15]),
            v4_frame(Ipv4Addr::new(10, 99, 0, 1)),
            v4_frame(Ipv4Addr::new(0x80 | 10, 99, 0, 100)),
            v6_frame(6, v6[0], 0),
            v6_frame(6, v6[15], 0),
            v6_frame(17, v6[0], 0),
            v6_frame(58, v6[0], 135),
            v6_frame(6, "fd99::1".parse().unwrap(), 0),
            vec![0u8; 14],
        ];
        // Short frames: an IPv4 header cut before the destination, IPv6 before its end.
        let mut short4 = v4_frame(v4[0]);
        short4.truncate(33);
        let mut short6 = v6_frame(6, v6[0], 0);
        short6.truncate(53);
        frames.extend([short4, short6]);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        frames.push(arp);
        // Each word of an IPv6 VIP matters.
        for i in [0usize, 5, 10, 15] {
            let mut o = v6[3].octets();
            o[i] ^= 1;
            frames.push(v6_frame(6, Ipv6Addr::from(o), 0));
        }
        for (k, f) in frames.iter().enumerate() {
            let want = if run(&ring, f) > 0 {
                XDP_DROP
            } else {
                XDP_PASS
            };
            assert_eq!(
                verdict(f),
                want,
                "frame {k}: {:02x?}",
                &f[..f.len().min(54)]
            );
        }
    }
}
