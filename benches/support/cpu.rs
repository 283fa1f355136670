//! The CPU time this process has used, every thread's (those ended too): what the benches of
//! work done on other threads (OTLP export) compare, as rates move with whatever else runs.

use std::time::Duration;

pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is handed, which is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}
