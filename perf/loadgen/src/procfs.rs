//! Readings from `/proc` and `getrusage`: server CPU and RSS, kernel socket memory, own CPU.

use std::fs;

/// CPU seconds (user + system) used so far by this process.
pub fn own_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU seconds (utime + stime) used so far by process `pid`, from `/proc/PID/stat`.
pub fn pid_cpu_s(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// Resident set size of process `pid` in KiB, from `VmRSS` in `/proc/PID/status`.
pub fn pid_rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Pages of memory the kernel holds for TCP sockets (`TCP: ... mem N` in `/proc/net/sockstat`).
pub fn tcp_mem_pages() -> Option<u64> {
    let sockstat = fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "mem" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// CPU seconds used so far by `pid` and `also` together (`None` when `pid` is gone).
pub fn pids_cpu_s(pid: u32, also: &[u32]) -> Option<f64> {
    let mut total = pid_cpu_s(pid)?;
    for other in also {
        total += pid_cpu_s(*other).unwrap_or(0.0);
    }
    Some(total)
}
