/*-------------------------------------------------------------------------
 *
 * leader.c
 *	  The leader: one background worker per attached subscription that holds
 *	  the replication connection.
 *
 * Owns: the leader's process lifetime (start-up, the apply workers it
 * starts, shutdown), its loop and every one of its waits, the replication
 * connection and how it is read (paced reads while catching up, see below),
 * keepalives and the status updates sent to the publisher, and every
 * decision to stop (a worker failed, the subscription changed, was enabled
 * by hand, detached or dropped).  The stages it feeds, decode.c (and
 * dependency.c, dispatch.c behind it), never call back into it and never
 * wait: when dispatch lacks queue memory or an entry of the in-flight
 * window, the loop waits (wait_for_resources) before it reads more.
 *
 * Invariants kept here:
 *	- start-up happens only once no process of a previous engine of the
 *	  subscription is alive and the built-in apply worker has gone, so the
 *	  origin's LSN read at start is final: streaming restarts exactly after
 *	  the last transaction committed locally (invariant 2);
 *	- the flush position sent to the publisher never passes a transaction
 *	  that is not committed in order and flushed locally (invariant 3,
 *	  computed by dispatch.c);
 *	- while dispatch lacks resources the leader stops reading but keeps
 *	  sending status updates, so the walsender never times out (invariant
 *	  5); the leader waits only on its latch and socket, for at most a second
 *	  at a time, never for a heavyweight lock on a user table nor for a
 *	  worker (invariant 7);
 *	- a publisher silent for wal_receiver_timeout is noticed whatever woke
 *	  the leader;
 *	- paced reads delay reads and unrequested status updates by a
 *	  bounded time and never change what is applied or reported; a status
 *	  update the publisher asks for is sent as soon as its message is read;
 *	- the leader stops only at the top of its loop, between two messages,
 *	  and stops its workers whenever it exits (a worker's life is its
 *	  leader's); any failed worker stops the whole engine, which the
 *	  launcher restarts from the origin after parallel_apply.retry_interval
 *	  (invariant 4);
 *	- if the subscription is enabled by hand, dropped, or detached, the
 *	  leader steps aside and says why.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/ioctl.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_subscription.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "pa_dependency.h"
#include "pa_leader.h"
#include "pa_queue.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/logicalworker.h"
#include "replication/walreceiver.h"
#include "replication/worker_internal.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

PaLeader	pa_leader;

/*
 * Paced reads while catching up.
 *
 * The walsender sends each pgoutput message as soon as it is decoded, and on
 * loopback TCP it pays for the receiving side of every segment it sends.  A
 * reader that lags -- the built-in worker -- keeps data waiting in its
 * socket, and the walsender's messages queue in its own socket and leave in
 * a few large segments.  A reader that keeps up -- as the leader does when
 * its workers are faster than the walsender -- gets every message in a
 * segment of its own, and the walsender needs about twice the CPU time per
 * transaction.  Once there, the walsender is the slowest process and never
 * gets ahead of the leader again.
 *
 * So while the leader is behind -- the newest transaction received committed
 * on the publisher PA_PACE_LAG_MS ago or more -- and data keeps coming, it
 * paces its reads: every PA_PACE_PAUSE_MS it reads at most read_batch bytes
 * and then waits on its latch only, not on the socket.  The batch starts at
 * parallel_apply.receive_batch (PA_PACE_MIN_BATCH at least) and adapts to the
 * walsender: it grows by a sixteenth when the leader stopped at the batch and
 * at least half a batch more was already waiting (the walsender is ahead),
 * and shrinks by a quarter when the socket ran dry first (the leader is
 * ahead, and the walsender about to send per message).  It shrinks faster
 * than it grows because a dry socket is the expensive case.  A leader whose
 * workers are slower than the walsender is limited by queue memory instead,
 * and its batch only grows.  While pacing, the leader sends status updates
 * nobody asked for at most every PA_PACE_FEEDBACK_MS; a status update the
 * publisher asks for is sent as soon as its message is read.  No data for
 * PA_PACE_IDLE_MS, or a leader that has caught up, ends pacing: a caught-up
 * leader is woken by every message, as the built-in worker is.  (Ending it at
 * the first wait without data made it flap: on 2 CPUs the walsender is often
 * preempted for a millisecond or more.)  Pacing only delays reads, by
 * PA_PACE_PAUSE_MS per batch while data comes and PA_PACE_IDLE_MS when it
 * stops; it never decides what is applied.  While pacing, PaSub.leader_pacing
 * tells the workers that the leader wakes by itself, so a worker that runs
 * out of work does not wake it.
 *
 * Measurements, and the designs tried before this one, are in
 * docs/benchmarks-history.md ("2026-11-21, fourth session") and
 * docs/architecture.md ("Reading the stream").
 */
#define PA_PACE_LAG_MS			100
#define PA_PACE_IDLE_MS			10
#define PA_PACE_FEEDBACK_MS		100
#define PA_PACE_PAUSE_MS		2
#define PA_PACE_MIN_BATCH		(4 * 1024)
#define PA_PACE_MAX_BATCH		(4 * 1024 * 1024)

static bool pacing = false;		/* reads are paced now */
static int	read_batch = 0;		/* bytes read between two pauses */

static bool subscription_changed = true;
static TimestampTz last_recv_time = 0;
static TimestampTz last_check_time = 0;
static MemoryContext LeaderMessageContext = NULL;
static bool reporting_worker_exit = false;	/* the ERROR is a worker's */

static void leader_shutdown(int code, Datum arg);

static void
subscription_inval_cb(Datum arg, int cacheid, uint32 hashvalue)
{
	subscription_changed = true;
}

/*
 * Log why the leader leaves, and leave cleanly (exit code 0).  With
 * restart, the launcher starts the engine again at once if it should run;
 * otherwise not before parallel_apply.retry_interval, so that a condition
 * that would stop the new leader too never becomes a restart loop.
 */
static void
leader_step_aside(const char *why, bool restart)
{
	if (pa_leader.mysub != NULL)
		ereport(LOG,
				(errmsg("parallel_apply leader for subscription \"%s\" is stopping: %s",
						pa_leader.mysub->name, why)));
	else
		ereport(LOG,
				(errmsg("parallel_apply leader for subscription %u is stopping: %s",
						pa_leader.sub->subid, why)));
	pa_leader.sub->restart_now = restart;
	proc_exit(0);
}

/*
 * An attach marker outlives the extension only if the extension was dropped
 * behind the engine's back (sqlapi.c refuses DROP EXTENSION while attached)
 * or the catalogs were restored without it: the subscription is then
 * detached, and left disabled.  Runs in the start-up transaction.
 */
static void
check_extension(void)
{
	char	   *dbname;

	if (OidIsValid(get_extension_oid("parallel_apply", true)))
		return;
	dbname = get_database_name(MyDatabaseId);
	pa_lock_markers();
	replorigin_drop_by_name(pa_attach_marker_name(pa_leader.sub->subid), true, true);
	replorigin_drop_by_name(pa_pause_marker_name(pa_leader.sub->subid), true, true);
	CommitTransactionCommand();
	leader_step_aside(psprintf("the parallel_apply extension is not installed in database \"%s\"; the subscription is detached",
							   dbname), false);
}

/*
 * Re-read the subscription when the catalog says it changed; step aside if
 * it was dropped, enabled by hand or detached; restart if a setting the
 * connection depends on changed.  At start-up (starting), also check that
 * the extension exists.
 */
static void
check_subscription(bool starting)
{
	Subscription *newsub;
	Subscription *cur = pa_leader.mysub;
	bool		attached;
	bool		paused;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext old;

	if (pa_leader.sub->stop_requested)
		leader_step_aside("stop requested by detach, pause or DROP SUBSCRIPTION", true);

	if (!subscription_changed)
		return;
	subscription_changed = false;

	StartTransactionCommand();
	old = MemoryContextSwitchTo(TopMemoryContext);
	newsub = GetSubscription(pa_leader.sub->subid, true);
	MemoryContextSwitchTo(old);
	attached = pa_subscription_is_attached(pa_leader.sub->subid);
	paused = pa_subscription_is_paused(pa_leader.sub->subid);
	if (newsub != NULL)
		pa_leader.mysub = newsub;	/* names it in what follows */
	if (newsub != NULL && attached && starting)
		check_extension();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);

	if (newsub == NULL)
		leader_step_aside("the subscription was dropped", false);
	if (!attached)
		leader_step_aside("the subscription was detached", false);
	if (newsub->enabled)
		leader_step_aside("the subscription was enabled, so the built-in apply worker applies it; ALTER SUBSCRIPTION ... DISABLE hands it back to parallel_apply", true);
	if (paused)
		leader_step_aside("the subscription is paused", false);

	if (cur != NULL)
	{
		if (strcmp(cur->conninfo, newsub->conninfo) != 0 ||
			strcmp(cur->name, newsub->name) != 0 ||
			cur->binary != newsub->binary ||
			cur->stream != newsub->stream ||
			cur->twophasestate != newsub->twophasestate ||
			strcmp(cur->slotname ? cur->slotname : "", newsub->slotname ? newsub->slotname : "") != 0 ||
			strcmp(cur->synccommit, newsub->synccommit) != 0 ||
			cur->owner != newsub->owner ||
			!equal(cur->publications, newsub->publications))
			leader_step_aside("the subscription's settings changed; the engine restarts with the new ones", true);
		FreeSubscription(cur);
	}
}

/*
 * disable_on_error: an error that reproduced in serial apply stops the
 * engine for good: the subscription is detached and left disabled, as the
 * built-in worker would leave it.  Attach it again (or enable it) once the
 * cause is fixed.
 */
static void
disable_on_error(void)
{
	char	   *marker = pa_attach_marker_name(pa_leader.sub->subid);

	StartTransactionCommand();
	pa_lock_markers();
	replorigin_drop_by_name(marker, true, true);
	CommitTransactionCommand();
	pg_atomic_write_u64(&pa_leader.sub->serial_until, InvalidXLogRecPtr);
	ereport(LOG,
			(errmsg("subscription \"%s\" has been disabled because of an error",
					pa_leader.mysub->name),
			 errdetail("parallel_apply detached it; it stays disabled."),
			 errhint("Fix the cause, then run parallel_apply.attach() or ALTER SUBSCRIPTION ... ENABLE.")));
}

/*
 * Worker i has exited (it only does so on an error, or when its leader is
 * gone): mark the window in flight for a serial re-apply and stop the
 * engine with an error naming the transaction it was applying.
 */
static void
worker_failed(int i)
{
	PaSub	   *sub = pa_leader.sub;
	uint64		seq = sub->workers[i].failed_seq;
	PaTxn	   *txn = &sub->txns[seq % PA_MAX_INFLIGHT];
	bool		known = (seq != 0 && pg_atomic_read_u64(&txn->seq) == seq);
	XLogRecPtr	until = pa_leader.last_received;

	pa_leader.handles[i] = NULL;

	/* enabled by hand meanwhile? then the built-in worker won */
	subscription_changed = true;
	check_subscription(false);

	/*
	 * An error that reproduced in serial apply, or a conflict (which a
	 * worker reports only once every earlier transaction has committed, so
	 * serial apply meets it too), disables at once.
	 */
	if (pa_leader.mysub->disableonerr && !sub->workers[i].group_failed &&
		(sub->workers[i].conflict_failed ||
		 (pa_leader.started_serial &&
		  pg_atomic_read_u64(&sub->serial_until) != InvalidXLogRecPtr)))
		disable_on_error();

	/*
	 * Re-apply what was in flight serially, after the retry interval: an
	 * error that parallelism caused (a dependency the tracker could not
	 * see) does not happen then; a genuine one happens again and is retried
	 * the same way.  The window reaches the finish LSN of the failed
	 * transaction and of the one being dispatched, which may both lie past
	 * what was received: a large transaction is given to its worker before
	 * its COMMIT is read, and a deadlock's victim may be the other party.
	 */
	if (known && txn->final_lsn > until)
		until = txn->final_lsn;
	if (pa_dispatch_current_final_lsn() > until)
		until = pa_dispatch_current_final_lsn();
	if (pg_atomic_read_u64(&sub->serial_until) < until)
		pg_atomic_write_u64(&sub->serial_until, until);

	/* not an apply error yet: the group is re-applied one at a time */
	if (sub->workers[i].group_failed)
		leader_step_aside(psprintf("worker %d could not commit a group of transactions, which the engine re-applies one at a time",
								   i + 1), true);

	reporting_worker_exit = true;
	if (known)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("parallel_apply worker %d of subscription \"%s\" exited while applying remote transaction %u",
						i + 1, pa_leader.mysub->name, txn->remote_xid),
				 errdetail("The transaction finished at %X/%X on the publisher; the worker's error is logged above.",
						   LSN_FORMAT_ARGS(txn->final_lsn)),
				 errhint("The engine re-applies the transactions in flight serially, from the subscription's replication origin.")));
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("parallel_apply worker %d of subscription \"%s\" exited",
					i + 1, pa_leader.mysub->name),
			 errhint("The engine re-applies the transactions in flight serially, from the subscription's replication origin.")));
}

static void
check_workers(void)
{
	int			i;

	for (i = 0; i < pa_leader.nworkers; i++)
	{
		pid_t		pid;

		if (pa_leader.handles[i] != NULL &&
			GetBackgroundWorkerPid(pa_leader.handles[i], &pid) == BGWH_STOPPED)
			worker_failed(i);
	}
}

/*
 * Send a standby status update: write = received, flush and apply = what is
 * committed in order (and flushed, for flush).  Like the built-in worker,
 * when nothing is pending the received position is reported for all three.
 */
static void
send_feedback(bool force, bool request_reply)
{
	static StringInfo reply_message = NULL;
	static XLogRecPtr last_write = InvalidXLogRecPtr;
	static XLogRecPtr last_flush = InvalidXLogRecPtr;
	static XLogRecPtr last_apply = InvalidXLogRecPtr;
	static TimestampTz send_time = 0;
	XLogRecPtr	writepos = pa_leader.last_received;
	XLogRecPtr	applypos;
	XLogRecPtr	flushpos;
	bool		pending;
	TimestampTz now;

	if (pa_leader.conn == NULL)
		return;

	pa_dispatch_positions(&applypos, &flushpos, &pending);
	if (!pending && !pa_decode_in_remote_transaction())
		applypos = flushpos = writepos;

	/* never report going backwards */
	if (writepos < last_write)
		writepos = last_write;
	if (flushpos < last_flush)
		flushpos = last_flush;
	if (applypos < last_apply)
		applypos = last_apply;

	now = GetCurrentTimestamp();
	if (!force && writepos == last_write && flushpos == last_flush &&
		applypos == last_apply &&
		!TimestampDifferenceExceeds(send_time, now,
									wal_receiver_status_interval * 1000))
		return;
	if (!force && pacing &&
		!TimestampDifferenceExceeds(send_time, now, PA_PACE_FEEDBACK_MS))
		return;
	send_time = now;

	if (reply_message == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		reply_message = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	else
		resetStringInfo(reply_message);

	pq_sendbyte(reply_message, 'r');
	pq_sendint64(reply_message, writepos);
	pq_sendint64(reply_message, flushpos);
	pq_sendint64(reply_message, applypos);
	pq_sendint64(reply_message, now);
	pq_sendbyte(reply_message, request_reply);

	elog(DEBUG2, "parallel_apply sending feedback (force %d) to recv %X/%X, flush %X/%X, apply %X/%X",
		 force, LSN_FORMAT_ARGS(writepos), LSN_FORMAT_ARGS(flushpos),
		 LSN_FORMAT_ARGS(applypos));

	walrcv_send(pa_leader.conn, reply_message->data, reply_message->len);

	last_write = writepos;
	last_flush = flushpos;
	last_apply = applypos;
	pg_atomic_write_u64(&pa_leader.sub->received_lsn, writepos);
	pg_atomic_write_u64(&pa_leader.sub->applied_lsn, applypos);
	pg_atomic_write_u64(&pa_leader.sub->flushed_lsn, flushpos);
}

/*
 * The checks that may stop the leader, made at the top of each pass of its
 * loop and nowhere else (so it never stops in the middle of dispatching a
 * message): interrupts, configuration reload, dead workers, and, when the
 * catalog changed or at least once a second, the subscription.
 */
static void
leader_checks(void)
{
	TimestampTz now = GetCurrentTimestamp();

	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	check_workers();
	if (pa_leader.sub->stop_requested ||
		TimestampDifferenceExceeds(last_check_time, now, 1000))
	{
		last_check_time = now;
		if (!IsTransactionState())
		{
			AcceptInvalidationMessages();
			check_subscription(false);
		}
	}
}

/*
 * Is worker w waiting for a heavyweight lock that a worker with a starved
 * stream (pa_dispatch_stream_starved()) holds, or is ahead of it in the
 * lock's queue?  That worker, and its stream's remote xid in *xid; -1 if
 * not.  First what pg_stat_activity shows as wait_event_type Lock, read
 * without a lock as it does; then, only for such a worker, what
 * pg_blocking_pids() says.
 */
static int
worker_blocked_by_stream(int w, TransactionId *xid)
{
	static MemoryContext cxt = NULL;
	pid_t		pid = pa_leader.sub->workers[w].pid;
	PGPROC	   *proc;
	MemoryContext old;
	ArrayType  *blockers;
	int32	   *pids;
	int			n;
	int			holder = -1;

	if (pid == 0)
		return -1;
	proc = BackendPidGetProc(pid);
	if (proc == NULL || (proc->wait_event_info & 0xFF000000) != PG_WAIT_LOCK)
		return -1;

	if (cxt == NULL)
		cxt = AllocSetContextCreate(TopMemoryContext,
									"parallel_apply lock waits",
									ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	blockers = DatumGetArrayTypeP(DirectFunctionCall1(pg_blocking_pids,
													  Int32GetDatum(pid)));
	n = ArrayGetNItems(ARR_NDIM(blockers), ARR_DIMS(blockers));
	pids = (int32 *) ARR_DATA_PTR(blockers);
	while (n-- > 0 && holder < 0)
	{
		int			h;

		for (h = 0; h < pa_leader.nworkers; h++)
			if (h != w && pa_leader.sub->workers[h].pid == pids[n] &&
				pa_dispatch_stream_starved(h, xid))
			{
				holder = h;
				break;
			}
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(cxt);
	return holder;
}

/*
 * An open stream holds its locks until the publisher sends its end, and its
 * place in commit order comes only then, after every transaction committed
 * on the publisher before it.  So a transaction that waits for a lock the
 * stream holds (a unique index only the subscriber has, or a false
 * dependency: the publisher let both proceed) waits for a commit that must
 * come after its own, a deadlock no lock shows in full, in two forms:
 *	- the publisher sends nothing more of the stream for now (its session
 *	  is idle in transaction): the transaction waits as long as it stays
 *	  open, and every later one with it; the built-in worker, which applies
 *	  a stream at its commit, is not held up;
 *	- the leader waits for queue memory (or an entry of the in-flight
 *	  window) that only the transactions queued behind the waiting one free
 *	  as they commit, so it cannot read on to the stream's end.
 * The leader is that cycle's detector, called from its loop and from its
 * wait for resources: when no transaction has committed for
 * deadlock_timeout, a stream's worker has taken all the leader sent it, and
 * another worker waits for a lock that worker holds, it stops the engine,
 * which re-applies what it received serially (streams spooled and applied
 * at their commit, so no such wait can form).  A worker waiting for a user
 * session's lock is left to wait, as the built-in worker would.
 */
static void
check_stream_stall(bool leader_waits)
{
	static TimestampTz stall_since = 0;
	static uint64 stall_seq = 0;
	PaSub	   *sub = pa_leader.sub;
	uint64		committed = pg_atomic_read_u64(&sub->committed_seq);
	TransactionId xid = InvalidTransactionId;
	XLogRecPtr	until = pa_leader.last_received;
	bool		starved = false;
	int			sw = -1;
	int			w;
	uint64		wseq;
	PaTxn	   *wtxn;
	TransactionId wxid = InvalidTransactionId;

	for (w = 0; w < pa_leader.nworkers && !starved; w++)
		starved = pa_dispatch_stream_starved(w, &xid);
	if (!starved || stall_since == 0 || committed != stall_seq)
	{
		stall_since = starved ? GetCurrentTimestamp() : 0;
		stall_seq = committed;
		return;
	}
	if (!TimestampDifferenceExceeds(stall_since, GetCurrentTimestamp(),
									DeadlockTimeout))
		return;
	for (w = 0; w < pa_leader.nworkers; w++)
		if ((sw = worker_blocked_by_stream(w, &xid)) >= 0)
			break;
	if (sw < 0)
		return;

	if (pa_dispatch_current_final_lsn() > until)
		until = pa_dispatch_current_final_lsn();
	if (pg_atomic_read_u64(&sub->serial_until) < until)
		pg_atomic_write_u64(&sub->serial_until, until);

	/* the waiting transaction (invariant 9), from the leader's own ring */
	wseq = pg_atomic_read_u64(&sub->workers[w].current_seq);
	wtxn = &sub->txns[wseq % PA_MAX_INFLIGHT];
	if (wseq != 0 && pg_atomic_read_u64(&wtxn->seq) == wseq)
		wxid = wtxn->remote_xid;
	ereport(ERROR,
			(errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
			 errmsg("parallel_apply leader of subscription \"%s\" detected a deadlock with streamed transaction %u",
					pa_leader.mysub->name, xid),
			 leader_waits ?
			 errdetail("Worker %d waits for a lock held by the stream open in worker %d, which waits for the leader to read more of it; the leader waits for queue memory held by the transactions queued behind worker %d.",
					   w + 1, sw + 1, w + 1) :
			 errdetail("Worker %d waits for a lock held by the stream open in worker %d, which can commit only after it, once the publisher has sent the rest of the stream.",
					   w + 1, sw + 1),
			 errhint("The engine re-applies what it received up to %X/%X serially, applying streamed transactions at their commit.",
					 LSN_FORMAT_ARGS(until)),
			 TransactionIdIsValid(wxid) ?
			 errcontext("worker %d applies remote transaction %u, finished at %X/%X",
						w + 1, wxid, LSN_FORMAT_ARGS(wtxn->final_lsn)) :
			 errcontext("worker %d applies streamed transaction %u",
						w + 1, pg_atomic_read_u32(&sub->workers[w].stream_xid))));
}

/*
 * Wait, without reading from the publisher, for what dispatch lacks: queue
 * memory for the bytes in its outboxes (or a stream's worker to take more
 * of its share of it), a free entry of the in-flight window, or (adaptive
 * use) room in the active workers' read-ahead.  Only hands partly filled
 * chunks over, processes completions and keeps the connection alive with
 * status updates; it changes nothing else,
 * and returns after one wait of at most a second (the loop re-checks).
 * Workers wake us when they have freed a quarter of queue memory, go idle,
 * or complete a transaction (waiting for the read-ahead room, a transaction
 * from the one pa_dispatch_wake_seq() names on).
 */
static void
wait_for_resources(void)
{
	PaSub	   *sub = pa_leader.sub;
	bool		for_memory = pa_dispatch_needs_memory();
	uint64		wake_seq;

	pa_dispatch_flush();
	pa_dispatch_process_completions();
	send_feedback(false, false);

	wake_seq = for_memory ? 0 : pa_dispatch_wake_seq();
	pg_atomic_write_u64(&sub->leader_wake_seq, wake_seq);
	pg_atomic_write_u32(&sub->leader_waiting, 1);
	pg_memory_barrier();
	if (for_memory ?
		(pg_atomic_read_u32(&sub->free_chunks) < pa_chunk_wake_threshold(sub) ||
		 pa_dispatch_waits_for_stream()) :
		wake_seq > 0 ?
		pg_atomic_read_u64(&sub->committed_seq) < wake_seq :
		cds_wfcq_empty(&sub->done_head, &sub->done_tail))
	{
		/* a wait for a stream's worker says nothing of the active set */
		bool		for_workers = !(for_memory && pa_dispatch_waits_for_stream());
		TimestampTz start = GetCurrentTimestamp();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		if (for_workers)
		{
			long		secs;
			int			usecs;

			TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
			pa_adapt_note_wait((int64) secs * 1000000 + usecs);
		}
	}
	ResetLatch(MyLatch);
	pg_atomic_write_u32(&sub->leader_waiting, 0);
	pg_atomic_write_u64(&sub->leader_wake_seq, 0);
	check_stream_stall(true);

	/* not reading is our choice: it must not count as a silent publisher */
	last_recv_time = GetCurrentTimestamp();
}

/*
 * Register the apply workers; wait_for_workers() waits until they have
 * started, so that their start-up overlaps the connection to the publisher.
 */
static void
start_workers(void)
{
	int			i;

	pa_leader.nworkers = pa_workers;
	pa_leader.nactive = pa_workers;
	pa_leader.sub->nworkers = pa_workers;

	for (i = 0; i < pa_leader.nworkers; i++)
	{
		BackgroundWorker bgw;
		PaWorkerArgs args;

		memset(&bgw, 0, sizeof(bgw));
		memset(&args, 0, sizeof(args));
		args.subid = pa_leader.sub->subid;
		args.dbid = MyDatabaseId;
		args.owner = pa_leader.mysub->owner;
		args.slot = pa_leader.slotno;
		args.worker = i;
		args.leader_pid = MyProcPid;

		bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
		bgw.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(bgw.bgw_library_name, BGW_MAXLEN, "parallel_apply");
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "pa_worker_main");
		snprintf(bgw.bgw_name, BGW_MAXLEN,
				 "parallel_apply worker %d for subscription %u",
				 i + 1, pa_leader.sub->subid);
		snprintf(bgw.bgw_type, BGW_MAXLEN, "parallel_apply worker");
		bgw.bgw_main_arg = Int32GetDatum(i);
		bgw.bgw_notify_pid = MyProcPid;
		memcpy(bgw.bgw_extra, &args, sizeof(args));

		if (!RegisterDynamicBackgroundWorker(&bgw, &pa_leader.handles[i]))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("out of background worker slots"),
					 errdetail("parallel_apply needs %d apply workers for subscription \"%s\".",
							   pa_leader.nworkers, pa_leader.mysub->name),
					 errhint("You might need to increase max_worker_processes, or decrease parallel_apply.workers.")));
	}
}

static void
wait_for_workers(void)
{
	int			i;

	for (i = 0; i < pa_leader.nworkers; i++)
	{
		pid_t		pid;

		if (WaitForBackgroundWorkerStartup(pa_leader.handles[i], &pid) != BGWH_STARTED)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("parallel_apply worker %d of subscription \"%s\" failed to start",
							i + 1, pa_leader.mysub->name)));
	}
}

/* Wait (bounded) for processes that would fight over the origin or slot */
static void
wait_for_exclusive_start(void)
{
	int			i;

	for (i = 0;; i++)
	{
		bool		busy = false;
		int			w;
		LogicalRepWorker *builtin;

		for (w = 0; w < PA_MAX_WORKERS; w++)
			if (pa_leader.sub->workers[w].pid != 0)
				busy = true;

		LWLockAcquire(LogicalRepWorkerLock, LW_SHARED);
		builtin = logicalrep_worker_find(pa_leader.sub->subid, InvalidOid, false);
		if (builtin != NULL)
			busy = true;
		LWLockRelease(LogicalRepWorkerLock);

		if (!busy)
			return;
		if (i == 600)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("parallel_apply cannot start for subscription \"%s\": another apply process is still running",
							pa_leader.mysub->name)));
		CHECK_FOR_INTERRUPTS();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * Start or end paced reads (see the comment at the top).  Pacing goes on
 * while data came within PA_PACE_IDLE_MS and the newest transaction
 * received committed PA_PACE_LAG_MS ago or more.
 */
static void
set_pacing(bool got_data)
{
	static TimestampTz last_data = 0;
	TimestampTz now = GetCurrentTimestamp();
	bool		was = pacing;

	if (got_data)
		last_data = now;
	pacing = (pa_receive_batch > 0 &&
			  !TimestampDifferenceExceeds(last_data, now, PA_PACE_IDLE_MS) &&
			  pa_leader.last_commit_time != 0 &&
			  TimestampDifferenceExceeds(pa_leader.last_commit_time, now,
										 PA_PACE_LAG_MS));
	if (pacing == was)
		return;

	/* published for the workers (see next_message() in worker.c) */
	pg_atomic_write_u32(&pa_leader.sub->leader_pacing, pacing ? 1 : 0);
	if (pacing)
		read_batch = Max(pa_receive_batch, PA_PACE_MIN_BATCH);
	else
	{
		/*
		 * A worker that went idle while it still saw us pacing did not wake
		 * us: look at the completions once more, after the flag is visible.
		 */
		pg_memory_barrier();
		pa_dispatch_process_completions();
	}
	elog(DEBUG1, "parallel_apply leader %s paced reads",
		 pacing ? "starts" : "ends");
}

/*
 * One pause of paced reading: adapt the batch to what the last read found
 * (see the comment at the top), then wait PA_PACE_PAUSE_MS on the latch only.
 */
static void
pace_reads(pgsocket fd, bool batch_read)
{
	int			waiting = 0;

	if (batch_read)
	{
		/* bytes in the socket's receive queue (SIOCINQ) */
		if (fd != PGINVALID_SOCKET && ioctl(fd, FIONREAD, &waiting) < 0)
			waiting = 0;
		if (waiting >= read_batch / 2)
			read_batch = Min(read_batch + read_batch / 16,
							 PA_PACE_MAX_BATCH);
	}
	else
		read_batch = Max(read_batch - read_batch / 4, PA_PACE_MIN_BATCH);
	pg_atomic_fetch_add_u64(&pa_leader.sub->paced_reads, 1);

	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 PA_PACE_PAUSE_MS, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/*
 * A publisher that sent nothing for wal_receiver_timeout is gone, as the
 * built-in worker decides; at half of it, ask it for a reply once.
 */
static void
check_publisher_timeout(bool *ping_sent)
{
	TimestampTz now;

	if (wal_receiver_timeout <= 0)
		return;
	now = GetCurrentTimestamp();
	if (now >= TimestampTzPlusMilliseconds(last_recv_time, wal_receiver_timeout))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("terminating parallel_apply leader due to timeout")));
	if (!*ping_sent &&
		now >= TimestampTzPlusMilliseconds(last_recv_time, wal_receiver_timeout / 2))
	{
		*ping_sent = true;
		send_feedback(true, true);
	}
}

/*
 * For stat_subscription: the send time of the message just read, and when
 * it was received (the time read_burst() took when the data came: no clock
 * reading per message on the leader's path).
 */
static void
note_message(TimestampTz send_time)
{
	pg_atomic_write_u64(&pa_leader.sub->last_msg_send_time, (uint64) send_time);
	pg_atomic_write_u64(&pa_leader.sub->last_msg_receipt_time,
						(uint64) last_recv_time);
}

/*
 * One message of the replication stream: a data message goes to decode, a
 * keepalive is answered (at once if the publisher asks for a reply).
 */
static void
process_message(char *buf, int len)
{
	StringInfoData s;
	int			c;

	s.data = buf;
	s.len = len;
	s.cursor = 0;
	s.maxlen = -1;
	c = pq_getmsgbyte(&s);
	if (c == 'w')
	{
		XLogRecPtr	start_lsn = pq_getmsgint64(&s);
		XLogRecPtr	end_lsn = pq_getmsgint64(&s);
		TimestampTz send_time = pq_getmsgint64(&s);

		note_message(send_time);
		if (pa_leader.last_received < start_lsn)
			pa_leader.last_received = start_lsn;
		if (pa_leader.last_received < end_lsn)
			pa_leader.last_received = end_lsn;
		pa_decode_message(&s);
	}
	else if (c == 'k')
	{
		XLogRecPtr	end_lsn = pq_getmsgint64(&s);
		bool		reply_requested;

		TimestampTz send_time = pq_getmsgint64(&s);

		reply_requested = pq_getmsgbyte(&s);
		note_message(send_time);
		pg_atomic_write_u64(&pa_leader.sub->latest_end_lsn, end_lsn);
		pg_atomic_write_u64(&pa_leader.sub->latest_end_time, (uint64) send_time);
		if (pa_leader.last_received < end_lsn)
			pa_leader.last_received = end_lsn;
		pa_dispatch_process_completions();
		send_feedback(reply_requested, false);
	}
	/* other message types are ignored, as the built-in worker does */
}

/* Why read_burst() stopped reading before the socket ran dry */
typedef enum BurstEnd
{
	BURST_DRAINED,				/* nothing more to read now */
	BURST_BATCH,				/* paced reads: the batch is read */
	BURST_RESOURCES				/* dispatch lacks queue memory or window */
} BurstEnd;

/*
 * Read and dispatch what the publisher has sent, as long as dispatch can
 * take it.  *got_data says whether anything came; *fd is the socket when
 * walrcv_receive() named it.
 */
static BurstEnd
read_burst(bool *got_data, pgsocket *fd)
{
	char	   *buf = NULL;
	int			len;
	int			bytes_read = 0;
	BurstEnd	end = BURST_DRAINED;

	MemoryContextSwitchTo(LeaderMessageContext);
	len = walrcv_receive(pa_leader.conn, &buf, fd);
	*got_data = (len != 0);
	if (*got_data)
		last_recv_time = GetCurrentTimestamp();
	while (len != 0)
	{
		CHECK_FOR_INTERRUPTS();
		if (len < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("data stream from publisher has ended")));
		process_message(buf, len);
		MemoryContextReset(LeaderMessageContext);

		bytes_read += len;
		if (pacing && bytes_read >= read_batch)
		{
			end = BURST_BATCH;
			break;
		}
		if (pa_decode_replaying() || !pa_dispatch_ready())
		{
			end = BURST_RESOURCES;
			break;
		}
		len = walrcv_receive(pa_leader.conn, &buf, fd);
	}
	MemoryContextSwitchTo(TopMemoryContext);
	pa_dep_end_batch();
	return end;
}

/*
 * The leader's loop.  Each pass: the checks that may stop it, then either
 * wait for what dispatch lacks, or go on replaying a committed streamed
 * transaction, or read a burst of the stream; then hand the chunks over,
 * report to the publisher, and wait on the socket (or pause, when pacing).
 */
static void
leader_loop(void)
{
	bool		ping_sent = false;
	WaitEventSet *waitset = NULL;
	pgsocket	waitset_fd = PGINVALID_SOCKET;
	WaitEvent	event;

	last_recv_time = GetCurrentTimestamp();

	for (;;)
	{
		pgsocket	fd = PGINVALID_SOCKET;
		bool		got_data;
		BurstEnd	end;

		leader_checks();
		pa_adapt_tick();

		/*
		 * Also drained after every burst below; draining here too, right
		 * after a wake-up, keeps the in-flight window open during long
		 * bursts.
		 */
		pa_dispatch_process_completions();

		if (!pa_dispatch_ready())
		{
			wait_for_resources();
			continue;
		}
		if (pa_decode_replaying())
		{
			pa_decode_replay();
			pa_dep_end_batch();
			send_feedback(false, false);
			last_recv_time = GetCurrentTimestamp();	/* not reading: our choice */
			continue;
		}

		end = read_burst(&got_data, &fd);
		if (got_data)
			ping_sent = false;

		/* walrcv_receive() names the socket only when it returns 0 */
		if (fd == PGINVALID_SOCKET)
			fd = waitset_fd;

		pa_dispatch_flush();
		pa_dispatch_process_completions();
		if (end == BURST_RESOURCES)
			continue;			/* libpq may hold more: do not wait on the socket */
		set_pacing(got_data);
		if (!got_data && !pacing)
			pa_dispatch_flush_wal_if_idle();
		send_feedback(false, false);

		/*
		 * One wait event set for the life of the connection: creating one
		 * per wait (WaitLatchOrSocket) costs an epoll instance and three
		 * system calls every time the leader has drained the socket.
		 */
		if (waitset == NULL || fd != waitset_fd)
		{
			if (waitset != NULL)
				FreeWaitEventSet(waitset);
			waitset = CreateWaitEventSet(TopMemoryContext, 3);
			AddWaitEventToSet(waitset, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
			AddWaitEventToSet(waitset, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
			AddWaitEventToSet(waitset, WL_SOCKET_READABLE, fd, NULL, NULL);
			waitset_fd = fd;
		}
		if (pacing)
		{
			pace_reads(fd, end == BURST_BATCH);
			continue;
		}

		/*
		 * Pacing ended after a read that stopped at the batch: libpq may
		 * hold complete messages the socket no longer shows.  Read them
		 * before waiting on the socket.
		 */
		if (end == BURST_BATCH)
			continue;
		if (WaitEventSetWait(waitset, 1000L, &event, 1, PG_WAIT_EXTENSION) == 0)
		{
			send_feedback(false, false);
			pgstat_report_stat(true);
		}
		else if (event.events & WL_LATCH_SET)
			ResetLatch(MyLatch);

		/*
		 * Whatever woke us (a worker, a signal, the socket), a publisher
		 * silent for wal_receiver_timeout is gone, and a transaction may
		 * wait for an open stream the publisher sends no more of.
		 */
		check_publisher_timeout(&ping_sent);
		check_stream_stall(false);
	}
}

static void
leader_shutdown(int code, Datum arg)
{
	PaSub	   *sub = pa_leader.sub;
	int			i;

	/*
	 * A worker's life is its leader's: stop every worker, whatever the
	 * reason we exit.  A worker may be waiting for a transaction whose
	 * frames we never handed over, or hold an open group; its transaction
	 * is rolled back and the next engine restarts from the origin, so
	 * nothing is lost (PostgreSQL 16+ stops its parallel apply workers the
	 * same way).  Workers also watch their leader in every wait.
	 */
	for (i = 0; i < pa_leader.nworkers; i++)
	{
		if (pa_leader.handles[i])
			TerminateBackgroundWorker(pa_leader.handles[i]);
	}

	if (pa_leader.conn)
	{
		walrcv_disconnect(pa_leader.conn);
		pa_leader.conn = NULL;
	}

	sub->state = PA_SUB_STOPPED;
	sub->leader_latch = NULL;
	pg_write_barrier();
	sub->leader_pid = 0;
	pg_memory_barrier();
	for (i = 0; i < PA_MAX_WORKERS; i++)
	{
		Latch	   *latch = sub->workers[i].latch;

		if (latch)
			SetLatch(latch);
	}
	pa_wake_launcher();
}

/*
 * The text the publisher sends for timestamptz and bytea depends on its
 * walsender's TimeZone and bytea_output, which a reload of the publisher's
 * configuration can change in the middle of the connection; the dependency
 * tracker hashes those values by their bytes (dependency.c).  Pin them for
 * the session, as libpqwalreceiver pins datestyle, intervalstyle and
 * extra_float_digits.  Both are valid input whatever the subscriber's own
 * settings, so what is applied does not change.
 */
static void
pin_session_settings(void)
{
	static const char *const cmds[] = {
		"SET TimeZone = 'UTC'",
		"SET bytea_output = 'hex'",
	};
	int			i;

	for (i = 0; i < lengthof(cmds); i++)
	{
		WalRcvExecResult *res = walrcv_exec(pa_leader.conn, cmds[i], 0, NULL);

		if (res->status != WALRCV_OK_COMMAND)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("parallel_apply leader for subscription \"%s\" could not run \"%s\" on the publisher: %s",
							pa_leader.mysub->name, cmds[i],
							res->err ? res->err : "unexpected result")));
		walrcv_clear_result(res);
	}
}

void
pa_leader_main(Datum main_arg)
{
	PaWorkerArgs args;
	PaSub	   *sub;
	char	   *err;
	WalRcvStreamOptions options;
	XLogRecPtr	origin_startpos;
	int			server_version;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	memset(&pa_leader, 0, sizeof(pa_leader));
	pa_leader.slotno = args.slot;
	pa_leader.sub = sub = &pa_shared->subs[args.slot];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (!sub->in_use || sub->subid != args.subid)
		proc_exit(0);			/* detached before we got here */

	sub->leader_latch = MyLatch;
	pg_atomic_write_u32(&sub->leader_pacing, 0);
	sub->state = PA_SUB_STARTING;
	pg_write_barrier();
	sub->leader_pid = MyProcPid;
	pg_write_barrier();
	pg_atomic_write_u64(&sub->leader_registered, 0);	/* leader_pid says it */
	before_shmem_exit(leader_shutdown, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(args.dbid, args.owner, 0);

	CacheRegisterSyscacheCallback(SUBSCRIPTIONOID, subscription_inval_cb, (Datum) 0);
	check_subscription(true);	/* also steps aside if not attached */

	/* Run as the subscription owner, like the built-in apply worker */
	SetConfigOption("session_replication_role", "replica", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_OVERRIDE);

	/* we run as the owner the launcher read; it may have changed since */
	if (pa_leader.mysub->owner != args.owner)
		leader_step_aside("the subscription's owner changed; the engine restarts as the new owner", true);
	if (pa_leader.mysub->twophasestate != LOGICALREP_TWOPHASE_STATE_DISABLED)
		leader_step_aside("two_phase is enabled, which parallel_apply does not support", false);
	if (pa_leader.mysub->slotname == NULL)
		leader_step_aside("the subscription has no replication slot", false);

	wait_for_exclusive_start();
	pa_queue_reset(sub);
	pg_atomic_write_u64(&sub->committed_seq, 0);
	pg_atomic_write_u64(&sub->dispatched_seq, 0);
	pg_atomic_write_u32(&sub->leader_waiting, 0);
	pg_atomic_write_u64(&sub->leader_wake_seq, 0);

	LeaderMessageContext = AllocSetContextCreate(TopMemoryContext,
												 "parallel_apply leader message",
												 ALLOCSET_DEFAULT_SIZES);
	snprintf(pa_leader.originname, sizeof(pa_leader.originname), "pg_%u",
			 sub->subid);
	StartTransactionCommand();
	pa_leader.originid = replorigin_by_name(pa_leader.originname, false);
	CommitTransactionCommand();
	origin_startpos = replorigin_get_progress(pa_leader.originid, false);

	pa_leader.started_serial =
		(pg_atomic_read_u64(&sub->serial_until) != InvalidXLogRecPtr);
	pa_dispatch_init();
	pa_decode_init();
	start_workers();

	load_file("libpqwalreceiver", false);
	pa_leader.conn = walrcv_connect(pa_leader.mysub->conninfo, true,
									pa_leader.mysub->name, &err);
	if (pa_leader.conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("parallel_apply leader for subscription \"%s\" could not connect to the publisher: %s",
						pa_leader.mysub->name, err)));

	server_version = walrcv_server_version(pa_leader.conn);
	memset(&options, 0, sizeof(options));
	options.logical = true;
	options.startpoint = origin_startpos;
	options.slotname = pa_leader.mysub->slotname;
	options.proto.logical.proto_version =
		server_version >= 150000 ? LOGICALREP_PROTO_TWOPHASE_VERSION_NUM :
		server_version >= 140000 ? LOGICALREP_PROTO_STREAM_VERSION_NUM :
		LOGICALREP_PROTO_VERSION_NUM;
	options.proto.logical.publication_names = pa_leader.mysub->publications;
	options.proto.logical.binary = pa_leader.mysub->binary;
	options.proto.logical.streaming = pa_leader.mysub->stream &&
		server_version >= 140000;
	options.proto.logical.twophase = false;

	pin_session_settings();
	walrcv_startstreaming(pa_leader.conn, &options);
	pa_leader.last_received = origin_startpos;
	wait_for_workers();
	pa_adapt_init();

	ereport(LOG,
			(errmsg("parallel_apply leader for subscription \"%s\" has started with %d workers at %X/%X",
					pa_leader.mysub->name, pa_leader.nworkers,
					LSN_FORMAT_ARGS(origin_startpos))));
	sub->state = PA_SUB_STREAMING;

	/*
	 * The leader's own errors (a lost connection, a protocol error) are
	 * apply errors too, as they are for the built-in worker; a worker that
	 * failed has counted its error already.
	 */
	PG_TRY();
	{
		leader_loop();
	}
	PG_CATCH();
	{
		if (!reporting_worker_exit)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
			ErrorData  *edata = CopyErrorData();

			MemoryContextSwitchTo(old);
			/* the leader's errors belong to no remote transaction */
			pa_sub_record_error(sub, edata->message, InvalidTransactionId,
								InvalidXLogRecPtr);
		}
		AbortOutOfAnyTransaction();
		if (!reporting_worker_exit)
			pgstat_report_subscription_error(sub->subid, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
}
