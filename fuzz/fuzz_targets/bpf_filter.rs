//! Arbitrary classic BPF programs on arbitrary frames: a program that
//! `Program::new` accepts must run to its end on any bytes without a
//! panic, and give the same result twice; record rules of arbitrary text
//! either parse or are refused.
#![no_main]

use engine::bpf::{Insn, Program};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    insns: Vec<(u16, u8, u8, u32)>,
    frame: Vec<u8>,
    wire_extra: u16,
    rule: String,
}

fuzz_target!(|input: Input| {
    let insns = input
        .insns
        .iter()
        .map(|&(code, jt, jf, k)| Insn::new(code, jt, jf, k))
        .collect();
    if let Ok(program) = Program::new(insns) {
        let wire_len = input.frame.len() as u32 + u32::from(input.wire_extra);
        let first = program.run(&input.frame, wire_len);
        assert_eq!(first, program.run(&input.frame, wire_len));
    }
    let _ = input.rule.parse::<exporter::select::Condition>();
});
