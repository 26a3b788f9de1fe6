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
 * uncommitted dependency; else the next worker in turn, among the active
 * set of workers that adapt.c sizes.  A WAIT for the latest uncommitted
 * dependency on each worker precedes the first change that needs it (the
 * worker skips the one for its own open group).  A larger transaction is
 * sent on as it arrives, with WAITs inserted as new dependencies appear.
 *
 * Dispatch never waits: bytes for a worker go into its open chunk and new
 * chunks while queue memory lasts, and the rest into the worker's outbox in
 * leader memory.  The leader's loop reads the next message only once every
 * outbox has been drained into chunks (pa_dispatch_ready), so an outbox holds
 * at most one message and one transaction buffer, and the loop, not this
 * stage, waits for queue memory.
 *
 * Streamed transactions (pa_dispatch_stream_*): at its first STREAM START
 * a stream goes to an idle worker, if fewer than parallel_apply.max_streams
 * are open and the engine is not re-applying a window serially; that worker
 * then receives nothing else until the stream commits or aborts.  Its
 * changes are sent as they arrive, with the sub-transaction they belong to,
 * the latest transaction dispatched before them, and WAITs for the earlier
 * transactions they depend on; its keys are recorded at its commit
 * (dependency.c).  RELATION messages inside it that differ from the leader's
 * copy go to its worker only, and are merged into the leader's copy when it
 * commits (they are barriers for their relations then).  An open stream may
 * hold at most a share of queue memory (stream_share()); when its worker
 * has not taken more for parallel_apply.stream_spill_timeout, the stream is
 * marked to spill: decode writes the rest of it to a file, replayed into the
 * same worker at its commit, and the leader reads on meanwhile.
 *
 * Invariants kept here:
 *	- sequence numbers follow the publisher's commit order (BEGIN order for
 *	  ordinary transactions, STREAM COMMIT order for streamed ones, which
 *	  get theirs only when they commit), so committing in sequence order is
 *	  committing in the publisher's order (invariant 1);
 *	- a worker with an open stream is given no other transaction, so the
 *	  stream never waits for a transaction queued behind it;
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
#include "libpq/pqformat.h"
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
#include "utils/timestamp.h"

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
static uint64 cur_wait_sent[PA_MAX_WORKERS];	/* highest WAIT written for
												 * it, by the dependency's
												 * worker */
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

/* savepoints a stream applied while it streams may open in its worker */
#define PA_STREAM_MAX_SAVEPOINTS	1000

/* a RELATION message a stream carries itself */
typedef struct StreamRel
{
	LogicalRepRelId relid;
	char	   *msg;
	int			len;
} StreamRel;

/* A streamed transaction applied while it streams */
struct PaStream
{
	TransactionId xid;
	int			worker;
	PaDepStream *dep;			/* its keys, recorded at commit */
	PaDepAcc	deps;			/* its latest uncommitted dependency */
	uint64		wait_sent;		/* highest WAIT sent */
	uint64		pred_sent;		/* last PRED sent */
	TransactionId subxid_sent;	/* sub-xid of the last change sent */
	List	   *subxacts;		/* sub-xids with a savepoint in the worker
								 * (OID list), in order */
	List	   *rels;			/* StreamRel *: descriptions of its own */
	bool		spill;			/* the rest goes to a file (decode.c) */
	bool		replaying;		/* its commit is being dispatched */
	TimestampTz blocked_since;	/* its worker's share of queue memory has
								 * been full since, 0 if it is not */
};

static PaStream *worker_stream[PA_MAX_WORKERS];	/* open stream per worker */
static int	nstreams = 0;		/* open streams */
static uint64 sent_chunks[PA_MAX_WORKERS];	/* chunks given to each worker */

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
	memset(worker_stream, 0, sizeof(worker_stream));
	nstreams = 0;
	for (i = 0; i < PA_MAX_WORKERS; i++)
	{
		initStringInfo(&outbox[i]);
		sent_chunks[i] = pg_atomic_read_u64(&pa_leader.sub->workers[i].chunks_taken);
	}
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

/* Hand a chunk to worker w, counting what it has been given */
static inline void
send_chunk(int w, PaChunk *chunk)
{
	sent_chunks[w]++;
	pa_chunk_send(pa_leader.sub, w, chunk);
}

/*
 * The chunks an open stream may have waiting in its worker's queue: a share
 * of queue memory, so that the other workers always find some.
 */
static uint64
stream_share(void)
{
	int			streams = Max(nstreams, 1);

	return Max(2, pa_leader.sub->nchunks / (2 * streams));
}

/* Does worker w's open stream hold all the queue memory it may? */
static inline bool
stream_capped(int w)
{
	PaStream   *st = worker_stream[w];

	return st != NULL && !st->replaying &&
		sent_chunks[w] - pg_atomic_read_u64(&pa_leader.sub->workers[w].chunks_taken) >=
		stream_share();
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
			if (stream_capped(w))
				return false;	/* the loop waits for the stream's worker */
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
			send_chunk(w, chunk);
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
				if (stream_capped(w))
					break;
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
				send_chunk(w, chunk);
			}
		}
		if (len == 0)
			return;
	}
	appendBinaryStringInfo(box, data, len);
	outbox_bytes += len;
}

/*
 * Worker w's outbox cannot drain.  Does that stop the leader?  Not when it
 * belongs to an open stream marked to spill (it holds at most one message
 * and a frame or two); and an open stream's worker that has taken nothing
 * for parallel_apply.stream_spill_timeout gets its stream so marked.
 */
static bool
outbox_blocks(int w)
{
	PaStream   *st = worker_stream[w];
	TimestampTz now;

	if (st == NULL || st->replaying)
		return true;
	if (st->spill)
		return false;
	if (!stream_capped(w))
		return true;			/* the whole pool is short */
	now = GetCurrentTimestamp();
	if (st->blocked_since == 0)
		st->blocked_since = now;
	if (!TimestampDifferenceExceeds(st->blocked_since, now,
									pa_stream_spill_timeout_ms))
		return true;
	st->spill = true;
	ereport(DEBUG1,
			(errmsg_internal("parallel_apply spills the rest of streamed transaction %u: worker %d took none of it for %d ms",
							 st->xid, w + 1, pa_stream_spill_timeout_ms)));
	return false;
}

/*
 * Drain every outbox as far as queue memory allows.  Returns true when all
 * are empty, or hold only what a spilling stream's worker has still to take:
 * the leader may then read and dispatch more.
 */
static bool
dispatch_drain(void)
{
	bool		empty = true;
	int			w;

	if (outbox_bytes == 0)
		return true;
	for (w = 0; w < pa_leader.nworkers; w++)
	{
		if (outbox[w].len == 0)
			continue;
		if (drain_outbox(w))
		{
			if (worker_stream[w] != NULL)
				worker_stream[w]->blocked_since = 0;
		}
		else if (outbox_blocks(w))
			empty = false;
	}
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
 * With adaptive worker use, do the active workers without an open stream
 * hold fewer than pa_leader.read_ahead transactions each on average (about
 * PA_READ_AHEAD_MS of their measured apply, adapt.c)?  The leader reads no
 * further ahead than that: what is already queued on a
 * worker cannot move when the active set widens, and a leader that waits
 * for its workers is how adapt.c sees them behind.  Workers complete what
 * they hold whatever the leader reads (they wait only for earlier
 * transactions), so this wait ends.  True as well while any worker has an
 * open stream: a transaction queued behind one that waits for the stream
 * (its keys) commits only after the stream's commit, which the leader must
 * read; the queue memory and the in-flight window still bound what it reads.
 */
static bool
active_room(void)
{
	int			held = 0;
	int			w;

	if (!pa_adaptive || nstreams > 0)
		return true;
	for (w = 0; w < pa_leader.nactive; w++)
		held += inflight[w];
	return held < pa_leader.nactive * pa_leader.read_ahead;
}

/*
 * The leader is about to wait for its workers: the transaction whose commit
 * should wake it, or 0 for the next commit.  Waiting for the read-ahead room
 * (active_room()), it wakes once the active workers hold at most half their
 * read-ahead: woken at every commit, it would read one transaction per
 * wake-up, a cross-process wake-up per transaction (on 2 CPUs, 12% of a
 * simple-update catch-up on one worker).  Every transaction up to the one
 * named is dispatched, and workers commit what they hold without the
 * leader, so that commit comes.
 */
uint64
pa_dispatch_wake_seq(void)
{
	uint64		dispatched;
	uint64		half = pa_leader.nactive * pa_leader.read_ahead / 2;

	if (!window_open() || active_room())
		return 0;
	dispatched = pg_atomic_read_u64(&pa_leader.sub->dispatched_seq);
	return dispatched > half ? dispatched - half : 0;
}

/*
 * Can the leader dispatch one more message?  Its outboxes must be empty
 * (so the leader's memory beyond queue memory is at most one message and
 * one transaction buffer), a BEGIN must find its ring entry free, and with
 * adaptive worker use an active worker must have room (active_room()).
 */
bool
pa_dispatch_ready(void)
{
	if (outbox_bytes > 0 && !dispatch_drain())
		return false;
	if (window_open() && active_room())
		return true;
	pa_dispatch_process_completions();
	return window_open() && active_room();
}

/* Is the leader waiting for queue memory (rather than for the window)? */
bool
pa_dispatch_needs_memory(void)
{
	int			w;

	if (outbox_bytes == 0)
		return false;
	for (w = 0; w < pa_leader.nworkers; w++)
	{
		PaStream   *st = worker_stream[w];

		if (outbox[w].len > 0 && (st == NULL || !st->spill || st->replaying))
			return true;
	}
	return false;
}

/*
 * Is what the leader waits for a stream's worker taking more of its share,
 * rather than free queue memory?  (Such a worker wakes the leader as it
 * takes chunks, whatever the pool holds.)
 */
bool
pa_dispatch_waits_for_stream(void)
{
	int			w;

	for (w = 0; w < pa_leader.nworkers; w++)
		if (outbox[w].len > 0 && stream_capped(w))
			return true;
	return false;
}

/*
 * Does worker w hold an open stream and has it taken all that was sent to
 * it, so that it waits for the leader to read more of the stream?  Its
 * remote xid in *xid if so.  (A stream replayed after its commit has its
 * place in commit order and waits for nothing the leader must read.)
 */
bool
pa_dispatch_stream_starved(int w, TransactionId *xid)
{
	PaStream   *st = worker_stream[w];

	if (st == NULL || st->replaying ||
		sent_chunks[w] != pg_atomic_read_u64(&pa_leader.sub->workers[w].chunks_taken))
		return false;
	*xid = st->xid;
	return true;
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
			send_chunk(w, open_chunk[w]);
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
 * The worker for a new run among workers 0 .. n - 1 without an open stream:
 * the next after the last run's worker, in turn; -1 if all n have open
 * streams.  In turn rather than the least loaded: when the leader reads
 * only as fast as the workers commit, the least-loaded worker is the one
 * that just committed, so it gets run after run, its queue holds a long
 * range of consecutive transactions, and the next worker's group waits for
 * that whole range to commit.  In turn, consecutive runs go to different
 * workers, which apply them side by side and commit them one after the
 * other.
 */
static int
next_in_turn(int after, int n)
{
	int			i;

	for (i = 1; i <= n; i++)
	{
		int			w = after < 0 ? i - 1 : (after + i) % n;

		/* a worker with an open stream receives nothing else */
		if (worker_stream[w] == NULL)
			return w;
	}
	return -1;
}

/*
 * Where a transaction goes:
 *	- behind its predecessor in commit order while that one is in flight
 *	  on an active worker and the run given to that worker is shorter than
 *	  parallel_apply.group_size, so that the worker can commit the run as
 *	  one group and no commit waits for another process;
 *	- otherwise behind its latest uncommitted dependency, if that one's
 *	  worker is active;
 *	- otherwise to the next active worker in turn (next_in_turn()); with
 *	  every active worker holding an open stream, to the first worker
 *	  without one (max_streams leaves one);
 *	- a large transaction (more than PA_TXN_BUFFER, sent on before its
 *	  commit: a spilled stream replayed, say) that continues no run and
 *	  depends on nothing in flight goes to the next worker in turn among
 *	  all workers, active or not: its hand-over costs nothing next to its
 *	  size, and such transactions are where spreading pays.
 * The active set is workers 0 .. pa_leader.nactive - 1 (adapt.c).  The
 * transactions of runs that began with no uncommitted dependency are
 * counted (pa_leader.placed_free): they are what a wider set would spread,
 * and adapt.c widens only when there are enough of them.
 */
static int
choose_worker(bool large)
{
	static int	run_worker = -1;
	static int	run_length = 0;
	static bool run_free = false;
	int			nactive = pa_leader.nactive;
	int			prev = worker_of(cur_seq - 1);
	int			best;

	pa_leader.placed++;
	if (prev >= 0 && prev < nactive && prev == run_worker &&
		run_length < pa_group_size)
	{
		run_length++;
		if (run_free)
			pa_leader.placed_free++;
		return prev;
	}

	best = worker_of(cur_deps.max);
	run_free = best < 0;
	if (run_free)
		pa_leader.placed_free++;
	if (best >= nactive)
		best = -1;
	if (best < 0 && large)
		best = next_in_turn(run_worker, pa_leader.nworkers);
	if (best < 0)
		best = next_in_turn(run_worker < nactive ? run_worker : -1, nactive);
	if (best < 0)
		best = next_in_turn(-1, pa_leader.nworkers);
	Assert(best >= 0);			/* max_streams leaves workers free */
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
	int			w = choose_worker(txnbuf.len > PA_TXN_BUFFER);
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

/* Write a WAIT for dep, unless one for a later transaction of its worker was */
static void
emit_wait(uint64 dep)
{
	int			w = worker_of(dep);

	if (w < 0 || dep <= cur_wait_sent[w])
		return;					/* committed, or waited for already */
	cur_wait_sent[w] = dep;
	emit(PA_MSG_WAIT, &dep, sizeof(dep));
}

/*
 * The WAITs the next change needs: one for the latest dependency on each
 * worker (pa_dependency.h: the worker of the transaction may skip the one
 * for its own group, never the others).  When more dependencies were noted
 * than the accumulator holds, the latest transaction in flight on each
 * worker stands for them: waiting for it waits for them all.
 */
static void
emit_waits(void)
{
	int			i;

	if (cur_deps.overflow)
	{
		uint64		committed = pg_atomic_read_u64(&pa_leader.sub->committed_seq);
		bool		seen[PA_MAX_WORKERS] = {0};
		uint64		s;

		for (s = cur_seq - 1; s > committed && cur_seq - s <= PA_MAX_INFLIGHT; s--)
		{
			int			w = worker_of(s);

			if (w >= 0 && !seen[w])
			{
				seen[w] = true;
				emit_wait(s);
			}
		}
	}
	else
	{
		for (i = 0; i < cur_deps.nnoted; i++)
			emit_wait(cur_deps.noted[i]);
	}
	cur_deps.nnoted = 0;
	cur_deps.overflow = false;
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
	memset(cur_wait_sent, 0, sizeof(cur_wait_sent));
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

	emit_waits();
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

/*
 * Streamed transactions applied while they stream.
 */

/* The most streams open at once: parallel_apply.max_streams */
static int
max_streams(void)
{
	int			n = pa_max_streams < 0 ? pa_leader.nworkers / 2 : pa_max_streams;

	/* at least one worker stays for ordinary transactions */
	return Min(n, pa_leader.nworkers - 1);
}

/*
 * The first STREAM START of transaction xid: give it an idle worker, or
 * return NULL (decode spools it and it is dispatched whole at its commit).
 */
PaStream *
pa_dispatch_stream_open(TransactionId xid)
{
	PaStream   *st;
	PaMsgStream msg;
	int			w;

	Assert(cur_seq == 0);
	if (serial_until != InvalidXLogRecPtr || nstreams >= max_streams())
		return NULL;

	/* idle: nothing in flight, nothing waiting to be sent; the last first */
	pa_dispatch_process_completions();
	for (w = pa_leader.nworkers - 1; w >= 0; w--)
		if (worker_stream[w] == NULL && inflight[w] == 0 && outbox[w].len == 0)
			break;
	if (w < 0)
		return NULL;

	st = MemoryContextAllocZero(TopMemoryContext, sizeof(PaStream));
	st->xid = xid;
	st->worker = w;
	st->dep = pa_dep_stream_create();
	st->pred_sent = next_seq - 1;
	st->subxid_sent = xid;
	worker_stream[w] = st;
	nstreams++;
	pg_atomic_write_u32(&pa_leader.sub->streams_open, nstreams);

	msg.remote_xid = xid;
	msg.pred = st->pred_sent;
	write_frame(w, PA_MSG_STREAM_START, &msg, sizeof(msg));
	return st;
}

/*
 * Must the rest of the stream, from this change of sub-transaction subxid
 * on, go to a file?  Yes once its worker stopped taking changes (see
 * outbox_blocks()), and once the change would need a savepoint past
 * PA_STREAM_MAX_SAVEPOINTS: every savepoint is a sub-transaction the worker
 * keeps open until the stream ends (pgoutput does not say when one is
 * released), and a savepoint per row would pile up without bound.  Changes
 * replayed from the file at commit need none: every abort is known by then.
 */
bool
pa_dispatch_stream_spilling(PaStream *st, TransactionId subxid)
{
	if (st->replaying)
		return false;
	if (!st->spill && subxid != st->xid && subxid != st->subxid_sent &&
		list_length(st->subxacts) >= PA_STREAM_MAX_SAVEPOINTS &&
		!list_member_oid(st->subxacts, (Oid) subxid))
	{
		st->spill = true;
		ereport(DEBUG1,
				(errmsg_internal("parallel_apply spills the rest of streamed transaction %u: it has %d savepoints",
								 st->xid, PA_STREAM_MAX_SAVEPOINTS)));
	}
	return st->spill;
}

/*
 * The stream gets its place in commit order, and its worker the ring entry:
 * at STREAM COMMIT, before the replay of what was spilled (if anything was),
 * so that the position reported to the publisher stays before its commit
 * while what was spilled is replayed into its worker
 * (pa_dispatch_stream_change); pa_dispatch_stream_commit() then ends it.
 */
void
pa_dispatch_stream_replay(PaStream *st, XLogRecPtr commit_lsn,
						  TimestampTz committime)
{
	PaTxn	   *txn;

	pa_dispatch_begin(st->xid, commit_lsn, committime);
	txn = &pa_leader.sub->txns[cur_seq % PA_MAX_INFLIGHT];
	cur_worker = st->worker;
	inflight[st->worker]++;
	txn->worker = st->worker;
	pg_write_barrier();
	pg_atomic_write_u64(&txn->seq, cur_seq);
	st->replaying = true;
}

static StreamRel *
stream_rel(PaStream *st, LogicalRepRelId relid)
{
	ListCell   *lc;

	foreach(lc, st->rels)
	{
		StreamRel  *r = lfirst(lc);

		if (r->relid == relid)
			return r;
	}
	return NULL;
}

/* The stream is over (committed or aborted): its worker is free again */
static void
stream_close(PaStream *st)
{
	ListCell   *lc;

	foreach(lc, st->rels)
	{
		StreamRel  *r = lfirst(lc);

		pfree(r->msg);
	}
	list_free_deep(st->rels);
	list_free(st->subxacts);
	pa_dep_stream_free(st->dep);
	worker_stream[st->worker] = NULL;
	nstreams--;
	pg_atomic_write_u32(&pa_leader.sub->streams_open, nstreams);
	pfree(st);
}

/*
 * A RELATION message inside the stream.  One that matches the leader's copy
 * (and the stream carried none of its own for the relation) only makes sure
 * the worker has that copy; any other is the stream's own: it goes to the
 * worker, and the worker must get the leader's copy again after the stream
 * unless the stream commits.
 */
void
pa_dispatch_stream_relation(PaStream *st, LogicalRepRelId relid,
							const char *msg, int len)
{
	RelEntry   *entry = hash_search(relations, &relid, HASH_FIND, NULL);
	StreamRel  *own = stream_rel(st, relid);

	if (entry != NULL && own == NULL && entry->len == len &&
		memcmp(entry->msg, msg, len) == 0)
	{
		send_relation_if_needed(entry, st->worker);
		return;
	}
	if (own == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		own = palloc0(sizeof(StreamRel));
		own->relid = relid;
		st->rels = lappend(st->rels, own);
		MemoryContextSwitchTo(old);
	}
	else
		pfree(own->msg);
	own->msg = MemoryContextAlloc(TopMemoryContext, len);
	memcpy(own->msg, msg, len);
	own->len = len;
	if (entry != NULL)
		entry->sent[st->worker] = 0;
	write_frame(st->worker, PA_MSG_CHANGE, msg, len);
}

/* A row change (or TRUNCATE) of sub-transaction subxid of the stream */
void
pa_dispatch_stream_change(PaStream *st, TransactionId subxid,
						  const char *msg, int len,
						  LogicalRepRelId *relids, int nrelids)
{
	int			w = st->worker;
	RelEntry   *entry = NULL;
	bool		own = false;
	int			i;

	/* every transaction before this one; the stream's own, once it has one */
	uint64		before = st->replaying ? cur_seq - 1 : next_seq - 1;

	if (subxid != st->subxid_sent && !st->replaying)
	{
		write_frame(w, PA_MSG_SUBXACT, &subxid, sizeof(subxid));
		st->subxid_sent = subxid;
		if (subxid != st->xid &&
			(st->subxacts == NIL ||
			 TransactionIdFollows(subxid, (TransactionId) llast_oid(st->subxacts)) ||
			 !list_member_oid(st->subxacts, (Oid) subxid)))
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			st->subxacts = lappend_oid(st->subxacts, (Oid) subxid);
			MemoryContextSwitchTo(old);
		}
	}
	if (before != st->pred_sent)
	{
		st->pred_sent = before;
		write_frame(w, PA_MSG_PRED, &st->pred_sent, sizeof(st->pred_sent));
	}

	for (i = 0; i < nrelids; i++)
	{
		own = (stream_rel(st, relids[i]) != NULL);
		entry = hash_search(relations, &relids[i], HASH_FIND, NULL);
		if (own)
			continue;
		if (entry == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("no relation map entry for remote relation ID %u",
							relids[i])));
		send_relation_if_needed(entry, w);
	}

	pa_dep_set_committed(pg_atomic_read_u64(&pa_leader.sub->committed_seq));
	if (msg[0] == LOGICAL_REP_MSG_TRUNCATE)
		pa_dep_stream_truncate(st->dep, before, &st->deps);
	else if (own)
		pa_dep_stream_table(st->dep, entry ? entry->dep : NULL, &st->deps);
	else
		pa_dep_stream_change(st->dep, entry->dep, msg, len, &st->deps);

	/*
	 * The maximum suffices here: a stream's worker has no open group while
	 * the stream is open (it was idle when it got it), so it skips no WAIT.
	 */
	st->deps.nnoted = 0;
	st->deps.overflow = false;
	if (st->deps.max > st->wait_sent)
	{
		st->wait_sent = st->deps.max;
		write_frame(w, PA_MSG_WAIT, &st->wait_sent, sizeof(st->wait_sent));
	}
	write_frame(w, PA_MSG_CHANGE, msg, len);
}

/*
 * STREAM ABORT of the stream's top-level xid (the stream ends) or of one of
 * its sub-transactions.  Returns whether the worker had a savepoint for it
 * (always true for the top-level xid): if not, none of its changes reached
 * the worker, and nothing is sent.
 */
bool
pa_dispatch_stream_abort(PaStream *st, TransactionId subxid)
{
	int			i;

	if (subxid == st->xid)
	{
		ListCell   *lc;

		write_frame(st->worker, PA_MSG_STREAM_ABORT, &subxid, sizeof(subxid));
		/* the worker's map has the stream's descriptions, now void */
		foreach(lc, st->rels)
		{
			StreamRel  *r = lfirst(lc);
			RelEntry   *entry = hash_search(relations, &r->relid, HASH_FIND, NULL);

			if (entry != NULL)
				entry->sent[st->worker] = 0;
		}
		stream_close(st);
		return true;
	}
	for (i = list_length(st->subxacts) - 1; i >= 0; i--)
		if ((TransactionId) list_nth_oid(st->subxacts, i) == subxid)
			break;
	if (i < 0)
		return false;
	write_frame(st->worker, PA_MSG_STREAM_ABORT, &subxid, sizeof(subxid));
	st->subxacts = list_truncate(st->subxacts, i);
	st->subxid_sent = InvalidTransactionId;
	return true;
}

/*
 * STREAM COMMIT (after the replay of what was spilled, if anything was):
 * the stream gets its sequence number, its RELATION messages are merged
 * into the leader's copies (barriers for their relations), its keys are
 * recorded, and its worker commits it in its turn.
 */
void
pa_dispatch_stream_commit(PaStream *st, XLogRecPtr commit_lsn,
						  XLogRecPtr end_lsn, TimestampTz committime)
{
	PaMsgCommit commit;
	StringInfoData buf;
	int			w = st->worker;
	ListCell   *lc;

	if (!st->replaying)
		pa_dispatch_stream_replay(st, commit_lsn, committime);

	foreach(lc, st->rels)
	{
		StreamRel  *r = lfirst(lc);
		RelEntry   *entry;

		pa_dispatch_relation(r->relid, r->msg, r->len);
		entry = hash_search(relations, &r->relid, HASH_FIND, NULL);
		entry->sent[w] = entry->version;	/* the worker has it */
		pa_dep_barrier(cur_seq, entry->dep);
	}
	pa_dep_stream_commit(st->dep, cur_seq);

	fifo[cur_seq % PA_FIFO_SIZE].end_lsn = end_lsn;
	commit.commit_lsn = commit_lsn;
	commit.end_lsn = end_lsn;
	commit.committime = committime;
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (const char *) &cur_begin, sizeof(cur_begin));
	appendBinaryStringInfo(&buf, (const char *) &commit, sizeof(commit));
	write_frame(w, PA_MSG_STREAM_COMMIT, buf.data, buf.len);
	pfree(buf.data);
	cur_seq = 0;
	pa_dep_end_batch();

	pg_atomic_fetch_add_u64(&pa_leader.sub->streams_applied, 1);
	stream_close(st);
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
