//! This process's resource use, as Prometheus's `process_*` metrics
//! report it: CPU time, memory, file descriptors and start time, from
//! /proc/self.

use std::fs;

/// This process's resource use now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User and system CPU time, in seconds, of every thread.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Threads.
    pub threads: u64,
}

/// Reads [`Usage`] from /proc/self; what cannot be read stays 0.
#[allow(unsafe_code)]
pub fn usage() -> Usage {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = u64::try_from(page).unwrap_or(4096);
    let mut u = Usage::default();
    if let Ok(stat) = fs::read_to_string("/proc/self/stat") {
        // The command name (field 2) is in parentheses and may hold spaces:
        // the fields after it start after the last ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        // Field 3 is the first of `rest`; field N is rest[N - 3].
        let field = |n: usize| -> u64 {
            rest.split_whitespace()
                .nth(n - 3)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        u.cpu_seconds = (field(14) + field(15)) as f64 / ticks;
        u.threads = field(20);
        u.virtual_bytes = field(23);
        u.resident_bytes = field(24) * page;
        if let Some(boot) = boot_time() {
            u.start_time_seconds = boot as f64 + field(22) as f64 / ticks;
        }
    }
    u.open_fds = fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    u.max_fds = fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    u
}

/// The system's boot time, in seconds since the Unix epoch (`btime` of
/// /proc/stat).
fn boot_time() -> Option<u64> {
    fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        let u = usage();
        assert!(u.resident_bytes > 1 << 20, "{u:?}");
        assert!(u.virtual_bytes >= u.resident_bytes, "{u:?}");
        assert!(u.open_fds >= 3 && u.open_fds <= u.max_fds, "{u:?}");
        assert!(u.threads >= 1, "{u:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        // Started during this test run, which takes far less than an hour.
        assert!(
            u.start_time_seconds <= now + 1.0 && u.start_time_seconds > now - 3600.0,
            "{u:?} at {now}"
        );
        // Burn some CPU: the count goes up.
        let before = u.cpu_seconds;
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(usage().cpu_seconds > before, "{before}");
    }
}
