//! The refresh loop: one task per AWS source, one assembler, and readiness.
//!
//! Each source ([`crate::sources::planned`]) runs as its own task ([`Runner`]): its own
//! schedule, jitter, backoff and API timeouts, and it publishes its whole set only when that
//! changed. No source ever waits on another, and this loop never waits on AWS: it only
//! gathers what the tasks publish, so a reload or a stop is never held up by a hung API.
//!
//! When an answer changes, the assembler rebuilds the table from the config plus every
//! source's last good answer — off the runtime's worker threads — swaps it in, logs the
//! records added and removed when it *answers* differently (`Snapshot::answers_like`:
//! records, weights, set identifiers, SOA settings — not formatted text), and writes the
//! state file ([`crate::state_file`]). Of private zones with one name in two sources, the
//! earlier source's wins whole.
//!
//! Ready means: every source has an answer, fresh or from the state file, or has gone
//! without one for `refresh.ready_timeout_secs` (a new instance during a regional outage
//! still comes into service for every other name). Once ready, hubdns stays ready: a source
//! added by a reload does not take a serving instance out of service. Until then the board
//! names the sources still waited for, and `/readyz` shows them.
//!
//! A reload ([`Update`]) replaces the task set: sources whose id and settings are unchanged
//! keep their task, answer and schedule; changed or new ones start at once (a changed one
//! keeps serving its old answer until its new task answers); removed ones are cancelled and
//! dropped. The table is rebuilt from the new config straight away.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, EventsConfig},
    dns::forwarder::Forwarder,
    events::Change,
    assemble::build_snapshot,
    snapshot::{Dropped, Node, SharedSnapshot, Snapshot},
    sources::{
        self, Env, OrgAccounts, OrgListing, Planned, SourceOutput, SubnetNeed, organization,
        runner::{Published, Runner},
    },
    state_file,
    status::{OrganizationStatus, SourceStatus, StatusBoard},
};

/// How many added / removed records a swap names at info level (the rest at debug).
const DIFF_LOG_LINES: usize = 20;

/// How often, and how long apart, a check of signed parent zones asks again about apexes the
/// upstreams gave no answer about.
const SIGNED_CHECK_TRIES: usize = 10;
const SIGNED_CHECK_RETRY: Duration = Duration::from_secs(60);

/// A new config for the loop, from a reload.
pub struct Update {
    /// The new config (already validated).
    pub config: Config,
    /// The forwarder now serving, for Route 53 aliases to outside names.
    pub forwarder: Arc<Forwarder>,
    /// Told once the table built from the new config is live.
    pub applied: oneshot::Sender<()>,
}

/// A source's task, as the loop keeps it.
struct Task {
    id: String,
    /// The settings it was started with (see [`Planned::settings`]).
    settings: String,
    generation: u64,
    /// When it started: readiness stops waiting for it `ready_timeout_secs` later.
    started: Instant,
    cancel: CancellationToken,
    /// Change events, for the source to judge.
    changes: mpsc::UnboundedSender<Arc<Change>>,
}

/// One organization's listing task.
struct Lister {
    how: OrgListing,
    started: Instant,
    listed: bool,
    cancel: CancellationToken,
}

/// Runs the sources' tasks and rebuilds the snapshot as they answer.
pub struct Refresher {
    config: Config,
    /// For Route 53 aliases to names outside every zone, resolved at refresh time.
    forwarder: Arc<Forwarder>,
    snapshot: SharedSnapshot,
    tasks: Vec<Task>,
    /// Each source's last good answer (fresh or from the state file), by id.
    outputs: HashMap<String, Arc<SourceOutput>>,
    /// What the tasks share; replaced on reload.
    env: watch::Sender<Env>,
    publish: mpsc::UnboundedSender<Published>,
    published: Option<mpsc::UnboundedReceiver<Published>>,
    generations: u64,
    /// Change events from the queue's consumer, handed to every task.
    change_tx: mpsc::UnboundedSender<Arc<Change>>,
    change_rx: Option<mpsc::UnboundedReceiver<Arc<Change>>>,
    /// The events queue's consumer, with the settings it was started with.
    consumer: Option<(EventsConfig, CancellationToken)>,
    /// Whether the events queue answered its last read (the poll interval depends on it).
    events_flowing: watch::Sender<bool>,
    /// The accounts of each organization listed so far (or known from the state file).
    orgs: OrgAccounts,
    /// The organizations' listers: how each lists, when it started, and whether it has
    /// listed yet (readiness waits for a first listing as for a source's first answer).
    listers: Vec<Lister>,
    listed_tx: mpsc::UnboundedSender<organization::Listed>,
    listed_rx: Option<mpsc::UnboundedReceiver<organization::Listed>>,
    ready: watch::Sender<bool>,
    board: Arc<StatusBoard>,
    /// Checks of signed parent zones started; a check stops retrying once a newer one began.
    signed_checks: Arc<AtomicU64>,
}

/// What woke the loop.
enum Wake {
    Stop,
    Update(Update),
    Published(Published),
    Change(Arc<Change>),
    Listed(organization::Listed),
    /// The events queue started or stopped answering.
    EventsFlowing,
    Timer,
}

impl Refresher {
    /// Restores every source's last good answer from the state file and puts the first
    /// table in `snapshot`. Makes no AWS call and starts no task: [`Refresher::run`] does,
    /// so hubdns serves at once.
    pub async fn new(
        config: &Config,
        snapshot: SharedSnapshot,
        forwarder: Arc<Forwarder>,
        board: Arc<StatusBoard>,
    ) -> (Self, watch::Receiver<bool>) {
        let (mut restored, replaceable) = config.refresh.state_file.as_deref().map_or((Default::default(), false), state_file::read_checked);
        let orgs = sources::orgs_in_state(config, &restored.keys().collect::<Vec<_>>());
        let mut outputs = HashMap::new();
        for planned in sources::planned(config, &orgs) {
            if let Some(output) = restored.remove(&planned.id) {
                tracing::info!(source = %planned.id, records = output.records.len(), fetched_at = %output.fetched_at, "restored from the state file");
                outputs.insert(planned.id, output);
            }
        }
        let (ready, ready_rx) = watch::channel(false);
        let (publish, published) = mpsc::unbounded_channel();
        let (env, _) = watch::channel(env_of(config, &forwarder, false));
        let (change_tx, change_rx) = mpsc::unbounded_channel();
        let (listed_tx, listed_rx) = mpsc::unbounded_channel();
        let refresher = Self {
            config: config.clone(),
            forwarder,
            snapshot,
            tasks: Vec::new(),
            outputs,
            env,
            publish,
            published: Some(published),
            generations: 0,
            change_tx,
            change_rx: Some(change_rx),
            consumer: None,
            events_flowing: watch::channel(false).0,
            orgs,
            listers: Vec::new(),
            listed_tx,
            listed_rx: Some(listed_rx),
            ready,
            board,
            signed_checks: Arc::default(),
        };
        let planned = sources::planned(config, &refresher.orgs);
        let (snapshot, dropped) = build_snapshot(config, &refresher.ordered_outputs(&planned));
        let listed = sources::org_listings(config).iter().all(|l| refresher.orgs.contains_key(&l.key));
        let ready = listed && planned.iter().all(|p| refresher.outputs.contains_key(&p.id));
        report_dropped(&dropped, ready);
        refresher.snapshot.store(Arc::new(snapshot));
        crate::memory::release_freed();
        // Every source restored from the state file: ready before AWS answers.
        refresher.ready.send_replace(ready);
        // A state file that cannot be written is reported at start — but one that could not
        // be read (another version's, say) is never written over: that waits for fresh
        // answers. What was just read is not written again (thousands of endpoints make
        // megabytes, between exec and the first answer); only whether it could be is tried.
        if let Some(path) = config.refresh.state_file.as_ref().filter(|_| replaceable) {
            if refresher.outputs.is_empty() {
                save_state(path, std::collections::BTreeMap::new());
            } else if let Err(error) = state_file::check_writable(path) {
                tracing::error!(path = %path.display(), %error, "cannot write the state file; serving goes on");
            }
        }
        refresher.look_for_signed_parents();
        (refresher, ready_rx)
    }

    /// Starts every source's task, then gathers their answers until `shutdown` is cancelled,
    /// applying reloads as they come. Cancelling `shutdown` ends every task at once.
    pub async fn run(mut self, shutdown: CancellationToken, mut updates: mpsc::Receiver<Update>) {
        let (Some(mut published), Some(mut changes), Some(mut listed)) = (self.published.take(), self.change_rx.take(), self.listed_rx.take())
        else {
            return;
        };
        let mut flowing = self.events_flowing.subscribe();
        // Answers restored from the state file kept their rows open, to serve sooner
        // (`RecordList::from_stored`): sealed now, while the first table is already served.
        for output in self.outputs.values_mut() {
            Arc::make_mut(output).records.compact();
        }
        crate::memory::release_freed();
        self.replace_tasks(sources::planned(&self.config, &self.orgs), &shutdown);
        self.replace_consumer(&shutdown);
        self.replace_listers(&shutdown);
        self.update_readiness();
        loop {
            let deadline = self.readiness_deadline();
            let wake = tokio::select! {
                biased;
                () = shutdown.cancelled() => Wake::Stop,
                update = updates.recv() => update.map_or(Wake::Stop, Wake::Update),
                Some(p) = published.recv() => Wake::Published(p),
                Some(change) = changes.recv() => Wake::Change(change),
                Some(accounts) = listed.recv() => Wake::Listed(accounts),
                Ok(()) = flowing.changed() => Wake::EventsFlowing,
                () = sleep_until(deadline) => Wake::Timer,
            };
            let changed = match wake {
                Wake::Stop => return,
                Wake::Update(update) => {
                    self.apply(update, &shutdown).await;
                    false
                }
                Wake::Published(first) => {
                    // Everything published meanwhile goes into one rebuild.
                    let mut changed = self.take(first);
                    while let Ok(next) = published.try_recv() {
                        changed |= self.take(next);
                    }
                    changed
                }
                Wake::Change(change) => {
                    for task in &self.tasks {
                        let _ = task.changes.send(change.clone());
                    }
                    false
                }
                Wake::Listed((key, accounts)) => self.take_listing(key, accounts, &shutdown),
                Wake::EventsFlowing => {
                    self.update_env();
                    false
                }
                Wake::Timer => false,
            };
            if changed && !self.rebuild(&shutdown).await {
                return;
            }
            self.update_readiness();
        }
    }

    /// Keeps a task's answer, unless a newer task of its id has replaced it.
    fn take(&mut self, published: Published) -> bool {
        let current = self.tasks.iter().any(|t| t.id == published.id && t.generation == published.generation);
        if current {
            self.outputs.insert(published.id, published.output);
        }
        current
    }

    /// Takes a reloaded config: replaces the task set and rebuilds the table.
    async fn apply(&mut self, update: Update, shutdown: &CancellationToken) {
        let new_forwarder = !Arc::ptr_eq(&self.forwarder, &update.forwarder);
        self.config = update.config;
        self.forwarder = update.forwarder;
        self.update_env();
        self.replace_listers(shutdown);
        self.replace_tasks(sources::planned(&self.config, &self.orgs), shutdown);
        self.replace_consumer(shutdown);
        self.rebuild(shutdown).await;
        if new_forwarder {
            self.look_for_signed_parents();
        }
        let _ = update.applied.send(());
    }

    /// Makes the running tasks those of `planned`: a task whose id and settings are unchanged
    /// keeps running; others are cancelled, and new ones started (due at once) with the last
    /// answer of their id, served until they answer themselves.
    fn replace_tasks(&mut self, planned: Vec<Planned>, shutdown: &CancellationToken) {
        let mut old = std::mem::take(&mut self.tasks);
        let mut board = Vec::with_capacity(planned.len());
        let previous = std::mem::take(&mut self.board.lock().sources);
        for plan in planned {
            if let Some(i) = old.iter().position(|t| t.id == plan.id && t.settings == plan.settings) {
                let task = old.swap_remove(i);
                board.push(previous.iter().find(|s| s.id == task.id).cloned().unwrap_or_default());
                self.tasks.push(task);
                continue;
            }
            // The same id with new settings, or the same settings under a new id (another
            // source of its kind and region came or went): the old task gives way, and its
            // answer and start time carry over until the new task answers.
            let previous = old.iter().position(|t| t.id == plan.id).or_else(|| old.iter().position(|t| t.settings == plan.settings));
            let mut started = Instant::now();
            if let Some(i) = previous {
                let replaced = old.swap_remove(i);
                replaced.cancel.cancel();
                started = replaced.started;
                if let Some(output) = self.outputs.remove(&replaced.id) {
                    self.outputs.insert(plan.id.clone(), output);
                }
                tracing::info!(source = %plan.id, was = %replaced.id, "source changed by reload; asking it now");
            }
            let last = self.outputs.get(&plan.id).cloned();
            board.push(SourceStatus {
                id: plan.id.clone(),
                kind: plan.kind,
                region: plan.region.clone(),
                restored: last.is_some(),
                records: last.as_ref().map_or(0, |o| o.records.len()),
                endpoints: last.as_ref().map(|o| o.endpoints.clone()).unwrap_or_default(),
                ..SourceStatus::default()
            });
            self.generations += 1;
            let (changes, changes_rx) = mpsc::unbounded_channel();
            let task = Task {
                id: plan.id.clone(),
                settings: plan.settings,
                generation: self.generations,
                started,
                cancel: shutdown.child_token(),
                changes,
            };
            let runner = Runner {
                id: plan.id,
                generation: task.generation,
                env: self.env.subscribe(),
                board: self.board.clone(),
                publish: self.publish.clone(),
                changes: changes_rx,
                cancel: task.cancel.clone(),
                last,
            };
            tokio::spawn(runner.run(plan.build));
            self.tasks.push(task);
        }
        for removed in old {
            tracing::info!(source = %removed.id, "source removed by reload");
            removed.cancel.cancel();
            self.outputs.remove(&removed.id);
        }
        self.board.lock().sources = board;
    }

    /// Hands the sources what they are made with now; they fetch again at once when it
    /// changed (a reloaded TTL, the poll interval as the events queue comes and goes).
    fn update_env(&self) {
        let env = env_of(&self.config, &self.forwarder, *self.events_flowing.borrow());
        self.env.send_if_modified(|old| {
            let changed = !old.same_as(&env);
            *old = env;
            changed
        });
    }

    /// Takes an organization's listing: when its accounts changed, starts the tasks of new
    /// accounts and drops those of accounts gone (true: the table needs a rebuild).
    fn take_listing(&mut self, key: String, accounts: Vec<String>, shutdown: &CancellationToken) -> bool {
        let Some(lister) = self.listers.iter_mut().find(|l| l.how.key == key) else { return false };
        lister.listed = true;
        let known = self.orgs.get(&key);
        if known == Some(&accounts) {
            return false;
        }
        let before: BTreeSet<&String> = known.into_iter().flatten().collect();
        let after: BTreeSet<&String> = accounts.iter().collect();
        let added: Vec<&&String> = after.difference(&before).collect();
        let gone: Vec<&&String> = before.difference(&after).collect();
        tracing::info!(organization = %key, accounts = accounts.len(), ?added, ?gone, "organization's accounts changed");
        self.orgs.insert(key, accounts);
        self.replace_tasks(sources::planned(&self.config, &self.orgs), shutdown);
        true
    }

    /// Starts and stops the organizations' listers as the config now asks; a reload lists
    /// every organization again.
    fn replace_listers(&mut self, shutdown: &CancellationToken) {
        for lister in self.listers.drain(..) {
            lister.cancel.cancel();
        }
        let wanted = sources::org_listings(&self.config);
        // An organization now listed another way (a new organization_role_arn) keeps the
        // accounts known until its first listing, so a reload drops none of their names.
        let gone: Vec<String> = self.orgs.keys().filter(|key| !wanted.iter().any(|w| &&w.key == key)).cloned().collect();
        let known: Vec<String> = gone.iter().flat_map(|key| self.orgs.remove(key).unwrap_or_default()).collect();
        for how in &wanted {
            if !self.orgs.contains_key(&how.key) && !known.is_empty() {
                let mut accounts = known.clone();
                accounts.sort();
                accounts.dedup();
                self.orgs.insert(how.key.clone(), accounts);
            }
        }
        let interval = Duration::from_secs(self.config.interval_secs());
        let max_backoff = Duration::from_secs(self.config.refresh.max_backoff_secs);
        {
            let mut board = self.board.lock();
            let previous = std::mem::take(&mut board.organizations);
            board.organizations = wanted
                .iter()
                .map(|how| {
                    let known = previous.iter().find(|o| o.key == how.key).cloned();
                    let accounts = self.orgs.get(&how.key).map_or(0, Vec::len);
                    OrganizationStatus { key: how.key.clone(), accounts, ..known.unwrap_or_default() }
                })
                .collect();
        }
        for how in wanted {
            let cancel = shutdown.child_token();
            let board = self.board.clone();
            tokio::spawn(organization::keep_listing(how.clone(), interval, max_backoff, self.listed_tx.clone(), board, cancel.clone()));
            let listed = self.orgs.contains_key(&how.key);
            self.listers.push(Lister { how, started: Instant::now(), listed, cancel });
        }
    }

    /// Starts, restarts or stops the events queue's consumer as `[events]` now says.
    fn replace_consumer(&mut self, shutdown: &CancellationToken) {
        if self.consumer.as_ref().map(|(c, _)| c) == self.config.events.as_ref() {
            return;
        }
        if let Some((_, cancel)) = self.consumer.take() {
            cancel.cancel();
            self.board.lock().events = None;
            self.events_flowing.send_replace(false);
        }
        if let Some(config) = self.config.events.clone() {
            let cancel = shutdown.child_token();
            tracing::info!(queue = %config.queue_url, "reading change events");
            self.events_flowing.send_replace(false);
            let flowing = self.events_flowing.clone();
            tokio::spawn(crate::events::consume(config.clone(), self.change_tx.clone(), self.board.clone(), flowing, cancel.clone()));
            self.consumer = Some((config, cancel));
        }
    }

    /// The answers of `planned`'s sources that are known, in config order.
    fn ordered_outputs(&self, planned: &[Planned]) -> Vec<Arc<SourceOutput>> {
        planned.iter().filter_map(|p| self.outputs.get(&p.id).cloned()).collect()
    }

    /// Rebuilds the table on a blocking thread and swaps it in; writes the state file.
    /// False when shutdown came first.
    async fn rebuild(&mut self, shutdown: &CancellationToken) -> bool {
        let outputs: Vec<Arc<SourceOutput>> = self.tasks.iter().filter_map(|t| self.outputs.get(&t.id).cloned()).collect();
        let config = self.config.clone();
        let live = self.snapshot.load_full();
        let ready = *self.ready.borrow() || self.waiting().is_empty();
        let state = config.refresh.state_file.clone().map(|path| {
            let sources = self.tasks.iter().filter_map(|t| Some((t.id.clone(), self.outputs.get(&t.id)?.clone()))).collect();
            (path, sources)
        });
        let build = tokio::task::spawn_blocking(move || {
            let (snapshot, dropped) = build_snapshot(&config, &outputs);
            let changed = !snapshot.answers_like(&live);
            if changed {
                report_dropped(&dropped, ready);
                log_diff(&live, &snapshot);
            }
            drop(live);
            if let Some((path, sources)) = state {
                save_state(&path, sources);
            }
            (snapshot, changed)
        });
        let built = tokio::select! {
            () = shutdown.cancelled() => return false,
            built = build => built,
        };
        match built {
            Ok((snapshot, changed)) => {
                self.snapshot.store(Arc::new(snapshot));
                if changed {
                    self.look_for_signed_parents();
                }
                tokio::task::spawn_blocking(crate::memory::release_freed);
            }
            Err(error) => tracing::error!(%error, "building the table failed; the one in service stays"),
        }
        true
    }

    /// Sets readiness, and names on the board the sources still waited for.
    fn update_readiness(&self) {
        let timeout = Duration::from_secs(self.config.refresh.ready_timeout_secs);
        let now = Instant::now();
        let waiting = self.waiting();
        let was = *self.ready.borrow();
        let ready = was || waiting.iter().all(|(_, started)| *started + timeout <= now);
        if ready && !was && !waiting.is_empty() {
            let ids: Vec<&str> = waiting.iter().map(|(id, _)| id.as_str()).collect();
            tracing::warn!(sources = ?ids, timeout_secs = timeout.as_secs(), "ready without these sources' first answer: they keep failing");
        }
        self.board.lock().unanswered = waiting.into_iter().map(|(id, _)| id).collect();
        self.ready.send_if_modified(|was| std::mem::replace(was, ready) != ready);
    }

    /// When readiness next needs a look: the earliest time a waited-for source times out.
    fn readiness_deadline(&self) -> Option<Instant> {
        if *self.ready.borrow() {
            return None;
        }
        let timeout = Duration::from_secs(self.config.refresh.ready_timeout_secs);
        self.waiting().into_iter().map(|(_, started)| started + timeout).min()
    }

    /// What readiness waits for, with when each started: sources without an answer, and
    /// organizations not listed yet (their accounts' sources are still to come).
    fn waiting(&self) -> Vec<(String, Instant)> {
        let sources = self.tasks.iter().filter(|t| !self.outputs.contains_key(&t.id)).map(|t| (t.id.clone(), t.started));
        let orgs = self.listers.iter().filter(|l| !l.listed).map(|l| (format!("organization ({})", l.how.key), l.started));
        sources.chain(orgs).collect()
    }

    /// Asks upstream, on a task of its own (a slow upstream holds up nothing else), whether
    /// owned apexes lie in publicly signed zones; warns of each one newly found. Apexes the
    /// upstreams gave no answer about are asked again a minute later (up to ten times), until
    /// the next change of the table starts a check of its own.
    fn look_for_signed_parents(&self) {
        if !self.config.forward.check_signed_parents {
            return;
        }
        let shared = self.snapshot.clone();
        let forwarder = self.forwarder.clone();
        let generation = self.signed_checks.fetch_add(1, Ordering::Relaxed) + 1;
        let checks = self.signed_checks.clone();
        tokio::spawn(async move {
            for _ in 0..SIGNED_CHECK_TRIES {
                // Listing the apexes walks the whole table (70 ms at 15,000 names): off the
                // path to the first answer, and off the runtime's threads. Listed again for
                // each try rather than kept through the wait (megabytes at 15,000 names); the
                // table is this check's until a newer check begins.
                let snapshot = shared.load_full();
                let Ok(apexes) = tokio::task::spawn_blocking(move || crate::signed_parents::apexes(&snapshot)).await else { return };
                let (found, unknown) = crate::signed_parents::find(&forwarder, apexes).await;
                if checks.load(Ordering::Relaxed) != generation {
                    return;
                }
                for overlap in forwarder.set_signed_overlaps(found, &unknown) {
                    tracing::warn!(name = %overlap.name, signed_zone = %overlap.signed_zone, "{}", overlap.advice());
                }
                // Only the count waits with the task: the names are listed again for the next
                // try (15,000 endpoint names held 1.8 MB through the minute while an upstream
                // was down, heaptrack).
                let unanswered = unknown.len();
                drop(unknown);
                if unanswered == 0 {
                    return;
                }
                tracing::debug!(apexes = unanswered, "no answer about some owned apexes' public zones; asking again in a minute");
                tokio::time::sleep(SIGNED_CHECK_RETRY).await;
            }
        });
    }
}

/// What the sources' tasks share, from `config`.
fn env_of(config: &Config, forwarder: &Arc<Forwarder>, events_flowing: bool) -> Env {
    Env {
        ttl: config.answers.ttl,
        interval: Duration::from_secs(config.interval_secs_when(events_flowing)),
        max_backoff: Duration::from_secs(config.refresh.max_backoff_secs),
        forwarder: forwarder.clone(),
        // Subnets place clients by AZ, and name their VPCs in the query log.
        subnets: match (config.az.enabled(), config.az.learn_subnets, config.log.queries != crate::querylog::Target::Off) {
            (_, true, true) | (true, true, _) => SubnetNeed::Learn,
            (true, false, _) => SubnetNeed::EniZones,
            _ => SubnetNeed::None,
        },
    }
}

/// Writes the state file; a failure is logged, and serving goes on.
fn save_state(path: &std::path::Path, sources: std::collections::BTreeMap<String, Arc<SourceOutput>>) {
    if let Err(error) = state_file::write(path, sources) {
        tracing::error!(path = %path.display(), %error, "cannot write the state file; serving goes on");
    }
}

/// Sleeps until `deadline`, or forever.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Logs what a build left out: at warn once every source has answered, before that at debug
/// (an alias may point at a name still to come).
fn report_dropped(dropped: &[Dropped], ready: bool) {
    for item in dropped {
        if ready {
            tracing::warn!(%item, "left out of the snapshot");
        } else {
            tracing::debug!(%item, "left out of the snapshot until every source has answered");
        }
    }
}

/// One line per record of `node` for the log, without provenance (which changes with every
/// fetch).
fn record_lines(node: Option<&Node>, lines: &mut BTreeSet<String>) {
    let Some(node) = node else { return };
    let name = node.name().to_lowercase();
    for set in node.rrsets() {
        let weight = set.weight().map(|w| format!(" [set {} weight {}]", w.set, w.weight)).unwrap_or_default();
        lines.extend(set.data().map(|data| format!("{name} {} {} {data}{weight}", set.ttl, set.rtype)));
    }
}

/// Logs what a swap adds and removes, and how many records the new table left out to
/// conflicts. Only the names whose answers changed are spelled out.
fn log_diff(old: &Snapshot, new: &Snapshot) {
    let (mut before, mut after) = (BTreeSet::new(), BTreeSet::new());
    for (was, is) in new.changed_since(old) {
        record_lines(was, &mut before);
        record_lines(is, &mut after);
    }
    let added: Vec<&String> = after.difference(&before).collect();
    let removed: Vec<&String> = before.difference(&after).collect();
    let conflicts = new.conflicts();
    tracing::info!(added = added.len(), removed = removed.len(), records = new.record_count(), conflicts, "snapshot swapped");
    for (i, line) in added.iter().enumerate() {
        if i < DIFF_LOG_LINES {
            tracing::info!(record = %line, "added");
        } else {
            tracing::debug!(record = %line, "added");
        }
    }
    for (i, line) in removed.iter().enumerate() {
        if i < DIFF_LOG_LINES {
            tracing::info!(record = %line, "removed");
        } else {
            tracing::debug!(record = %line, "removed");
        }
    }
}
