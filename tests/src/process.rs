//! Child processes that are killed when dropped, and free ports.

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Process {
    child: Option<Child>,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Process {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log file");
        let err = out.try_clone().expect("clone log file");
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_the_tests(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { child: Some(child) }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process gets no chance to clean up (crash tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The child gets SIGKILL when the thread that started it ends, so a test process that is
/// killed (SIGKILL, Ctrl-C: no destructor runs) leaves no Envoy or token-service behind. (The
/// thread, not the process: a test's processes are started and dropped by its own thread.)
fn die_with_the_tests(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls: prctl and getppid.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody would send the signal.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// A port nothing listens on, never handed out twice by this process, and below the kernel's
/// ephemeral range (32768+), so neither a parallel test nor an outgoing connection's source port
/// can take it between now and the moment our server binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start at a different place per test process, so concurrent test runs rarely meet.
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    let _ = NEXT.compare_exchange(0, start.max(1), Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let step = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = FIRST + step % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
