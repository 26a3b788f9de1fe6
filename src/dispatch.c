/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  The leader's dispatcher: gives each remote transaction its commit-order
 *	  sequence number and a worker, and writes its messages into that
 *	  worker's queue.
 *
 * Owns: sequence numbers, the transaction ring entries (PaSub->txns), the
 * choice of worker, the framing of messages into chunks and the outboxes of
 * bytes waiting for queue memory, the leader's copy of every RELATION
 * message and which worker has seen which version of it, serial mode after
 * a failure, the positions reported to the publisher, and the WAL flush the
 * leader makes when it is idle with commits not yet flushed.
 *
 * A transaction is buffered in leader memory (up to PA_TXN_BUFFER bytes)
 * while its dependencies are computed (dependency.c), then its worker is
 * chosen (choose_worker): behind its predecessor in commit order while the
 * run given to that worker is shorter than parallel_apply.group_size (the
 * worker then commits the run as one group); else behind its latest
 * uncommitted dependency, where it can never wait; else the least-loaded
 * worker.  A WAIT for the latest uncommitted dependency precedes the first
 * change that needs it.  A larger transaction is sent on as it arrives,
 * with WAITs inserted as new dependencies appear.
 *
 * Dispatch never waits: bytes for a worker go into its open chunk and new
 * chunks while queue memory lasts, and the rest into the worker's outbox in
 * leader memory.  The leader's loop reads the next message only once every
 * outbox has been drained into chunks (pa_dispatch_ready), so an outbox holds
 * at most one message and one transaction buffer, and the loop, not this
 * stage, waits for queue memory.
 *
 * Invariants kept here:
 *	- sequence numbers follow the publisher's commit order (BEGIN order for
 *	  ordinary transactions, STREAM COMMIT order for streamed ones, which are
 *	  dispatched whole at STREAM COMMIT), so committing in sequence order is
 *	  committing in the publisher's order (invariant 1);
 *	- a worker receives the current RELATION message of a relation before
 *	  the first change it applies to it;
 *	- a ring entry is reused only after the leader has processed the
 *	  completion of the transaction that used it;
 *	- the flush position is the end LSN of the latest transaction such that
 *	  it and every earlier one are committed in order and their local commit
 *	  records are flushed (invariant 3); the apply position the same without
 *	  the flush condition.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "pa_dependency.h"
#include "pa_leader.h"
#include "pa_protocol.h"
#include "pa_queue.h"
#include "replication/syncrep.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/lwlock.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

/* leader-local record of each dispatched transaction, for feedback */
#define PA_FIFO_SIZE	(PA_MAX_INFLIGHT * 16)

/* bytes of a transaction buffered before its worker must be chosen */
#define PA_TXN_BUFFER	(64 * 1024)

/* an outbox or transaction buffer larger than this is freed once empty */
#define PA_OUTBOX_KEEP	(1024 * 1024)

typedef struct FifoEntry
{
	XLogRecPtr	end_lsn;		/* remote end LSN, known at COMMIT */
	XLogRecPtr	local_end;		/* local commit end, known at completion */
	bool		done;			/* completion processed */
} FifoEntry;

typedef struct RelEntry
{
	LogicalRepRelId relid;		/* hash key */
	uint32		version;
	char	   *msg;
	int			len;
	uint32		sent[PA_MAX_WORKERS];	/* version each worker has seen */
	uint64		touched_seq;	/* last transaction that used it */
	PaDepRel   *dep;			/* its keys (dependency.c) */
} RelEntry;

static FifoEntry *fifo;
static uint64 next_seq;			/* next sequence number to give */
static uint64 done_upto;		/* every seq <= it has completed */
static uint64 flushed_upto;		/* every seq <= it is flushed locally */
static int	inflight[PA_MAX_WORKERS];
static uint64 cur_seq;			/* transaction being dispatched, or 0 */
static int	cur_worker;			/* its worker, or -1 while buffered */
static PaMsgBegin cur_begin;
static PaDepAcc cur_deps;
static uint64 cur_wait_sent;	/* highest WAIT written for it */
static StringInfoData txnbuf;	/* its frames while buffered */
static LogicalRepRelId *touched;	/* relations it used */
static int	ntouched;
static int	maxtouched;
static XLogRecPtr serial_until; /* apply serially up to this LSN */
static uint64 serial_last_seq = 0;	/* last transaction applied serially */
static PaChunk *open_chunk[PA_MAX_WORKERS];
static StringInfoData outbox[PA_MAX_WORKERS];	/* bytes not yet in chunks */
static Size outbox_bytes = 0;	/* in all outboxes */
static HTAB *relations;
static MemoryContext RelContext;
static int	sync_level;			/* the subscription's synchronous_commit */

void
pa_dispatch_init(void)
{
	HASHCTL		ctl;
	int			i;

	fifo = MemoryContextAllocZero(TopMemoryContext, sizeof(FifoEntry) * PA_FIFO_SIZE);
	next_seq = 1;
	done_upto = flushed_upto = 0;
	cur_seq = 0;
	memset(inflight, 0, sizeof(inflight));
	memset(open_chunk, 0, sizeof(open_chunk));
	for (i = 0; i < PA_MAX_WORKERS; i++)
		initStringInfo(&outbox[i]);
	outbox_bytes = 0;
	cur_worker = -1;
	initStringInfo(&txnbuf);
	maxtouched = 16;
	touched = MemoryContextAlloc(TopMemoryContext, sizeof(LogicalRepRelId) * maxtouched);
	ntouched = 0;
	pa_dep_init();

	/* the subscription's setting; a change of it restarts the engine */
	sync_level = pa_synccommit_level(pa_leader.mysub->synccommit);

	/* after a worker failed, re-apply the window it failed in serially */
	serial_until = pg_atomic_read_u64(&pa_leader.sub->serial_until);
	if (serial_until != InvalidXLogRecPtr)
	{
		pg_atomic_fetch_add_u64(&pa_leader.sub->serial_retries, 1);
		ereport(LOG,
				(errmsg("parallel_apply for subscription \"%s\" applies serially up to %X/%X after a failure",
						pa_leader.mysub->name, LSN_FORMAT_ARGS(serial_until))));
	}

	RelContext = AllocSetContextCreate(TopMemoryContext,
									   "parallel_apply leader relations",
									   ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(LogicalRepRelId);
	ctl.entrysize = sizeof(RelEntry);
	ctl.hcxt = RelContext;
	relations = hash_create("parallel_apply leader relations", 256, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Empty a buffer; do not keep the memory of one huge message for long */
static void
reset_buffer(StringInfo buf)
{
	if (buf->maxlen > PA_OUTBOX_KEEP)
	{
		/* the loop's per-message context may be current: not there */
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		pfree(buf->data);
		initStringInfo(buf);
		MemoryContextSwitchTo(old);
	}
	else
		resetStringInfo(buf);
}

/*
 * Move as much of worker w's outbox into chunks as queue memory allows.
 * Returns true if the outbox is empty.
 */
static bool
drain_outbox(int w)
{
	StringInfo	box = &outbox[w];

	while (box->cursor < box->len)
	{
		PaChunk    *chunk = open_chunk[w];
		Size		n;

		if (chunk == NULL)
		{
			chunk = open_chunk[w] = pa_chunk_get(pa_leader.sub);
			if (chunk == NULL)
				return false;	/* the loop waits for queue memory */
		}
		n = Min(box->len - box->cursor, PA_CHUNK_CAPACITY - chunk->len);
		memcpy(chunk->data + chunk->len, box->data + box->cursor, n);
		chunk->len += n;
		box->cursor += n;
		if (chunk->len == PA_CHUNK_CAPACITY)
		{
			open_chunk[w] = NULL;
			pa_chunk_send(pa_leader.sub, w, chunk);
		}
	}
	outbox_bytes -= box->len;
	reset_buffer(box);
	return true;
}

/*
 * Bytes for worker w: into its open chunk and new ones while queue memory
 * lasts, the rest into its outbox, which the loop drains as workers free
 * chunks (pa_dispatch_ready).  Never waits.
 */
static void
write_bytes(int w, const char *data, Size len)
{
	StringInfo	box = &outbox[w];

	if (box->len == 0)
	{
		while (len > 0)
		{
			PaChunk    *chunk = open_chunk[w];
			Size		n;

			if (chunk == NULL)
			{
				chunk = open_chunk[w] = pa_chunk_get(pa_leader.sub);
				if (chunk == NULL)
					break;
			}
			n = Min(len, PA_CHUNK_CAPACITY - chunk->len);
			memcpy(chunk->data + chunk->len, data, n);
			chunk->len += n;
			data += n;
			len -= n;
			if (chunk->len == PA_CHUNK_CAPACITY)
			{
				open_chunk[w] = NULL;
				pa_chunk_send(pa_leader.sub, w, chunk);
			}
		}
		if (len == 0)
			return;
	}
	appendBinaryStringInfo(box, data, len);
	outbox_bytes += len;
}

/*
 * Drain every outbox as far as queue memory allows.  Returns true when all
 * are empty: the leader may then read and dispatch more.
 */
static bool
dispatch_drain(void)
{
	bool		empty = true;
	int			w;

	if (outbox_bytes == 0)
		return true;
	for (w = 0; w < pa_leader.nworkers; w++)
		if (outbox[w].len > 0 && !drain_outbox(w))
			empty = false;
	return empty;
}

/* Is the ring entry (and the fifo entry) of the next BEGIN free? */
static inline bool
window_open(void)
{
	return next_seq <= done_upto + PA_MAX_INFLIGHT &&
		next_seq <= flushed_upto + PA_FIFO_SIZE;
}

/*
 * Can the leader dispatch one more message?  Its outboxes must be empty
 * (so the leader's memory beyond queue memory is at most one message and
 * one transaction buffer), and a BEGIN must find its ring entry free.
 */
bool
pa_dispatch_ready(void)
{
	if (outbox_bytes > 0 && !dispatch_drain())
		return false;
	if (window_open())
		return true;
	pa_dispatch_process_completions();
	return window_open();
}

/* Is the leader waiting for queue memory (rather than for the window)? */
bool
pa_dispatch_needs_memory(void)
{
	return outbox_bytes > 0;
}

static void
write_frame(int w, char kind, const void *payload, Size len)
{
	uint32		total = 1 + len;

	write_bytes(w, (const char *) &total, sizeof(total));
	write_bytes(w, &kind, 1);
	write_bytes(w, payload, len);
}

/*
 * Hand every partly filled chunk to its worker.  Called when the leader has
 * read all the publisher sent so far and before it waits for anything, so
 * that a worker never waits for bytes the leader holds.
 */
void
pa_dispatch_flush(void)
{
	int			w;

	for (w = 0; w < pa_leader.nworkers; w++)
	{
		if (open_chunk[w] != NULL && open_chunk[w]->len > 0)
		{
			pa_chunk_send(pa_leader.sub, w, open_chunk[w]);
			open_chunk[w] = NULL;
		}
	}
}

/* The worker of transaction seq if it is still in flight, else -1 */
static int
worker_of(uint64 seq)
{
	PaTxn	   *t;

	if (seq == 0 || fifo[seq % PA_FIFO_SIZE].done)
		return -1;
	t = &pa_leader.sub->txns[seq % PA_MAX_INFLIGHT];
	return pg_atomic_read_u64(&t->seq) == seq ? t->worker : -1;
}

/*
 * Where a transaction goes:
 *	- behind its predecessor in commit order while that one is in flight
 *	  and the run given to its worker is shorter than
 *	  parallel_apply.group_size, so that the worker can commit the run as
 *	  one group and no commit waits for another process;
 *	- otherwise behind its latest uncommitted dependency, where it can
 *	  never wait;
 *	- otherwise to the least-loaded worker (ties: lowest number).
 */
static int
choose_worker(void)
{
	static int	run_worker = -1;
	static int	run_length = 0;
	int			prev = worker_of(cur_seq - 1);
	int			best;
	int			i;

	if (prev >= 0 && prev == run_worker && run_length < pa_group_size)
	{
		run_length++;
		return prev;
	}

	best = worker_of(cur_deps.max);
	if (best < 0)
	{
		best = 0;
		for (i = 1; i < pa_leader.nworkers; i++)
		{
			if (inflight[i] < inflight[best])
				best = i;
		}
	}
	run_worker = best;
	run_length = 1;
	return best;
}

/* Frames of the current transaction go to its buffer or to its worker */
static void
emit(char kind, const void *payload, Size len)
{
	if (cur_worker < 0)
	{
		uint32		total = 1 + len;

		appendBinaryStringInfo(&txnbuf, (const char *) &total, sizeof(total));
		appendStringInfoChar(&txnbuf, kind);
		appendBinaryStringInfo(&txnbuf, payload, len);
	}
	else
		write_frame(cur_worker, kind, payload, len);
}

static void
send_relation_if_needed(RelEntry *entry, int w)
{
	if (entry->sent[w] != entry->version)
	{
		write_frame(w, PA_MSG_CHANGE, entry->msg, entry->len);
		entry->sent[w] = entry->version;
	}
}

/* Choose the worker of the buffered transaction and send what it has */
static void
go_direct(void)
{
	PaTxn	   *txn = &pa_leader.sub->txns[cur_seq % PA_MAX_INFLIGHT];
	int			w = choose_worker();
	int			i;

	cur_worker = w;
	inflight[w]++;
	txn->worker = w;
	pg_write_barrier();
	pg_atomic_write_u64(&txn->seq, cur_seq);

	write_frame(w, PA_MSG_BEGIN, &cur_begin, sizeof(cur_begin));
	for (i = 0; i < ntouched; i++)
	{
		RelEntry   *entry = hash_search(relations, &touched[i], HASH_FIND, NULL);

		send_relation_if_needed(entry, w);
	}
	write_bytes(w, txnbuf.data, txnbuf.len);
	reset_buffer(&txnbuf);
}

void
pa_dispatch_begin(TransactionId xid, XLogRecPtr final_lsn, TimestampTz committime)
{
	PaSub	   *sub = pa_leader.sub;
	PaTxn	   *txn;
	uint64		seq;

	Assert(cur_seq == 0);

	/* the ring entry and the fifo entry are free: pa_dispatch_ready() */
	if (!window_open())
		elog(ERROR, "parallel_apply leader dispatched a transaction beyond its in-flight window");

	seq = next_seq++;
	txn = &sub->txns[seq % PA_MAX_INFLIGHT];
	pg_atomic_write_u64(&txn->seq, 0);	/* published in go_direct */
	txn->remote_xid = xid;
	txn->final_lsn = final_lsn;
	txn->local_end = InvalidXLogRecPtr;
	pg_atomic_write_u32(&txn->lock_held, 0);

	fifo[seq % PA_FIFO_SIZE].end_lsn = InvalidXLogRecPtr;
	fifo[seq % PA_FIFO_SIZE].local_end = InvalidXLogRecPtr;
	pg_atomic_write_u64(&sub->dispatched_seq, seq);	/* for the views */
	fifo[seq % PA_FIFO_SIZE].done = false;
	cur_seq = seq;
	cur_worker = -1;
	ntouched = 0;
	cur_wait_sent = 0;
	memset(&cur_deps, 0, sizeof(cur_deps));
	resetStringInfo(&txnbuf);

	memset(&cur_begin, 0, sizeof(cur_begin));
	cur_begin.seq = seq;
	cur_begin.remote_xid = xid;
	cur_begin.final_lsn = final_lsn;
	cur_begin.committime = committime;
	pa_leader.last_commit_time = committime;
	cur_begin.skip = (pa_leader.mysub->skiplsn != InvalidXLogRecPtr &&
					  pa_leader.mysub->skiplsn == final_lsn);

	pa_dep_set_committed(pg_atomic_read_u64(&sub->committed_seq));
	pa_dep_begin(seq, &cur_deps);
	if (serial_until != InvalidXLogRecPtr)
	{
		if (final_lsn <= serial_until)
		{
			pa_dep_note(&cur_deps, seq - 1);	/* one after the other */
			cur_begin.alone = true; /* an error names its transaction */
			serial_last_seq = seq;
		}
		else
		{
			/*
			 * The shared mark stays until the serial window has committed
			 * (pa_dispatch_process_completions): a failure before that is
			 * one that serial apply reproduced.
			 */
			serial_until = InvalidXLogRecPtr;
			ereport(LOG,
					(errmsg("parallel_apply for subscription \"%s\" resumes parallel apply",
							pa_leader.mysub->name)));
		}
	}
}

void
pa_dispatch_relation(LogicalRepRelId relid, const char *msg, int len)
{
	RelEntry   *entry;
	bool		found;

	entry = hash_search(relations, &relid, HASH_ENTER, &found);
	if (found)
	{
		if (entry->len == len && memcmp(entry->msg, msg, len) == 0)
			return;				/* re-sent unchanged */

		/*
		 * A RELATION takes effect at its place in the transaction's stream:
		 * the changes buffered so far were encoded under the old
		 * description, so they must reach the worker, behind the old
		 * description, before the new one replaces it.  go_direct() sends
		 * the current (old) version; the next change of the relation sends
		 * the new one (send_relation_if_needed).
		 */
		if (cur_seq != 0 && cur_worker < 0 && entry->touched_seq == cur_seq)
			go_direct();
		pfree(entry->msg);
	}
	else
	{
		entry->version = 0;
		entry->touched_seq = 0;
		memset(entry->sent, 0, sizeof(entry->sent));
	}
	entry->msg = MemoryContextAlloc(RelContext, len);
	memcpy(entry->msg, msg, len);
	entry->len = len;
	entry->version++;

	/* a changed schema is a barrier for the relation (dependency.c) */
	entry->dep = pa_dep_relation(cur_seq, relid, msg, len, found, &cur_deps);
}

void
pa_dispatch_change(const char *msg, int len, LogicalRepRelId *relids, int nrelids)
{
	RelEntry   *entry = NULL;
	int			i;

	if (cur_seq == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg_internal("data change outside a remote transaction")));

	for (i = 0; i < nrelids; i++)
	{
		entry = hash_search(relations, &relids[i], HASH_FIND, NULL);
		if (entry == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("no relation map entry for remote relation ID %u",
							relids[i])));
		if (entry->touched_seq != cur_seq)
		{
			entry->touched_seq = cur_seq;
			if (ntouched == maxtouched)
			{
				maxtouched *= 2;
				touched = repalloc(touched, sizeof(LogicalRepRelId) * maxtouched);
			}
			touched[ntouched++] = relids[i];
		}
		if (cur_worker >= 0)
			send_relation_if_needed(entry, cur_worker);
	}

	if (msg[0] == LOGICAL_REP_MSG_TRUNCATE)
		pa_dep_truncate(cur_seq, &cur_deps);
	else
		pa_dep_change(cur_seq, entry->dep, msg, len, &cur_deps);	/* one relation */

	if (cur_deps.max > cur_wait_sent)
	{
		cur_wait_sent = cur_deps.max;
		emit(PA_MSG_WAIT, &cur_wait_sent, sizeof(cur_wait_sent));
	}
	emit(PA_MSG_CHANGE, msg, len);

	if (cur_worker < 0 && txnbuf.len > PA_TXN_BUFFER)
		go_direct();
}

void
pa_dispatch_commit(XLogRecPtr commit_lsn, XLogRecPtr end_lsn, TimestampTz committime)
{
	PaMsgCommit msg;

	if (cur_seq == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg_internal("COMMIT outside a remote transaction")));

	if (cur_worker < 0)
		go_direct();
	fifo[cur_seq % PA_FIFO_SIZE].end_lsn = end_lsn;
	msg.commit_lsn = commit_lsn;
	msg.end_lsn = end_lsn;
	msg.committime = committime;
	write_frame(cur_worker, PA_MSG_COMMIT, &msg, sizeof(msg));
	cur_seq = 0;

	/* keep the transaction of typed key hashing short (dependency.c) */
	pa_dep_end_batch();
}

/* The finish LSN of the transaction being dispatched, or InvalidXLogRecPtr */
XLogRecPtr
pa_dispatch_current_final_lsn(void)
{
	return cur_seq != 0 ? cur_begin.final_lsn : InvalidXLogRecPtr;
}

/* Drain the completion queue; returns true if anything completed */
bool
pa_dispatch_process_completions(void)
{
	PaSub	   *sub = pa_leader.sub;
	PaTxn	   *txn;
	bool		any = false;

	while ((txn = pa_done_receive(sub)) != NULL)
	{
		FifoEntry  *e = &fifo[pg_atomic_read_u64(&txn->seq) % PA_FIFO_SIZE];

		e->local_end = txn->local_end;
		e->done = true;
		inflight[txn->worker]--;
		any = true;
	}
	while (done_upto + 1 < next_seq && fifo[(done_upto + 1) % PA_FIFO_SIZE].done)
		done_upto++;

	/* the serially re-applied window has committed: back to normal */
	if (pa_leader.started_serial && serial_until == InvalidXLogRecPtr &&
		done_upto >= serial_last_seq &&
		pg_atomic_read_u64(&sub->serial_until) != InvalidXLogRecPtr)
		pg_atomic_write_u64(&sub->serial_until, InvalidXLogRecPtr);
	return any;
}

/*
 * When every dispatched transaction has committed and some of their commit
 * records are not yet known to be flushed, flush WAL up to the latest.
 * Called by the leader when it has nothing to read: with asynchronous
 * commits the WAL writer would flush them within wal_writer_delay, but the
 * leader would only notice at its next wake-up, up to a second later, and
 * the publisher would hear of the flush (invariant 3) that much later.
 * Positions are still reported only once GetFlushRecPtr() passes them.
 */
void
pa_dispatch_flush_wal_if_idle(void)
{
	uint64		seq;

	if (done_upto + 1 != next_seq || flushed_upto >= done_upto)
		return;
	for (seq = done_upto; seq > flushed_upto; seq--)
	{
		XLogRecPtr	local_end = fifo[seq % PA_FIFO_SIZE].local_end;

		/* commits are in sequence order: the latest one is the furthest */
		if (local_end != InvalidXLogRecPtr)
		{
			XLogFlush(local_end);
			return;
		}
	}
}

/*
 * What the subscriber's synchronous standbys have confirmed, for the wait
 * mode the subscription's synchronous_commit asks for, or the local flush
 * position when it asks for none.  The built-in worker's commits wait in
 * SyncRepWaitForLSN() before it reports them; ours are asynchronous, so the
 * leader reports as flushed only what the standbys confirmed (invariant 3):
 * after a failover to such a standby, nothing the publisher was told is
 * flushed is missing.
 */
static XLogRecPtr
durable_position(void)
{
	XLogRecPtr	flushptr = GetFlushRecPtr(NULL);
	int			mode;

	switch (sync_level)
	{
		case SYNCHRONOUS_COMMIT_REMOTE_WRITE:
			mode = SYNC_REP_WAIT_WRITE;
			break;
		case SYNCHRONOUS_COMMIT_REMOTE_FLUSH:
			mode = SYNC_REP_WAIT_FLUSH;
			break;
		case SYNCHRONOUS_COMMIT_REMOTE_APPLY:
			mode = SYNC_REP_WAIT_APPLY;
			break;
		default:
			return flushptr;	/* off, local */
	}
	if (max_wal_senders == 0 || SyncRepStandbyNames == NULL ||
		SyncRepStandbyNames[0] == '\0')
		return flushptr;

	/*
	 * walsender_private.h is private and changes between minor releases;
	 * only lsn[], which every PostgreSQL 15 minor release has, is read.
	 */
	LWLockAcquire(SyncRepLock, LW_SHARED);
	if (WalSndCtl->lsn[mode] < flushptr)
		flushptr = WalSndCtl->lsn[mode];
	LWLockRelease(SyncRepLock);
	return flushptr;
}

void
pa_dispatch_positions(XLogRecPtr *applied, XLogRecPtr *flushed, bool *pending)
{
	XLogRecPtr	flushptr = durable_position();

	while (flushed_upto < done_upto)
	{
		FifoEntry  *e = &fifo[(flushed_upto + 1) % PA_FIFO_SIZE];

		if (e->local_end != InvalidXLogRecPtr && e->local_end > flushptr)
			break;
		flushed_upto++;
	}
	*applied = done_upto > 0 ? fifo[done_upto % PA_FIFO_SIZE].end_lsn : InvalidXLogRecPtr;
	*flushed = flushed_upto > 0 ? fifo[flushed_upto % PA_FIFO_SIZE].end_lsn : InvalidXLogRecPtr;
	*pending = (flushed_upto + 1 < next_seq);
}
