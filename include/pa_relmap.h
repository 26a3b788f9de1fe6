/*-------------------------------------------------------------------------
 *
 * pa_relmap.h
 *	  Per-process map from remote relations to local replication targets.
 *
 * Internal to the row applier (src/apply.c, src/relmap.c).  An entry
 * describes one remote relation as last announced by a RELATION message,
 * and, once opened, the local table it is applied to: the attribute map
 * from local columns to remote ones and whether UPDATE/DELETE can locate
 * rows.  Partition entries describe a leaf partition reached by tuple
 * routing from a mapped partitioned table; they share the root entry's
 * remote description.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_RELMAP_H
#define PA_RELMAP_H

#include "access/attmap.h"
#include "fmgr.h"
#include "replication/logicalproto.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"

/*
 * Validity of an entry's local-side data.  The relcache callback moves an
 * entry to PA_RELMAP_INVALID from any state; an entry being rebuilt that
 * is invalidated meanwhile is thus rebuilt again at its next open.
 */
typedef enum PaRelMapState
{
	PA_RELMAP_INVALID = 0,		/* resolve and rebuild at next open */
	PA_RELMAP_BUILDING,			/* rebuild in progress (or failed) */
	PA_RELMAP_VALID				/* derived data matches the local rel */
} PaRelMapState;

/* A local column's input function, looked up at its first use */
typedef struct PaColumnInput
{
	char		format;			/* LOGICALREP_COLUMN_TEXT or _BINARY; 0 until
								 * looked up */
	Oid			typioparam;
	FmgrInfo	func;
} PaColumnInput;

typedef struct PaRelMapEntry
{
	/*
	 * Remote description.  Owned by the entry for a root entry; a partition
	 * entry points at its root entry's copy (partition entries are dropped
	 * whenever the root's description is replaced).
	 */
	LogicalRepRelation *remoterel;

	PaRelMapState state;

	Oid			localreloid;	/* local relation, once resolved */
	Relation	localrel;		/* set by the open functions; only valid
								 * until the caller closes it */
	AttrMap    *attrmap;		/* local attno - 1 -> remote column index, or
								 * -1 (dropped, generated or not sent) */
	PaColumnInput *colinput;	/* per local column (attrmap's length), or
								 * NULL until the first conversion */
	MemoryContext inputcxt;		/* holds colinput and the functions' data */
	bool		updatable;		/* local RI/PK columns all in the remote RI */
	bool		ready;			/* pg_subscription_rel says READY: apply */
} PaRelMapEntry;

extern void pa_relmap_init(void);
extern void pa_relmap_update(LogicalRepRelation *remoterel);
extern PaRelMapEntry *pa_rel_open(LogicalRepRelId remoteid, LOCKMODE lockmode);
extern void pa_rel_close(PaRelMapEntry *entry, LOCKMODE lockmode);
extern PaRelMapEntry *pa_partition_open(PaRelMapEntry *root, Relation partrel,
										AttrMap *map);
extern FmgrInfo *pa_rel_column_input(PaRelMapEntry *entry, int attoff,
									 Oid typid, char format,
									 Oid *typioparam);
extern void pa_check_target_rel(Relation rel, const char *nspname,
								const char *relname);

#endif							/* PA_RELMAP_H */
