//! The classic-BPF programs direct mode attaches to its packet sockets, so the kernel
//! wakes the data plane only for ARP and for IPv4 addressed to the VIP. Everything it
//! lets through is checked again by [`super::frame`]; the filter only saves work. The
//! data plane splits it in two: [`ipv4_to_vip`] for the receive ring, [`arp_only`] for
//! each worker's ARP socket.

use std::net::Ipv4Addr;

/// The receive ring's program: IPv4 whose destination is `vip` (ARP goes to each
/// worker's own ARP socket, [`arp_only`], so that every worker sees it).
pub fn ipv4_to_vip(vip: Ipv4Addr) -> [libc::sock_filter; 6] {
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        ins(0x28, 0, 0, 12),             // A = ethertype
        ins(0x15, 0, 3, 0x0800),         // not IPv4 → drop
        ins(0x20, 0, 0, 30),             // A = IPv4 destination
        ins(0x15, 0, 1, u32::from(vip)), // ≠ VIP → drop
        ins(0x06, 0, 0, 0x0004_0000),    // accept (up to 256 KiB)
        ins(0x06, 0, 0, 0),              // drop
    ]
}

/// The ARP socket's program: ARP only, cut to 128 bytes (an ARP frame is 42–60).
pub fn arp_only() -> [libc::sock_filter; 4] {
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        ins(0x28, 0, 0, 12),     // A = ethertype
        ins(0x15, 0, 1, 0x0806), // not ARP → drop
        ins(0x06, 0, 0, 128),    // accept
        ins(0x06, 0, 0, 0),      // drop
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
    fn ring_and_arp_programs_split_the_traffic() {
        let vip = Ipv4Addr::new(10, 99, 0, 100);
        let (ring, arp_p) = (ipv4_to_vip(vip), arp_only());
        let mut ip = vec![0u8; 60];
        ip[12] = 0x08;
        ip[30..34].copy_from_slice(&vip.octets());
        assert!(
            run(&ring, &ip) > 0 && run(&arp_p, &ip) == 0,
            "IPv4 to the VIP"
        );
        ip[33] = 101;
        assert_eq!(run(&ring, &ip), 0, "IPv4 elsewhere");
        let mut arp = vec![0u8; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(run(&ring, &arp) == 0 && run(&arp_p, &arp) > 0, "ARP");
        let mut v6 = vec![0u8; 60];
        v6[12] = 0x86;
        v6[13] = 0xdd;
        assert_eq!(run(&ring, &v6) + run(&arp_p, &v6), 0, "IPv6");
        assert_eq!(run(&ring, &[0u8; 10]) + run(&arp_p, &[0u8; 10]), 0, "runt");
    }
}
