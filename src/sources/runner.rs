//! The task one AWS source runs as: its own schedule (interval ± 10 % jitter), its own backoff
//! (doubling up to `max_backoff_secs`), its own status on the board, and its answer published
//! to the refresh loop when — and only when — it changed.
//!
//! Sources never wait on one another: a region whose API hangs delays its own next answer and
//! nothing else (each API attempt ends at `api_timeout_secs`). Cancelling the task (a reload
//! that removed or changed the source, or shutdown) drops the call under way at once.
//!
//! What a fetch skipped is logged at warn when it first appears and at info when it goes
//! away, never again while it stays: a pending endpoint is one line, not one per interval.
//!
//! A change event that concerns the source (`Source::concerns`) makes it fetch after a short
//! pause that gathers the burst of events one change makes; then, until the source says
//! everything named has settled (an endpoint created `pending` turns `available` with no
//! event of its own), it is asked again after 1, 2, 4 … 60 s, for at most 15 minutes.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    events::Change,
    sources::{Build, Env, Source, SourceOutput},
    status::StatusBoard,
};

/// How long events are gathered before the fetch they ask for.
const EVENT_DEBOUNCE: Duration = Duration::from_millis(500);

/// How long after a change the source is asked again until it settles.
const SETTLE_FOR: Duration = Duration::from_secs(15 * 60);

/// The longest pause between those asks.
const SETTLE_MAX_STEP: Duration = Duration::from_secs(60);

/// A source's new answer, for the refresh loop.
pub struct Published {
    /// The source's id.
    pub id: String,
    /// Which task of that id sent it: a reload that changed the source starts a new task,
    /// and what the old one sent late is ignored.
    pub generation: u64,
    /// The answer.
    pub output: Arc<SourceOutput>,
}


/// One source's task.
pub struct Runner {
    /// The source's id.
    pub id: String,
    /// This task's generation (see [`Published::generation`]).
    pub generation: u64,
    /// Settings shared by every source; a reload may change them.
    pub env: watch::Receiver<Env>,
    /// Where the task writes its status.
    pub board: Arc<StatusBoard>,
    /// Where new answers go.
    pub publish: mpsc::UnboundedSender<Published>,
    /// Change events, every one: the source says which concern it.
    pub changes: mpsc::UnboundedReceiver<Arc<Change>>,
    /// Ends the task.
    pub cancel: CancellationToken,
    /// What the source said last (from the state file, or kept over a reload), to tell
    /// whether a fetch changed anything.
    pub last: Option<Arc<SourceOutput>>,
}

impl Runner {
    /// Sets the source up with `build` and refreshes it until cancelled.
    pub async fn run(self, build: Build) {
        let cancel = self.cancel.clone();
        tokio::select! {
            () = cancel.cancelled() => {}
            () = self.serve(build) => {}
        }
    }

    async fn serve(mut self, build: Build) {
        let source = build().await;
        if let Some(last) = &self.last {
            source.restore(last);
        }
        let mut failures = 0u32;
        let mut fresh = false;
        let mut reported: BTreeSet<String> = BTreeSet::new();
        // Since when, and how many times, the source has been asked again after a change.
        let mut settling: Option<(Instant, u32)> = None;
        loop {
            let env = self.env.borrow().clone();
            let started = Instant::now();
            self.board.update_source(&self.id, |s| {
                s.last_attempt = Some(SystemTime::now());
                s.runs += 1;
            });
            let result = source.fetch(&env).await;
            let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let fetched = result.is_ok();
            let mut wait = match result {
                Ok(output) => {
                    failures = 0;
                    self.report_skipped(&mut reported, &output.skipped);
                    tracing::info!(
                        source = %self.id,
                        records = output.records.len(),
                        aliases = output.aliases.len(),
                        endpoints = output.endpoints.len(),
                        zones = output.zones.len(),
                        skipped = output.skipped.len(),
                        took_ms,
                        "source refreshed"
                    );
                    self.board.update_source(&self.id, |s| {
                        s.last_success = s.last_attempt;
                        s.last_error = None;
                        s.consecutive_failures = 0;
                        s.restored = false;
                        s.last_duration_ms = took_ms;
                        s.records = output.records.len();
                        s.skipped.clone_from(&output.skipped);
                        s.endpoints = output.endpoints.clone();
                    });
                    // The first fresh answer is always published (it is no longer the state
                    // file's); later ones only when they would build another table.
                    if !fresh || self.last.as_ref().is_none_or(|last| !last.same_content(&output)) {
                        let output = Arc::new(output);
                        self.last = Some(output.clone());
                        let published = Published { id: self.id.clone(), generation: self.generation, output };
                        if self.publish.send(published).is_err() {
                            return; // the refresh loop has stopped
                        }
                    }
                    fresh = true;
                    jitter(env.interval)
                }
                Err(error) => {
                    failures += 1;
                    let exponent = failures.saturating_sub(1).min(16);
                    let wait = jitter(env.interval.saturating_mul(1 << exponent).min(env.max_backoff));
                    tracing::warn!(
                        source = %self.id,
                        %error,
                        failures,
                        retry_in_secs = wait.as_secs_f32(),
                        keeping = self.last.as_ref().map_or(0, |o| o.records.len()),
                        "source refresh failed; keeping its last good records"
                    );
                    self.board.update_source(&self.id, |s| {
                        s.failures += 1;
                        s.consecutive_failures = failures;
                        s.last_error = Some(error.to_string());
                        s.last_duration_ms = took_ms;
                    });
                    wait
                }
            };
            if let Some((since, asked)) = settling {
                if source.settled() || since.elapsed() >= SETTLE_FOR {
                    source.stop_settling();
                    settling = None;
                } else if fetched {
                    wait = wait.min(Duration::from_secs(1 << asked.min(6)).min(SETTLE_MAX_STEP));
                    settling = Some((since, asked + 1));
                }
            }
            if self.wait_for_due_or_change(wait, source.as_ref()).await {
                settling = Some((Instant::now(), 0));
            }
        }
    }

    /// Waits `wait`, or until a change event concerns the source (true: then after gathering
    /// the burst of events that change made).
    async fn wait_for_due_or_change(&mut self, wait: Duration, source: &dyn Source) -> bool {
        let due = Instant::now() + wait;
        loop {
            let change = tokio::select! {
                () = tokio::time::sleep_until(due) => return false,
                // New settings (a reload changed the TTL or the interval): fetch with them now.
                Ok(()) = self.env.changed() => return false,
                change = self.changes.recv() => change,
            };
            let Some(change) = change else {
                tokio::time::sleep_until(due).await;
                return false;
            };
            if source.concerns(&change) {
                tracing::info!(source = %self.id, action = %change.action, "change event: refreshing now");
                tokio::time::sleep(EVENT_DEBOUNCE).await;
                while let Ok(more) = self.changes.try_recv() {
                    source.concerns(&more);
                }
                return true;
            }
        }
    }

    /// Logs each skipped item once: at warn when it first appears, at info when it is gone.
    fn report_skipped(&self, reported: &mut BTreeSet<String>, skipped: &[String]) {
        let now: BTreeSet<String> = skipped.iter().cloned().collect();
        for reason in now.difference(reported) {
            tracing::warn!(source = %self.id, %reason, "left out");
        }
        for reason in reported.difference(&now) {
            tracing::info!(source = %self.id, %reason, "no longer left out");
        }
        *reported = now;
    }
}

/// `base` ± 10 %, so a fleet of hubdns instances does not call AWS in step.
pub fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.9 + fastrand::f64() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_secs(30));
            assert!(j >= Duration::from_secs(27) && j <= Duration::from_secs(33), "{j:?}");
        }
    }
}
