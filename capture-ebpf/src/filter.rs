//! Capture filters in the kernel: a classic BPF program (what libpcap
//! compiled a tcpdump expression into) translated to an eBPF TC program
//! that the counting programs tail-call first.
//!
//! `flowspan_ingress` / `flowspan_egress` begin with a tail call into slot
//! [`SLOT_FILTER`] + direction of `fs_jumps`. Without a filter the slot is
//! empty and the call falls through. With one, the slot holds the program
//! made here: it leaves a packet it does not keep alone (`TC_ACT_OK`, as
//! the counting programs return) and tail-calls slot [`SLOT_KEPT`] +
//! direction, `flowspan_ingress_kept` / `flowspan_egress_kept`, the same
//! counting without the filter's call, for a packet it keeps.
//!
//! The translation keeps classic BPF's meaning, so that a filter keeps the
//! same packets here as in pcap mode:
//! - A and X are 32-bit (ALU32 operations, JMP32 comparisons), the scratch
//!   words M[0..16] start at zero (as in the interpreter of `engine::bpf`),
//!   and a division by X = 0 rejects.
//! - Packet loads are big-endian; a load past the packet's end rejects.
//! - The frame is seen as a capture has it, with its VLAN tag in place: a
//!   receiving NIC or veth moves the outer tag into the packet's metadata,
//!   so for such a packet the program puts it back in a 20-byte copy of the
//!   frame's start, and loads beyond it read 4 bytes earlier in the packet.
//!   `len` is the packet's length (+ 4 for such a tag).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use engine::bpf::{Insn, Program};

/// `fs_jumps` slot of the filter program for ingress (egress: + 1).
pub(crate) const SLOT_FILTER: u32 = 0;
/// `fs_jumps` slot of the counting program for ingress (egress: + 1) that
/// a kept packet goes on to.
pub(crate) const SLOT_KEPT: u32 = 2;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct EbpfInsn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInsn {
    EbpfInsn {
        code,
        regs: (dst & 0x0f) | (src << 4),
        off,
        imm,
    }
}

// eBPF classes, sizes, modes, operations.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
const K: u8 = 0x00;
const X: u8 = 0x08;
const ADD: u8 = 0x00;
const MOV: u8 = 0xb0;
const END: u8 = 0xd0;
const TO_BE: u8 = 0x08;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JNE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const DIV: u8 = 0x30;
const MOD: u8 = 0x90;

// Registers: R6 the context, R7 A, R8 X, R9 the tag shift (0 or 4).
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const CTX: u8 = 6;
const A: u8 = 7;
const XR: u8 = 8;
const SHIFT: u8 = 9;
const FP: u8 = 10;

// Stack: the load buffer, the copy's valid length, the copy of the
// frame's first 20 bytes (as captured, tag in place), M[0..16].
const LOAD_BUF: i16 = -8;
const VLEN: i16 = -16;
const VBUF: i16 = -40;
const VBUF_LEN: u32 = 20;
const MEM_BASE: i16 = -104;

// `struct __sk_buff` fields.
const SKB_LEN: i16 = 0;
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_VLAN_TCI: i16 = 24;
const SKB_VLAN_PROTO: i16 = 28;

const HELPER_TAIL_CALL: i32 = 12;
const HELPER_SKB_LOAD_BYTES: i32 = 26;

/// Where a jump goes, before the layout is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The first instruction made for classic instruction `n`.
    Classic(usize),
    /// A label within the same classic instruction's code.
    Local(usize),
    /// Leave the packet alone, uncounted.
    Reject,
    /// Go on to the counting program.
    Accept,
}

/// Instructions of one classic instruction, with jumps still symbolic.
#[derive(Debug, Default)]
struct Block {
    code: Vec<EbpfInsn>,
    /// Instruction index in `code` → its target.
    jumps: Vec<(usize, Target)>,
    /// Local label → instruction index in `code`.
    labels: Vec<usize>,
}

impl Block {
    fn push(&mut self, i: EbpfInsn) {
        self.code.push(i);
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Target) {
        self.jumps.push((self.code.len(), to));
        self.code.push(ins(code, dst, src, 0, imm));
    }

    fn label(&mut self) -> usize {
        self.labels.push(usize::MAX);
        self.labels.len() - 1
    }

    fn here(&mut self, label: usize) {
        self.labels[label] = self.code.len();
    }

    /// `dst = imm` (64-bit, zero-extended from u32).
    fn mov_u32(&mut self, dst: u8, imm: u32) {
        // MOV32 writes the low half and zeroes the high one.
        self.push(ins(ALU | MOV | K, dst, 0, 0, imm as i32));
    }

    /// `dst = 16-bit big-endian / 32-bit big-endian` of itself.
    fn big_endian(&mut self, dst: u8, size: u32) {
        if size > 1 {
            self.push(ins(ALU | END | TO_BE, dst, 0, 0, (size * 8) as i32));
        }
    }

    /// Loads `size` bytes at the offset in R2 (u64) of the frame as a
    /// capture has it into `dst`, big-endian; rejects past the end.
    fn load(&mut self, dst: u8, size: u32) {
        let ldx_size = match size {
            4 => W,
            2 => H,
            _ => B,
        };
        let far = self.label();
        let done = self.label();
        // Within the copy of the frame's start?
        self.jump(
            JMP | JGT | K,
            R2,
            0,
            (VBUF_LEN - size) as i32,
            Target::Local(far),
        );
        self.push(ins(LDX | MEM | DW, R1, FP, VLEN, 0));
        self.push(ins(ALU64 | MOV | X, R3, R2, 0, 0));
        self.push(ins(ALU64 | ADD | K, R3, 0, 0, size as i32));
        self.jump(JMP | JGT | X, R3, R1, 0, Target::Reject);
        self.push(ins(ALU64 | MOV | X, R1, FP, 0, 0));
        self.push(ins(ALU64 | ADD | K, R1, 0, 0, i32::from(VBUF)));
        self.push(ins(ALU64 | ADD | X, R1, R2, 0, 0));
        // Byte by byte, most significant first: the verifier refuses a
        // stack load at an offset not aligned to its size.
        self.push(ins(LDX | MEM | B, dst, R1, 0, 0));
        for i in 1..size as i16 {
            self.push(ins(ALU | 0x60 | K, dst, 0, 0, 8)); // dst <<= 8
            self.push(ins(LDX | MEM | B, R3, R1, i, 0));
            self.push(ins(ALU | 0x40 | X, dst, R3, 0, 0)); // dst |= r3
        }
        self.jump(JMP | JA, 0, 0, 0, Target::Local(done));
        // Beyond it: from the packet, 4 bytes earlier after a tag put back.
        self.here(far);
        self.jump(JMP | JGT | K, R2, 0, 0xffff, Target::Reject);
        self.push(ins(ALU64 | 0x10 | X, R2, SHIFT, 0, 0)); // r2 -= r9
        self.push(ins(ALU64 | MOV | X, R1, CTX, 0, 0));
        self.push(ins(ALU64 | MOV | X, R3, FP, 0, 0));
        self.push(ins(ALU64 | ADD | K, R3, 0, 0, i32::from(LOAD_BUF)));
        self.mov_u32(R4, size);
        self.push(ins(JMP | CALL, 0, 0, 0, HELPER_SKB_LOAD_BYTES));
        self.jump(JMP | JNE | K, R0, 0, 0, Target::Reject);
        self.push(ins(LDX | MEM | ldx_size, dst, FP, LOAD_BUF, 0));
        self.big_endian(dst, size);
        self.here(done);
    }
}

/// Classic instruction fields.
const C_LD: u16 = 0x00;
const C_LDX: u16 = 0x01;
const C_ST: u16 = 0x02;
const C_STX: u16 = 0x03;
const C_ALU: u16 = 0x04;
const C_JMP: u16 = 0x05;
const C_RET: u16 = 0x06;

/// The eBPF program for `program`: packets it keeps tail-call slot `kept`
/// of the map `jumps_fd`; if that slot is empty, the program returns
/// `unreached` (the counting programs' `TC_ACT_OK`, 0, in use; 1 in
/// [`verdicts`], to tell kept packets from the others).
pub(crate) fn translate(
    program: &Program,
    jumps_fd: RawFd,
    kept: u32,
    unreached: u32,
) -> Vec<EbpfInsn> {
    let insns = program.insns();
    let mut blocks: Vec<Block> = Vec::with_capacity(insns.len() + 3);
    blocks.push(prologue());
    for (n, i) in insns.iter().enumerate() {
        blocks.push(classic(n, i));
    }
    let mut reject = Block::default();
    reject.mov_u32(R0, 0);
    reject.push(ins(JMP | EXIT, 0, 0, 0, 0));
    let mut accept = Block::default();
    accept.push(ins(ALU64 | MOV | X, R1, CTX, 0, 0));
    // r2 = the map (BPF_PSEUDO_MAP_FD), a two-slot instruction.
    accept.push(ins(LD | DW | IMM, R2, 1, 0, jumps_fd));
    accept.push(ins(0, 0, 0, 0, 0));
    accept.mov_u32(R3, kept);
    accept.push(ins(JMP | CALL, 0, 0, 0, HELPER_TAIL_CALL));
    // Only if the slot is empty.
    accept.mov_u32(R0, unreached);
    accept.push(ins(JMP | EXIT, 0, 0, 0, 0));
    blocks.push(reject);
    blocks.push(accept);
    layout(&blocks)
}

/// Resolves every block's jumps: block 0 is the prologue, block n + 1 the
/// code of classic instruction n, then reject and accept.
fn layout(blocks: &[Block]) -> Vec<EbpfInsn> {
    let mut starts = Vec::with_capacity(blocks.len());
    let mut at = 0;
    for b in blocks {
        starts.push(at);
        at += b.code.len();
    }
    let (reject, accept) = (starts[blocks.len() - 2], starts[blocks.len() - 1]);
    let mut out = Vec::with_capacity(at);
    for (bi, b) in blocks.iter().enumerate() {
        let base = starts[bi];
        let mut code = b.code.clone();
        for &(i, target) in &b.jumps {
            let to = match target {
                Target::Classic(n) => starts[n + 1],
                Target::Local(l) => base + b.labels[l],
                Target::Reject => reject,
                Target::Accept => accept,
            };
            let from = base + i + 1;
            code[i].off = i16::try_from(to as i64 - from as i64).unwrap_or(i16::MAX);
        }
        out.extend(code);
    }
    out
}

/// Zeroes M and the copy, sets R6, A, X, and copies the frame's first 20
/// bytes as a capture has them (the tag the kernel took out put back).
fn prologue() -> Block {
    let mut b = Block::default();
    b.push(ins(ALU64 | MOV | X, CTX, R1, 0, 0));
    b.mov_u32(A, 0);
    b.mov_u32(XR, 0);
    for w in 0..16i16 {
        b.push(ins(ST | MEM | W, FP, 0, MEM_BASE + 4 * w, 0));
    }
    b.push(ins(ST | MEM | DW, FP, 0, VBUF, 0));
    b.push(ins(ST | MEM | DW, FP, 0, VBUF + 8, 0));
    b.push(ins(ST | MEM | W, FP, 0, VBUF + 16, 0));
    b.push(ins(ST | MEM | DW, FP, 0, LOAD_BUF, 0));
    let untagged = b.label();
    let copied = b.label();
    let store_len = b.label();
    b.push(ins(LDX | MEM | W, SHIFT, CTX, SKB_VLAN_PRESENT, 0));
    b.jump(JMP | JEQ | K, SHIFT, 0, 0, Target::Local(untagged));
    // Tagged: addresses, the tag, then up to 4 bytes after them.
    b.push(ins(ALU64 | MOV | X, R1, CTX, 0, 0));
    b.mov_u32(R2, 0);
    b.push(ins(ALU64 | MOV | X, R3, FP, 0, 0));
    b.push(ins(ALU64 | ADD | K, R3, 0, 0, i32::from(VBUF)));
    b.mov_u32(R4, 12);
    b.push(ins(JMP | CALL, 0, 0, 0, HELPER_SKB_LOAD_BYTES));
    b.jump(JMP | JNE | K, R0, 0, 0, Target::Reject);
    // vlan_proto holds the TPID as the wire has it (network order).
    b.push(ins(LDX | MEM | W, R1, CTX, SKB_VLAN_PROTO, 0));
    b.push(ins(STX | MEM | H, FP, R1, VBUF + 12, 0));
    b.push(ins(LDX | MEM | W, R1, CTX, SKB_VLAN_TCI, 0));
    b.big_endian(R1, 2);
    b.push(ins(STX | MEM | H, FP, R1, VBUF + 14, 0));
    b.mov_u32(SHIFT, 4);
    b.push(ins(LDX | MEM | W, R4, CTX, SKB_LEN, 0));
    b.push(ins(ALU64 | 0x10 | K, R4, 0, 0, 12)); // r4 -= 12
    let four = b.label();
    b.jump(JMP | JGT | K, R4, 0, 4, Target::Local(four));
    let some = b.label();
    b.jump(JMP | JNE | K, R4, 0, 0, Target::Local(some));
    b.jump(JMP | JA, 0, 0, 0, Target::Local(copied));
    b.here(four);
    b.mov_u32(R4, 4);
    b.here(some);
    b.push(ins(ALU64 | MOV | X, R1, CTX, 0, 0));
    b.mov_u32(R2, 12);
    b.push(ins(ALU64 | MOV | X, R3, FP, 0, 0));
    b.push(ins(ALU64 | ADD | K, R3, 0, 0, i32::from(VBUF + 16)));
    b.push(ins(JMP | CALL, 0, 0, 0, HELPER_SKB_LOAD_BYTES));
    b.jump(JMP | JNE | K, R0, 0, 0, Target::Reject);
    b.jump(JMP | JA, 0, 0, 0, Target::Local(copied));
    // Untagged: the first 20 bytes, or as many as there are.
    b.here(untagged);
    b.push(ins(LDX | MEM | W, R4, CTX, SKB_LEN, 0));
    let twenty = b.label();
    let load = b.label();
    b.jump(JMP | JGT | K, R4, 0, VBUF_LEN as i32, Target::Local(twenty));
    b.jump(JMP | JNE | K, R4, 0, 0, Target::Local(load));
    b.jump(JMP | JA, 0, 0, 0, Target::Local(copied));
    b.here(twenty);
    b.mov_u32(R4, VBUF_LEN);
    b.here(load);
    b.push(ins(ALU64 | MOV | X, R1, CTX, 0, 0));
    b.mov_u32(R2, 0);
    b.push(ins(ALU64 | MOV | X, R3, FP, 0, 0));
    b.push(ins(ALU64 | ADD | K, R3, 0, 0, i32::from(VBUF)));
    b.push(ins(JMP | CALL, 0, 0, 0, HELPER_SKB_LOAD_BYTES));
    b.jump(JMP | JNE | K, R0, 0, 0, Target::Reject);
    // The copy's length: the frame's (with the tag), at most 20.
    b.here(copied);
    b.push(ins(LDX | MEM | W, R1, CTX, SKB_LEN, 0));
    b.push(ins(ALU64 | ADD | X, R1, SHIFT, 0, 0));
    b.jump(
        JMP | JGT | K,
        R1,
        0,
        VBUF_LEN as i32,
        Target::Local(store_len),
    );
    let stored = b.label();
    b.push(ins(STX | MEM | DW, FP, R1, VLEN, 0));
    b.jump(JMP | JA, 0, 0, 0, Target::Local(stored));
    b.here(store_len);
    b.push(ins(ST | MEM | DW, FP, 0, VLEN, VBUF_LEN as i32));
    b.here(stored);
    b
}

/// The code of classic instruction `n`.
fn classic(n: usize, i: &Insn) -> Block {
    let mut b = Block::default();
    let k = i.k;
    let size = |code: u16| match code & 0x18 {
        0x00 => 4,
        0x08 => 2,
        _ => 1,
    };
    // r2 = k, as an unsigned 64-bit value.
    let offset_k = |b: &mut Block| {
        b.push(ins(LD | DW | IMM, R2, 0, 0, k as i32));
        b.push(ins(0, 0, 0, 0, 0));
    };
    match i.code & 0x07 {
        C_LD => match i.code & 0xe0 {
            0x20 => {
                offset_k(&mut b);
                b.load(A, size(i.code));
            }
            0x40 => {
                offset_k(&mut b);
                // r2 = X (zero-extended) + k
                b.push(ins(ALU | MOV | X, R3, XR, 0, 0));
                b.push(ins(ALU64 | ADD | X, R2, R3, 0, 0));
                b.load(A, size(i.code));
            }
            0x60 => b.push(ins(LDX | MEM | W, A, FP, mem(k), 0)),
            0x80 => {
                b.push(ins(LDX | MEM | W, A, CTX, SKB_LEN, 0));
                b.push(ins(ALU | ADD | X, A, SHIFT, 0, 0));
            }
            _ => b.mov_u32(A, k),
        },
        C_LDX => match i.code & 0xe0 {
            0x60 => b.push(ins(LDX | MEM | W, XR, FP, mem(k), 0)),
            0x80 => {
                b.push(ins(LDX | MEM | W, XR, CTX, SKB_LEN, 0));
                b.push(ins(ALU | ADD | X, XR, SHIFT, 0, 0));
            }
            0xa0 => {
                offset_k(&mut b);
                b.load(XR, 1);
                b.push(ins(ALU | 0x50 | K, XR, 0, 0, 0x0f));
                b.push(ins(ALU | 0x60 | K, XR, 0, 0, 2));
            }
            _ => b.mov_u32(XR, k),
        },
        C_ST => b.push(ins(STX | MEM | W, FP, A, mem(k), 0)),
        C_STX => b.push(ins(STX | MEM | W, FP, XR, mem(k), 0)),
        C_ALU => {
            let op = (i.code & 0xf0) as u8;
            if i.code & 0x08 != 0 {
                if op == DIV || op == MOD {
                    // Classic BPF rejects a division by zero.
                    b.jump(JMP32 | JEQ | K, XR, 0, 0, Target::Reject);
                }
                b.push(ins(ALU | op | X, A, XR, 0, 0));
            } else {
                b.push(ins(ALU | op | K, A, 0, 0, k as i32));
            }
        }
        C_JMP => {
            let op = (i.code & 0xf0) as u8;
            if op == JA {
                b.jump(JMP | JA, 0, 0, 0, Target::Classic(n + 1 + k as usize));
            } else {
                let taken = Target::Classic(n + 1 + usize::from(i.jt));
                let not = Target::Classic(n + 1 + usize::from(i.jf));
                if i.code & 0x08 != 0 {
                    b.jump(JMP32 | op | X, A, XR, 0, taken);
                } else {
                    b.jump(JMP32 | op | K, A, 0, k as i32, taken);
                }
                b.jump(JMP | JA, 0, 0, 0, not);
            }
        }
        C_RET => match i.code & 0x18 {
            0x00 => {
                let to = if k == 0 {
                    Target::Reject
                } else {
                    Target::Accept
                };
                b.jump(JMP | JA, 0, 0, 0, to);
            }
            rv => {
                let reg = if rv == 0x08 { XR } else { A };
                b.jump(JMP32 | JEQ | K, reg, 0, 0, Target::Reject);
                b.jump(JMP | JA, 0, 0, 0, Target::Accept);
            }
        },
        // MISC: TAX, TXA.
        _ => {
            if i.code & 0x80 != 0 {
                b.push(ins(ALU | MOV | X, A, XR, 0, 0));
            } else {
                b.push(ins(ALU | MOV | X, XR, A, 0, 0));
            }
        }
    }
    b
}

/// The stack offset of M[k] (`Program::new` checked k < 16).
fn mem(k: u32) -> i16 {
    MEM_BASE + 4 * (k.min(15) as i16)
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `prog_name`.
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
}

/// `union bpf_attr` for BPF_MAP_UPDATE_ELEM.
#[repr(C)]
struct MapUpdateAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;

/// `union bpf_attr` for BPF_MAP_CREATE, up to `max_entries`.
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

/// `union bpf_attr` for BPF_PROG_TEST_RUN, up to `duration`.
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
}

/// The bpf(2) call `cmd` with `attr`; its result (a new descriptor for
/// the calls that make one).
///
/// # Safety
/// `attr` is a `union bpf_attr` prefix for `cmd`, and every pointer in it
/// is valid for what the kernel does through it (reads, or writes of the
/// size given) during the call.
#[allow(unsafe_code)]
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: the caller's promise; the kernel zero-extends the rest of
    // the union.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Whether the eBPF translation of `program` keeps each of `frames`
/// (Ethernet frames of 14 bytes to about 3.5 KB, no VLAN tag taken out),
/// run by the kernel with `BPF_PROG_TEST_RUN`: a check of the translation
/// against [`Program::run`]. `None` for a frame the kernel would not build
/// a test packet of (`EINVAL`; one seen is an IPv6 header cut short). Needs
/// CAP_BPF (or root).
///
/// # Errors
/// The kernel refused the map, the program (the error has the verifier's
/// log) or a run for another reason.
#[allow(unsafe_code)]
pub fn verdicts(program: &Program, frames: &[&[u8]]) -> std::io::Result<Vec<Option<bool>>> {
    let mut create = MapCreateAttr {
        map_type: BPF_MAP_TYPE_PROG_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 4,
    };
    // SAFETY: a map creation attribute holds no pointer.
    let raw = unsafe { bpf(BPF_MAP_CREATE, &mut create) }
        .map_err(|e| std::io::Error::new(e.kind(), format!("BPF_MAP_CREATE: {e}")))?;
    // SAFETY: a new descriptor that nothing else owns.
    let map = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
    let code = translate(program, map.as_raw_fd(), SLOT_KEPT, 1);
    let prog = load(&code, "flowspan_check")
        .map_err(|(e, log)| std::io::Error::new(e.kind(), format!("{e}: {log}")))?;
    frames
        .iter()
        .map(|f| {
            let mut attr = TestRunAttr {
                prog_fd: prog.as_raw_fd() as u32,
                data_size_in: f.len() as u32,
                data_in: f.as_ptr() as u64,
                repeat: 1,
                ..TestRunAttr::default()
            };
            // SAFETY: the kernel reads `data_size_in` bytes at `data_in`,
            // the frame, which outlives the call; no output is asked for.
            match unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) } {
                Ok(_) => Ok(Some(attr.retval == 1)),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
                Err(e) => Err(std::io::Error::new(
                    e.kind(),
                    format!("BPF_PROG_TEST_RUN on a frame of {} bytes: {e}", f.len()),
                )),
            }
        })
        .collect()
}
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;

/// Loads `insns` as a TC program named `name`; on a verifier rejection,
/// the error is the verifier's log.
#[allow(unsafe_code)]
pub(crate) fn load(insns: &[EbpfInsn], name: &str) -> Result<OwnedFd, (std::io::Error, String)> {
    let license = c"Apache-2.0";
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let attempt = |log: &mut Vec<u8>| -> Result<OwnedFd, std::io::Error> {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_SCHED_CLS,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            prog_name,
            ..ProgLoadAttr::default()
        };
        // SAFETY: the instructions, the license and the log buffer (written
        // up to `log_size`) outlive the call.
        let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr) }?;
        // SAFETY: a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    };
    match attempt(&mut Vec::new()) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // Again, for the verifier's log.
            let mut log = vec![0u8; 1 << 20];
            let again = attempt(&mut log);
            let end = log.iter().position(|&c| c == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).into_owned();
            match again {
                Ok(fd) => Ok(fd),
                Err(_) => Err((e, text)),
            }
        }
    }
}

/// Puts program `prog` in slot `slot` of the program array `map`.
#[allow(unsafe_code)]
pub(crate) fn set_slot(map: RawFd, slot: u32, prog: &OwnedFd) -> std::io::Result<()> {
    let value: u32 = prog.as_raw_fd() as u32;
    let mut attr = MapUpdateAttr {
        map_fd: map as u32,
        pad: 0,
        key: (&raw const slot) as u64,
        value: (&raw const value) as u64,
        flags: 0,
    };
    // SAFETY: the kernel reads 4 bytes at `key` and at `value`, locals
    // that outlive the call.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insns_have_the_layout_of_struct_bpf_insn() {
        assert_eq!(std::mem::size_of::<EbpfInsn>(), 8);
        let i = ins(ALU64 | MOV | X, 6, 1, -2, 7);
        assert_eq!(i.regs, 0x16);
        assert_eq!((i.off, i.imm), (-2, 7));
    }

    #[test]
    fn every_jump_lands_inside_the_program() {
        let p = Program::new(vec![
            Insn::new(0x28, 0, 0, 12),
            Insn::new(0x15, 0, 3, 0x0800),
            Insn::new(0x30, 0, 0, 23),
            Insn::new(0x15, 0, 1, 6),
            Insn::new(0x06, 0, 0, 262_144),
            Insn::new(0x06, 0, 0, 0),
        ])
        .unwrap();
        let code = translate(&p, 3, SLOT_KEPT, 0);
        for (at, i) in code.iter().enumerate() {
            let class = i.code & 0x07;
            let op = i.code & 0xf0;
            if (class == JMP || class == JMP32) && op != CALL && op != EXIT {
                let to = at as i64 + 1 + i64::from(i.off);
                assert!((0..code.len() as i64).contains(&to), "{at}: {i:?}");
            }
        }
        assert_eq!(code.last().map(|i| i.code), Some(JMP | EXIT));
    }
}
