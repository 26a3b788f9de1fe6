/*-------------------------------------------------------------------------
 *
 * pa_dependency.h
 *	  The leader's dependency tracker (src/dependency.c), called by dispatch.
 *
 * A dependency is a sequence number whose commit a transaction must wait
 * for.  Because commits are ordered, "committed" is the watermark, so a
 * transaction's dependencies reduce to their maximum, which PaDepAcc
 * accumulates.  Dispatch keeps, with each relation's RELATION message, the
 * PaDepRel that pa_dep_relation() returned for it, so that a change costs
 * no second relation lookup.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_DEPENDENCY_H
#define PA_DEPENDENCY_H

#include "lib/stringinfo.h"
#include "replication/logicalproto.h"

typedef struct PaDepAcc
{
	uint64		max;			/* highest uncommitted dependency, 0 if none */
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
