/*-------------------------------------------------------------------------
 *
 * pa_dependency.h
 *	  The leader's dependency tracker (src/dependency.c), called by dispatch.
 *
 * A dependency is a sequence number whose commit a transaction must wait
 * for.  Because commits are ordered, "committed" is the watermark, so a
 * transaction's dependencies reduce to their maximum; PaDepAcc also counts
 * how many distinct uncommitted transactions it depends on (0, 1 or "2 or
 * more"), which decides where dispatch puts it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_DEPENDENCY_H
#define PA_DEPENDENCY_H

#include "lib/stringinfo.h"
#include "replication/logicalproto.h"

typedef struct PaDepAcc
{
	uint64		max;			/* highest dependency, 0 if none */
	uint64		first;			/* first distinct dependency seen */
	int			ndistinct;		/* distinct dependencies, capped at 2 */
} PaDepAcc;

extern void pa_dep_init(void);
extern void pa_dep_set_committed(uint64 committed);
extern void pa_dep_note(PaDepAcc *acc, uint64 dep);
extern void pa_dep_begin(uint64 seq, PaDepAcc *acc);
extern void pa_dep_relation(uint64 seq, LogicalRepRelId relid,
							const char *msg, int len, bool changed,
							PaDepAcc *acc);
extern void pa_dep_change(uint64 seq, const char *msg, int len, PaDepAcc *acc);
extern void pa_dep_truncate(uint64 seq, PaDepAcc *acc);
extern void pa_dep_invalidate(void);

#endif							/* PA_DEPENDENCY_H */
