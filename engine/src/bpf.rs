//! Classic BPF capture filters: the programs libpcap compiles tcpdump
//! expressions into, checked once ([`Program::new`]) and run on frames in
//! userspace ([`Program::run`]) with the semantics of libpcap's own
//! interpreter: loads past the captured bytes reject the frame, `len` is
//! the frame's length on the wire, and division by zero rejects.
//!
//! [`FrameFilter`] holds one expression compiled for each link type the
//! decoder reads, so that a frame is filtered as `tcpdump -r` would filter
//! it: its link-layer header and any VLAN tag in place.
//!
//! Nothing here compiles expressions: that is libpcap's job (the
//! `capture-filter` crate loads it at run time).

use std::fmt;
use std::sync::Arc;

/// Longest program accepted (`BPF_MAXINSNS`, as the kernel's).
pub const MAX_INSNS: usize = 4096;

/// Scratch memory words (`BPF_MEMWORDS`).
const MEM_WORDS: usize = 16;

/// One instruction, laid out as `struct sock_filter` / `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Insn {
    /// Operation.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

impl Insn {
    /// An instruction.
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }
}

// Instruction classes, sizes, modes and operations (`<linux/bpf_common.h>`).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;

const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;

const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
const MSH: u16 = 0xa0;

const ADD: u16 = 0x00;
const SUB: u16 = 0x10;
const MUL: u16 = 0x20;
const DIV: u16 = 0x30;
const OR: u16 = 0x40;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const RSH: u16 = 0x70;
const NEG: u16 = 0x80;
const MOD: u16 = 0x90;
const XOR: u16 = 0xa0;

const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;

/// Operand source: the constant `k`, or X.
const K: u16 = 0x00;
const X: u16 = 0x08;
/// `RET A`.
const RET_A: u16 = 0x10;

const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

/// Why a program was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// No instructions, or more than [`MAX_INSNS`].
    #[error("a filter program has 1 to {MAX_INSNS} instructions, not {0}")]
    Length(usize),
    /// An instruction this interpreter does not know.
    #[error("instruction {at}: unknown operation {code:#06x}")]
    Unknown {
        /// Its index.
        at: usize,
        /// Its operation.
        code: u16,
    },
    /// A jump past the end.
    #[error("instruction {at}: jumps past the end of the program")]
    Jump {
        /// Its index.
        at: usize,
    },
    /// A scratch memory index out of range.
    #[error("instruction {at}: scratch memory index {k} (at most 15)")]
    Memory {
        /// Its index.
        at: usize,
        /// The index.
        k: u32,
    },
    /// Division by the constant 0.
    #[error("instruction {at}: divides by zero")]
    DivideByZero {
        /// Its index.
        at: usize,
    },
    /// The last instruction is not a return.
    #[error("the last instruction does not return")]
    NoReturn,
}

/// A checked classic BPF program: every jump lands inside it, every
/// scratch index is in range, and it ends with a return, so
/// [`run`](Self::run) never indexes out of bounds and always ends (jumps
/// only go forward).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Program {
    insns: Arc<[Insn]>,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Program({} instructions)", self.insns.len())
    }
}

impl Program {
    /// Checks `insns` and makes them a program.
    ///
    /// # Errors
    /// The program is empty or too long, or has an instruction that would
    /// go wrong (see [`ProgramError`]).
    pub fn new(insns: Vec<Insn>) -> Result<Program, ProgramError> {
        let n = insns.len();
        if n == 0 || n > MAX_INSNS {
            return Err(ProgramError::Length(n));
        }
        for (at, i) in insns.iter().enumerate() {
            let unknown = Err(ProgramError::Unknown { at, code: i.code });
            let left = n - at - 1;
            match i.code & 0x07 {
                LD | LDX => {
                    let mode = i.code & 0xe0;
                    let size = i.code & 0x18;
                    let ok = match (i.code & 0x07, mode) {
                        (LD, ABS | IND) => matches!(size, W | H | B),
                        (LD, IMM | MEM | LEN) | (LDX, IMM | MEM | LEN) => size == W,
                        (LDX, MSH) => size == B,
                        _ => false,
                    };
                    if !ok {
                        return unknown;
                    }
                    if mode == MEM && i.k as usize >= MEM_WORDS {
                        return Err(ProgramError::Memory { at, k: i.k });
                    }
                }
                ST | STX => {
                    if i.code & !0x07 != 0 {
                        return unknown;
                    }
                    if i.k as usize >= MEM_WORDS {
                        return Err(ProgramError::Memory { at, k: i.k });
                    }
                }
                ALU => {
                    let op = i.code & 0xf0;
                    if i.code & !0xff != 0 || op > XOR {
                        return unknown;
                    }
                    if op == NEG && i.code & X != 0 {
                        return unknown;
                    }
                    if matches!(op, DIV | MOD) && i.code & X == 0 && i.k == 0 {
                        return Err(ProgramError::DivideByZero { at });
                    }
                }
                JMP => {
                    let op = i.code & 0xf0;
                    if i.code & !0xff != 0 || op > JSET || (op == JA && i.code & X != 0) {
                        return unknown;
                    }
                    let far = if op == JA {
                        i.k as usize
                    } else {
                        usize::from(i.jt.max(i.jf))
                    };
                    if far >= left {
                        return Err(ProgramError::Jump { at });
                    }
                }
                RET => {
                    if !matches!(i.code & !0x07, K | X | RET_A) {
                        return unknown;
                    }
                }
                _ => {
                    if !matches!(i.code & !0x07, TAX | TXA) {
                        return unknown;
                    }
                }
            }
        }
        if insns[n - 1].code & 0x07 != RET {
            return Err(ProgramError::NoReturn);
        }
        Ok(Program {
            insns: insns.into(),
        })
    }

    /// The instructions.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// Runs the program on a frame whose captured bytes are `data` and
    /// whose length on the wire is `wire_len`; returns its result (0:
    /// rejected; otherwise how many bytes to keep).
    pub fn run(&self, data: &[u8], wire_len: u32) -> u32 {
        let insns = &*self.insns;
        let (mut a, mut x) = (0u32, 0u32);
        let mut mem = [0u32; MEM_WORDS];
        let mut pc = 0;
        // `new` checked that every jump lands inside and the last
        // instruction returns, so `pc` stays in bounds.
        while let Some(i) = insns.get(pc) {
            pc += 1;
            let k = i.k;
            match i.code {
                c if c & 0x07 == LD => {
                    a = match c & 0xe0 {
                        ABS => match load(data, u64::from(k), c & 0x18) {
                            Some(v) => v,
                            None => return 0,
                        },
                        IND => match load(data, u64::from(x) + u64::from(k), c & 0x18) {
                            Some(v) => v,
                            None => return 0,
                        },
                        MEM => mem[k as usize],
                        LEN => wire_len,
                        _ => k,
                    };
                }
                c if c & 0x07 == LDX => {
                    x = match c & 0xe0 {
                        MEM => mem[k as usize],
                        LEN => wire_len,
                        MSH => match data.get(k as usize) {
                            Some(b) => u32::from(b & 0x0f) << 2,
                            None => return 0,
                        },
                        _ => k,
                    };
                }
                ST => mem[k as usize] = a,
                STX => mem[k as usize] = x,
                c if c & 0x07 == ALU => {
                    let v = if c & X != 0 { x } else { k };
                    a = match c & 0xf0 {
                        ADD => a.wrapping_add(v),
                        SUB => a.wrapping_sub(v),
                        MUL => a.wrapping_mul(v),
                        DIV => match a.checked_div(v) {
                            Some(q) => q,
                            None => return 0,
                        },
                        MOD => match a.checked_rem(v) {
                            Some(r) => r,
                            None => return 0,
                        },
                        OR => a | v,
                        AND => a & v,
                        LSH => a.wrapping_shl(v),
                        RSH => a.wrapping_shr(v),
                        NEG => a.wrapping_neg(),
                        _ => a ^ v,
                    };
                }
                c if c & 0x07 == JMP => {
                    let v = if c & X != 0 { x } else { k };
                    let taken = match c & 0xf0 {
                        JA => {
                            pc += k as usize;
                            continue;
                        }
                        JEQ => a == v,
                        JGT => a > v,
                        JGE => a >= v,
                        _ => a & v != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                c if c & 0x07 == RET => {
                    return match c & 0x18 {
                        X => x,
                        RET_A => a,
                        _ => k,
                    };
                }
                TXA_CODE => a = x,
                _ => x = a,
            }
        }
        0
    }
}

/// `MISC | TXA`.
const TXA_CODE: u16 = MISC | TXA;

/// A big-endian load of `size` at `at`, if the bytes were captured.
#[inline]
fn load(data: &[u8], at: u64, size: u16) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    match size {
        W => Some(u32::from_be_bytes(
            data.get(at..at.checked_add(4)?)?.try_into().ok()?,
        )),
        H => Some(u32::from(u16::from_be_bytes(
            data.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))),
        _ => data.get(at).map(|b| u32::from(*b)),
    }
}

/// A capture filter: one expression, compiled for each link type the
/// decoder reads. A frame of a link type the expression cannot be
/// compiled for (e.g. `ether host …` on raw IP) does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameFilter {
    expression: Arc<str>,
    /// Link type and its program; `None` where the expression does not
    /// apply to that link type.
    programs: Vec<(u32, Option<Program>)>,
}

impl FrameFilter {
    /// `expression`, compiled for each link type in `programs` (`None`
    /// where it does not apply).
    pub fn new(expression: &str, programs: Vec<(u32, Option<Program>)>) -> FrameFilter {
        FrameFilter {
            expression: expression.into(),
            programs,
        }
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The program for `link_type`, if the expression applies to it.
    pub fn program(&self, link_type: u32) -> Option<&Program> {
        self.programs
            .iter()
            .find(|(t, _)| *t == link_type)
            .and_then(|(_, p)| p.as_ref())
    }

    /// Whether a frame of `link_type` with captured bytes `data`, `wire_len`
    /// bytes long on the wire, passes the filter.
    #[inline]
    pub fn matches(&self, link_type: u32, data: &[u8], wire_len: u32) -> bool {
        self.program(link_type)
            .is_some_and(|p| p.run(data, wire_len) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LD_H_ABS: u16 = LD | H | ABS;
    const LD_B_ABS: u16 = LD | B | ABS;
    const JEQ_K: u16 = JMP | JEQ | K;
    const RET_K: u16 = RET | K;

    /// `ip`: the EtherType is 0x0800.
    fn is_ipv4() -> Program {
        Program::new(vec![
            Insn::new(LD_H_ABS, 0, 0, 12),
            Insn::new(JEQ_K, 0, 1, 0x0800),
            Insn::new(RET_K, 0, 0, 262_144),
            Insn::new(RET_K, 0, 0, 0),
        ])
        .unwrap()
    }

    fn frame(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0u8; 34];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f
    }

    #[test]
    fn a_program_tests_what_it_loads() {
        let p = is_ipv4();
        assert_eq!(p.run(&frame(0x0800), 34), 262_144);
        assert_eq!(p.run(&frame(0x86dd), 34), 0);
    }

    #[test]
    fn a_load_past_the_captured_bytes_rejects() {
        let p = is_ipv4();
        assert_eq!(p.run(&frame(0x0800)[..13], 60), 0);
    }

    #[test]
    fn len_is_the_wire_length_and_msh_the_ip_header_length() {
        // X = IHL * 4 of the byte at 14; A = len; accept A - X if > 100.
        let p = Program::new(vec![
            Insn::new(LDX | B | MSH, 0, 0, 14),
            Insn::new(LD | W | LEN, 0, 0, 0),
            Insn::new(ALU | SUB | X, 0, 0, 0),
            Insn::new(JMP | JGT | K, 0, 1, 100),
            Insn::new(RET | RET_A, 0, 0, 0),
            Insn::new(RET_K, 0, 0, 0),
        ])
        .unwrap();
        let mut f = frame(0x0800);
        f[14] = 0x46; // 24-byte header
        assert_eq!(p.run(&f, 200), 176);
        assert_eq!(p.run(&f, 120), 0);
    }

    #[test]
    fn division_by_zero_in_x_rejects() {
        let p = Program::new(vec![
            Insn::new(LD | W | IMM, 0, 0, 7),
            Insn::new(LDX | W | IMM, 0, 0, 0),
            Insn::new(ALU | DIV | X, 0, 0, 0),
            Insn::new(RET_K, 0, 0, 1),
        ])
        .unwrap();
        assert_eq!(p.run(&[], 0), 0);
    }

    #[test]
    fn scratch_memory_and_indirect_loads() {
        // M[3] = 12; X = M[3]; A = P[X + 1]; return A.
        let p = Program::new(vec![
            Insn::new(LD | W | IMM, 0, 0, 12),
            Insn::new(ST, 0, 0, 3),
            Insn::new(LDX | W | MEM, 0, 0, 3),
            Insn::new(LD | B | IND, 0, 0, 1),
            Insn::new(RET | RET_A, 0, 0, 0),
        ])
        .unwrap();
        assert_eq!(p.run(&frame(0x0806), 34), 0x06);
        assert_eq!(p.run(&frame(0x0806)[..13], 34), 0);
    }

    #[test]
    fn programs_that_could_go_wrong_are_refused() {
        let ret = Insn::new(RET_K, 0, 0, 0);
        assert_eq!(Program::new(vec![]), Err(ProgramError::Length(0)));
        assert_eq!(
            Program::new(vec![Insn::new(JEQ_K, 1, 0, 0), ret]),
            Err(ProgramError::Jump { at: 0 })
        );
        assert_eq!(
            Program::new(vec![Insn::new(JMP | JA, 0, 0, u32::MAX), ret]),
            Err(ProgramError::Jump { at: 0 })
        );
        assert_eq!(
            Program::new(vec![Insn::new(ST, 0, 0, 16), ret]),
            Err(ProgramError::Memory { at: 0, k: 16 })
        );
        assert_eq!(
            Program::new(vec![Insn::new(ALU | MOD | K, 0, 0, 0), ret]),
            Err(ProgramError::DivideByZero { at: 0 })
        );
        assert_eq!(
            Program::new(vec![Insn::new(LD_B_ABS, 0, 0, 0)]),
            Err(ProgramError::NoReturn)
        );
        assert_eq!(
            Program::new(vec![Insn::new(0xffff, 0, 0, 0), ret]),
            Err(ProgramError::Unknown {
                at: 0,
                code: 0xffff
            })
        );
    }

    #[test]
    fn a_filter_applies_only_to_the_link_types_it_was_compiled_for() {
        let f = FrameFilter::new("ip", vec![(1, Some(is_ipv4())), (101, None)]);
        assert!(f.matches(1, &frame(0x0800), 34));
        assert!(!f.matches(101, &frame(0x0800), 34));
        assert!(!f.matches(113, &frame(0x0800), 34));
    }
}
