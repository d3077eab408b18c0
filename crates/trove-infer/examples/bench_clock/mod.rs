//! The CPU time the bench examples spend, next to their wall-clock time: on a machine shared
//! with other work the wall clock also counts the time the process waited for a core, the
//! CPU time does not (it still counts what contention for caches and memory costs).

/// This process's CPU time so far (user + system), in seconds, from `/proc/self/stat`
/// (fields 14 and 15, in clock ticks: 100 per second on Linux, `USER_HZ`); `None` elsewhere.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}
