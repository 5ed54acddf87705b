//! Standard input that a signal can interrupt.
//!
//! A read from a quiet pipe blocks, and signals do not interrupt it (the
//! handlers restart system calls). A helper thread therefore reads stdin
//! into chunks, and the capture reader reads those: when the stop flag is
//! set, the source reports end of input within 50 ms, and the run ends as it
//! would at the end of the capture (open flows flushed, output delivered).

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};

/// Chunks of standard input read by a helper thread.
pub struct InterruptibleStdin {
    chunks: Receiver<io::Result<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    chunk: Vec<u8>,
    at: usize,
}

impl InterruptibleStdin {
    /// Starts the helper thread. It ends at end of input, on a read error,
    /// or when this source is dropped (at its next read).
    pub fn new(stop: Arc<AtomicBool>) -> io::Result<InterruptibleStdin> {
        let (tx, rx) = bounded(16);
        thread::Builder::new().name("stdin".into()).spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                let mut buf = vec![0u8; 1 << 16];
                let result = match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = result.is_err();
                if tx.send(result).is_err() || failed {
                    return;
                }
            }
        })?;
        Ok(InterruptibleStdin {
            chunks: rx,
            stop,
            chunk: Vec::new(),
            at: 0,
        })
    }
}

impl Read for InterruptibleStdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            match self.chunks.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
