//! The standard `process_*` metrics (resident and virtual memory, CPU seconds, open and maximum
//! file descriptors, start time), read from `/proc/self` at each scrape.
//!
//! The names are the ones every Prometheus client library exports, so existing dashboards and
//! alerts (memory growth, fd exhaustion, restarts) work unchanged. They are unprefixed on
//! purpose. Off Linux, or when `/proc` is not mounted, the family is simply absent: a scrape never
//! fails for want of process figures.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Reads the process figures at each scrape and encodes them under their `process_*` names.
#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(stats) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(Unit::Bytes),
                Some(stats.resident_memory_bytes as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes",
                Some(Unit::Bytes),
                Some(stats.virtual_memory_bytes as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch in seconds",
                Some(Unit::Seconds),
                Some(stats.start_time_seconds),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                None,
                stats.open_fds.map(|n| n as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit)",
                None,
                stats.max_fds.map(|n| n as f64),
            ),
        ];
        for (name, help, unit, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// One reading of the process's resources.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ProcessStats {
    cpu_seconds: f64,
    resident_memory_bytes: u64,
    virtual_memory_bytes: u64,
    start_time_seconds: f64,
    /// `None` when `/proc/self/fd` cannot be listed.
    open_fds: Option<u64>,
    /// `None` when the limit is `unlimited` or `/proc/self/limits` cannot be read.
    max_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self/stat` (required), `/proc/stat` (boot time), `/proc/self/fd` and
    /// `/proc/self/limits`.
    #[cfg(target_os = "linux")]
    fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let kernel = Kernel {
            ticks_per_second: rustix::param::clock_ticks_per_second(),
            page_size: rustix::param::page_size() as u64,
            boot_time,
        };
        let mut stats = parse_stat(&stat, &kernel)?;
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64);
        stats.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| parse_max_fds(&limits));
        Some(stats)
    }

    /// No `/proc` to read.
    #[cfg(not(target_os = "linux"))]
    fn read() -> Option<ProcessStats> {
        None
    }
}

/// The kernel's units for `/proc/self/stat`: clock ticks, pages, and seconds since boot.
#[derive(Debug, Clone, Copy)]
struct Kernel {
    ticks_per_second: u64,
    page_size: u64,
    /// Unix time the machine booted (`btime` in `/proc/stat`).
    boot_time: u64,
}

/// The CPU time, memory and start time in `/proc/self/stat` (see proc(5)); the fd figures are
/// left unset. `None` when the text is not that file's format.
fn parse_stat(stat: &str, kernel: &Kernel) -> Option<ProcessStats> {
    // The command name (field 2) is in parentheses and may itself hold spaces and parentheses:
    // the fields that follow start after the last `)`. `fields[0]` is field 3 (the state).
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let ticks = kernel.ticks_per_second.max(1) as f64;
    let cpu_ticks = field(14)? + field(15)?;
    Some(ProcessStats {
        cpu_seconds: cpu_ticks as f64 / ticks,
        start_time_seconds: kernel.boot_time as f64 + field(22)? as f64 / ticks,
        virtual_memory_bytes: field(23)?,
        resident_memory_bytes: field(24)? * kernel.page_size,
        open_fds: None,
        max_fds: None,
    })
}

/// `btime` of `/proc/stat`: when the machine booted, in Unix seconds.
fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` when it is `unlimited`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const KERNEL: Kernel = Kernel {
        ticks_per_second: 100,
        page_size: 4096,
        boot_time: 1_700_000_000,
    };

    /// A line in the kernel's format, with a command name holding a space and a `)`.
    const STAT: &str = "4242 (bunq ipsync) x) S 1 4242 4242 0 -1 4194560 120 0 0 0 \
                        250 75 0 0 20 0 4 0 12345 104857600 2560 18446744073709551615 \
                        1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_gives_cpu_memory_and_start_time_in_base_units() {
        let stats = parse_stat(STAT, &KERNEL).unwrap();
        assert_eq!(stats.cpu_seconds, 3.25, "(250 + 75) ticks at 100/s");
        assert_eq!(stats.start_time_seconds, 1_700_000_123.45);
        assert_eq!(stats.virtual_memory_bytes, 104_857_600);
        assert_eq!(stats.resident_memory_bytes, 2560 * 4096);
    }

    #[test]
    fn truncated_or_foreign_stat_text_is_refused() {
        assert_eq!(parse_stat("4242 (x) S 1 2 3", &KERNEL), None);
        assert_eq!(parse_stat("no parentheses here", &KERNEL), None);
    }

    #[test]
    fn boot_time_and_fd_limit_are_read_from_their_lines() {
        let proc_stat = "cpu  1 2 3\nintr 5\nbtime 1699999999\nprocesses 7\n";
        assert_eq!(parse_boot_time(proc_stat), Some(1_699_999_999));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63707                63707                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
    }

    /// Reads the figures until the CPU time has left 0 (a fresh test binary may not have used a
    /// clock tick yet), working meanwhile; panics if it never does.
    #[cfg(target_os = "linux")]
    pub(in crate::daemon) fn burn_until_cpu_time_shows() -> ProcessStats {
        let started = std::time::Instant::now();
        let mut work = 0u64;
        loop {
            let stats = ProcessStats::read().expect("/proc is mounted on Linux");
            if stats.cpu_seconds > 0.0 {
                return stats;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "CPU time stays 0: {stats:?}"
            );
            for i in 0..1_000_000u64 {
                work = std::hint::black_box(work.wrapping_mul(31).wrapping_add(i));
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_plausible_figures() {
        let stats = burn_until_cpu_time_shows();
        assert!(stats.resident_memory_bytes > 1 << 20, "{stats:?}");
        assert!(stats.virtual_memory_bytes >= stats.resident_memory_bytes);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // The test binary started within the last day, and not in the future (1 s of rounding).
        assert!(stats.start_time_seconds <= now + 1.0, "{stats:?}");
        assert!(stats.start_time_seconds > now - 86_400.0, "{stats:?}");
        assert!(
            stats.open_fds.unwrap() >= 3,
            "stdin, stdout, stderr: {stats:?}"
        );
        if let Some(max) = stats.max_fds {
            assert!(max >= stats.open_fds.unwrap(), "{stats:?}");
        }
    }
}
