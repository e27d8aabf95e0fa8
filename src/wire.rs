//! `gclab wire`: a slow network wire, for a kernel without `netem`.
//!
//! `lab/hosts.sh delay 20ms` asks the kernel's network emulator (`tc qdisc … netem`) to hold
//! every packet a lab host sends. Some kernels are built without it (`CONFIG_NET_SCH_NETEM`
//! unset; tc then says "Specified qdisc kind is unknown"). There hosts.sh hands the packets a
//! host sends to a netfilter queue instead (`iptables -j NFQUEUE`), and runs this program in
//! the host's namespace. It takes each queued packet, holds it for the delay, and gives it
//! back to the kernel, or drops one in a hundred for `loss 1%`. The kernel, TCP included,
//! sees what it would see with netem: a wire that takes time and sometimes loses a packet.
//!
//! Not part of the lesson: only the lab's hosts use it. The netlink protocol is the `nfq`
//! crate's; what is here is the holding.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nfq::{Queue, Verdict};

/// What the wire does to every packet it is given.
#[derive(Debug, Clone, Copy)]
pub struct Wire {
    /// The netfilter queue it reads (`iptables … -j NFQUEUE --queue-num N`).
    pub queue: u16,
    /// How long each packet is held.
    pub delay: Duration,
    /// The share of packets dropped, in percent.
    pub loss_percent: f64,
}

/// How long the wire sleeps between looks while packets come and go. One that arrives
/// meanwhile waits in the kernel's queue, so it is held up to this much longer than `delay`.
/// The `nfq` crate does not lend out its socket, which rules out waiting in `poll` for the
/// next packet; a short sleep is the price.
const BUSY: Duration = Duration::from_micros(200);

/// How long it sleeps once no packet has come for [`QUIET_AFTER`]: the first packet after a
/// quiet spell may be held up to 1 ms longer, and a quiet wire wakes 1,000 times a second,
/// not 5,000.
const QUIET: Duration = Duration::from_millis(1);
const QUIET_AFTER: Duration = Duration::from_secs(1);

/// Holds packets until `stop` is set, then lets every held packet go and returns.
pub fn run(wire: Wire, stop: Arc<AtomicBool>) -> Result<(), String> {
    let fail =
        |what: &str, e: std::io::Error| format!("netfilter queue {}: {what}: {e}", wire.queue);
    let mut queue = Queue::open().map_err(|e| fail("cannot open a netlink socket", e))?;
    queue
        .bind(wire.queue)
        .map_err(|e| fail("cannot bind (is another wire on it?)", e))?;
    // Headers are enough: the verdict does not send the packet back, only its id.
    queue
        .set_copy_range(wire.queue, 64)
        .map_err(|e| fail("cannot set the copy range", e))?;
    // A full queue lets packets through rather than dropping them: a wire that cannot keep
    // up adds no loss of its own.
    queue
        .set_fail_open(wire.queue, true)
        .map_err(|e| fail("cannot set fail-open", e))?;
    queue
        .set_queue_max_len(wire.queue, 65_536)
        .map_err(|e| fail("cannot set the queue length", e))?;
    queue.set_nonblocking(true);
    tracing::info!(
        "wire on netfilter queue {}: each packet held {}, {}% dropped",
        wire.queue,
        humantime::format_duration(wire.delay),
        wire.loss_percent
    );

    // Every packet is held for the same time, so they leave in the order they came.
    let mut held = VecDeque::new();
    let mut last_packet = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, message) = held.pop_front().expect("a front was just seen");
            queue
                .verdict(message)
                .map_err(|e| fail("cannot release a packet", e))?;
        }
        match queue.recv() {
            Ok(mut message) => {
                last_packet = now;
                if fastrand::f64() * 100.0 < wire.loss_percent {
                    message.set_verdict(Verdict::Drop);
                    queue
                        .verdict(message)
                        .map_err(|e| fail("cannot drop a packet", e))?;
                } else {
                    message.set_verdict(Verdict::Accept);
                    held.push_back((now + wire.delay, message));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let idle = if now - last_packet < QUIET_AFTER {
                    BUSY
                } else {
                    QUIET
                };
                let next = held
                    .front()
                    .map_or(idle, |(due, _)| due.saturating_duration_since(now));
                std::thread::sleep(next.min(idle));
            }
            // ENOBUFS: the kernel dropped messages while we slept. Those packets are lost,
            // as on a congested link; TCP resends them.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {}
            Err(e) => return Err(fail("cannot receive", e)),
        }
    }
    for (_, message) in held {
        queue
            .verdict(message)
            .map_err(|e| fail("cannot release a packet", e))?;
    }
    let _ = queue.unbind(wire.queue);
    Ok(())
}
