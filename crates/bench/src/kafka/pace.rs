//! The send schedule of paced runs: message `i` is due at `start + i / rate`.
//!
//! The sender sleeps until the next message is due and then sends every message that is due by
//! the time it wakes, so sleeping late (a VM's timer is coarse) delays a few messages but never
//! lowers the average rate. How far behind the schedule a send went is tracked, so a run whose
//! client or server could not keep up says so instead of quietly sending at a lower rate.

use std::time::{Duration, Instant};

/// When each message of a paced run is due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    /// Message 0 is due at `start`, then one every `1 / rate` seconds.
    pub fn new(start: Instant, rate: f64) -> Schedule {
        Schedule { start, rate }
    }

    /// When message `i` is due.
    pub fn due_at(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many messages are due at `now`: those with `due_at(i) <= now`.
    pub fn due_by(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        let n = (elapsed * self.rate).floor() as u64 + 1;
        // Floating point can put the boundary one message either side; the schedule itself
        // decides.
        if self.due_at(n) <= now {
            n + 1
        } else if n > 0 && self.due_at(n - 1) > now {
            n - 1
        } else {
            n
        }
    }
}

/// How far a paced sender fell behind its schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lag {
    /// Messages sent more than [`LATE`] after they were due.
    pub late: u64,
    /// The largest delay of a send behind its due time.
    pub max: Duration,
}

/// A send this far behind schedule counts as late.
pub const LATE: Duration = Duration::from_millis(1);

impl Lag {
    /// Notes that a message due at `due` went out at `sent`.
    pub fn note(&mut self, due: Instant, sent: Instant) {
        let behind = sent.saturating_duration_since(due);
        self.max = self.max.max(behind);
        if behind > LATE {
            self.late += 1;
        }
    }
}

/// Runs `send(i)` for `i in 0..total` on `schedule`, sleeping between messages; stops early if
/// `send` fails. Returns the lag and the time from the first send to the last.
pub fn paced<E>(
    schedule: Schedule,
    total: u64,
    mut send: impl FnMut(u64) -> Result<(), E>,
) -> Result<(Lag, Duration), E> {
    let mut lag = Lag::default();
    let mut next = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while next < total {
        let now = Instant::now();
        let due = schedule.due_by(now).min(total);
        if due <= next {
            std::thread::sleep(schedule.due_at(next).saturating_duration_since(now));
            continue;
        }
        while next < due {
            send(next)?;
            last = Instant::now();
            first.get_or_insert(last);
            lag.note(schedule.due_at(next), last);
            next += 1;
        }
    }
    Ok((lag, first.map_or(Duration::ZERO, |f| last - f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_by_counts_messages_due_so_far() {
        let start = Instant::now();
        let s = Schedule::new(start, 1000.0);
        assert_eq!(s.due_by(start), 1);
        assert_eq!(s.due_by(start + Duration::from_micros(999)), 1);
        assert_eq!(s.due_by(start + Duration::from_millis(1)), 2);
        assert_eq!(s.due_by(start + Duration::from_millis(10)), 11);
        for i in [0, 1, 7, 999, 123_456] {
            let at = s.due_at(i);
            assert_eq!(s.due_by(at), i + 1, "at message {i}'s due time");
        }
    }

    #[test]
    fn paced_sends_in_order_at_about_the_rate() {
        let mut seen = Vec::new();
        let started = Instant::now();
        let (lag, span) = paced::<()>(Schedule::new(Instant::now(), 2000.0), 100, |i| {
            seen.push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        // 100 messages at 2000/s: the last is due 49.5 ms after the first.
        assert!(span >= Duration::from_millis(49), "{span:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(lag.max < Duration::from_secs(1));
    }

    #[test]
    fn a_failing_send_stops_the_run() {
        let mut calls = 0;
        let r = paced(Schedule::new(Instant::now(), 1e6), 10, |i| {
            calls += 1;
            if i == 3 { Err("boom") } else { Ok(()) }
        });
        assert_eq!(r.unwrap_err(), "boom");
        assert_eq!(calls, 4);
    }

    #[test]
    fn lag_counts_late_sends() {
        let t = Instant::now();
        let mut lag = Lag::default();
        lag.note(t, t + Duration::from_micros(10));
        lag.note(t, t + Duration::from_millis(5));
        assert_eq!(lag.late, 1);
        assert_eq!(lag.max, Duration::from_millis(5));
    }
}
