//! The fanout group's program, which splits an interface's traffic among
//! the rings by the pair of IP addresses (classic BPF, run by the kernel for
//! every frame; see [`FANOUT_BY_ADDRESSES`]).

/// `PACKET_FANOUT_CBPF`: members are chosen by a classic BPF program.
pub(crate) const PACKET_FANOUT_CBPF: u32 = 6;
/// `PACKET_FANOUT_DATA`: sets a fanout group's program.
pub(crate) const PACKET_FANOUT_DATA: i32 = 22;

/// One classic BPF instruction (`struct sock_filter`).
const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

// Classic BPF opcodes and the kernel's ancillary offsets.
const LD_H_ABS: u16 = 0x28;
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const TAX: u16 = 0x07;
const XOR_X: u16 = 0xac;
const RSH_K: u16 = 0x74;
const RET_A: u16 = 0x16;
const RET_K: u16 = 0x06;
const JA: u16 = 0x05;
/// `SKF_AD_OFF + SKF_AD_PROTOCOL`: the frame's EtherType (after any VLAN
/// tag the kernel took off).
const AD_PROTOCOL: u32 = 0xffff_f000;
/// `SKF_NET_OFF`: loads relative to the network header.
const NET: u32 = 0xfff0_0000;

/// The fanout program: the XOR of the source and destination address
/// words (IPv4: one each, IPv6: four each), folded so that the low bits
/// depend on all of them; the kernel takes the result modulo the group's
/// size. XOR is symmetric, so both directions land on one ring. Anything
/// else (ARP, a frame whose second VLAN tag is still on) goes to the first
/// ring.
pub const FANOUT_BY_ADDRESSES: [libc::sock_filter; 38] = {
    let mut p = [bpf(RET_K, 0, 0, 0); 38];
    p[0] = bpf(LD_H_ABS, 0, 0, AD_PROTOCOL);
    p[1] = bpf(JEQ_K, 0, 5, 0x0800); // IPv4, else to 7
    p[2] = bpf(LD_W_ABS, 0, 0, NET + 12);
    p[3] = bpf(TAX, 0, 0, 0);
    p[4] = bpf(LD_W_ABS, 0, 0, NET + 16);
    p[5] = bpf(XOR_X, 0, 0, 0);
    p[6] = bpf(JA, 0, 0, FOLD as u32 - 7);
    p[7] = bpf(JEQ_K, 0, (RET_ZERO - 8) as u8, 0x86dd); // IPv6, else 0
    p[8] = bpf(LD_W_ABS, 0, 0, NET + 8);
    p[9] = bpf(TAX, 0, 0, 0);
    // Words 12..40 of the header: A ^= word; X = A; the last without TAX.
    let mut i = 10;
    let mut offset = 12;
    while offset < 40 {
        p[i] = bpf(LD_W_ABS, 0, 0, NET + offset);
        p[i + 1] = bpf(XOR_X, 0, 0, 0);
        i += 2;
        if offset < 36 {
            p[i] = bpf(TAX, 0, 0, 0);
            i += 1;
        }
        offset += 4;
    }
    assert!(i == FOLD);
    p[FOLD] = bpf(TAX, 0, 0, 0);
    p[FOLD + 1] = bpf(RSH_K, 0, 0, 16);
    p[FOLD + 2] = bpf(XOR_X, 0, 0, 0);
    p[FOLD + 3] = bpf(TAX, 0, 0, 0);
    p[FOLD + 4] = bpf(RSH_K, 0, 0, 8);
    p[FOLD + 5] = bpf(XOR_X, 0, 0, 0);
    p[FOLD + 6] = bpf(RET_A, 0, 0, 0);
    p[RET_ZERO] = bpf(RET_K, 0, 0, 0);
    p
};
/// Where [`FANOUT_BY_ADDRESSES`] folds the XOR.
const FOLD: usize = 30;
/// Where it returns 0.
const RET_ZERO: usize = 37;

/// `SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT`: 1 if the kernel took a VLAN tag
/// out of the frame (into the skb's metadata), else 0.
const AD_VLAN_TAG_PRESENT: u32 = 0xffff_f000 + 44;

/// The socket filter for a capture filter's program: the program itself
/// for frames as the kernel holds them, except those whose VLAN tag the
/// kernel took out, which go to the ring whole so that userspace filters
/// them with the tag back in place (as `tcpdump -r` sees them). With no
/// program (the expression does not apply to the interface's link type),
/// nothing passes.
///
/// The program's jumps are relative, so three instructions put in front
/// leave it as it is.
///
/// # Errors
/// The program with the three instructions is longer than the kernel
/// takes (4096 instructions).
pub fn socket_filter(
    program: Option<&engine::bpf::Program>,
) -> Result<Vec<libc::sock_filter>, String> {
    let Some(program) = program else {
        return Ok(vec![bpf(RET_K, 0, 0, 0)]);
    };
    let insns = program.insns();
    if insns.len() + 3 > engine::bpf::MAX_INSNS {
        return Err(format!(
            "the capture filter compiles to {} instructions; the kernel takes {} with the 3 added for VLAN tags",
            insns.len(),
            engine::bpf::MAX_INSNS
        ));
    }
    let mut out = Vec::with_capacity(insns.len() + 3);
    out.push(bpf(LD_W_ABS, 0, 0, AD_VLAN_TAG_PRESENT));
    out.push(bpf(JEQ_K, 1, 0, 0)); // no tag taken out: the program
    out.push(bpf(RET_K, 0, 0, u32::MAX)); // tagged: userspace decides
    out.extend(insns.iter().map(|i| bpf(i.code, i.jt, i.jf, i.k)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the fanout program the way the kernel would on a frame of
    /// EtherType `protocol` whose network header is `net`.
    fn run_fanout(protocol: u16, net: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let i = FANOUT_BY_ADDRESSES[pc];
            pc += 1;
            match i.code {
                LD_H_ABS => {
                    assert_eq!(i.k, AD_PROTOCOL);
                    a = u32::from(protocol);
                }
                LD_W_ABS => {
                    let at = (i.k - NET) as usize;
                    a = u32::from_be_bytes(net[at..at + 4].try_into().unwrap());
                }
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JA => pc += i.k as usize,
                TAX => x = a,
                XOR_X => a ^= x,
                RSH_K => a >>= i.k,
                RET_A => return a,
                RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_fanout_program_hashes_both_addresses_symmetrically() {
        let v4 = |src: [u8; 4], dst: [u8; 4]| {
            let mut h = vec![0x45u8; 20];
            h[12..16].copy_from_slice(&src);
            h[16..20].copy_from_slice(&dst);
            run_fanout(0x0800, &h)
        };
        let v6 = |src: u128, dst: u128| {
            let mut h = vec![0x60u8; 40];
            h[8..24].copy_from_slice(&src.to_be_bytes());
            h[24..40].copy_from_slice(&dst.to_be_bytes());
            run_fanout(0x86dd, &h)
        };
        assert_eq!(
            v4([10, 0, 0, 1], [10, 0, 0, 2]),
            v4([10, 0, 0, 2], [10, 0, 0, 1])
        );
        assert_eq!(v6(1, 0xfe80 << 112), v6(0xfe80 << 112, 1));
        // Every address word matters, and pairs spread over two rings.
        for word in 0..8 {
            let src = 1u128 << (word * 16);
            assert_ne!(v6(0, src) % 2, v6(0, 0) % 2, "word {word}");
        }
        let on_ring_1 = (0..=255u8)
            .filter(|h| v4([10, 0, 0, *h], [10, 0, 1, 1]) % 2 == 1)
            .count();
        assert!(
            (96..=160).contains(&on_ring_1),
            "{on_ring_1} of 256 on ring 1"
        );
        assert_eq!(run_fanout(0x0806, &[0; 28]), 0, "ARP to the first ring");
    }

    #[test]
    fn a_capture_filter_goes_in_whole_after_the_vlan_check() {
        use engine::bpf::{Insn, Program};
        let p = Program::new(vec![
            Insn::new(0x28, 0, 0, 12),
            Insn::new(0x15, 0, 1, 0x0800),
            Insn::new(0x06, 0, 0, 262_144),
            Insn::new(0x06, 0, 0, 0),
        ])
        .unwrap();
        let f = socket_filter(Some(&p)).unwrap();
        assert_eq!(f.len(), 7);
        assert_eq!((f[0].code, f[0].k), (LD_W_ABS, 0xffff_f000 + 44));
        assert_eq!((f[1].code, f[1].jt, f[1].jf, f[1].k), (JEQ_K, 1, 0, 0));
        assert_eq!((f[2].code, f[2].k), (RET_K, u32::MAX));
        for (a, b) in f[3..].iter().zip(p.insns()) {
            assert_eq!((a.code, a.jt, a.jf, a.k), (b.code, b.jt, b.jf, b.k));
        }
        let none = socket_filter(None).unwrap();
        assert_eq!((none.len(), none[0].code, none[0].k), (1, RET_K, 0));
    }
}
