/*-------------------------------------------------------------------------
 *
 * pa_conflict.h
 *	  Conflicts met while a change is applied (src/conflict.c), for the row
 *	  applier (src/apply.c), the apply worker loop (src/worker.c) and the
 *	  views (src/sqlapi.c).
 *
 * The types and their names are PostgreSQL 18's (replication/conflict.h),
 * in the order of pg_stat_subscription_stats' confl_* columns.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_CONFLICT_H
#define PA_CONFLICT_H

#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "parallel_apply.h"

typedef enum PaConflictType
{
	PA_CT_INSERT_EXISTS,		/* INSERT: the key is taken by a local row */
	PA_CT_UPDATE_ORIGIN_DIFFERS,	/* UPDATE of a row another origin wrote */
	PA_CT_UPDATE_EXISTS,		/* UPDATE: the new key is taken */
	PA_CT_UPDATE_MISSING,		/* UPDATE: no row to update */
	PA_CT_DELETE_ORIGIN_DIFFERS,	/* DELETE of a row another origin wrote */
	PA_CT_DELETE_MISSING,		/* DELETE: no row to delete */
	PA_CT_MULTIPLE_UNIQUE_CONFLICTS /* the new row's keys are taken by
									 * several local rows */
} PaConflictType;

StaticAssertDecl(PA_CT_MULTIPLE_UNIQUE_CONFLICTS + 1 == PA_NUM_CONFLICT_TYPES,
				 "PA_NUM_CONFLICT_TYPES must count PaConflictType");

/* parallel_apply.conflict_log: where conflicts are recorded */
typedef enum PaConflictLog
{
	PA_CONFLICT_LOG_LOG = 1,	/* the server log */
	PA_CONFLICT_LOG_TABLE = 2,	/* parallel_apply.conflict_history */
	PA_CONFLICT_LOG_BOTH = 3
} PaConflictLog;

extern int	pa_conflict_log;

/* PostgreSQL 18's name of a conflict type ("insert_exists", ...) */
extern const char *pa_conflict_type_name(PaConflictType type);

/*
 * Once per worker process: the subscription slot whose counters it adds to,
 * its own worker slot (conflict_failed), and the subscription's name.
 */
extern void pa_conflict_init(PaSub *sub, PaWorker *me, const char *subname);

/*
 * Whether every transaction before the worker's open commit group has
 * committed; and the wait until they have (a heavyweight-lock wait).  A
 * conflict is only reported when the first holds, so that it is one that
 * applying in the publisher's order, one transaction at a time, meets too.
 */
extern bool pa_predecessors_committed(void);
extern void pa_wait_predecessors(void);

/*
 * The unique, immediately checked indexes of relinfo's relation (whose
 * indexes are open): where PostgreSQL 18 looks for taken keys.  Passed as
 * the arbiter indexes of ExecInsertIndexTuples(..., noDupErr = true, ...),
 * which inserts the new row's entries without raising a unique violation
 * and says which of them may collide.
 */
extern List *pa_conflict_indexes(ResultRelInfo *relinfo);

/*
 * The new row in slot (an INSERT's, or an UPDATE's: update) was written
 * with its index entries, and indexes (what ExecInsertIndexTuples()
 * returned: those of pa_conflict_indexes() among them may hold its key in
 * another row) are to be checked.  Looks
 * for such rows; if there are, waits for the predecessors and looks again;
 * then reports insert_exists, update_exists or multiple_unique_conflicts
 * and raises the ERROR.  If there are none (the other row's writer went
 * away) the new row stands.  searchslot is the row an UPDATE searched for
 * (NULL for an INSERT).
 */
extern void pa_check_unique(EState *estate, ResultRelInfo *relinfo,
							TupleTableSlot *slot, List *indexes,
							TupleTableSlot *searchslot, bool update);

/*
 * Whether localslot, the local row an UPDATE or DELETE found, was last
 * written by another origin than the subscription's or by a local
 * transaction (needs track_commit_timestamp, else false).
 */
extern bool pa_origin_differs(TupleTableSlot *localslot);

/*
 * Report update_origin_differs or delete_origin_differs (LOG, when the
 * transaction commits: pa_conflict_commit); the caller then applies the
 * change.
 * remoteslot is the remote new row (UPDATE) or NULL.
 */
extern void pa_report_origin_differs(EState *estate, ResultRelInfo *relinfo,
									 PaConflictType type,
									 TupleTableSlot *searchslot,
									 TupleTableSlot *localslot,
									 TupleTableSlot *remoteslot);

/*
 * Report update_missing or delete_missing (LOG, when the transaction
 * commits); the caller skips the change.  The caller has already looked
 * again after the predecessors committed.
 */
extern void pa_report_missing(EState *estate, ResultRelInfo *relinfo,
							  PaConflictType type,
							  TupleTableSlot *searchslot,
							  TupleTableSlot *remoteslot);

/*
 * The worker's local transaction (a commit group) has committed: log and
 * count its LOG-level conflicts, deferred until now, and write the history
 * rows of its conflicts into parallel_apply.conflict_history, in a
 * transaction of their own.  Called outside any transaction.
 */
extern void pa_conflict_commit(void);

/*
 * It has aborted: forget its LOG-level conflicts (the transactions are
 * applied again, and meet them again), and write the history rows of the
 * ERROR-level one, in a transaction of their own.  Called outside any
 * transaction.  A failure to write history rows is a WARNING.
 */
extern void pa_conflict_abort(void);

#endif							/* PA_CONFLICT_H */
