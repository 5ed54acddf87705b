//! The observing host during live capture: its own addresses and its
//! listening sockets, which decide the span kind of live flows (a flow the
//! host answers on a listening socket is a SERVER span).
//!
//! - [`netlink`] asks the kernel once: `RTM_GETADDR` for the addresses and
//!   `sock_diag` for the listening sockets.
//! - [`Refresher`] keeps an [`engine::HostView`] current from a thread of
//!   its own; flow workers read the view's latest snapshot between batches,
//!   without locks on the packet path.
//!
//! This is not capture: the same view serves every capture backend.
//! `unsafe` is confined to the netlink socket calls, each with a `SAFETY:`
//! comment; the answers are parsed in safe code.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod links;
pub mod netlink;
pub mod processes;
mod refresh;
pub mod usage;

pub use processes::ProcessRefresher;
pub use refresh::{Refresher, learn};
