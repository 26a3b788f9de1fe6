/*-------------------------------------------------------------------------
 *
 * pa_lookup.h
 *	  Finding the local row a remote UPDATE or DELETE names (src/lookup.c),
 *	  for the row applier (src/apply.c), and the per-relation lookup
 *	  statistics shown by parallel_apply.stat_relations (src/sqlapi.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_LOOKUP_H
#define PA_LOOKUP_H

#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "port/atomics.h"
#include "replication/logicalproto.h"
#include "utils/relcache.h"

/* parallel_apply.ri_full_index */
typedef enum PaRiFullIndex
{
	PA_RI_FULL_INDEX_OFF,		/* PostgreSQL 15: a sequential scan */
	PA_RI_FULL_INDEX_AUTO		/* the best usable index, else a scan */
} PaRiFullIndex;

extern int	pa_ri_full_index;

/*
 * Lookup statistics of one (subscription, local relation), in a shared
 * hash table.  Membership is protected by PaShared->lock; the counters are
 * atomics any worker of the subscription adds to; index is written by the
 * worker that (re)chooses the lookup method, and read as a hint.
 */
typedef struct PaRelStatsKey
{
	Oid			subid;
	Oid			relid;
} PaRelStatsKey;

typedef struct PaRelStats
{
	PaRelStatsKey key;
	char		replident;		/* the local relation's relreplident */
	Oid			index;			/* index used for lookups, InvalidOid for
								 * a sequential scan */
	pg_atomic_uint64 lookups;	/* rows looked up */
	pg_atomic_uint64 not_found; /* of which not found */
	pg_atomic_uint64 seq_scans; /* of which by a sequential scan */
} PaRelStats;

#define PA_MAX_REL_STATS	1024	/* entries of the shared hash table */

extern Size pa_rel_stats_shmem_size(void);
extern void pa_rel_stats_shmem_init(void);
extern void pa_rel_stats_forget(Oid subid);
extern HTAB *pa_rel_stats;

/*
 * Once per worker process, with a database connection: the lookup cache
 * and its relcache invalidation callback.
 */
extern void pa_lookup_init(Oid subid);

/*
 * Find the local row of localrel that remoteslot (the remote old row, or
 * its key, in localrel's rowtype) identifies, lock it and return it in
 * *localslot (created in estate's tuple table).  remoterel is the remote
 * description the row came with.  Returns false if there is none.
 */
extern bool pa_lookup_row(EState *estate, Relation localrel,
						  LogicalRepRelation *remoterel,
						  TupleTableSlot *remoteslot,
						  TupleTableSlot **localslot);

/* the replica identity index of rel, else its primary key, else InvalidOid */
extern Oid	pa_identity_index(Relation rel);

/* a RELATION message replaced a remote description (src/relmap.c) */
extern void pa_lookup_remote_changed(void);

#endif							/* PA_LOOKUP_H */
