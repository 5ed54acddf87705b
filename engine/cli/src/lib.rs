//! The `engine` binary's flags, as a library for its fuzz targets; the
//! binary (`main.rs`) is the rest.
#![forbid(unsafe_code)]

pub mod args;
pub mod config;
