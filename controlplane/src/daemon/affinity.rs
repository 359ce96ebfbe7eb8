//! The CPU affinity of espritd's own threads. Workers pin themselves to
//! `[dataplane] cores`; the control thread (IKE, epochs, table
//! publications) and the threads it starts later then move off those
//! cores, as a DPDK application keeps its main lcore apart, so that a
//! rekey storm's control work neither preempts a worker nor refills its
//! caches. With no core left over (every core a worker's) it stays put.

use std::io;

/// The cores the calling thread may run on.
pub fn current() -> io::Result<Vec<usize>> {
    let mut set = empty_set();
    // SAFETY: `set` is a live cpu_set_t of the size given; 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads the set within CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Lets the calling thread run on `cores` only.
pub fn set_current(cores: &[usize]) -> io::Result<()> {
    let mut set = empty_set();
    for &c in cores.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `c` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a live cpu_set_t of the size given; 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn empty_set() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; all zero is the empty set.
    unsafe { std::mem::zeroed() }
}

/// The cores of `allowed` that no worker is pinned to; `None` when that
/// leaves none, or changes nothing.
pub fn without_workers(allowed: &[usize], workers: &[usize]) -> Option<Vec<usize>> {
    let rest: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|c| !workers.contains(c))
        .collect();
    (!rest.is_empty() && rest.len() < allowed.len()).then_some(rest)
}

/// Moves the calling thread off the workers' cores, if any are left;
/// the cores it runs on now, when it moved.
pub fn keep_off_workers(workers: &[usize]) -> io::Result<Option<Vec<usize>>> {
    let Some(rest) = without_workers(&current()?, workers) else {
        return Ok(None);
    };
    set_current(&rest)?;
    Ok(Some(rest))
}

/// Runs `f` and restores the calling thread's CPU affinity after it (the
/// DPDK EAL pins its caller to the main lcore).
#[cfg(feature = "dpdk")]
pub fn keep_affinity<T>(f: impl FnOnce() -> T) -> T {
    let saved = current();
    let r = f();
    if let Ok(cores) = saved {
        let _ = set_current(&cores);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_thread_takes_the_cores_the_workers_leave() {
        assert_eq!(without_workers(&[0, 1, 2, 3], &[2, 3]), Some(vec![0, 1]));
        assert_eq!(without_workers(&[0, 1], &[1, 7]), Some(vec![0]));
        assert_eq!(without_workers(&[0, 1], &[0, 1]), None, "no core left");
        assert_eq!(without_workers(&[0, 1], &[5]), None, "nothing to move off");
        assert_eq!(without_workers(&[0, 1], &[]), None);
    }

    #[test]
    fn a_thread_moves_off_and_back() {
        std::thread::spawn(|| {
            let all = current().unwrap();
            assert!(!all.is_empty());
            if all.len() < 2 {
                return;
            }
            let last = *all.last().unwrap();
            let moved = keep_off_workers(&[last]).unwrap().unwrap();
            assert!(!moved.contains(&last));
            assert_eq!(current().unwrap(), moved);
            set_current(&all).unwrap();
            assert_eq!(current().unwrap(), all);
        })
        .join()
        .unwrap();
    }
}
