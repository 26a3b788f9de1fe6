/*-------------------------------------------------------------------------
 *
 * decode.c
 *	  The leader's parser of the pgoutput stream.
 *
 * Owns: the boundaries of remote transactions (BEGIN/COMMIT and
 * STREAM START/STOP/COMMIT/ABORT) and the spool files of streamed
 * (in-progress) transactions.
 *
 * Invariants kept here:
 *	- every message PG15's pgoutput can send is recognised; two-phase
 *	  messages are refused (attach refuses two_phase subscriptions);
 *	- a streamed transaction is spooled to a temporary file, one per
 *	  top-level xid, with the 4-byte sub-transaction xid that prefixes every
 *	  change inside a stream removed; STREAM ABORT of a sub-transaction cuts
 *	  the file back to where that sub-transaction's first change began, so
 *	  only surviving changes are ever dispatched;
 *	- a streamed transaction gets its commit-order position only at STREAM
 *	  COMMIT, when its spool is replayed to dispatch as one transaction; the
 *	  RELATION messages it carried are therefore merged into the global
 *	  relation map only when it commits;
 *	- the replay goes in steps (pa_decode_replay), which stop whenever
 *	  dispatch has bytes waiting for queue memory; the leader reads nothing
 *	  else until the replay is done, so its memory stays bounded;
 *	- per-change work is O(1): find the relation id and hand the message
 *	  bytes on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "pa_leader.h"
#include "storage/buffile.h"
#include "utils/memutils.h"

typedef struct SpoolPos
{
	int			fileno;
	off_t		offset;
} SpoolPos;

typedef struct SpoolSubxact
{
	TransactionId xid;
	SpoolPos	start;			/* where its first change was written */
} SpoolSubxact;

typedef struct Spool
{
	TransactionId xid;
	BufFile    *file;
	SpoolPos	end;			/* logical end: data beyond it was aborted */
	List	   *subxacts;		/* SpoolSubxact *, in order of first change */
	TransactionId last_subxid;	/* of the last change written, if in
								 * subxacts */
} Spool;

static MemoryContext SpoolContext = NULL;
static List *spools = NIL;		/* open streamed transactions */
static Spool *cur_stream = NULL;	/* between STREAM START and STOP */
static bool in_remote_transaction = false;

/* changes replayed at most before the leader's loop gets control back */
#define PA_REPLAY_STEP	4096

/* the committed streamed transaction whose spool is being replayed */
static Spool *replay = NULL;
static SpoolPos replay_pos;		/* next change to replay */
static LogicalRepCommitData replay_commit;
static StringInfoData replay_buf;	/* the change being replayed */

void
pa_decode_init(void)
{
	SpoolContext = AllocSetContextCreate(TopMemoryContext,
										 "parallel_apply stream spools",
										 ALLOCSET_DEFAULT_SIZES);
	replay = NULL;
	replay_buf.data = NULL;
}

bool
pa_decode_in_remote_transaction(void)
{
	return in_remote_transaction;
}

static inline bool
pos_before(SpoolPos a, SpoolPos b)
{
	return a.fileno < b.fileno || (a.fileno == b.fileno && a.offset < b.offset);
}

static Spool *
spool_find(TransactionId xid, bool create)
{
	ListCell   *lc;
	Spool	   *spool;
	MemoryContext old;

	foreach(lc, spools)
	{
		spool = lfirst(lc);
		if (spool->xid == xid)
			return spool;
	}
	if (!create)
		return NULL;

	old = MemoryContextSwitchTo(SpoolContext);
	spool = palloc0(sizeof(Spool));
	spool->xid = xid;
	spool->file = BufFileCreateTemp(true);
	spools = lappend(spools, spool);
	MemoryContextSwitchTo(old);
	return spool;
}

static void
spool_free(Spool *spool)
{
	spools = list_delete_ptr(spools, spool);
	BufFileClose(spool->file);
	list_free_deep(spool->subxacts);
	pfree(spool);
}

/* Append one change (type byte + body, xid prefix removed) to the spool */
static void
spool_write(Spool *spool, TransactionId subxid, char type,
			const char *body, int bodylen)
{
	uint32		len = 1 + bodylen;

	if (subxid != spool->xid && subxid != spool->last_subxid)
	{
		bool		known = false;
		int			n = list_length(spool->subxacts);
		int			i;

		/*
		 * Most changes belong to the sub-transaction of the change before
		 * (checked above), and a sub-transaction seen for the first time
		 * usually has a newer xid than all seen so far (xids are assigned in
		 * order, parents first): so a savepoint per row costs O(1) per
		 * change, not a scan of the list.  Otherwise look from the end, as
		 * PostgreSQL 15's subxact_info_add() does.
		 */
		if (n > 0 &&
			!TransactionIdFollows(subxid,
								  ((SpoolSubxact *) llast(spool->subxacts))->xid))
		{
			for (i = n - 1; i >= 0; i--)
			{
				if (((SpoolSubxact *) list_nth(spool->subxacts, i))->xid == subxid)
				{
					known = true;
					break;
				}
			}
		}
		spool->last_subxid = subxid;
		if (!known)
		{
			MemoryContext old = MemoryContextSwitchTo(SpoolContext);
			SpoolSubxact *sx = palloc(sizeof(SpoolSubxact));

			sx->xid = subxid;
			sx->start = spool->end;
			spool->subxacts = lappend(spool->subxacts, sx);
			MemoryContextSwitchTo(old);
		}
	}

	if (BufFileSeek(spool->file, spool->end.fileno, spool->end.offset, SEEK_SET) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not seek in the spool file of streamed transaction %u: %m",
						spool->xid)));
	BufFileWrite(spool->file, &len, sizeof(len));
	BufFileWrite(spool->file, &type, 1);
	BufFileWrite(spool->file, (void *) body, bodylen);
	BufFileTell(spool->file, &spool->end.fileno, &spool->end.offset);
}

/* STREAM ABORT: drop a whole transaction or cut back to a sub-transaction */
static void
spool_abort(TransactionId xid, TransactionId subxid)
{
	Spool	   *spool = spool_find(xid, false);
	int			i;

	if (spool == NULL)
		return;					/* nothing was streamed for it */
	if (subxid == xid)
	{
		spool_free(spool);
		return;
	}
	for (i = 0; i < list_length(spool->subxacts); i++)
	{
		SpoolSubxact *sx = list_nth(spool->subxacts, i);

		if (sx->xid == subxid)
		{
			spool->end = sx->start;
			spool->last_subxid = InvalidTransactionId;
			/* it and every sub-transaction that started after it are gone */
			while (list_length(spool->subxacts) > i)
			{
				pfree(llast(spool->subxacts));
				spool->subxacts = list_delete_last(spool->subxacts);
			}
			return;
		}
	}
}

static void
read_exact(BufFile *file, void *ptr, size_t size, TransactionId xid)
{
	if (BufFileRead(file, ptr, size) != size)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read from the spool file of streamed transaction %u: %m",
						xid)));
}

static void decode_change(char type, StringInfo s, const char *msg, int msglen);

/*
 * STREAM COMMIT: give the spooled transaction its commit-order position and
 * start replaying its spool.  The replay goes on in pa_decode_replay(), in
 * steps, so that the leader never holds more than queue memory and one
 * change in memory, whatever the transaction's size.
 */
static void
spool_commit(Spool *spool, LogicalRepCommitData *commit)
{
	pa_dispatch_begin(spool->xid, commit->commit_lsn, commit->committime);

	if (BufFileSeek(spool->file, 0, 0, SEEK_SET) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not seek in the spool file of streamed transaction %u: %m",
						spool->xid)));
	replay = spool;
	replay_pos.fileno = 0;
	replay_pos.offset = 0;
	replay_commit = *commit;
	if (replay_buf.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(SpoolContext);

		initStringInfo(&replay_buf);
		MemoryContextSwitchTo(old);
	}
}

bool
pa_decode_replaying(void)
{
	return replay != NULL;
}

/*
 * Replay the spool of the streamed transaction being committed, until it
 * has all been dispatched (then its COMMIT is dispatched and the spool
 * freed), dispatch has bytes waiting for queue memory, or PA_REPLAY_STEP
 * changes have been replayed.
 */
void
pa_decode_replay(void)
{
	Spool	   *spool = replay;
	int			n = 0;

	Assert(spool != NULL);
	while (pos_before(replay_pos, spool->end))
	{
		uint32		len;
		StringInfoData s;

		CHECK_FOR_INTERRUPTS();
		/* the loop waits, or answers the publisher, then calls us again */
		if (pa_dispatch_needs_memory() || ++n > PA_REPLAY_STEP)
			return;

		read_exact(spool->file, &len, sizeof(len), spool->xid);
		resetStringInfo(&replay_buf);
		enlargeStringInfo(&replay_buf, len);
		read_exact(spool->file, replay_buf.data, len, spool->xid);
		replay_buf.len = len;

		s.data = replay_buf.data;
		s.len = len;
		s.cursor = 1;
		s.maxlen = -1;
		decode_change(replay_buf.data[0], &s, replay_buf.data, len);
		BufFileTell(spool->file, &replay_pos.fileno, &replay_pos.offset);
	}

	pa_dispatch_commit(replay_commit.commit_lsn, replay_commit.end_lsn,
					   replay_commit.committime);
	replay = NULL;
	spool_free(spool);
	if (replay_buf.maxlen > 1024 * 1024)
	{
		pfree(replay_buf.data);
		replay_buf.data = NULL;
	}
}

/*
 * A RELATION or row change, outside a stream or replayed from a spool.
 * s->cursor is just past the type byte; msg/msglen is the whole message.
 */
static void
decode_change(char type, StringInfo s, const char *msg, int msglen)
{
	switch (type)
	{
		case LOGICAL_REP_MSG_RELATION:
			{
				LogicalRepRelId relid = pq_getmsgint(s, 4);

				pa_dispatch_relation(relid, msg, msglen);
				break;
			}
		case LOGICAL_REP_MSG_INSERT:
		case LOGICAL_REP_MSG_UPDATE:
		case LOGICAL_REP_MSG_DELETE:
			{
				LogicalRepRelId relid = pq_getmsgint(s, 4);

				pa_dispatch_change(msg, msglen, &relid, 1);
				break;
			}
		case LOGICAL_REP_MSG_TRUNCATE:
			{
				bool		cascade;
				bool		restart;
				List	   *relids = logicalrep_read_truncate(s, &cascade, &restart);
				LogicalRepRelId *ids = palloc(sizeof(LogicalRepRelId) * Max(list_length(relids), 1));
				ListCell   *lc;
				int			n = 0;

				foreach(lc, relids)
					ids[n++] = lfirst_oid(lc);
				pa_dispatch_change(msg, msglen, ids, n);
				pfree(ids);
				list_free(relids);
				break;
			}
		case LOGICAL_REP_MSG_TYPE:
		case LOGICAL_REP_MSG_MESSAGE:
			break;				/* workers need neither */
		default:
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("invalid logical replication message type \"%c\"", type)));
	}
}

/* One pgoutput message; s->cursor is at its type byte */
void
pa_decode_message(StringInfo s)
{
	const char *msg = s->data + s->cursor;
	int			msglen = s->len - s->cursor;
	char		type = pq_getmsgbyte(s);

	/* inside a stream, changes carry a sub-transaction xid and are spooled */
	if (cur_stream != NULL)
	{
		switch (type)
		{
			case LOGICAL_REP_MSG_RELATION:
			case LOGICAL_REP_MSG_INSERT:
			case LOGICAL_REP_MSG_UPDATE:
			case LOGICAL_REP_MSG_DELETE:
			case LOGICAL_REP_MSG_TRUNCATE:
				{
					TransactionId subxid = pq_getmsgint(s, 4);

					spool_write(cur_stream, subxid, type,
								s->data + s->cursor, s->len - s->cursor);
					return;
				}
			case LOGICAL_REP_MSG_TYPE:
			case LOGICAL_REP_MSG_MESSAGE:
				return;
			default:
				break;
		}
	}

	switch (type)
	{
		case LOGICAL_REP_MSG_BEGIN:
			{
				LogicalRepBeginData begin;

				logicalrep_read_begin(s, &begin);
				in_remote_transaction = true;
				pa_dispatch_begin(begin.xid, begin.final_lsn, begin.committime);
				break;
			}
		case LOGICAL_REP_MSG_COMMIT:
			{
				LogicalRepCommitData commit;

				logicalrep_read_commit(s, &commit);
				pa_dispatch_commit(commit.commit_lsn, commit.end_lsn, commit.committime);
				in_remote_transaction = false;
				break;
			}
		case LOGICAL_REP_MSG_ORIGIN:
			break;				/* as the built-in worker: nothing to do */
		case LOGICAL_REP_MSG_STREAM_START:
			{
				bool		first_segment;
				TransactionId xid = logicalrep_read_stream_start(s, &first_segment);

				if (cur_stream != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg_internal("STREAM START for transaction %u inside the stream of transaction %u",
											 xid, cur_stream->xid)));
				cur_stream = spool_find(xid, true);
				break;
			}
		case LOGICAL_REP_MSG_STREAM_STOP:
			if (cur_stream == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg_internal("STREAM STOP without STREAM START")));
			cur_stream = NULL;
			break;
		case LOGICAL_REP_MSG_STREAM_ABORT:
			{
				TransactionId xid;
				TransactionId subxid;

				logicalrep_read_stream_abort(s, &xid, &subxid);
				spool_abort(xid, subxid);
				break;
			}
		case LOGICAL_REP_MSG_STREAM_COMMIT:
			{
				LogicalRepCommitData commit;
				TransactionId xid = logicalrep_read_stream_commit(s, &commit);
				Spool	   *spool = spool_find(xid, true);

				spool_commit(spool, &commit);
				break;
			}
		case LOGICAL_REP_MSG_BEGIN_PREPARE:
		case LOGICAL_REP_MSG_PREPARE:
		case LOGICAL_REP_MSG_COMMIT_PREPARED:
		case LOGICAL_REP_MSG_ROLLBACK_PREPARED:
		case LOGICAL_REP_MSG_STREAM_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("parallel_apply does not apply two-phase transactions")));
			break;
		default:
			decode_change(type, s, msg, msglen);
			break;
	}
}
