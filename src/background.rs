//! Work that must not delay the taps: the taps stamp each message with the instant they read
//! it, so a tap thread that waits for a CPU makes acks look late. Analysis runs on its own
//! threads at the lowest priority (nice 19 on Linux): on a busy machine the scheduler lets a
//! tap thread that wakes up run first.

/// Runs `f` on a new thread at the lowest priority (threads it spawns inherit it) and returns
/// what it returns; a panic in `f` resumes here.
pub fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lower_priority();
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Sets the calling thread's nice value to 19; failure leaves it as it was (analysis still
/// runs, at normal priority).
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours; on Linux
    // PRIO_PROCESS with a thread id sets that one thread's nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The nice value of the calling thread, from `/proc`.
    fn nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (which ends with ')'): nice is field 19 of the line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn work_runs_at_the_lowest_priority_and_its_threads_too() {
        let before = nice();
        let (own, spawned) = super::run(|| (nice(), std::thread::spawn(nice).join().unwrap()));
        assert_eq!((own, spawned), (19, 19));
        assert_eq!(nice(), before, "the caller's priority is untouched");
        let caught = std::panic::catch_unwind(|| super::run(|| panic!("analysis failed")));
        assert!(caught.is_err());
    }
}
