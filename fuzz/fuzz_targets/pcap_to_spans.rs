//! A capture file (pcap or pcapng, any byte order) through the reader, the
//! decoder, a flow table and both span encodings: what `engine --pcap`
//! does, on one thread.
#![no_main]

use std::io::Cursor;

use capture_pcap::CaptureReader;
use engine::LinkType;
use engine::decode::Decoder;
use exporter::span::Mapping;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(Box::new(Cursor::new(data.to_vec())), "fuzz".into())
    else {
        return;
    };
    let decoder = Decoder::default();
    let mut table = fuzz_support::small_table();
    let (mut out, mut clock) = (Vec::new(), 0);
    while let Ok(Some(frame)) = reader.next_frame() {
        fuzz_support::meter(
            &mut table,
            &decoder,
            LinkType(frame.link_type),
            frame.data,
            frame.ts_ns,
            &mut clock,
            &mut out,
        );
    }
    table.flush(clock, &mut out);
    fuzz_support::check_spans(&out, &Mapping::default());
});
