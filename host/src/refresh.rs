//! The observing host during live capture: its addresses and listening
//! sockets, learnt from the kernel at the start and again every
//! `--host-refresh` seconds by a thread of its own, so that span kinds
//! follow services that start and stop while capturing. A socket stays
//! known for one period after it was last seen.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::netlink;
use engine::{HostSockets, HostView, IpNet, Listener};

/// One snapshot of the host; `networks` (`--local-net`) count as local too.
///
/// # Errors
/// A netlink dump failed.
pub fn learn(networks: &[IpNet]) -> std::io::Result<HostSockets> {
    let addresses = netlink::local_addresses()?;
    let listeners = netlink::listening_sockets()?;
    Ok(HostSockets::new(
        addresses,
        networks,
        listeners.into_iter().map(|s| Listener {
            protocol: s.protocol,
            address: s.address,
            port: s.port,
        }),
    ))
}

/// The thread keeping a [`HostView`] current; stops when dropped.
#[derive(Debug)]
pub struct Refresher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Refresher {
    /// Learns the host now and starts refreshing `view` every `every`. A
    /// failed refresh keeps the last snapshot and warns once until one
    /// succeeds again, through `warn` (one line, without a prefix).
    ///
    /// # Errors
    /// The first snapshot cannot be learnt, or the thread cannot start.
    pub fn start(
        networks: Vec<IpNet>,
        every: Duration,
        warn: impl Fn(&str) + Send + 'static,
    ) -> std::io::Result<(HostView, Refresher)> {
        let first = learn(&networks)?;
        let view = HostView::new(first.clone());
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = view.clone();
        let thread = thread::Builder::new()
            .name("host-refresh".into())
            .spawn(move || {
                let mut failing = false;
                // The last snapshot learnt: its sockets stay in the view for
                // one more period (`HostSockets::with_earlier`).
                let mut last = first;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    match learn(&networks) {
                        Ok(next) => {
                            failing = false;
                            shared.set(next.clone().with_earlier(&last));
                            last = next;
                        }
                        Err(e) if !failing => {
                            failing = true;
                            warn(&format!(
                                "refreshing the host's addresses and listening \
                                 sockets failed: {e}; keeping the last ones"
                            ));
                        }
                        Err(_) => {}
                    }
                }
            })?;
        Ok((
            view,
            Refresher {
                stop: Some(stop),
                thread: Some(thread),
            },
        ))
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
