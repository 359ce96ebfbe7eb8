//! The generator's own CPU time, so a report can tell when pktgen, not the
//! gateway, was the limit: a thread on the CPU all of the run has no time
//! left to send more.

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
}
