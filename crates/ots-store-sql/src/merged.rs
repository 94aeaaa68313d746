//! Shares and reveals without a passphrase, many per statement.
//!
//! A share inserts its metadata, its secret and any mail; a reveal without a passphrase
//! deletes its secret, marks its metadata received and returns the sealed row.
//!
//! - On Postgres every share and reveal that came while the last statement ran goes into
//!   the next one: one `WITH` that inserts the shares' rows from arrays (`unnest`) and deletes
//!   the reveals' secrets by `key = ANY(…)`, one round trip and one commit for the whole
//!   batch, whatever its size and mix, and one statement text (a few: the parts a batch does
//!   not need are left out), prepared once per connection. Concurrent requests reach it
//!   through the lanes of a [`Batcher`]. A statement is atomic: when one fails (a key
//!   conflict; a deadlock between two statements revealing the same keys in another order),
//!   nothing of it was written, and each of its requests runs again alone, so one request's
//!   failure stays its own.
//! - On SQLite the group commit's writer takes every share and reveal of its batch and runs
//!   them inside the batch's transaction, cut into runs of power-of-two length (see
//!   [`chunk_lengths`]) so that only a few statement texts are ever prepared: one insert per
//!   table, one `UPDATE` and one `DELETE` per run. A failed run fails the batch, which the
//!   writer rolls back and replays job by job (see `commit`).
//!
//! Reveal-once holds as before: the `DELETE` takes the row (on Postgres its row lock, across
//! processes; on SQLite the single writer), so of concurrent reveals exactly one gets the
//! row. Within a batch a key asked twice is deleted once and handed to the first asker.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use ots_domain::*;

use crate::batch::{chunk_lengths, Batcher, OwnThread};
use crate::held::Held;
use crate::outbox::MailRow;
use crate::rows::{self, METADATA_COLUMNS, OUTBOX_COLUMNS, SECRET_COLUMNS};
use crate::secrets::{placeholders, MetadataRow, SecretRow};
use crate::{store_err, Arg, Column, Conn, Dialect, InlineWriter, Param, SqlStore};

/// What one share writes.
pub(crate) type Share = Arc<(StoredSecret, Metadata, Option<OutboxMail>)>;

/// One reveal without a passphrase: the secret's key, the key ids whose rows this process can
/// open, and when it was asked.
#[derive(Clone)]
pub(crate) struct Reveal {
    pub key: String,
    pub key_ids: Arc<Vec<String>>,
    pub now: UnixTime,
}

/// One write the lanes merge.
pub(crate) enum Write {
    Share(Share),
    Reveal(Reveal),
}

/// Where a caller on SQLite folds its transaction's `BEGIN` into the first statement it runs
/// here and its `COMMIT` into the last: the whole batch is then a round trip or two to the
/// driver's worker thread.
#[derive(Clone, Copy, Default)]
pub(crate) struct Frame {
    pub begin: bool,
    pub commit: bool,
}

impl Frame {
    /// The frame of run `i` of `n`: the begin on the first, the commit on the last.
    fn of_run(self, i: usize, n: usize) -> Frame {
        Frame {
            begin: self.begin && i == 0,
            commit: self.commit && i + 1 == n,
        }
    }

    fn wrap(self, sql: String) -> String {
        match (self.begin, self.commit) {
            (false, false) => sql,
            (true, false) => format!("BEGIN IMMEDIATE; {sql}"),
            (false, true) => format!("{sql}; COMMIT"),
            (true, true) => format!("BEGIN IMMEDIATE; {sql}; COMMIT"),
        }
    }
}

/// The most jobs one batch takes: every client of a busy server at once, and well within
/// what one statement binds.
const MAX_BATCH: usize = 128;

/// The lanes of a store that merges concurrent writes.
pub(crate) struct Merge {
    writes: Batcher<Write, Option<StoredSecret>>,
}

impl Clone for Merge {
    fn clone(&self) -> Self {
        Self {
            writes: self.writes.clone(),
        }
    }
}

impl Merge {
    /// `lanes` lanes over `store` (which must not merge itself), each running one statement
    /// at a time on a connection it keeps. The lanes run on a thread of their own with a pool
    /// of their own, which `pool` makes there (see [`OwnThread`]); returns that pool too. If
    /// the thread cannot start, they run on the caller's runtime over `store`'s pool.
    pub(crate) fn start<D: Dialect>(
        mut store: SqlStore<D>,
        lanes: usize,
        pool: impl FnOnce() -> sqlx::Pool<D::Db>,
    ) -> (Self, Option<sqlx::Pool<D::Db>>) {
        let tally = store.tally.clone();
        let thread = match OwnThread::start("ots-store-lanes") {
            Ok(thread) => {
                let _there = thread.handle().enter();
                store.writer = pool();
                Some(thread)
            }
            Err(err) => {
                tracing::warn!(error = %err, "the store's lanes run on the server's workers");
                None
            }
        };
        let own_pool = thread.is_some().then(|| store.writer.clone());
        let writes = Batcher::start_on(
            thread,
            lanes,
            MAX_BATCH,
            tally,
            move |mut held: Held<D>, jobs| {
                let store = store.clone();
                async move {
                    let answers = store.write_now(&mut held, &jobs).await;
                    (held, answers)
                }
            },
        );
        (Self { writes }, own_pool)
    }

    pub(crate) async fn share(&self, share: Share) -> Result<(), StoreError> {
        self.writes.run(Write::Share(share)).await.map(|_| ())
    }

    pub(crate) async fn reveal(&self, reveal: Reveal) -> Result<Option<StoredSecret>, StoreError> {
        self.writes.run(Write::Reveal(reveal)).await
    }
}

impl<D: Dialect> crate::batch::Slot for Held<D> {
    fn release_idle(&mut self) {
        Held::release_idle(self)
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Runs `jobs` at once, without merging with any other caller's: one statement on a
    /// dialect whose `WITH` holds writes, else one transaction. One answer per job, in order
    /// (`None` for a share).
    pub(crate) async fn write_now(
        &self,
        held: &mut Held<D>,
        jobs: &[Write],
    ) -> Vec<Result<Option<StoredSecret>, StoreError>> {
        if D::WRITES_IN_WITH {
            return match held.take(self.pool()).await {
                Ok(mut conn) => {
                    let answers = in_one_statement::<D>(&mut conn, jobs).await;
                    let unreachable =
                        |a: &Result<_, StoreError>| matches!(a, Err(StoreError::Unavailable(_)));
                    if !answers.iter().any(unreachable) {
                        held.keep(conn);
                    }
                    // Otherwise back to the pool, whose ping on release closes it if broken.
                    answers
                }
                Err(err) => {
                    let err = store_err::<D>(err);
                    jobs.iter().map(|_| Err(err.clone())).collect()
                }
            };
        }
        let (shares, reveals) = split(jobs);
        let (shares, reveals) = (Arc::new(shares), Arc::new(reveals));
        let done = self
            .transact(move |conn| {
                let (shares, reveals) = (shares.clone(), reveals.clone());
                Box::pin(async move {
                    share_runs::<D>(conn, &shares, Frame::default()).await?;
                    reveal_all::<D>(conn, &reveals, Frame::default()).await
                })
            })
            .await;
        match done {
            Ok(revealed) => {
                let mut revealed = revealed.into_iter();
                jobs.iter()
                    .map(|job| match job {
                        Write::Share(_) => Ok(None),
                        Write::Reveal(_) => Ok(revealed.next().flatten()),
                    })
                    .collect()
            }
            Err(err) => jobs.iter().map(|_| Err(err.clone())).collect(),
        }
    }
}

/// The shares and the reveals of `jobs`, each in order.
fn split(jobs: &[Write]) -> (Vec<Share>, Vec<Reveal>) {
    let (mut shares, mut reveals) = (Vec::new(), Vec::new());
    for job in jobs {
        match job {
            Write::Share(share) => shares.push(share.clone()),
            Write::Reveal(reveal) => reveals.push(reveal.clone()),
        }
    }
    (shares, reveals)
}

/// Every job of a batch in one statement (Postgres): the shares with the reveals that may
/// open under the same key ids (all of them, in a process with one key ring); reveals under
/// other key ids, if any, in a statement each. A failed statement of several jobs is run
/// again job by job.
async fn in_one_statement<D: Dialect>(
    conn: &mut Conn<D>,
    jobs: &[Write],
) -> Vec<Result<Option<StoredSecret>, StoreError>> {
    let mut answers: Vec<Result<Option<StoredSecret>, StoreError>> =
        jobs.iter().map(|_| Ok(None)).collect();
    // Statements to run: the key ids of their reveals, and job indices; the shares go in
    // the first.
    type Statement<'j> = (Option<&'j Arc<Vec<String>>>, Vec<usize>);
    let mut statements: Vec<Statement> = vec![(None, Vec::new())];
    for (i, job) in jobs.iter().enumerate() {
        match job {
            Write::Share(_) => statements[0].1.push(i),
            // Nothing can open under no key id: nothing to take.
            Write::Reveal(reveal) if reveal.key_ids.is_empty() => {}
            Write::Reveal(reveal) => {
                match statements
                    .iter_mut()
                    .find(|(ids, _)| ids.is_none_or(|ids| ids == &reveal.key_ids))
                {
                    Some(statement) => {
                        statement.0 = Some(&reveal.key_ids);
                        statement.1.push(i);
                    }
                    None => statements.push((Some(&reveal.key_ids), vec![i])),
                }
            }
        }
    }
    for (_, indices) in statements.iter().filter(|(_, ix)| !ix.is_empty()) {
        match one_statement::<D>(conn, jobs, indices).await {
            Ok(taken) => fill(&mut answers, jobs, indices, taken),
            Err(err) if indices.len() == 1 => answers[indices[0]] = Err(err),
            Err(_) => {
                for &i in indices {
                    match one_statement::<D>(conn, jobs, &[i]).await {
                        Ok(taken) => fill(&mut answers, jobs, &[i], taken),
                        Err(err) => answers[i] = Err(err),
                    }
                }
            }
        }
    }
    answers
}

/// Hands each secret taken to the first of `indices` that asked for it; later askers of the
/// same key find it gone.
fn fill(
    answers: &mut [Result<Option<StoredSecret>, StoreError>],
    jobs: &[Write],
    indices: &[usize],
    taken: Vec<StoredSecret>,
) {
    let mut taken: HashMap<String, StoredSecret> =
        taken.into_iter().map(|s| (s.id.to_hex(), s)).collect();
    for &i in indices {
        if let Write::Reveal(reveal) = &jobs[i] {
            answers[i] = Ok(taken.remove(&reveal.key));
        }
    }
}

/// The parts of the merged statement, by what a batch holds.
#[derive(Clone, Copy)]
struct Parts {
    shares: bool,
    mail: bool,
    reveals: bool,
}

impl Parts {
    fn index(self) -> usize {
        usize::from(self.shares) | usize::from(self.mail) << 1 | usize::from(self.reveals) << 2
    }
}

/// Column types of the metadata, secret and mail rows, in [`METADATA_COLUMNS`],
/// [`SECRET_COLUMNS`] and [`OUTBOX_COLUMNS`] order.
const METADATA_TYPES: [&str; 14] = [
    "text", "text", "text", "text", "int8", "text", "int8", "int8", "int8", "int8", "text", "bool",
    "int8", "int8",
];
const SECRET_TYPES: [&str; 14] = [
    "text", "text", "bytea", "bytea", "bytea", "int8", "text", "int8", "bytea", "text", "text",
    "int8", "int8", "int8",
];
const OUTBOX_TYPES: [&str; 7] = ["text", "text", "text", "text", "text", "int8", "int8"];

/// The statement for `parts`: built once per kind of batch, so that its text is the same
/// every time and the connection's prepared statement is found by it. Its parameters, in
/// order: the metadata columns and the secret columns (shares), the mail columns (mail),
/// then the time, the keys and the key ids (reveals); each column one array.
fn statement(parts: Parts) -> &'static str {
    static TEXTS: [OnceLock<String>; 8] = [const { OnceLock::new() }; 8];
    TEXTS[parts.index()].get_or_init(|| {
        let mut n = 0;
        let mut unnest = |types: &[&str]| {
            let list: Vec<String> = types
                .iter()
                .map(|t| {
                    n += 1;
                    format!("${n}::{t}[]")
                })
                .collect();
            format!("SELECT * FROM unnest({})", list.join(", "))
        };
        let mut ctes = Vec::new();
        if parts.shares {
            let (m, s) = (unnest(&METADATA_TYPES), unnest(&SECRET_TYPES));
            ctes.push(format!(
                "m AS (INSERT INTO metadata ({METADATA_COLUMNS}) {m})"
            ));
            ctes.push(format!("s AS (INSERT INTO secrets ({SECRET_COLUMNS}) {s})"));
        }
        if parts.mail {
            let o = unnest(&OUTBOX_TYPES);
            ctes.push(format!("o AS (INSERT INTO outbox ({OUTBOX_COLUMNS}) {o})"));
        }
        let select = if parts.reveals {
            let (now, keys, key_ids) = (n + 1, n + 2, n + 3);
            ctes.push(format!(
                "d AS (DELETE FROM secrets WHERE key = ANY(${keys}::text[]) \
                 AND expires_at > ${now}::int8 AND scheme IN (2, 3) AND passphrase_cost IS NULL \
                 AND key_id = ANY(${key_ids}::text[]) RETURNING {SECRET_COLUMNS})"
            ));
            ctes.push(format!(
                "u AS (UPDATE metadata SET state = 'received', secret_key = NULL, \
                 received = ${now}::int8, updated = ${now}::int8 \
                 WHERE key IN (SELECT metadata_key FROM d))"
            ));
            format!("SELECT {SECRET_COLUMNS} FROM d")
        } else {
            "SELECT 1 WHERE false".to_owned()
        };
        format!("WITH {} {select}", ctes.join(", "))
    })
}

/// The rows `shares` insert into each table: metadata, secrets, and the mail of those that
/// have one.
fn rows<'a>(
    shares: impl Iterator<Item = &'a (StoredSecret, Metadata, Option<OutboxMail>)>,
) -> (Vec<MetadataRow<'a>>, Vec<SecretRow<'a>>, Vec<MailRow<'a>>) {
    let (mut metadata, mut secrets, mut mails) = (Vec::new(), Vec::new(), Vec::new());
    for (secret, md, mail) in shares {
        metadata.push(MetadataRow::of(md));
        secrets.push(SecretRow::of(secret));
        mails.extend(mail.as_ref().map(MailRow::of));
    }
    (metadata, secrets, mails)
}

/// Runs the jobs at `indices` as one statement; the secrets its reveals took.
async fn one_statement<D: Dialect>(
    conn: &mut Conn<D>,
    jobs: &[Write],
    indices: &[usize],
) -> Result<Vec<StoredSecret>, StoreError> {
    let (mut shares, mut reveals) = (Vec::new(), Vec::new());
    for &i in indices {
        match &jobs[i] {
            Write::Share(share) => shares.push(&**share),
            Write::Reveal(reveal) => reveals.push(reveal),
        }
    }
    let (metadata, secrets, mails) = rows(shares.iter().copied());
    let parts = Parts {
        shares: !shares.is_empty(),
        mail: !mails.is_empty(),
        reveals: !reveals.is_empty(),
    };
    let mut params = Vec::with_capacity(38);
    if parts.shares {
        params.extend(columns(
            metadata.iter().map(|m| m.args()),
            METADATA_TYPES.len(),
        ));
        params.extend(columns(
            secrets.iter().map(|s| s.args()),
            SECRET_TYPES.len(),
        ));
    }
    if parts.mail {
        params.extend(columns(mails.iter().map(|o| o.args()), OUTBOX_TYPES.len()));
    }
    if let Some(first) = reveals.first() {
        // A statement answers after every job in it was asked: the latest "now" is the
        // truest, and never reveals what expired meanwhile.
        let now = reveals.iter().map(|r| r.now).max().unwrap_or(first.now);
        params.push(Param::One(Arg::Int(now)));
        params.push(Param::Column(Column::Texts(
            reveals.iter().map(|r| r.key.as_str()).collect(),
        )));
        params.push(Param::Column(Column::Texts(
            first.key_ids.iter().map(String::as_str).collect(),
        )));
    }
    let rows = D::fetch_all_params(conn, statement(parts), params)
        .await
        .map_err(store_err::<D>)?;
    rows.iter().map(rows::secret::<D>).collect()
}

/// Rows of values turned into a column each: `width` columns, every row as wide.
fn columns<'a>(rows: impl Iterator<Item = Vec<Arg<'a>>>, width: usize) -> Vec<Param<'a>> {
    let mut out: Vec<Column<'a>> = Vec::with_capacity(width);
    for (r, row) in rows.enumerate() {
        for (c, arg) in row.into_iter().enumerate() {
            if r == 0 {
                out.push(match arg {
                    Arg::Text(_) => Column::Texts(Vec::new()),
                    Arg::MaybeText(_) => Column::MaybeTexts(Vec::new()),
                    Arg::Int(_) => Column::Ints(Vec::new()),
                    Arg::MaybeInt(_) => Column::MaybeInts(Vec::new()),
                    Arg::Bytes(_) => Column::Blobs(Vec::new()),
                    Arg::MaybeBytes(_) => Column::MaybeBlobs(Vec::new()),
                    Arg::Bool(_) => Column::Bools(Vec::new()),
                });
            }
            match (&mut out[c], arg) {
                (Column::Texts(v), Arg::Text(x)) => v.push(x),
                (Column::MaybeTexts(v), Arg::MaybeText(x)) => v.push(x),
                (Column::Ints(v), Arg::Int(x)) => v.push(x),
                (Column::MaybeInts(v), Arg::MaybeInt(x)) => v.push(x),
                (Column::Blobs(v), Arg::Bytes(x)) => v.push(x),
                (Column::MaybeBlobs(v), Arg::MaybeBytes(x)) => v.push(x),
                (Column::Bools(v), Arg::Bool(x)) => v.push(x),
                // Each row's values come in the same order and kinds (`args()`).
                _ => unreachable!("rows of one table bind the same kinds in the same order"),
            }
        }
    }
    out.into_iter().map(Param::Column).collect()
}

/// One answer per job, or one failure for all.
type Answers<A> = Result<Vec<A>, StoreError>;

/// Every share, run by run, inside the caller's transaction (SQLite); the first failure is
/// the answer (the transaction is to be rolled back). `frame` is applied when there is at
/// least one share.
pub(crate) async fn share_runs<D: Dialect>(
    conn: &mut Conn<D>,
    jobs: &[Share],
    frame: Frame,
) -> Result<(), StoreError> {
    let mut at = 0;
    let lengths = chunk_lengths(jobs.len());
    for (i, &len) in lengths.iter().enumerate() {
        let run = &jobs[at..at + len];
        at += len;
        insert_shares::<D>(conn, run, frame.of_run(i, lengths.len())).await?;
    }
    Ok(())
}

/// The rows of `shares`: one insert per table, metadata first, in one query of several
/// statements numbered on across them (one round trip to the driver's worker thread).
async fn insert_shares<D: Dialect>(
    conn: &mut Conn<D>,
    shares: &[Share],
    frame: Frame,
) -> Result<(), StoreError> {
    let n = shares.len();
    let (metadata, secrets, mails) = rows(shares.iter().map(|s| &**s));
    let mut args: Vec<Arg> = metadata.iter().flat_map(|m| m.args()).collect();
    args.extend(secrets.iter().flat_map(|s| s.args()));
    args.extend(mails.iter().flat_map(|o| o.args()));
    let s_first = 1 + n * MetadataRow::COUNT;
    let mut inserts = vec![
        MetadataRow::insert_sql(1, n),
        SecretRow::insert_sql(s_first, n),
    ];
    if !mails.is_empty() {
        let o_first = s_first + n * SecretRow::COUNT;
        inserts.push(MailRow::insert_sql(o_first, mails.len()));
    }
    // A failed run fails its batch, which the writer rolls back whole and replays job by
    // job: `OR ROLLBACK` says so to SQLite, which then keeps no statement journal to undo
    // one multi-row statement alone (a copy of every page it changes).
    let sql = inserts
        .iter()
        .map(|insert| insert.replacen("INSERT INTO", "INSERT OR ROLLBACK INTO", 1))
        .collect::<Vec<_>>()
        .join("; ");
    D::execute(conn, &frame.wrap(sql), args)
        .await
        .map(|_| ())
        .map_err(store_err::<D>)
}

/// Every reveal, inside the caller's transaction (SQLite): grouped by the key ids they may
/// open, each key deleted once and handed to the first job that asked for it; the first
/// failure is the answer. `frame` is applied when some job has key ids.
pub(crate) async fn reveal_all<D: Dialect>(
    conn: &mut Conn<D>,
    jobs: &[Reveal],
    frame: Frame,
) -> Answers<Option<StoredSecret>> {
    // Per set of key ids: the keys asked, each once, and the latest time asked.
    type Group<'j> = (&'j Arc<Vec<String>>, Vec<&'j str>, UnixTime);
    let mut groups: Vec<Group> = Vec::new();
    for job in jobs.iter().filter(|job| !job.key_ids.is_empty()) {
        match groups.iter_mut().find(|g| g.0 == &job.key_ids) {
            Some(group) => {
                if !group.1.contains(&job.key.as_str()) {
                    group.1.push(&job.key);
                }
                // A batch answers after every job in it was asked: the latest "now" is the
                // truest, and never reveals what expired meanwhile.
                group.2 = group.2.max(job.now);
            }
            None => groups.push((&job.key_ids, vec![&job.key], job.now)),
        }
    }
    // Each run: its group, its key ids, its keys, its time.
    let mut runs: Vec<(usize, &[String], &[&str], UnixTime)> = Vec::new();
    for (g, (key_ids, keys, now)) in groups.iter().enumerate() {
        let mut at = 0;
        for len in chunk_lengths(keys.len()) {
            runs.push((g, key_ids.as_slice(), &keys[at..at + len], *now));
            at += len;
        }
    }
    // What each group's runs took, by group and key: a row one group's key ids open is not
    // handed to a job of another group asking the same key, whose key ids may not open it.
    let mut taken: HashMap<(usize, String), StoredSecret> = HashMap::new();
    for (i, &(g, key_ids, run, now)) in runs.iter().enumerate() {
        let found = delete_run::<D>(conn, run, key_ids, now, frame.of_run(i, runs.len())).await?;
        taken.extend(found.into_iter().map(|s| ((g, s.id.to_hex()), s)));
    }
    // Found: the first job of its group with this key takes it; later ones find it gone.
    Ok(jobs
        .iter()
        .map(|job| {
            let g = groups.iter().position(|g| g.0 == &job.key_ids)?;
            taken.remove(&(g, job.key.clone()))
        })
        .collect())
}

/// Deletes the live, passphrase-free secrets among `keys` sealed under one of `key_ids`,
/// marks their metadata received, and returns them. SQLite's `WITH` holds no writes: the
/// metadata is marked first, by the same filter, then the rows are deleted and returned; one
/// query of two statements in the writer's transaction, one round trip to the driver's
/// worker thread.
async fn delete_run<D: Dialect>(
    conn: &mut Conn<D>,
    keys: &[&str],
    key_ids: &[String],
    now: UnixTime,
    frame: Frame,
) -> Result<Vec<StoredSecret>, StoreError> {
    let n = keys.len();
    let live = format!(
        "FROM secrets WHERE key IN {} AND expires_at > $1 AND scheme IN (2, 3) \
         AND passphrase_cost IS NULL AND key_id IN {}",
        placeholders(2, n),
        placeholders(2 + n, key_ids.len())
    );
    let mut args = vec![Arg::Int(now)];
    args.extend(keys.iter().map(|k| Arg::Text(k)));
    args.extend(key_ids.iter().map(|k| Arg::Text(k)));
    let sql = frame.wrap(format!(
        "UPDATE OR ROLLBACK metadata SET state = 'received', secret_key = NULL, received = $1, \
         updated = $1 WHERE key IN (SELECT metadata_key {live}); \
         DELETE {live} RETURNING {SECRET_COLUMNS}"
    ));
    let rows = D::fetch_all(conn, &sql, args)
        .await
        .map_err(store_err::<D>)?;
    rows.iter().map(rows::secret::<D>).collect()
}

/// A whole batch of shares and reveals without a passphrase in one query (SQLite): `BEGIN`,
/// the inserts of every share, the reveals' `UPDATE` and `DELETE … RETURNING`, and `COMMIT`,
/// one round trip to the driver's worker thread. Each query is a hand-off between threads,
/// and the runs of `share_runs` and `reveal_all` cost one each (13 shares and 6 reveals:
/// five). Rows are padded up to a power of two instead of split into runs, so that
/// a batch's text depends only on its sizes rounded up: the inserts take their rows from a
/// `VALUES` list filtered of the padding's `NULL` rows, and the reveals' key list repeats
/// its last key. `None` when the batch is not of that shape: no shares and no reveals to
/// look up, or reveals under several sets of key ids (after a key change; they go run by run).
pub(crate) async fn whole_batch<D: Dialect>(
    runner: Runner<'_, D>,
    shares: &[Share],
    jobs: &[Reveal],
) -> Option<Answers<Option<StoredSecret>>> {
    let asked: Vec<&Reveal> = jobs.iter().filter(|r| !r.key_ids.is_empty()).collect();
    let key_ids = asked.first().map(|r| &r.key_ids);
    if asked.iter().any(|r| Some(&r.key_ids) != key_ids) || (shares.is_empty() && asked.is_empty())
    {
        return None;
    }
    let mut keys: Vec<&str> = Vec::with_capacity(asked.len().next_power_of_two());
    for r in &asked {
        if !keys.contains(&r.key.as_str()) {
            keys.push(&r.key);
        }
    }
    // A batch answers after every job in it was asked: the latest "now" is the truest.
    let now = asked.iter().map(|r| r.now).max().unwrap_or_default();
    let key_ids: &[String] = key_ids.map_or(&[], |k| k.as_slice());

    let (metadata, secrets, mails) = rows(shares.iter().map(|s| &**s));
    let sizes = Sizes {
        shares: padded(shares.len()),
        mails: padded(mails.len()),
        keys: padded(keys.len()),
        key_ids: key_ids.len(),
    };
    let mut args: Vec<Arg> = Vec::new();
    pad_rows(
        &mut args,
        metadata.iter().map(|m| m.args()),
        sizes.shares,
        MetadataRow::COUNT,
    );
    pad_rows(
        &mut args,
        secrets.iter().map(|s| s.args()),
        sizes.shares,
        SecretRow::COUNT,
    );
    pad_rows(
        &mut args,
        mails.iter().map(|m| m.args()),
        sizes.mails,
        MailRow::COUNT,
    );
    if sizes.keys > 0 {
        // The `UPDATE`'s two times, then its filter, then the `DELETE`'s filter.
        let last = keys[keys.len() - 1];
        args.extend([Arg::Int(now), Arg::Int(now)]);
        for _ in 0..2 {
            args.extend((0..sizes.keys).map(|i| Arg::Text(keys.get(i).copied().unwrap_or(last))));
            args.push(Arg::Int(now));
            args.extend(key_ids.iter().map(|k| Arg::Text(k)));
        }
    }
    let sql = sizes.text();
    let found = match runner {
        Runner::Sqlx(conn) => match D::fetch_all(conn, &sql, args).await {
            Ok(rows) => rows
                .iter()
                .map(rows::secret::<D>)
                .collect::<Result<Vec<_>, _>>(),
            Err(err) => Err(store_err::<D>(err)),
        },
        Runner::Inline(writer) => {
            let mut found = Vec::new();
            writer
                .run(&sql, &args, &mut |row| {
                    found.push(rows::secret_of(row)?);
                    Ok(())
                })
                .map(|()| found)
        }
    };
    let mut taken: HashMap<String, StoredSecret> = match found {
        Ok(found) => found.into_iter().map(|s| (s.id.to_hex(), s)).collect(),
        Err(err) => return Some(Err(err)),
    };
    // Found: the first job with this key takes it; later ones find it gone.
    Some(Ok(jobs
        .iter()
        .map(|job| match job.key_ids.is_empty() {
            true => None,
            false => taken.remove(&job.key),
        })
        .collect()))
}

/// Where a [`whole_batch`] runs: on the driver's connection, or on the writer's own (see
/// [`InlineWriter`]).
pub(crate) enum Runner<'c, D: Dialect> {
    Sqlx(&'c mut Conn<D>),
    Inline(&'c dyn InlineWriter),
}

/// `(?, ?, …)`: `n` anonymous placeholders.
fn anonymous(n: usize) -> String {
    format!("({})", vec!["?"; n].join(", "))
}

/// `n` rounded up to a power of two (0 stays 0).
fn padded(n: usize) -> usize {
    match n {
        0 => 0,
        n => n.next_power_of_two(),
    }
}

/// The arguments of `rows` and then `NULL`s for `padded - rows` more rows of `count` each.
fn pad_rows<'a>(
    args: &mut Vec<Arg<'a>>,
    rows: impl ExactSizeIterator<Item = Vec<Arg<'a>>>,
    padded: usize,
    count: usize,
) {
    let missing = padded - rows.len();
    args.extend(rows.flatten());
    args.extend((0..missing * count).map(|_| Arg::MaybeText(None)));
}

/// What a [`whole_batch`] text depends on: its padded row counts and how many key ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Sizes {
    shares: usize,
    mails: usize,
    keys: usize,
    key_ids: usize,
}

impl Sizes {
    /// The batch's text, built once per set of sizes (a few dozen in all) and kept.
    fn text(self) -> Arc<str> {
        static TEXTS: OnceLock<std::sync::Mutex<HashMap<Sizes, Arc<str>>>> = OnceLock::new();
        let texts = TEXTS.get_or_init(Default::default);
        let mut texts = texts.lock().unwrap_or_else(|p| p.into_inner());
        texts
            .entry(self)
            .or_insert_with(|| self.build().into())
            .clone()
    }

    /// Every placeholder is an anonymous `?`, bound in the order it appears: sqlx asks SQLite
    /// each numbered parameter's name, which SQLite finds by a walk of the statement's list
    /// of names, and over a padded batch's hundreds of `$N` that walk was 15% of the worker
    /// thread's time. The reveals' values are therefore bound again where they recur.
    fn build(self) -> String {
        let mut parts = vec!["BEGIN IMMEDIATE".to_owned()];
        let insert = |table: &str, columns: &str, count: usize, rows: usize| {
            // A failed insert fails the batch, which the writer rolls back and replays job
            // by job: `OR ROLLBACK` spares SQLite a statement journal.
            let row = anonymous(count);
            let rows = vec![row.as_str(); rows].join(", ");
            format!(
                "INSERT OR ROLLBACK INTO {table} ({columns}) SELECT * FROM (VALUES {rows}) \
                 WHERE column1 IS NOT NULL"
            )
        };
        if self.shares > 0 {
            parts.push(insert(
                "metadata",
                METADATA_COLUMNS,
                MetadataRow::COUNT,
                self.shares,
            ));
            parts.push(insert(
                "secrets",
                SECRET_COLUMNS,
                SecretRow::COUNT,
                self.shares,
            ));
        }
        if self.mails > 0 {
            parts.push(insert("outbox", OUTBOX_COLUMNS, MailRow::COUNT, self.mails));
        }
        if self.keys > 0 {
            // Bound as the keys, "now", the key ids (see `whole_batch`).
            let live = format!(
                "FROM secrets WHERE key IN {} AND expires_at > ? AND scheme IN (2, 3) \
                 AND passphrase_cost IS NULL AND key_id IN {}",
                anonymous(self.keys),
                anonymous(self.key_ids)
            );
            parts.push(format!(
                "UPDATE OR ROLLBACK metadata SET state = 'received', secret_key = NULL, \
                 received = ?, updated = ? WHERE key IN (SELECT metadata_key {live})"
            ));
            parts.push(format!("DELETE {live} RETURNING {SECRET_COLUMNS}"));
        }
        parts.push("COMMIT".to_owned());
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_batch_has_a_placeholder_for_each_argument_it_is_given() {
        for (shares, mails, keys, key_ids) in
            [(4, 0, 8, 1), (1, 1, 0, 0), (0, 0, 2, 3), (16, 4, 16, 2)]
        {
            let sizes = Sizes {
                shares,
                mails,
                keys,
                key_ids,
            };
            let sql = sizes.build();
            let rows = shares * (MetadataRow::COUNT + SecretRow::COUNT) + mails * MailRow::COUNT;
            // The UPDATE's two times, and the live filter (keys, now, key ids) twice.
            let reveal = if keys > 0 {
                2 + 2 * (keys + 1 + key_ids)
            } else {
                0
            };
            assert_eq!(sql.matches('?').count(), rows + reveal, "{sql}");
            assert!(!sql.contains('$'), "no numbered parameters: {sql}");
            assert!(sql.starts_with("BEGIN IMMEDIATE; ") && sql.ends_with("; COMMIT"));
            assert_eq!(sql.contains("DELETE FROM secrets"), keys > 0);
            assert_eq!(sql.contains("INSERT OR ROLLBACK INTO outbox"), mails > 0);
            // The same sizes give the same text, kept once.
            assert!(Arc::ptr_eq(&sizes.text(), &sizes.text()));
        }
    }

    #[test]
    fn rows_are_padded_with_nulls_up_to_a_power_of_two() {
        assert_eq!([0, 1, 2, 3, 5, 8, 9].map(padded), [0, 1, 2, 4, 8, 8, 16]);
        let mut args = Vec::new();
        let rows = vec![vec![Arg::Int(1), Arg::Int(2)]; 3];
        pad_rows(&mut args, rows.into_iter(), padded(3), 2);
        assert_eq!(args.len(), 8);
        assert!(matches!(args[..6], [Arg::Int(1), Arg::Int(2), ..]));
        assert!(args[6..].iter().all(|a| matches!(a, Arg::MaybeText(None))));
    }
}
