//! The generator's own CPU time, so a report can tell when pktgen, not the
//! gateway, was the limit: a thread on the CPU all of the run has no time
//! left to send more. And the gateway's, read from `/proc` when pktgen is
//! told its process, so a report tells which side a round trip costs more.

use std::time::Duration;

/// User and system CPU time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

fn duration(t: libc::timeval) -> Duration {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u32::try_from(t.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

impl CpuTime {
    /// What the calling thread has used so far (`getrusage(RUSAGE_THREAD)`);
    /// zero if the kernel will not say.
    pub fn of_this_thread() -> CpuTime {
        // SAFETY: rusage is plain data that getrusage fills in; all zeros
        // is a valid value of it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid, writable rusage.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
            return CpuTime::default();
        }
        CpuTime {
            user: duration(u.ru_utime),
            system: duration(u.ru_stime),
        }
    }

    /// What process `pid` (all its threads) has used so far, from
    /// `/proc/PID/stat`; `None` if there is no such process to read.
    pub fn of_process(pid: u32) -> Option<CpuTime> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat, clock_ticks()?)
    }

    /// What the threads of process `pid` whose names start with `prefix`
    /// (`/proc/PID/task/*/comm`) have used so far; `None` if the process
    /// cannot be read.
    pub fn of_threads_named(pid: u32, prefix: &str) -> Option<CpuTime> {
        let hz = clock_ticks()?;
        let mut sum = CpuTime::default();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let Ok(task) = task else { continue };
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let named = stat
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .is_some_and(|(name, _)| name.starts_with(prefix));
            if let Some(t) = parse_stat(&stat, hz).filter(|_| named) {
                sum.user += t.user;
                sum.system += t.system;
            }
        }
        Some(sum)
    }

    /// The time used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

/// The kernel's clock ticks per second, the unit of `/proc`'s CPU times.
fn clock_ticks() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0)
}

/// utime and stime (fields 14 and 15, in clock ticks of `hz` a second)
/// of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so the fields
/// are counted from the last `)`.
fn parse_stat(stat: &str, hz: u64) -> Option<CpuTime> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime is the 12th from here.
    let mut fields = rest.split_whitespace().skip(11);
    let ticks = |f: Option<&str>| f.and_then(|v| v.parse::<u64>().ok());
    let (user, system) = (ticks(fields.next())?, ticks(fields.next())?);
    let of = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000) / hz);
    Some(CpuTime {
        user: of(user),
        system: of(system),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_spinning_thread_is_on_the_cpu_and_a_sleeping_one_is_not() {
        let spin = std::thread::spawn(|| {
            let start = CpuTime::of_this_thread();
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(200) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            CpuTime::of_this_thread().since(start)
        });
        let sleep = std::thread::spawn(|| {
            let start = CpuTime::of_this_thread();
            std::thread::sleep(Duration::from_millis(200));
            CpuTime::of_this_thread().since(start)
        });
        let (spun, slept) = (spin.join().unwrap(), sleep.join().unwrap());
        // On a shared machine a spinning thread may be descheduled for a
        // while, but not for most of 200 ms.
        assert!(spun.total() >= Duration::from_millis(50), "{spun:?}");
        assert!(slept.total() < Duration::from_millis(50), "{slept:?}");
    }

    #[test]
    fn a_stat_line_gives_user_and_system_time_whatever_the_name() {
        let line = "4242 (esp (rit) d) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 3 0 100 200000 500 18446744073709551615";
        let t = parse_stat(line, 100).unwrap();
        assert_eq!(t.user, Duration::from_millis(2500));
        assert_eq!(t.system, Duration::from_millis(750));
        assert_eq!(parse_stat("4242 (cut short) S 1 2", 100), None);
        assert_eq!(parse_stat("no parentheses at all", 100), None);
    }

    #[test]
    fn this_process_after_spinning_has_used_cpu_and_a_missing_one_none() {
        let before = CpuTime::of_process(std::process::id()).unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = CpuTime::of_process(std::process::id())
            .unwrap()
            .since(before);
        // Clock ticks are 10 ms; a shared machine may deschedule us a while.
        assert!(used.total() >= Duration::from_millis(30), "{used:?}");
        assert_eq!(CpuTime::of_process(u32::MAX), None);
    }

    #[test]
    fn threads_are_counted_by_name() {
        let spin = std::thread::Builder::new()
            .name("cpu-test-spin".into())
            .spawn(|| {
                let t = Instant::now();
                let mut x = 0u64;
                while t.elapsed() < Duration::from_millis(150) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                let pid = std::process::id();
                (
                    CpuTime::of_threads_named(pid, "cpu-test-spin"),
                    CpuTime::of_threads_named(pid, "no-such-thread"),
                )
            })
            .unwrap();
        let (spun, none) = spin.join().unwrap();
        assert!(
            spun.unwrap().total() >= Duration::from_millis(30),
            "{spun:?}"
        );
        assert_eq!(none, Some(CpuTime::default()));
        assert_eq!(CpuTime::of_threads_named(u32::MAX, ""), None);
    }
}
