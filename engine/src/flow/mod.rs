//! Biflows: keys, settings, the per-worker table and the records it emits.

pub mod config;
pub mod host;
mod index;
pub mod key;
pub mod observation;
pub mod record;
pub mod table;
mod tcp;
