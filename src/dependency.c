/*-------------------------------------------------------------------------
 *
 * dependency.c
 *	  The leader's dependency tracker: which earlier transaction must commit
 *	  before a change can be applied.
 *
 * Owns: the latest-writer table (key hash -> seq of the latest transaction
 * that wrote that key), per-relation writer and barrier sequence numbers,
 * the global barrier, and the leader's description of each relation's keys.
 *
 * Keys of a change:
 *	- (relation, replica-identity key) from the old tuple ('K' or 'O') and
 *	  from the new tuple, for REPLICA IDENTITY DEFAULT and USING INDEX;
 *	- (index, key) for every subscriber-side unique index whose columns are
 *	  plain replicated columns, from the new tuple, and from the old tuple
 *	  when it is complete ('O', REPLICA IDENTITY FULL);
 *	- a column sent as unchanged-TOAST ('u') neither claims nor frees a
 *	  value: the key containing it is skipped; a NULL never conflicts in a
 *	  unique index (unless NULLS NOT DISTINCT), so such a key is skipped too;
 *	- a REPLICA IDENTITY FULL table without a usable unique index, and a
 *	  relation the leader cannot resolve locally, are tracked at table level:
 *	  an UPDATE or DELETE depends on every earlier writer of the table and
 *	  every later change depends on it (inserts alone commute).
 * Values are hashed by their bytes, which is exact for types whose output
 * is canonical (integers, text, uuid, ...); numeric, float4 and float8,
 * whose equal values can be spelt differently (1.0 and 1.00), are converted
 * and hashed with the type's own extended hash function.
 *
 * Barriers: a RELATION message that differs from the cached one makes its
 * transaction depend on every earlier writer of that relation and every
 * later change of the relation depend on it; TRUNCATE (which may cascade to
 * tables the message does not name) does the same for all relations.
 *
 * Invariants kept here:
 *	- a transaction never depends on itself (its own keys are de-duplicated
 *	  by writer seq);
 *	- entries whose writer has committed are ignored and pruned;
 *	- per-change work is a parse of the tuple and one hash lookup per key.
 * Correctness does not rest on this module alone: a dependency it cannot
 * see (a trigger, a deleted unique value it was never told) shows up as an
 * error or a deadlock in a worker, and the engine then re-applies the window
 * serially (receive.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pa_dependency.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#define KEYS_PRUNE_THRESHOLD	(64 * 1024)

typedef struct DepCol
{
	bool		typed;			/* convert and hash with the type's function */
	Oid			ioparam;
	FmgrInfo	infunc;
	FmgrInfo	recvfunc;
	FmgrInfo	hashfunc;
	Oid			collation;
} DepCol;

typedef struct DepKey
{
	uint32		tag;			/* relation id for the RI key, index oid */
	int			ncols;
	int		   *cols;			/* remote column numbers */
	bool		nulls_distinct;
} DepKey;

typedef struct DepRel
{
	LogicalRepRelId remoteid;	/* hash key */
	LogicalRepRelation *remote;
	bool		resolved;
	bool		table_level;
	bool		ri_usable;
	DepKey		ri;
	int			nuniq;
	DepKey	   *uniq;
	DepCol	   *colinfo;		/* per remote column */
	uint64		last_writer;
	uint64		barrier;
	MemoryContext cxt;			/* remote description */
	MemoryContext rescxt;		/* what resolve_rel derived (child of cxt) */
} DepRel;

typedef struct KeyEntry
{
	uint64		hash;
	uint64		seq;
} KeyEntry;

typedef struct ColVal
{
	char		kind;
	int			len;
	const char *data;
} ColVal;

static HTAB *keys;
static HTAB *rels;
static MemoryContext DepContext;
static MemoryContext ChangeContext;
static uint64 committed = 0;
static uint64 global_barrier = 0;
static long prune_at = KEYS_PRUNE_THRESHOLD;

static void pa_dep_invalidate(void);

static void
dep_relcache_cb(Datum arg, Oid relid)
{
	pa_dep_invalidate();
}

void
pa_dep_init(void)
{
	HASHCTL		ctl;

	DepContext = AllocSetContextCreate(TopMemoryContext,
									   "parallel_apply dependencies",
									   ALLOCSET_DEFAULT_SIZES);
	ChangeContext = AllocSetContextCreate(DepContext,
										  "parallel_apply dependency change",
										  ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(KeyEntry);
	ctl.hcxt = DepContext;
	keys = hash_create("parallel_apply latest writers", 65536, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = sizeof(LogicalRepRelId);
	ctl.entrysize = sizeof(DepRel);
	rels = hash_create("parallel_apply dependency relations", 256, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(dep_relcache_cb, (Datum) 0);
}

/* Any local schema change: re-resolve every relation at its next change */
static void
pa_dep_invalidate(void)
{
	HASH_SEQ_STATUS status;
	DepRel	   *rel;

	if (rels == NULL)
		return;
	hash_seq_init(&status, rels);
	while ((rel = hash_seq_search(&status)) != NULL)
		rel->resolved = false;
}

void
pa_dep_set_committed(uint64 c)
{
	committed = c;
	if (hash_get_num_entries(keys) > prune_at)
	{
		HASH_SEQ_STATUS status;
		KeyEntry   *e;

		hash_seq_init(&status, keys);
		while ((e = hash_seq_search(&status)) != NULL)
		{
			if (e->seq <= committed)
				(void) hash_search(keys, &e->hash, HASH_REMOVE, NULL);
		}
		/* sweep again only once the table has doubled: amortised O(1) */
		prune_at = Max(KEYS_PRUNE_THRESHOLD, 2 * hash_get_num_entries(keys));
	}
}

void
pa_dep_note(PaDepAcc *acc, uint64 dep)
{
	if (dep > committed && dep > acc->max)
		acc->max = dep;
}

/* Called at BEGIN: the global barrier binds every transaction */
void
pa_dep_begin(uint64 seq, PaDepAcc *acc)
{
	if (global_barrier != seq)
		pa_dep_note(acc, global_barrier);
}

void
pa_dep_truncate(uint64 seq, PaDepAcc *acc)
{
	pa_dep_note(acc, seq - 1);
	global_barrier = seq;
}

static DepRel *
get_rel(LogicalRepRelId relid)
{
	DepRel	   *rel;
	bool		found;

	rel = hash_search(rels, &relid, HASH_ENTER, &found);
	if (!found)
	{
		rel->remote = NULL;
		rel->resolved = false;
		rel->last_writer = 0;
		rel->barrier = 0;
		rel->cxt = AllocSetContextCreate(DepContext, "parallel_apply dependency relation",
										 ALLOCSET_SMALL_SIZES);
		rel->rescxt = NULL;
	}
	return rel;
}

PaDepRel *
pa_dep_relation(uint64 seq, LogicalRepRelId relid, const char *msg, int len,
				bool changed, PaDepAcc *acc)
{
	DepRel	   *rel = get_rel(relid);
	StringInfoData s;
	MemoryContext old;

	if (rel->remote != NULL && !changed)
		return rel;

	MemoryContextReset(rel->cxt);	/* also deletes rescxt */
	rel->rescxt = NULL;
	old = MemoryContextSwitchTo(rel->cxt);
	s.data = (char *) msg;
	s.len = len;
	s.cursor = 1;				/* past the type byte */
	s.maxlen = -1;
	rel->remote = logicalrep_read_rel(&s);
	MemoryContextSwitchTo(old);
	rel->resolved = false;

	if (changed && seq != 0)
	{
		/* a schema change is a barrier for the relation */
		if (rel->last_writer != seq)
			pa_dep_note(acc, rel->last_writer);
		rel->barrier = seq;
		rel->last_writer = seq;
	}
	return rel;
}

static int
remote_col(LogicalRepRelation *remote, const char *attname)
{
	int			i;

	for (i = 0; i < remote->natts; i++)
		if (strcmp(remote->attnames[i], attname) == 0)
			return i;
	return -1;
}

static bool
type_needs_conversion(Oid typid)
{
	return typid == NUMERICOID || typid == FLOAT4OID || typid == FLOAT8OID;
}

/* Look at the local table: which unique indexes give keys, how to hash */
static void
resolve_rel(DepRel *rel)
{
	LogicalRepRelation *remote = rel->remote;
	MemoryContext old;
	Oid			relid;
	Relation	localrel;
	List	   *indexes;
	ListCell   *lc;
	int			i;
	bool		started = false;

	if (rel->rescxt == NULL)
		rel->rescxt = AllocSetContextCreate(rel->cxt, "parallel_apply dependency keys",
											ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(rel->rescxt);
	old = MemoryContextSwitchTo(rel->rescxt);
	rel->table_level = false;
	rel->nuniq = 0;
	rel->uniq = NULL;
	rel->colinfo = palloc0(sizeof(DepCol) * Max(remote->natts, 1));
	if (!IsTransactionState())
	{
		StartTransactionCommand();
		started = true;
		MemoryContextSwitchTo(rel->rescxt);
	}

	/* the replica identity columns, as the publisher flagged them */
	rel->ri.tag = remote->remoteid;
	rel->ri.nulls_distinct = false;
	rel->ri.ncols = 0;
	rel->ri.cols = palloc(sizeof(int) * Max(remote->natts, 1));
	for (i = 0; i < remote->natts; i++)
		if (bms_is_member(i, remote->attkeys))
			rel->ri.cols[rel->ri.ncols++] = i;
	/*
	 * How to hash each column depends only on its remote type, so that the
	 * same value hashes the same before and after a local schema change.
	 */
	for (i = 0; i < remote->natts; i++)
	{
		Oid			typid = remote->atttyps[i];
		DepCol	   *col = &rel->colinfo[i];
		Oid			func;
		TypeCacheEntry *tce;

		if (!type_needs_conversion(typid))
			continue;
		tce = lookup_type_cache(typid, TYPECACHE_HASH_EXTENDED_PROC_FINFO);
		if (!OidIsValid(tce->hash_extended_proc))
			continue;
		getTypeInputInfo(typid, &func, &col->ioparam);
		fmgr_info_cxt(func, &col->infunc, rel->rescxt);
		getTypeBinaryInputInfo(typid, &func, &col->ioparam);
		fmgr_info_cxt(func, &col->recvfunc, rel->rescxt);
		fmgr_info_copy(&col->hashfunc, &tce->hash_extended_proc_finfo, rel->rescxt);
		col->collation = InvalidOid;
		col->typed = true;
	}

	rel->ri_usable = (remote->replident == REPLICA_IDENTITY_DEFAULT ||
					  remote->replident == REPLICA_IDENTITY_INDEX) &&
		rel->ri.ncols > 0;

	relid = RangeVarGetRelid(makeRangeVar(remote->nspname, remote->relname, -1),
							 AccessShareLock, true);
	if (!OidIsValid(relid))
	{
		/* the worker will report it; be conservative meanwhile */
		rel->table_level = true;
		goto done;
	}
	localrel = relation_open(relid, NoLock);

	indexes = RelationGetIndexList(localrel);
	rel->uniq = palloc(sizeof(DepKey) * Max(list_length(indexes), 1));
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index form;
		DepKey	   *key;
		bool		usable = true;

		if (!HeapTupleIsValid(tup))
			continue;
		form = (Form_pg_index) GETSTRUCT(tup);
		if (!form->indisunique || !form->indisvalid ||
			!heap_attisnull(tup, Anum_pg_index_indexprs, NULL))
		{
			ReleaseSysCache(tup);
			continue;
		}
		key = &rel->uniq[rel->nuniq];
		key->tag = indexoid;
		key->nulls_distinct = !form->indnullsnotdistinct;
		key->ncols = form->indnkeyatts;
		key->cols = palloc(sizeof(int) * Max(key->ncols, 1));
		for (i = 0; i < key->ncols; i++)
		{
			AttrNumber	attnum = form->indkey.values[i];
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(localrel), attnum - 1);
			int			rc = remote_col(remote, NameStr(att->attname));

			if (rc < 0)
			{
				usable = false;
				break;
			}
			key->cols[i] = rc;
		}
		ReleaseSysCache(tup);

		/* the replica identity key already covers an index on its columns */
		if (usable && rel->ri_usable && key->ncols == rel->ri.ncols)
		{
			bool		same = true;

			for (i = 0; i < key->ncols && same; i++)
			{
				int			j;

				same = false;
				for (j = 0; j < rel->ri.ncols; j++)
					if (rel->ri.cols[j] == key->cols[i])
						same = true;
			}
			if (same)
				usable = false;
		}
		if (usable)
			rel->nuniq++;
	}
	list_free(indexes);
	relation_close(localrel, NoLock);

	/* FULL identity: rows are found by unique indexes, or not at all */
	if (remote->replident == REPLICA_IDENTITY_FULL && rel->nuniq == 0)
		rel->table_level = true;

done:
	if (started)
		CommitTransactionCommand();
	MemoryContextSwitchTo(old);
	rel->resolved = true;
}

static int
parse_tuple(StringInfo s, ColVal *cols, int maxcols)
{
	int			natts = pq_getmsgint(s, 2);
	int			i;

	if (natts > maxcols)
		elog(ERROR, "tuple has %d columns, relation has %d", natts, maxcols);
	for (i = 0; i < natts; i++)
	{
		cols[i].kind = pq_getmsgbyte(s);
		cols[i].len = 0;
		cols[i].data = NULL;
		if (cols[i].kind == LOGICALREP_COLUMN_TEXT ||
			cols[i].kind == LOGICALREP_COLUMN_BINARY)
		{
			cols[i].len = pq_getmsgint(s, 4);
			cols[i].data = pq_getmsgbytes(s, cols[i].len);
		}
	}
	return natts;
}

static uint64
hash_value(DepCol *col, ColVal *v)
{
	Datum		d;

	if (!col->typed)
		return hash_bytes_extended((const unsigned char *) v->data, v->len, 0);

	if (v->kind == LOGICALREP_COLUMN_TEXT)
	{
		char	   *str = pnstrdup(v->data, v->len);

		d = InputFunctionCall(&col->infunc, str, col->ioparam, -1);
	}
	else
	{
		StringInfoData buf;

		buf.data = pnstrdup(v->data, v->len);
		buf.len = v->len;
		buf.maxlen = v->len + 1;
		buf.cursor = 0;
		d = ReceiveFunctionCall(&col->recvfunc, &buf, col->ioparam, -1);
	}
	return DatumGetUInt64(FunctionCall2Coll(&col->hashfunc, col->collation,
											d, UInt64GetDatum(0)));
}

/* Claim one key for seq; note the previous writer. */
static void
claim_key(DepRel *rel, DepKey *key, ColVal *cols, int ncols, bool unique,
		  uint64 seq, PaDepAcc *acc)
{
	uint64		h = ((uint64) key->tag << 1) | (unique ? 1 : 0);
	KeyEntry   *e;
	bool		found;
	int			i;

	for (i = 0; i < key->ncols; i++)
	{
		int			c = key->cols[i];
		ColVal	   *v;

		if (c >= ncols)
			return;
		v = &cols[c];
		if (v->kind == LOGICALREP_COLUMN_UNCHANGED)
			return;				/* neither claims nor frees */
		if (v->kind == LOGICALREP_COLUMN_NULL)
		{
			if (unique && key->nulls_distinct)
				return;			/* NULLs never conflict */
			h = hash_combine64(h, 0x9e3779b97f4a7c15ULL);
			continue;
		}
		h = hash_combine64(h, hash_value(&rel->colinfo[c], v));
	}

	e = hash_search(keys, &h, HASH_ENTER, &found);
	if (found && e->seq != seq)
		pa_dep_note(acc, e->seq);
	e->seq = seq;
}

static void
claim_tuple(DepRel *rel, ColVal *cols, int ncols, bool complete, bool ri,
			uint64 seq, PaDepAcc *acc)
{
	int			i;

	if (ri && rel->ri_usable)
		claim_key(rel, &rel->ri, cols, ncols, false, seq, acc);
	if (complete)
		for (i = 0; i < rel->nuniq; i++)
			claim_key(rel, &rel->uniq[i], cols, ncols, true, seq, acc);
}

/* An INSERT, UPDATE or DELETE message of transaction seq on relation rel */
void
pa_dep_change(uint64 seq, PaDepRel *rel, const char *msg, int len, PaDepAcc *acc)
{
	StringInfoData s;
	char		type = msg[0];
	ColVal	   *cols;
	int			natts;
	MemoryContext old;

	s.data = (char *) msg;
	s.len = len;
	s.cursor = 1 + 4;			/* past the type byte and the relation id */
	s.maxlen = -1;

	if (rel->barrier != seq)
		pa_dep_note(acc, rel->barrier);
	if (!rel->resolved)
		resolve_rel(rel);
	if (rel->table_level)
	{
		/*
		 * Inserts commute with each other here (no unique index); an UPDATE
		 * or DELETE waits for every earlier writer and every later change
		 * waits for it.
		 */
		if (type != LOGICAL_REP_MSG_INSERT)
		{
			if (rel->last_writer != seq)
				pa_dep_note(acc, rel->last_writer);
			rel->barrier = seq;
		}
		rel->last_writer = seq;
		return;
	}
	rel->last_writer = seq;

	old = MemoryContextSwitchTo(ChangeContext);
	cols = palloc(sizeof(ColVal) * Max(rel->remote->natts, 1));
	if (type == LOGICAL_REP_MSG_INSERT)
	{
		(void) pq_getmsgbyte(&s);	/* 'N' */
		natts = parse_tuple(&s, cols, rel->remote->natts);
		claim_tuple(rel, cols, natts, true, true, seq, acc);
	}
	else
	{
		char		tag = pq_getmsgbyte(&s);

		if (tag == 'K' || tag == 'O')
		{
			natts = parse_tuple(&s, cols, rel->remote->natts);
			/* 'K' has only the key; 'O' is the whole old row */
			claim_tuple(rel, cols, natts, tag == 'O', true, seq, acc);
			if (type == LOGICAL_REP_MSG_UPDATE)
				tag = pq_getmsgbyte(&s);
		}
		if (type == LOGICAL_REP_MSG_UPDATE && tag == 'N')
		{
			natts = parse_tuple(&s, cols, rel->remote->natts);
			claim_tuple(rel, cols, natts, true, true, seq, acc);
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(ChangeContext);
}
