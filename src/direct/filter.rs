//! The classic-BPF program direct mode attaches to its packet socket, so the kernel
//! wakes the data plane only for ARP and for IPv4 addressed to the VIP. Everything it
//! lets through is checked again by [`super::frame`]; the filter only saves work.

use std::net::Ipv4Addr;

/// The classic-BPF program: accept ARP, and IPv4 whose destination is `vip`.
pub fn program(vip: Ipv4Addr) -> [libc::sock_filter; 7] {
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        ins(LD_H_ABS, 0, 0, 12),          // A = ethertype
        ins(JEQ_K, 3, 0, 0x0806),         // ARP → accept
        ins(JEQ_K, 0, 3, 0x0800),         // not IPv4 → drop
        ins(LD_W_ABS, 0, 0, 30),          // A = IPv4 destination
        ins(JEQ_K, 0, 1, u32::from(vip)), // ≠ VIP → drop
        ins(RET_K, 0, 0, 0x0004_0000),    // accept (up to 256 KiB)
        ins(RET_K, 0, 0, 0),              // drop
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter program on a frame, as the kernel would (the five opcodes it uses).
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                0x28 => match pkt.get(i.k as usize..i.k as usize + 2) {
                    Some(b) => a = u32::from(u16::from_be_bytes([b[0], b[1]])),
                    None => return 0,
                },
                0x20 => match pkt.get(i.k as usize..i.k as usize + 4) {
                    Some(b) => a = u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    None => return 0,
                },
                0x15 => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                0x06 => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn filter_keeps_arp_and_ipv4_to_vip_only() {
        let vip = Ipv4Addr::new(10, 99, 0, 100);
        let prog = program(vip);
        let mut ip = vec![0u8; 60];
        ip[12] = 0x08;
        ip[30..34].copy_from_slice(&vip.octets());
        assert!(run(&prog, &ip) > 0, "IPv4 to the VIP");
        ip[33] = 101;
        assert_eq!(run(&prog, &ip), 0, "IPv4 elsewhere");
        let mut arp = vec![0u8; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(run(&prog, &arp) > 0, "ARP");
        let mut v6 = vec![0u8; 60];
        v6[12] = 0x86;
        v6[13] = 0xdd;
        assert_eq!(run(&prog, &v6), 0, "IPv6");
        assert_eq!(run(&prog, &[0u8; 10]), 0, "runt");
    }
}
