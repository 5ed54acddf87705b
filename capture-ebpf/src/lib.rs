//! Kernel-side flow acceleration with eBPF TC programs loaded by `aya`.
//!
//! Not implemented yet: this crate is a placeholder in the workspace layout
//! and exports nothing. The `engine` binary has no eBPF flag until it lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
