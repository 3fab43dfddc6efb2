//! Processes the benchmark starts, and what `/proc` says about their CPU time and memory.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A process started by the benchmark, with its output in `<log_dir>/<name>.log`. Dropping
/// it stops it (SIGTERM, then SIGKILL after 5 s) together with the processes it started.
pub struct Process {
    pub name: String,
    child: Child,
}

impl Process {
    /// Spawns `command`, pinned to `cpu` with `taskset` when given.
    pub fn spawn(
        name: &str,
        command: &mut Command,
        cpu: Option<usize>,
        log_dir: &Path,
    ) -> Result<Self> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = pinned(command, cpu);
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process already exited (with its status), so a target that could not
    /// start is reported as such instead of timing out.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!("{} exited: {status}", self.name),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let pid = self.pid();
        // Remember the children now: once the parent is gone they are re-parented.
        let descendants = descendants(pid);
        signal("TERM", pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for child in descendants {
            if Path::new(&format!("/proc/{child}")).exists() {
                signal("KILL", child);
            }
        }
    }
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `command` itself, or `taskset -c <cpu> command` (taskset execs, so the pid stays).
pub fn pinned(command: &Command, cpu: Option<usize>) -> Command {
    let mut out = match cpu {
        Some(cpu) => {
            let mut taskset = Command::new("taskset");
            taskset
                .arg("-c")
                .arg(cpu.to_string())
                .arg(command.get_program());
            taskset
        }
        None => Command::new(command.get_program()),
    };
    out.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => out.env(key, value),
            None => out.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        out.current_dir(dir);
    }
    out
}

/// The fields of `/proc/<pid>/stat` after the command name (which may contain spaces):
/// index 0 is field 3 (`state`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    Some(after_comm.split_whitespace().map(str::to_owned).collect())
}

/// Every living process below `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // Field 4 (ppid) is index 1 after the command name.
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = BTreeSet::from([root]);
    loop {
        let before = found.len();
        for (pid, ppid) in &parents {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.remove(&root);
    found.into_iter().collect()
}

/// `root` and all its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    pids.extend(descendants(root));
    pids
}

/// The executable name of a process (`/proc/<pid>/comm`, at most 15 bytes).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// User + system CPU time of the processes (all their threads), in clock ticks.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let fields = stat_fields(*pid)?;
            // utime and stime are fields 14 and 15.
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum()
}

/// CPU time the machine's processes spent (user, nice and system columns of the first line
/// of `/proc/stat`), in clock ticks summed over all CPUs. Interrupt and softirq time are
/// left out: on loopback most of it is the benchmark's own packets, charged to no process.
pub fn system_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|line| line.starts_with("cpu "))
        .map(|line| {
            line.split_whitespace()
                .skip(1)
                .take(3)
                .filter_map(|n| n.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// CPU time of this process's children that exited and were waited for (`cutime` +
/// `cstime`), e.g. a finished wrk run.
pub fn reaped_children_ticks() -> u64 {
    stat_fields(std::process::id())
        .and_then(|fields| {
            // cutime and cstime are fields 16 and 17.
            let cutime: u64 = fields.get(13)?.parse().ok()?;
            let cstime: u64 = fields.get(14)?.parse().ok()?;
            Some(cutime + cstime)
        })
        .unwrap_or(0)
}

/// Resident memory of the processes, in KiB (`VmRSS`).
pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Clock ticks per second for `/proc/<pid>/stat` times (`getconf CLK_TCK`, else the
/// Linux USER_HZ of 100).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_memory_and_a_child_tree() {
        let me = std::process::id();
        assert!(rss_kib(&[me]) > 0);
        // Burn a little CPU so the counters are not all zero.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        assert!(x != 1);
        assert!(cpu_ticks(&[me]) > 0);

        let mut sleeper = Command::new("sleep").arg("5").spawn().unwrap();
        assert!(descendants(me).contains(&sleeper.id()));
        assert_eq!(comm(sleeper.id()).as_deref(), Some("sleep"));
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }

    #[test]
    fn machine_and_reaped_child_cpu_time_is_counted() {
        let busy_before = system_busy_ticks();
        let reaped_before = reaped_children_ticks();
        // A child that burns CPU for a while, then is waited for.
        let status = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(reaped_children_ticks() > reaped_before);
        assert!(system_busy_ticks() > busy_before);
    }

    #[test]
    fn pinning_wraps_with_taskset() {
        let mut command = Command::new("nginx");
        command.args(["-c", "x.conf"]);
        let wrapped = pinned(&command, Some(1));
        assert_eq!(wrapped.get_program(), "taskset");
        let args: Vec<_> = wrapped.get_args().collect();
        assert_eq!(args, ["-c", "1", "nginx", "-c", "x.conf"]);
        assert_eq!(pinned(&command, None).get_program(), "nginx");
    }
}
