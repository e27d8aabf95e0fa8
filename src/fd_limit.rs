//! Raising the open-file limit, so a herd of a thousand connections fits.
//!
//! Every connection is a file descriptor. `gclab demo` holds both ends of a thousand-request
//! herd in one process (about 2,000 descriptors), and a frontend under `cli herd` holds a
//! thousand client connections; many systems give a process a soft limit of 1,024 (macOS:
//! 256). The soft limit may be raised up to the hard limit without privileges, which is what
//! Go has done for every program since 1.19; we do the same at start-up.

/// Raises this process's soft limit on open files to its hard limit. Best effort: if it
/// cannot, the limit stays as it was, and a herd that exceeds it reports its errors.
pub fn raise() {
    #[cfg(unix)]
    {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            // macOS refuses more than OPEN_MAX (10,240) for the soft limit whatever the hard
            // limit says, so cap there rather than fail.
            let wanted = hard.min(if cfg!(target_os = "macos") {
                10_240
            } else {
                hard
            });
            if wanted > soft {
                let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted, hard);
            }
        }
    }
}
