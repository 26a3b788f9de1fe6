/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  Finding the local row a remote UPDATE or DELETE names.
 *
 * Owns: how each local target relation is searched, the per-process cache
 * of that choice, the comparison of a candidate row with the remote row,
 * and the lookup statistics of parallel_apply.stat_relations.
 *
 * A relation with a replica identity index or a primary key is searched
 * through it, as PostgreSQL 15 does (RelationFindReplTupleByIndex).  One
 * whose publisher sends REPLICA IDENTITY FULL and that has neither is where
 * PostgreSQL 15 scans the whole table for every row; here it is searched
 * through the best usable index:
 *
 *	- candidates are valid, ready, non-partial btree and hash indexes whose
 *	  first key column is a plain column the publisher sends; the scan keys
 *	  are the leading plain, replicated key columns (an expression column
 *	  ends them), with the index opclass's equality operator and the
 *	  index's collation; a NULL is searched as IS NULL (SK_SEARCHNULL; a
 *	  hash index cannot, so such a row is found by a scan);
 *	- unique indexes come first, then the fewest estimated rows per key
 *	  (reltuples, and pg_statistic's n_distinct and null fraction of the
 *	  key columns, taken as independent), then, when statistics are
 *	  missing, more key columns and the narrower key, then fewer pages;
 *	- every candidate row is compared with the whole remote row (every
 *	  local column the publisher sends), so only an equal row is changed,
 *	  and exactly one of several equal rows.
 *
 * Columns are compared with their type's default equality operator under
 * the column's collation, as PostgreSQL compares them; a type without one
 * (point, box, polygon, circle, path, line, lseg, json, xml, ...) is
 * compared by datum image (datum_image_eq: the same bytes once detoasted),
 * so tables with such columns replicate UPDATE and DELETE, which
 * PostgreSQL 15 to 18 refuse ("could not identify an equality operator").
 *
 * The choice is cached per local relation and dropped by the relcache
 * invalidation of the relation (an index created, dropped or made valid,
 * ANALYZE's new statistics) and by a new remote description.  A relation
 * with no usable index is scanned; that is logged once per relation and
 * process, with a hint naming the column an index would help most on.
 *
 * Invariants kept here: a row is changed only if it equals the remote row
 * on every compared column (no false match whatever index is used); the
 * row is locked (LockTupleExclusive) before it is returned, waiting for a
 * concurrent writer first, as PostgreSQL does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/amapi.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_statistic.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "pa_lookup.h"
#include "parallel_apply.h"
#include "storage/lmgr.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

int			pa_ri_full_index = PA_RI_FULL_INDEX_AUTO;
HTAB	   *pa_rel_stats = NULL;

/* How one local relation is searched, cached until it is invalidated */
typedef struct LookupEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	int			method;			/* a LookupMethod: what it was set up for */
	uint64		generation;		/* remote descriptions' generation */
	MemoryContext cxt;			/* everything below */

	/* the chosen index (InvalidOid: a sequential scan), and its keys */
	Oid			indexoid;
	bool		searchnulls;	/* the index can search IS NULL */
	int			nkeys;
	AttrNumber	heapatt[INDEX_MAX_KEYS];	/* table column of each key */
	RegProcedure keyproc[INDEX_MAX_KEYS];
	Oid			keycoll[INDEX_MAX_KEYS];
	StrategyNumber strategy;

	/* comparison with the remote row, per local column */
	int			natts;
	bool	   *compare;		/* sent by the publisher, not dropped */
	FmgrInfo   *eq;				/* equality function; fn_oid invalid: by
								 * datum image */
	Oid		   *coll;

	bool		said_scan;		/* the sequential scan was logged */
	PaRelStats *stats;			/* shared counters, or NULL */
} LookupEntry;

static HTAB *lookup_cache = NULL;
static uint64 remote_generation = 0;
static Oid	lookup_subid = InvalidOid;

static void
lookup_invalidate_cb(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	LookupEntry *e;

	hash_seq_init(&status, lookup_cache);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (!OidIsValid(relid) || e->relid == relid)
			e->valid = false;
	}
}

void
pa_lookup_init(Oid subid)
{
	HASHCTL		ctl;

	if (lookup_cache != NULL)
		return;
	lookup_subid = subid;
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(LookupEntry);
	ctl.hcxt = TopMemoryContext;
	lookup_cache = hash_create("parallel_apply lookup cache", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(lookup_invalidate_cb, (Datum) 0);
}

void
pa_lookup_remote_changed(void)
{
	remote_generation++;
}

/* ---------------------------------------------------------------------
 * Shared statistics
 * ---------------------------------------------------------------------
 */

Size
pa_rel_stats_shmem_size(void)
{
	return hash_estimate_size(PA_MAX_REL_STATS, sizeof(PaRelStats));
}

void
pa_rel_stats_shmem_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(PaRelStatsKey);
	ctl.entrysize = sizeof(PaRelStats);
	pa_rel_stats = ShmemInitHash("parallel_apply relation statistics",
								 PA_MAX_REL_STATS, PA_MAX_REL_STATS,
								 &ctl, HASH_ELEM | HASH_BLOBS);
}

/* Drop the statistics of a subscription.  Caller holds PaShared->lock. */
void
pa_rel_stats_forget(Oid subid)
{
	HASH_SEQ_STATUS status;
	PaRelStats *s;

	hash_seq_init(&status, pa_rel_stats);
	while ((s = hash_seq_search(&status)) != NULL)
	{
		if (s->key.subid == subid)
			(void) hash_search(pa_rel_stats, &s->key, HASH_REMOVE, NULL);
	}
}

/* The shared counters of (our subscription, rel); NULL when the table is full */
static PaRelStats *
rel_stats(Relation rel)
{
	PaRelStatsKey key;
	PaRelStats *s;
	bool		found;

	memset(&key, 0, sizeof(key));
	key.subid = lookup_subid;
	key.relid = RelationGetRelid(rel);
	LWLockAcquire(pa_shared->lock, LW_EXCLUSIVE);
	s = hash_search(pa_rel_stats, &key, HASH_ENTER_NULL, &found);
	if (s != NULL && !found)
	{
		s->index = InvalidOid;
		pg_atomic_init_u64(&s->lookups, 0);
		pg_atomic_init_u64(&s->not_found, 0);
		pg_atomic_init_u64(&s->seq_scans, 0);
	}
	if (s != NULL)
		s->replident = rel->rd_rel->relreplident;
	LWLockRelease(pa_shared->lock);
	return s;
}

/* ---------------------------------------------------------------------
 * Choosing the index
 * ---------------------------------------------------------------------
 */

/* A candidate index and what ranks it */
typedef struct Candidate
{
	Oid			indexoid;
	bool		unique;
	double		rows_per_key;	/* estimated; < 0 when unknown */
	int			nkeys;
	int			width;			/* bytes of the key columns */
	BlockNumber pages;
	bool		searchnulls;
	StrategyNumber strategy;
	AttrNumber	heapatt[INDEX_MAX_KEYS];
	RegProcedure keyproc[INDEX_MAX_KEYS];
	Oid			keycoll[INDEX_MAX_KEYS];
} Candidate;

/*
 * Distinct non-null values of a column per pg_statistic, and its null
 * fraction; false if there are no statistics.
 */
static bool
column_stats(Relation rel, AttrNumber attnum, double *ndistinct,
			 double *nullfrac)
{
	HeapTuple	tup;
	Form_pg_statistic st;
	double		reltuples = rel->rd_rel->reltuples;

	if (reltuples < 0)
		return false;			/* never vacuumed or analyzed */
	tup = SearchSysCache3(STATRELATTINH,
						  ObjectIdGetDatum(RelationGetRelid(rel)),
						  Int16GetDatum(attnum), BoolGetDatum(false));
	if (!HeapTupleIsValid(tup))
		return false;
	st = (Form_pg_statistic) GETSTRUCT(tup);
	*nullfrac = st->stanullfrac;
	if (st->stadistinct > 0)
		*ndistinct = st->stadistinct;
	else
		*ndistinct = -st->stadistinct * reltuples * (1.0 - st->stanullfrac);
	ReleaseSysCache(tup);
	if (*ndistinct < 1)
		*ndistinct = 1;
	return true;
}

/*
 * Is index idxoid of rel usable, and with which keys?  compare[] says which
 * local columns the publisher sends.
 */
static bool
consider_index(Relation rel, Oid idxoid, const bool *compare, Candidate *c)
{
	Relation	idx = index_open(idxoid, AccessShareLock);
	Form_pg_index ind = idx->rd_index;
	bool		usable = false;
	bool		isnull;
	Datum		d;
	oidvector  *opclass;
	double		estimate = rel->rd_rel->reltuples;
	bool		have_stats = true;
	int			i;

	memset(c, 0, sizeof(*c));
	c->indexoid = idxoid;
	if (!ind->indisvalid || !ind->indisready || !ind->indislive ||
		!heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) ||
		(idx->rd_rel->relam != BTREE_AM_OID && idx->rd_rel->relam != HASH_AM_OID))
		goto done;

	c->strategy = (idx->rd_rel->relam == BTREE_AM_OID) ?
		BTEqualStrategyNumber : HTEqualStrategyNumber;
	c->searchnulls = idx->rd_indam->amsearchnulls;
	d = SysCacheGetAttr(INDEXRELID, idx->rd_indextuple,
						Anum_pg_index_indclass, &isnull);
	Assert(!isnull);
	opclass = (oidvector *) DatumGetPointer(d);

	for (i = 0; i < IndexRelationGetNumberOfKeyAttributes(idx); i++)
	{
		AttrNumber	attnum = ind->indkey.values[i];
		Form_pg_attribute att;
		Oid			optype;
		Oid			op;
		double		ndistinct;
		double		nullfrac;

		/* an expression, or a column the publisher does not send, ends the keys */
		if (attnum <= 0 || !compare[attnum - 1])
			break;
		att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);

		/*
		 * An index equality stricter than the column's (a deterministic
		 * index collation on a column with a nondeterministic one) could
		 * miss the row; a looser one only brings candidates the comparison
		 * rejects.
		 */
		if (OidIsValid(att->attcollation) &&
			att->attcollation != idx->rd_indcollation[i] &&
			!get_collation_isdeterministic(att->attcollation))
			break;

		optype = get_opclass_input_type(opclass->values[i]);
		op = get_opfamily_member(get_opclass_family(opclass->values[i]),
								 optype, optype, c->strategy);
		if (!OidIsValid(op))
			break;
		c->heapatt[c->nkeys] = attnum;
		c->keyproc[c->nkeys] = get_opcode(op);
		c->keycoll[c->nkeys] = idx->rd_indcollation[i];
		c->nkeys++;
		c->width += get_typavgwidth(att->atttypid, att->atttypmod);

		if (have_stats && column_stats(rel, attnum, &ndistinct, &nullfrac))
			estimate = estimate * (1.0 - nullfrac) / ndistinct;
		else
			have_stats = false;
	}
	if (c->nkeys == 0)
		goto done;

	/* unique on exactly the columns we search: one row per key */
	c->unique = ind->indisunique &&
		c->nkeys == IndexRelationGetNumberOfKeyAttributes(idx);
	c->rows_per_key = c->unique ? 1.0 : (have_stats ? Max(estimate, 1.0) : -1.0);
	c->pages = idx->rd_rel->relpages;
	usable = true;

done:
	index_close(idx, AccessShareLock);
	return usable;
}

/* Is a better than b? */
static bool
better(const Candidate *a, const Candidate *b)
{
	if (a->unique != b->unique)
		return a->unique;
	if (a->rows_per_key >= 0 && b->rows_per_key >= 0)
	{
		if (a->rows_per_key != b->rows_per_key)
			return a->rows_per_key < b->rows_per_key;
	}
	else if ((a->rows_per_key >= 0) != (b->rows_per_key >= 0))
		return a->rows_per_key >= 0;
	else
	{
		if (a->nkeys != b->nkeys)
			return a->nkeys > b->nkeys;
		if (a->width != b->width)
			return a->width < b->width;
	}
	return a->pages < b->pages;
}

/*
 * No usable index: say so once, and which replicated column an index would
 * help most on (the most distinct values, per the statistics).
 */
static void
say_scan(Relation rel, LookupEntry *e)
{
	AttrNumber	best = InvalidAttrNumber;
	double		best_distinct = 1;
	int			i;

	if (e->said_scan)
		return;
	e->said_scan = true;

	for (i = 0; i < e->natts; i++)
	{
		double		ndistinct;
		double		nullfrac;

		if (e->compare[i] &&
			OidIsValid(GetDefaultOpClass(TupleDescAttr(RelationGetDescr(rel), i)->atttypid,
										 BTREE_AM_OID)) &&
			column_stats(rel, i + 1, &ndistinct, &nullfrac) &&
			ndistinct > best_distinct)
		{
			best = i + 1;
			best_distinct = ndistinct;
		}
	}

	if (best != InvalidAttrNumber)
		ereport(LOG,
				(errmsg("parallel_apply finds rows of replication target relation \"%s.%s\" with a sequential scan",
						get_namespace_name(RelationGetNamespace(rel)),
						RelationGetRelationName(rel)),
				 errdetail("The publisher sends the whole row (REPLICA IDENTITY FULL) and the relation has no usable index: a valid, non-partial btree or hash index whose first key column is a replicated column."),
				 errhint("An index on column \"%s\" (about %.0f distinct values) would help most.",
						 NameStr(TupleDescAttr(RelationGetDescr(rel), best - 1)->attname),
						 best_distinct)));
	else
		ereport(LOG,
				(errmsg("parallel_apply finds rows of replication target relation \"%s.%s\" with a sequential scan",
						get_namespace_name(RelationGetNamespace(rel)),
						RelationGetRelationName(rel)),
				 errdetail("The publisher sends the whole row (REPLICA IDENTITY FULL) and the relation has no usable index: a valid, non-partial btree or hash index whose first key column is a replicated column.")));
}

/* (Re)build the entry of rel: columns to compare, then the index */
static void
build_entry(LookupEntry *e, Relation rel, LogicalRepRelation *remoterel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes;
	ListCell   *lc;
	Candidate	best;
	bool		have_best = false;
	MemoryContext old;
	int			i;

	/* an invalidation while we look (opening indexes processes them) is kept */
	e->valid = true;
	e->generation = remote_generation;
	if (e->cxt != NULL)
		MemoryContextReset(e->cxt);
	else
		e->cxt = AllocSetContextCreate(TopMemoryContext,
									   "parallel_apply lookup entry",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(e->cxt);

	e->natts = desc->natts;
	e->compare = palloc0(sizeof(bool) * desc->natts);
	e->eq = palloc0(sizeof(FmgrInfo) * desc->natts);
	e->coll = palloc0(sizeof(Oid) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		TypeCacheEntry *typentry;
		int			r;

		if (att->attisdropped || att->attgenerated)
			continue;
		for (r = 0; r < remoterel->natts; r++)
		{
			if (strcmp(remoterel->attnames[r], NameStr(att->attname)) == 0)
				break;
		}
		if (r == remoterel->natts)
			continue;			/* not sent: nothing to compare with */
		e->compare[i] = true;
		e->coll[i] = att->attcollation;
		typentry = lookup_type_cache(att->atttypid, TYPECACHE_EQ_OPR_FINFO);
		if (OidIsValid(typentry->eq_opr_finfo.fn_oid))
			fmgr_info_copy(&e->eq[i], &typentry->eq_opr_finfo, e->cxt);
	}
	MemoryContextSwitchTo(old);

	e->indexoid = InvalidOid;
	e->nkeys = 0;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Candidate	c;

		if (consider_index(rel, lfirst_oid(lc), e->compare, &c) &&
			(!have_best || better(&c, &best)))
		{
			best = c;
			have_best = true;
		}
	}
	list_free(indexes);

	if (have_best)
	{
		e->said_scan = false;	/* say it again if the index goes */
		e->indexoid = best.indexoid;
		e->searchnulls = best.searchnulls;
		e->strategy = best.strategy;
		e->nkeys = best.nkeys;
		memcpy(e->heapatt, best.heapatt, sizeof(best.heapatt));
		memcpy(e->keyproc, best.keyproc, sizeof(best.keyproc));
		memcpy(e->keycoll, best.keycoll, sizeof(best.keycoll));
	}
	e->stats = rel_stats(rel);
	if (e->stats != NULL)
		e->stats->index = e->indexoid;
}

/* ---------------------------------------------------------------------
 * Searching
 * ---------------------------------------------------------------------
 */

/* Does the local row equal the remote row on every compared column? */
static bool
rows_equal(LookupEntry *e, TupleTableSlot *local, TupleTableSlot *remote)
{
	TupleDesc	desc = local->tts_tupleDescriptor;
	int			i;

	slot_getallattrs(local);
	slot_getallattrs(remote);
	for (i = 0; i < e->natts; i++)
	{
		Form_pg_attribute att;

		if (!e->compare[i])
			continue;
		if (local->tts_isnull[i] != remote->tts_isnull[i])
			return false;
		if (local->tts_isnull[i])
			continue;
		att = TupleDescAttr(desc, i);
		if (OidIsValid(e->eq[i].fn_oid))
		{
			if (!DatumGetBool(FunctionCall2Coll(&e->eq[i], e->coll[i],
												local->tts_values[i],
												remote->tts_values[i])))
				return false;
		}
		else if (!datum_image_eq(local->tts_values[i], remote->tts_values[i],
								 att->attbyval, att->attlen))
			return false;
	}
	return true;
}

/*
 * Lock the row found in outslot.  Returns false if it changed meanwhile and
 * the search must start again, as PostgreSQL's own lookups do.
 */
static bool
lock_found_row(Relation rel, TupleTableSlot *outslot)
{
	TM_FailureData tmfd;
	TM_Result	res;

	PushActiveSnapshot(GetLatestSnapshot());
	res = table_tuple_lock(rel, &(outslot->tts_tid), GetLatestSnapshot(),
						   outslot, GetCurrentCommandId(false),
						   LockTupleExclusive, LockWaitBlock,
						   0 /* don't follow updates */ , &tmfd);
	PopActiveSnapshot();

	switch (res)
	{
		case TM_Ok:
			return true;
		case TM_Updated:
			if (ItemPointerIndicatesMovedPartitions(&tmfd.ctid))
				ereport(LOG,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("tuple to be locked was already moved to another partition due to concurrent update, retrying")));
			else
				ereport(LOG,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("concurrent update, retrying")));
			return false;
		case TM_Deleted:
			ereport(LOG,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("concurrent delete, retrying")));
			return false;
		case TM_Invisible:
			elog(ERROR, "attempted to lock invisible tuple");
			break;
		default:
			elog(ERROR, "unexpected table_tuple_lock status: %u", res);
			break;
	}
	return false;				/* keep compiler quiet */
}

/* The first row of the current scan position on that equals the remote row */
typedef bool (*NextFn) (void *scan, TupleTableSlot *slot);

static bool
index_next(void *scan, TupleTableSlot *slot)
{
	return index_getnext_slot((IndexScanDesc) scan, ForwardScanDirection, slot);
}

static bool
table_next(void *scan, TupleTableSlot *slot)
{
	return table_scan_getnextslot((TableScanDesc) scan, ForwardScanDirection, slot);
}

/*
 * Take candidates from the scan until one equals the remote row; wait for
 * its writer if it has one (the caller then rescans).  Returns true with
 * the row in outslot, or false with *wait set when the caller must rescan.
 */
static bool
first_equal(LookupEntry *e, NextFn next, void *scan, SnapshotData *snap,
			TupleTableSlot *searchslot, TupleTableSlot *outslot, bool *wait)
{
	*wait = false;
	while (next(scan, outslot))
	{
		TransactionId xwait;

		CHECK_FOR_INTERRUPTS();
		if (!rows_equal(e, outslot, searchslot))
			continue;
		ExecMaterializeSlot(outslot);
		xwait = TransactionIdIsValid(snap->xmin) ? snap->xmin : snap->xmax;
		if (TransactionIdIsValid(xwait))
		{
			XactLockTableWait(xwait, NULL, NULL, XLTW_None);
			*wait = true;
			return false;
		}
		return true;
	}
	return false;
}

static bool
find_by_index(LookupEntry *e, Relation rel, TupleTableSlot *searchslot,
			  TupleTableSlot *outslot)
{
	ScanKeyData skey[INDEX_MAX_KEYS];
	IndexScanDesc scan;
	SnapshotData snap;
	Relation	idx;
	bool		found;
	bool		again;
	int			i;

	for (i = 0; i < e->nkeys; i++)
	{
		AttrNumber	attnum = e->heapatt[i];

		ScanKeyInit(&skey[i], i + 1, e->strategy, e->keyproc[i],
					searchslot->tts_values[attnum - 1]);
		skey[i].sk_collation = e->keycoll[i];
		if (searchslot->tts_isnull[attnum - 1])
			skey[i].sk_flags |= (SK_ISNULL | SK_SEARCHNULL);
	}

	idx = index_open(e->indexoid, RowExclusiveLock);
	InitDirtySnapshot(snap);
	scan = index_beginscan(rel, idx, &snap, e->nkeys, 0);
	do
	{
		index_rescan(scan, skey, e->nkeys, NULL, 0);
		found = first_equal(e, index_next, scan, &snap, searchslot, outslot, &again);
		if (found && !lock_found_row(rel, outslot))
			again = true;
	} while (again);
	index_endscan(scan);
	index_close(idx, NoLock);	/* the lock stays until commit */
	return found;
}

static bool
find_by_scan(LookupEntry *e, Relation rel, TupleTableSlot *searchslot,
			 TupleTableSlot *outslot)
{
	TableScanDesc scan;
	SnapshotData snap;
	bool		found;
	bool		again;

	InitDirtySnapshot(snap);
	scan = table_beginscan(rel, &snap, 0, NULL);
	do
	{
		table_rescan(scan, NULL);
		found = first_equal(e, table_next, scan, &snap, searchslot, outslot, &again);
		if (found && !lock_found_row(rel, outslot))
			again = true;
	} while (again);
	table_endscan(scan);
	return found;
}

/* The replica identity index of a relation, else its primary key, else none */
Oid
pa_identity_index(Relation rel)
{
	Oid			idxoid = RelationGetReplicaIndex(rel);

	if (!OidIsValid(idxoid))
		idxoid = RelationGetPrimaryKeyIndex(rel);
	return idxoid;
}

/* What a relation's lookups go through, and what the entry was set up for */
typedef enum LookupMethod
{
	LOOKUP_NONE = 0,			/* not set up */
	LOOKUP_IDENTITY,			/* the identity index or primary key */
	LOOKUP_PG15_SCAN,			/* parallel_apply.ri_full_index = off */
	LOOKUP_BEST					/* the best usable index, or a scan */
} LookupMethod;

bool
pa_lookup_row(EState *estate, Relation localrel, LogicalRepRelation *remoterel,
			  TupleTableSlot *remoteslot, TupleTableSlot **localslot)
{
	Oid			idxoid = pa_identity_index(localrel);
	LookupMethod method;
	LookupEntry *e;
	bool		found;
	bool		byscan = false;
	Oid			relid = RelationGetRelid(localrel);

	*localslot = table_slot_create(localrel, &estate->es_tupleTable);

	e = hash_search(lookup_cache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		e->valid = false;
		e->method = LOOKUP_NONE;
		e->cxt = NULL;
		e->said_scan = false;
		e->stats = NULL;
	}

	method = OidIsValid(idxoid) ? LOOKUP_IDENTITY :
		pa_ri_full_index == PA_RI_FULL_INDEX_OFF ? LOOKUP_PG15_SCAN : LOOKUP_BEST;
	if (!e->valid || e->method != method || e->generation != remote_generation)
	{
		e->method = method;
		if (method == LOOKUP_BEST)
			build_entry(e, localrel, remoterel);
		else
		{
			e->valid = true;
			e->generation = remote_generation;
			e->indexoid = idxoid;
			e->stats = rel_stats(localrel);
			if (e->stats != NULL)
				e->stats->index = idxoid;
		}
	}

	if (method == LOOKUP_IDENTITY)
	{
		/* PostgreSQL's way: the identity's or key's columns only */
		found = RelationFindReplTupleByIndex(localrel, idxoid,
											 LockTupleExclusive,
											 remoteslot, *localslot);
	}
	else if (method == LOOKUP_PG15_SCAN)
	{
		/* PostgreSQL 15's sequential scan, for comparison */
		found = RelationFindReplTupleSeq(localrel, LockTupleExclusive,
										 remoteslot, *localslot);
		byscan = true;
	}
	else
	{
		bool		nullkey = false;
		int			i;

		Assert(remoterel->replident == REPLICA_IDENTITY_FULL);
		slot_getallattrs(remoteslot);
		for (i = 0; i < e->nkeys; i++)
			nullkey |= remoteslot->tts_isnull[e->heapatt[i] - 1];

		if (OidIsValid(e->indexoid) && (!nullkey || e->searchnulls))
			found = find_by_index(e, localrel, remoteslot, *localslot);
		else
		{
			if (!OidIsValid(e->indexoid))
				say_scan(localrel, e);
			found = find_by_scan(e, localrel, remoteslot, *localslot);
			byscan = true;
		}
	}

	if (e->stats != NULL)
	{
		pg_atomic_fetch_add_u64(&e->stats->lookups, 1);
		if (!found)
			pg_atomic_fetch_add_u64(&e->stats->not_found, 1);
		if (byscan)
			pg_atomic_fetch_add_u64(&e->stats->seq_scans, 1);
	}
	return found;
}
