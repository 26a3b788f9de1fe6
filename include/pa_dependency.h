/*-------------------------------------------------------------------------
 *
 * pa_dependency.h
 *	  The leader's dependency tracker (src/dependency.c), called by dispatch.
 *
 * A dependency is a sequence number whose commit a transaction must wait
 * for.  Because commits are ordered, "committed" is the watermark, and
 * waiting for one commit is waiting for every earlier one too; but a worker
 * does not wait for a transaction of its own open group (it is applied
 * already, in the same local transaction), so a transaction's dependencies
 * reduce only to their maximum per worker: the maximum alone could be in
 * the group while an earlier dependency is still queued on another worker.
 * PaDepAcc keeps the maximum (where the transaction goes) and the
 * dependencies noted since dispatch last took them, from which dispatch
 * writes a WAIT for each worker's latest.  Dispatch keeps, with each
 * relation's RELATION message, the PaDepRel that pa_dep_relation() returned
 * for it, so that a change costs no second relation lookup.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_DEPENDENCY_H
#define PA_DEPENDENCY_H

#include "lib/stringinfo.h"
#include "replication/logicalproto.h"

#define PA_DEP_NOTED	16

typedef struct PaDepAcc
{
	uint64		max;			/* highest uncommitted dependency, 0 if none */
	int			nnoted;			/* entries of noted[] */
	bool		overflow;		/* more were noted than noted[] holds */
	uint64		noted[PA_DEP_NOTED];	/* distinct, uncommitted, untaken */
} PaDepAcc;

typedef struct DepRel PaDepRel;	/* a relation's keys, owned by dependency.c */

extern void pa_dep_init(void);
extern void pa_dep_set_committed(uint64 committed);
extern void pa_dep_note(PaDepAcc *acc, uint64 dep);
extern void pa_dep_begin(uint64 seq, PaDepAcc *acc);
extern PaDepRel *pa_dep_relation(uint64 seq, LogicalRepRelId relid,
								 const char *msg, int len, bool changed,
								 PaDepAcc *acc);
extern void pa_dep_change(uint64 seq, PaDepRel *rel, const char *msg, int len,
						  PaDepAcc *acc);
extern void pa_dep_truncate(uint64 seq, PaDepAcc *acc);
extern void pa_dep_end_batch(void);
extern void pa_dep_barrier(uint64 seq, PaDepRel *rel);

/* a streamed transaction applied while it streams (see dependency.c) */
typedef struct DepStream PaDepStream;

extern PaDepStream *pa_dep_stream_create(void);
extern void pa_dep_stream_free(PaDepStream *st);
extern void pa_dep_stream_change(PaDepStream *st, PaDepRel *rel,
								 const char *msg, int len, PaDepAcc *acc);
extern void pa_dep_stream_table(PaDepStream *st, PaDepRel *rel, PaDepAcc *acc);
extern void pa_dep_stream_truncate(PaDepStream *st, uint64 last_seq,
								   PaDepAcc *acc);
extern void pa_dep_stream_commit(PaDepStream *st, uint64 seq);

#endif							/* PA_DEPENDENCY_H */
