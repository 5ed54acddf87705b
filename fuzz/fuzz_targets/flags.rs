//! The `engine` binary's command line: arbitrary arguments through clap and
//! every flag's own check (sizes, seconds, networks, tunnel ports...). A
//! command line that parses gives a flow limit and a decoder; one that does
//! not gives a one-line error (or help).
#![no_main]

use clap::Parser;
use flowspan_cli::args::{Args, decoder, flag_error_line, flow_limit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|argv: Vec<String>| {
    let argv = std::iter::once("engine".to_string()).chain(argv);
    match Args::try_parse_from(argv) {
        Ok(args) => {
            let (_, how) = flow_limit(&args);
            assert!(!how.is_empty());
            let _ = decoder(&args);
        }
        Err(e) => {
            if let Some(line) = flag_error_line(&e) {
                assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
            }
        }
    }
});
