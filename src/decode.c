/*-------------------------------------------------------------------------
 *
 * decode.c
 *	  The leader's parser of the pgoutput stream.
 *
 * Owns: the boundaries of remote transactions (BEGIN/COMMIT and
 * STREAM START/STOP/COMMIT/ABORT), which streamed (in-progress)
 * transactions are applied while they stream and which are spilled, and
 * the spool files of the latter.
 *
 * A streamed transaction is, from its first STREAM START, either applied
 * while it streams (dispatch gave it a worker: its changes go there as they
 * arrive) or spooled (no worker could take it: its changes go to a file and
 * it is dispatched whole at its commit, as PostgreSQL 15's own worker
 * does).  A stream applied while it streams whose worker stops taking its
 * changes (dispatch says so) spills: the rest goes to a file, replayed into
 * the same worker at its commit.
 *
 * Invariants kept here:
 *	- every message PG15's pgoutput can send is recognised; two-phase
 *	  messages are refused (attach refuses two_phase subscriptions);
 *	- a spool file holds the changes of one top-level xid, each with the
 *	  4-byte sub-transaction xid that prefixed it; STREAM ABORT of a
 *	  sub-transaction cuts the file back to where that sub-transaction's
 *	  first change began (to its start when the sub-transaction began in
 *	  the worker), so only surviving changes are ever dispatched from it;
 *	- a STREAM ABORT of a transaction or sub-transaction never seen is
 *	  ignored (a PostgreSQL 18 publisher sends them); STREAM STOP without
 *	  STREAM START, and STREAM COMMIT of a transaction never streamed, are
 *	  protocol errors;
 *	- a streamed transaction gets its commit-order position only at STREAM
 *	  COMMIT; the RELATION messages it carried are merged into the global
 *	  relation map only then (dispatch.c);
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
	PaStream   *stream;			/* applied while it streams, by this worker
								 * of dispatch's; NULL: spooled */
	BufFile    *file;			/* NULL until a change is spilled */
	SpoolPos	end;			/* logical end: data beyond it was aborted */
	List	   *subxacts;		/* SpoolSubxact *, in order of first change */
	TransactionId last_subxid;	/* of the last change written, if in
								 * subxacts */
	bool		counted;		/* in streams_spilled */
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
static StringInfoData stream_buf;	/* a change of a stream, xid removed */

void
pa_decode_init(void)
{
	MemoryContext old;

	SpoolContext = AllocSetContextCreate(TopMemoryContext,
										 "parallel_apply stream spools",
										 ALLOCSET_DEFAULT_SIZES);
	replay = NULL;
	replay_buf.data = NULL;
	old = MemoryContextSwitchTo(SpoolContext);
	initStringInfo(&stream_buf);
	MemoryContextSwitchTo(old);
	cur_stream = NULL;
	spools = NIL;
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
	spools = lappend(spools, spool);
	MemoryContextSwitchTo(old);
	return spool;
}

static void
spool_free(Spool *spool)
{
	spools = list_delete_ptr(spools, spool);
	if (spool->file != NULL)
		BufFileClose(spool->file);
	list_free_deep(spool->subxacts);
	pfree(spool);
}

/*
 * Append one change to the spool: its length (type byte and body), its
 * sub-transaction xid, its type byte, its body (the xid prefix removed)
 */
static void
spool_write(Spool *spool, TransactionId subxid, char type,
			const char *body, int bodylen)
{
	uint32		len = 1 + bodylen;

	if (spool->file == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(SpoolContext);

		spool->file = BufFileCreateTemp(true);
		MemoryContextSwitchTo(old);
	}
	if (!spool->counted)
	{
		spool->counted = true;
		pg_atomic_fetch_add_u64(&pa_leader.sub->streams_spilled, 1);
	}
	pg_atomic_fetch_add_u64(&pa_leader.sub->bytes_spilled,
							sizeof(len) + sizeof(subxid) + len);

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
	BufFileWrite(spool->file, &subxid, sizeof(subxid));
	BufFileWrite(spool->file, &type, 1);
	BufFileWrite(spool->file, (void *) body, bodylen);
	BufFileTell(spool->file, &spool->end.fileno, &spool->end.offset);
}

/*
 * STREAM ABORT: drop a whole transaction or cut back to a sub-transaction;
 * one never seen (nothing was streamed for it) is ignored
 */
static void
spool_abort(TransactionId xid, TransactionId subxid)
{
	Spool	   *spool = spool_find(xid, false);
	int			i;

	if (spool == NULL)
		return;
	if (subxid == xid)
	{
		if (spool->stream != NULL)
			(void) pa_dispatch_stream_abort(spool->stream, xid);
		spool_free(spool);
		return;
	}

	/*
	 * A sub-transaction that began in the worker: the worker rolls back to
	 * its savepoint, and whatever was spilled since belongs to it (or to
	 * sub-transactions inside it).
	 */
	if (spool->stream != NULL &&
		pa_dispatch_stream_abort(spool->stream, subxid))
	{
		spool->end.fileno = 0;
		spool->end.offset = 0;
		spool->last_subxid = InvalidTransactionId;
		list_free_deep(spool->subxacts);
		spool->subxacts = NIL;
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

static void decode_change(char type, StringInfo s, const char *msg, int msglen,
						  PaStream *stream, TransactionId subxid);

/*
 * STREAM COMMIT: give the spooled transaction its commit-order position and
 * start replaying its spool.  The replay goes on in pa_decode_replay(), in
 * steps, so that the leader never holds more than queue memory and one
 * change in memory, whatever the transaction's size.
 */
static void
spool_commit(Spool *spool, LogicalRepCommitData *commit)
{
	/* applied while it streamed, nothing spilled: it commits now */
	if (spool->stream != NULL &&
		(spool->file == NULL || !pos_before((SpoolPos) {0, 0}, spool->end)))
	{
		pa_dispatch_stream_commit(spool->stream, commit->commit_lsn,
								  commit->end_lsn, commit->committime);
		spool->stream = NULL;
		spool_free(spool);
		return;
	}

	/* nothing survived of a spooled one: an empty transaction */
	if (spool->stream == NULL && spool->file == NULL)
	{
		pa_dispatch_begin(spool->xid, commit->commit_lsn, commit->committime);
		pa_dispatch_commit(commit->commit_lsn, commit->end_lsn,
						   commit->committime);
		spool_free(spool);
		return;
	}

	/* the file is replayed into the stream's worker, or as a transaction */
	if (spool->stream != NULL)
		pa_dispatch_stream_replay(spool->stream, commit->commit_lsn,
								  commit->committime);
	else
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
		TransactionId subxid;
		StringInfoData s;

		CHECK_FOR_INTERRUPTS();
		/* the loop waits, or answers the publisher, then calls us again */
		if (pa_dispatch_needs_memory() || ++n > PA_REPLAY_STEP)
			return;

		read_exact(spool->file, &len, sizeof(len), spool->xid);
		read_exact(spool->file, &subxid, sizeof(subxid), spool->xid);
		resetStringInfo(&replay_buf);
		enlargeStringInfo(&replay_buf, len);
		read_exact(spool->file, replay_buf.data, len, spool->xid);
		replay_buf.len = len;

		s.data = replay_buf.data;
		s.len = len;
		s.cursor = 1;
		s.maxlen = -1;
		decode_change(replay_buf.data[0], &s, replay_buf.data, len,
					  spool->stream, subxid);
		BufFileTell(spool->file, &replay_pos.fileno, &replay_pos.offset);
	}

	if (spool->stream != NULL)
		pa_dispatch_stream_commit(spool->stream, replay_commit.commit_lsn,
								  replay_commit.end_lsn,
								  replay_commit.committime);
	else
		pa_dispatch_commit(replay_commit.commit_lsn, replay_commit.end_lsn,
						   replay_commit.committime);
	spool->stream = NULL;
	replay = NULL;
	spool_free(spool);
	if (replay_buf.maxlen > 1024 * 1024)
	{
		pfree(replay_buf.data);
		replay_buf.data = NULL;
	}
}

/*
 * A RELATION or row change, of an ordinary transaction, of a stream applied
 * while it streams (stream, subxid), or replayed from a spool.  s->cursor is
 * just past the type byte; msg/msglen is the whole message.
 */
static void
decode_change(char type, StringInfo s, const char *msg, int msglen,
			  PaStream *stream, TransactionId subxid)
{
	switch (type)
	{
		case LOGICAL_REP_MSG_RELATION:
			{
				LogicalRepRelId relid = pq_getmsgint(s, 4);

				if (stream != NULL)
					pa_dispatch_stream_relation(stream, relid, msg, msglen);
				else
					pa_dispatch_relation(relid, msg, msglen);
				break;
			}
		case LOGICAL_REP_MSG_INSERT:
		case LOGICAL_REP_MSG_UPDATE:
		case LOGICAL_REP_MSG_DELETE:
			{
				LogicalRepRelId relid = pq_getmsgint(s, 4);

				if (stream != NULL)
					pa_dispatch_stream_change(stream, subxid, msg, msglen,
											  &relid, 1);
				else
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
				if (stream != NULL)
					pa_dispatch_stream_change(stream, subxid, msg, msglen, ids, n);
				else
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
					PaStream   *stream = cur_stream->stream;
					StringInfoData c;

					if (stream == NULL ||
						pa_dispatch_stream_spilling(stream, subxid))
					{
						spool_write(cur_stream, subxid, type,
									s->data + s->cursor, s->len - s->cursor);
						return;
					}

					/* to the worker: the message without its xid prefix */
					resetStringInfo(&stream_buf);
					appendStringInfoChar(&stream_buf, type);
					appendBinaryStringInfo(&stream_buf, s->data + s->cursor,
										   s->len - s->cursor);
					c.data = stream_buf.data;
					c.len = stream_buf.len;
					c.cursor = 1;
					c.maxlen = -1;
					decode_change(type, &c, stream_buf.data, stream_buf.len,
								  stream, subxid);
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
							 errmsg("STREAM START for transaction %u inside the stream of transaction %u",
									xid, cur_stream->xid)));
				if (in_remote_transaction)
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("STREAM START for transaction %u inside a remote transaction",
									xid)));
				cur_stream = spool_find(xid, false);
				if (cur_stream == NULL)
				{
					cur_stream = spool_find(xid, true);
					cur_stream->stream = pa_dispatch_stream_open(xid);
				}
				break;
			}
		case LOGICAL_REP_MSG_STREAM_STOP:
			if (cur_stream == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("STREAM STOP without STREAM START")));
			cur_stream = NULL;
			break;
		case LOGICAL_REP_MSG_STREAM_ABORT:
			{
				TransactionId xid;
				TransactionId subxid;

				logicalrep_read_stream_abort(s, &xid, &subxid);
				if (cur_stream != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("STREAM ABORT for transaction %u inside the stream of transaction %u",
									xid, cur_stream->xid)));
				spool_abort(xid, subxid);
				break;
			}
		case LOGICAL_REP_MSG_STREAM_COMMIT:
			{
				LogicalRepCommitData commit;
				TransactionId xid = logicalrep_read_stream_commit(s, &commit);
				Spool	   *spool;

				if (cur_stream != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("STREAM COMMIT for transaction %u inside the stream of transaction %u",
									xid, cur_stream->xid)));
				spool = spool_find(xid, false);
				if (spool == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("STREAM COMMIT for transaction %u without STREAM START",
									xid)));
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
			decode_change(type, s, msg, msglen, NULL, InvalidTransactionId);
			break;
	}
}
