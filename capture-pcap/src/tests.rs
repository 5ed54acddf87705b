//! Unit and property tests of the reader.

#[cfg(test)]
mod reader {
    use crate::pcapng::ticks_to_ns;
    use crate::*;

    fn pcap_header(magic: [u8; 4], link: u32) -> Vec<u8> {
        let mut v = magic.to_vec();
        v.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]);
        v.extend_from_slice(&link.to_le_bytes());
        v
    }

    fn reader(bytes: Vec<u8>) -> Result<CaptureReader, CaptureError> {
        CaptureReader::new(Box::new(io::Cursor::new(bytes)), "t.pcap".into())
    }

    /// A pipe that delivers its data in the given pieces, one per read.
    struct Pieces(Vec<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = &mut self.0[0];
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    /// A little-endian pcapng block of `block_type` with `body`.
    fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()) as u32;
        let mut b = block_type.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    /// A section header block with byte-order magic `bom` and version.
    fn section(bom: u32, major: u16, minor: u16) -> Vec<u8> {
        let mut body = bom.to_le_bytes().to_vec();
        body.extend_from_slice(&major.to_le_bytes());
        body.extend_from_slice(&minor.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        block(0x0a0d_0d0a, &body)
    }

    fn read_all(bytes: Vec<u8>) -> Result<(usize, ReaderStats), CaptureError> {
        let mut r = reader(bytes)?;
        let mut frames = 0;
        while r.next_frame()?.is_some() {
            frames += 1;
        }
        Ok((frames, r.stats().clone()))
    }

    /// Issue 16: a 12-byte interface description block (no link type or
    /// snaplen inside) panicked the reader.
    #[test]
    fn regression_16_an_interface_block_without_its_fields_is_an_error() {
        let mut bytes = section(0x1a2b_3c4d, 1, 0);
        bytes.extend(block(1, &[]));
        let e = read_all(bytes).unwrap_err();
        assert_eq!((e.record, e.offset), (2, 28));
        assert!(e.to_string().contains("interface description block"), "{e}");
    }

    /// Issue 16: a Simple Packet Block of total length 12 underflowed a
    /// length computation.
    #[test]
    fn regression_16_a_simple_packet_block_without_its_length_is_counted() {
        let mut bytes = section(0x1a2b_3c4d, 1, 0);
        let mut idb = 1u16.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        bytes.extend(block(1, &idb));
        bytes.extend(block(3, &[]));
        bytes.extend(block(3, &[4, 0, 0, 0, 1, 2, 3, 4]));
        let (frames, stats) = read_all(bytes).unwrap();
        assert_eq!(frames, 1, "the whole simple packet block after it is read");
        assert_eq!(stats.bad_packet_block, 1);
    }

    /// Issue 16: a first block that is not a usable section header is "not
    /// a capture" (found when opening), not damage partway through.
    #[test]
    fn regression_16_a_bad_first_section_header_fails_at_open() {
        for (bytes, what) in [
            (section(0x1122_3344, 1, 0), "byte-order magic"),
            (section(0x1a2b_3c4d, 2, 0), "version 2.0"),
        ] {
            let e = reader(bytes).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        }
        let e = reader(0x0a0d_0d0au32.to_le_bytes().repeat(2)).unwrap_err();
        assert!(e.to_string().contains("truncated file header"), "{e}");
    }

    #[test]
    fn idle_is_reported_once_before_a_read_that_may_block() {
        let mut records = Vec::new();
        for i in 0..3u32 {
            let mut rec = Vec::new();
            rec.extend_from_slice(&i.to_le_bytes());
            rec.extend_from_slice(&0u32.to_le_bytes());
            rec.extend_from_slice(&2u32.to_le_bytes());
            rec.extend_from_slice(&2u32.to_le_bytes());
            rec.extend_from_slice(&[7, 7]);
            records.push(rec);
        }
        // Header + record 0 arrive together; record 1 in two pieces (the
        // second half of it after an idle); then record 2.
        let mut first = pcap_header([0xd4, 0xc3, 0xb2, 0xa1], 1);
        first.extend_from_slice(&records[0]);
        let pieces = vec![
            first,
            records[1][..5].to_vec(),
            records[1][5..].to_vec(),
            records[2].clone(),
        ];
        let mut r = CaptureReader::new(Box::new(Pieces(pieces)), "-".into()).unwrap();
        let mut seen = Vec::new();
        loop {
            match r.next_frame_or_idle().unwrap() {
                Next::Frame(f) => seen.push(format!("frame {}", f.ts_ns / 1_000_000_000)),
                Next::Idle => seen.push("idle".into()),
                Next::End => break,
            }
        }
        assert_eq!(
            seen,
            [
                "frame 0", "idle", "idle", "frame 1", "idle", "frame 2", "idle"
            ]
        );
        // Without hints the same input reads straight through.
        let mut first = pcap_header([0xd4, 0xc3, 0xb2, 0xa1], 1);
        first.extend_from_slice(&records[0]);
        let mut r = CaptureReader::new(
            Box::new(Pieces(vec![first, records[1].clone(), records[2].clone()])),
            "-".into(),
        )
        .unwrap();
        let mut n = 0;
        while r.next_frame().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn reads_pcap_records_and_reports_truncation_with_position() {
        let mut f = pcap_header([0xd4, 0xc3, 0xb2, 0xa1], 1);
        for i in 0..2u32 {
            f.extend_from_slice(&10u32.to_le_bytes());
            f.extend_from_slice(&(i * 5).to_le_bytes());
            f.extend_from_slice(&4u32.to_le_bytes());
            f.extend_from_slice(&60u32.to_le_bytes());
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend_from_slice(&[0, 0, 0]);
        let mut r = reader(f).unwrap();
        let a = r.next_frame().unwrap().unwrap();
        assert_eq!(
            (a.ts_ns, a.data, a.orig_len),
            (10_000_000_000, &[1u8, 2, 3, 4][..], 60)
        );
        let b = r.next_frame().unwrap().unwrap();
        assert_eq!(b.ts_ns, 10_000_005_000);
        let e = r.next_frame().unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.pcap: record 3 (byte 64): truncated record header (need 16 bytes, 3 left)"
        );
    }

    #[test]
    fn not_a_capture() {
        let e = reader(b"hello world, this is text".to_vec()).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "t.pcap: file header (byte 0): not a pcap or pcapng file (magic number 0x68656c6c"
            ),
            "{e}"
        );
        let e = reader(Vec::new()).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Empty));
    }

    #[test]
    fn absurd_length() {
        let mut f = pcap_header([0xd4, 0xc3, 0xb2, 0xa1], 1);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&0xffff_0000u32.to_le_bytes());
        f.extend_from_slice(&[0; 4]);
        let e = reader(f).unwrap().next_frame().unwrap_err();
        assert!(matches!(e.kind, ErrorKind::AbsurdLength { .. }), "{e}");
        assert_eq!((e.record, e.offset), (1, 24));
    }

    #[test]
    fn tsresol_conversion() {
        assert_eq!(ticks_to_ns(1_500_000, (false, 6), 0), 1_500_000_000);
        assert_eq!(ticks_to_ns(3, (false, 9), 0), 3);
        assert_eq!(ticks_to_ns(1 << 20, (true, 20), 1), 2_000_000_000);
    }
}

#[cfg(test)]
mod properties {
    use crate::*;
    use proptest::prelude::*;

    /// A pcap with `n` records of `len` bytes each.
    fn pcap(records: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0,
        ];
        for (i, r) in records.iter().enumerate() {
            v.extend_from_slice(&(i as u32).to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&(r.len() as u32).to_le_bytes());
            v.extend_from_slice(&(r.len() as u32).to_le_bytes());
            v.extend_from_slice(r);
        }
        v
    }

    fn read_all(bytes: Vec<u8>) -> (Vec<Vec<u8>>, Option<CaptureError>) {
        let mut frames = Vec::new();
        let mut r = match CaptureReader::new(Box::new(io::Cursor::new(bytes)), "p".into()) {
            Ok(r) => r,
            Err(e) => return (frames, Some(e)),
        };
        loop {
            match r.next_frame() {
                Ok(Some(f)) => frames.push(f.data.to_vec()),
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e)),
            }
        }
    }

    /// Everything a reader yields: each frame's fields, then the error (as
    /// its message) or `None`, and the final counters.
    fn outcome(r: Result<CaptureReader, CaptureError>) -> (Vec<String>, Option<String>, String) {
        let mut frames = Vec::new();
        let mut r = match r {
            Ok(r) => r,
            Err(e) => return (frames, Some(e.to_string()), String::new()),
        };
        let err = loop {
            match r.next_frame() {
                Ok(Some(f)) => frames.push(format!("{f:?}")),
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        (frames, err, format!("{:?} at {}", r.stats(), r.offset()))
    }

    /// A file in the temporary directory, removed on drop.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(bytes: &[u8]) -> TempFile {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("capture-pcap-test-{}-{n}.pcap", std::process::id()));
            std::fs::write(&path, bytes).expect("writing a temporary file");
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn regular_files_are_mapped_and_empty_ones_are_not() {
        let f = TempFile::new(&pcap(&[vec![1, 2, 3]]));
        let mut r = CaptureReader::open(&f.0).unwrap();
        assert!(r.is_mapped());
        let frame = r.next_frame().unwrap().unwrap();
        assert_eq!(frame.data, &[1, 2, 3]);
        assert!(r.next_frame().unwrap().is_none());
        let empty = TempFile::new(&[]);
        let e = CaptureReader::open(&empty.0).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Empty), "{e}");
    }

    #[test]
    fn a_mapped_file_longer_than_the_release_step_reads_whole() {
        // Frames on both sides of several released ranges, one of them
        // straddling a step boundary.
        let records: Vec<Vec<u8>> = (0..25_000u32)
            .map(|i| vec![i as u8; 1999 + (i % 7) as usize])
            .collect();
        let bytes = pcap(&records);
        assert!(bytes.len() > 2 * RELEASE_STEP);
        let f = TempFile::new(&bytes);
        let mut r = CaptureReader::open(&f.0).unwrap();
        assert!(r.is_mapped());
        let mut n = 0;
        while let Some(frame) = r.next_frame().unwrap() {
            assert_eq!(frame.data, &records[n][..], "frame {n}");
            n += 1;
        }
        assert_eq!(n, records.len());
        assert!(r.released >= 2 * RELEASE_STEP, "released {}", r.released);
    }

    proptest! {
        /// Issue 16: random bytes rarely form blocks whose two length
        /// fields agree, so the reader's block bodies went untested. Here
        /// every block is well framed (either byte order) and only its type
        /// and body are arbitrary: reading never panics, and ends cleanly
        /// or with an error naming a record.
        #[test]
        fn well_framed_pcapng_blocks_with_arbitrary_bodies_never_panic(
            big in any::<bool>(),
            blocks in proptest::collection::vec(
                (prop_oneof![Just(1u32), Just(2), Just(3), Just(6), Just(0x0a0d_0d0a), any::<u32>()],
                 proptest::collection::vec(any::<u8>(), 0..48)),
                0..8,
            ),
        ) {
            let u32b = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
            let u16b = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
            let mut bytes = 0x0a0d_0d0au32.to_be_bytes().to_vec();
            bytes.extend_from_slice(&u32b(28));
            bytes.extend_from_slice(&u32b(0x1a2b_3c4d));
            bytes.extend_from_slice(&u16b(1));
            bytes.extend_from_slice(&u16b(0));
            bytes.extend_from_slice(&[0xff; 8]);
            bytes.extend_from_slice(&u32b(28));
            for (block_type, mut body) in blocks {
                body.resize(body.len().next_multiple_of(4), 0);
                let len = 12 + body.len() as u32;
                bytes.extend_from_slice(&u32b(block_type));
                bytes.extend_from_slice(&u32b(len));
                bytes.extend_from_slice(&body);
                bytes.extend_from_slice(&u32b(len));
            }
            let mut r = CaptureReader::new(Box::new(io::Cursor::new(bytes)), "p.pcapng".into())
                .expect("a valid section header opens");
            loop {
                match r.next_frame() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!(e.record >= 1, "{e}");
                        break;
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn a_mapped_file_reads_exactly_like_a_stream(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..8),
            cut_frac in 0.0f64..1.0,
            garbage in proptest::collection::vec(any::<u8>(), 0..40),
            pcapng_tail in any::<bool>(),
        ) {
            // Valid records, cut anywhere, then garbage: every outcome (clean
            // end, truncation, bad lengths) must be the same both ways.
            let mut bytes = pcap(&records);
            if pcapng_tail {
                bytes = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0];
            }
            let cut = (bytes.len() as f64 * cut_frac) as usize;
            bytes.truncate(cut.max(24));
            bytes.extend_from_slice(&garbage);
            let f = TempFile::new(&bytes);
            let mapped = CaptureReader::open(&f.0);
            prop_assert!(mapped.as_ref().is_err() || mapped.as_ref().is_ok_and(CaptureReader::is_mapped));
            let streamed = outcome(CaptureReader::new(Box::new(io::Cursor::new(bytes)), f.0.display().to_string()));
            prop_assert_eq!(outcome(mapped), streamed);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (_, err) = read_all(bytes);
            if let Some(e) = err {
                prop_assert!(e.to_string().starts_with("p: "));
            }
        }

        #[test]
        fn arbitrary_bytes_after_a_pcapng_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut bytes = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0];
            bytes.extend_from_slice(&tail);
            let _ = read_all(bytes);
        }

        #[test]
        fn truncation_keeps_earlier_frames_and_names_the_record(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..8),
            cut_frac in 0.0f64..1.0,
        ) {
            let full = pcap(&records);
            let cut = 24 + ((full.len() - 24) as f64 * cut_frac) as usize;
            let (frames, err) = read_all(full[..cut].to_vec());
            // Frames before the cut are exactly the first records.
            prop_assert_eq!(&frames[..], &records[..frames.len()]);
            let mut boundary = 24;
            for r in &records[..frames.len()] {
                boundary += 16 + r.len();
            }
            match err {
                None => prop_assert_eq!(cut, boundary, "clean end only at a record boundary"),
                Some(e) => {
                    prop_assert_eq!(e.record, frames.len() as u64 + 1);
                    prop_assert_eq!(e.offset, boundary as u64);
                }
            }
        }
    }
}
