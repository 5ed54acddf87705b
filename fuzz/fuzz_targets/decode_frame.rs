//! One frame through the decoder (every link type, every tunnel, Teredo
//! anywhere or not), metered twice a second apart, its records encoded.
//! Input: the link type (2 bytes, big-endian), an options byte, the frame:
//! the layout of `capture-pcap`'s `split-frames` example, which makes the
//! seeds from capture files.
#![no_main]

use engine::LinkType;
use engine::decode::{Decoder, TunnelPorts};
use exporter::span::Mapping;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [hi, lo, options, frame @ ..] = data else {
        return;
    };
    let link = LinkType(u32::from(u16::from_be_bytes([*hi, *lo])));
    let decoder = Decoder {
        tunnel_ports: if options & 1 == 0 {
            TunnelPorts::default()
        } else {
            TunnelPorts::none()
        },
    };
    let mut table = fuzz_support::small_table();
    let (mut out, mut clock) = (Vec::new(), 0);
    for ts in [1_000_000_000, 2_000_000_000] {
        fuzz_support::meter(&mut table, &decoder, link, frame, ts, &mut clock, &mut out);
    }
    table.flush(clock + u64::from(options >> 1) * 100_000_000, &mut out);
    fuzz_support::check_spans(&out, &Mapping::default());
});
