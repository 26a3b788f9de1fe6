/*-------------------------------------------------------------------------
 *
 * pa_apply.h
 *	  Contract between an apply worker's main loop (src/worker.c) and the
 *	  row applier (src/apply.c, src/relmap.c).
 *
 * The worker loop owns transaction boundaries, commit order and the
 * replication origin: it calls pa_apply_message() for every row-level
 * pgoutput message of the remote transaction it is applying, then commits
 * (src/commit.c).  The applier owns everything between: the relation map,
 * conversion of remote tuples, executor state, partition routing, privilege
 * checks, and the error context that names the remote transaction, the
 * relation and the column being processed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_APPLY_H
#define PA_APPLY_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "replication/logicalproto.h"

/*
 * What the error context callback reports.  The worker loop fills in the
 * transaction fields at BEGIN and clears them after COMMIT; the applier
 * fills in the message type, relation and column as it goes.
 */
typedef struct PaErrorContext
{
	const char *origin_name;	/* "pg_<suboid>" */
	LogicalRepMsgType command;	/* 0 when not processing a message */
	char	   *nspname;		/* target relation, or NULL */
	char	   *relname;
	const char *attname;		/* column being converted, or NULL */
	TransactionId remote_xid;	/* InvalidTransactionId outside a remote xact */
	XLogRecPtr	finish_lsn;		/* remote commit LSN of that transaction */
} PaErrorContext;

extern PGDLLIMPORT PaErrorContext pa_errctx;

/* the subscription being applied; set by the worker before pa_apply_init() */
extern PGDLLIMPORT Oid pa_apply_subid;

/*
 * The last transaction before the worker's open commit group (0 if none),
 * set by the worker loop at BEGIN: a row an UPDATE or DELETE cannot find is
 * looked for again once it has committed.
 */
extern PGDLLIMPORT uint64 pa_apply_predecessor;

/*
 * The publisher's commit time of the remote transaction being applied (set
 * by the worker loop at BEGIN), and how many of its row-level changes
 * (INSERT, UPDATE, DELETE, TRUNCATE) the applier has begun so far (reset
 * to 0 by the worker loop at BEGIN): a conflict's place in the history.
 */
extern PGDLLIMPORT TimestampTz pa_apply_commit_time;
extern PGDLLIMPORT int pa_apply_change;

/* errcontext callback; push it with arg NULL around message processing */
extern void pa_apply_error_callback(void *arg);

/* what that callback adds, palloc'd; NULL outside a message */
extern char *pa_apply_error_context(void);

/*
 * Once per worker process, after the database connection is made and
 * before the first message: creates the relation map (which registers its
 * relcache invalidation callback) and the applier's memory contexts.
 */
extern void pa_apply_init(void);

/*
 * Apply one pgoutput message.  s->data[s->cursor] is the message type byte,
 * one of LOGICAL_REP_MSG_RELATION, _TYPE, _INSERT, _UPDATE, _DELETE,
 * _TRUNCATE (any streamed-transaction xid prefix has already been removed).
 * The message is applied inside the current local transaction, which is
 * started if none is open (StartTransactionCommand); the caller commits.
 * Errors are thrown with ereport; the caller does not catch them.
 */
extern void pa_apply_message(StringInfo s);

#endif							/* PA_APPLY_H */
