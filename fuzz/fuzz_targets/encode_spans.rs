//! Arbitrary flow records (any counts, times, addresses, tunnels,
//! endpoint attributes) through the span mapping and both encodings, with
//! every opt-in group on or off and arbitrary interface names.
#![no_main]

use engine::FlowRecord;
use exporter::span::{InterfaceNames, Mapping, OptIn};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    records: Vec<FlowRecord>,
    tunnel: bool,
    ipsec: bool,
    interfaces: Vec<(u32, String)>,
    sampling_rate: Option<u32>,
}

fuzz_target!(|input: Input| {
    let mapping = Mapping {
        interfaces: InterfaceNames::new(input.interfaces),
        opt_in: OptIn {
            tunnel: input.tunnel,
            ipsec: input.ipsec,
        },
        sampling_rate: input.sampling_rate,
    };
    fuzz_support::check_spans(&input.records, &mapping);
});
