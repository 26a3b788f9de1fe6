/*-------------------------------------------------------------------------
 *
 * dependency.c
 *	  The leader's dependency tracker: which earlier transaction must commit
 *	  before a change can be applied.
 *
 * Owns: the latest-writer table (key hash -> seq of the latest transaction
 * that wrote that key), per-relation writer and barrier sequence numbers,
 * the global barrier, the per-transaction key budget, and the leader's
 * description of each relation's keys.
 *
 * Keys of a change:
 *	- (relation, replica-identity key) from the old tuple ('K' or 'O') and
 *	  from the new tuple, for REPLICA IDENTITY DEFAULT and USING INDEX;
 *	- for REPLICA IDENTITY FULL, (relation, row image): every column of the
 *	  old row ('O') and of the new row, hashed as the worker compares them
 *	  (lookup.c: the type's equality, or the datum image for a type without
 *	  one), so two changes conflict when they touch equal rows; a row image
 *	  with an unchanged-TOAST ('u') column has no key, and its change is a
 *	  barrier for the table;
 *	- (index, key) for every subscriber-side unique index whose columns are
 *	  plain replicated columns, from the new tuple, and from the old tuple
 *	  when it is complete ('O', REPLICA IDENTITY FULL); for a partitioned
 *	  target, unique indexes that exist only on a leaf make it table level;
 *	- a column sent as unchanged-TOAST ('u') neither claims nor frees a
 *	  value: the key containing it is skipped; a NULL never conflicts in a
 *	  unique index (unless NULLS NOT DISTINCT), so such a key is skipped too;
 *	- table level: a column whose type has equality but no hash function,
 *	  a relation the leader cannot resolve locally (missing, or
 *	  locked by someone else right now), an UPDATE or DELETE that claims no
 *	  key at all, and every change of a transaction past its key budget
 *	  (parallel_apply.max_transaction_keys).  An UPDATE or DELETE at table
 *	  level depends on every earlier writer of the table and every later
 *	  change depends on it; inserts alone commute (except past the budget,
 *	  where their keys are not recorded, so they are barriers too).
 * Values are hashed by their bytes only where byte equality is the
 * subscriber's equality: the same type on both sides, one of a short list
 * of types with canonical text output (integers, oid, bool, uuid, date,
 * time, timestamp, timestamptz and bytea with the session settings pinned
 * by leader.c), and text-like types only under a deterministic collation.
 * Every other key column is converted with the subscriber column type's
 * input (or receive) function and hashed with that type's extended hash
 * function under the index's collation, so equal values (1.0 and 1.00,
 * 'A' and 'a' in citext, '1 day' and '24:00:00') hash equal.  A key column
 * whose type has equality but no hash function makes the relation table
 * level; in a FULL row image, a type without equality (point, json, ...) is
 * converted and hashed by its datum image.
 *
 * Barriers: a RELATION message that differs from the cached one, and a
 * local change of the relation that changes its keys (an index created or
 * dropped), make the transaction depend on every earlier writer of the
 * relation and every later change of the relation depend on it; TRUNCATE
 * (which may cascade to tables the message does not name) does the same
 * for all relations.
 *
 * Streamed transactions applied while they stream (pa_dep_stream_*) have
 * no place in commit order until they commit, and every transaction the
 * leader dispatches meanwhile precedes them.  So a stream's change depends
 * on the latest writers of its keys like any change (the worker waits for
 * them), but its keys enter the latest-writer table only at its commit,
 * with the sequence number it gets there: until then they are collected
 * (up to the key budget; past it, its relations become barriers at its
 * commit), its relation writes and barriers likewise, and a TRUNCATE in it
 * becomes a global barrier at its commit.  A transaction that precedes the
 * stream never waits for it: that would wait for a commit that waits for
 * its own.
 *
 * Invariants kept here:
 *	- the leader never waits for a heavyweight lock on a user table: the
 *	  local relation is locked only conditionally, and while it cannot be,
 *	  the relation is tracked at table level (DESIGN.md invariant 7);
 *	- a relcache invalidation re-resolves only the relation it concerns;
 *	- a transaction records at most parallel_apply.max_transaction_keys
 *	  keys, so no transaction size makes the table grow without bound
 *	  (invariant 8);
 *	- a transaction never depends on itself (its own keys are de-duplicated
 *	  by writer seq);
 *	- entries whose writer has committed are ignored and pruned;
 *	- per-change work is a parse of the tuple and one hash lookup per key.
 * Correctness does not rest on this module alone: a dependency it cannot
 * see (a trigger, a deleted unique value it was never told) shows up as an
 * error or a deadlock in a worker, and the engine then re-applies the window
 * serially (leader.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pa_dependency.h"
#include "parallel_apply.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#define KEYS_PRUNE_THRESHOLD	(64 * 1024)

/* How one key column is hashed */
typedef struct DepCol
{
	bool		typed;			/* convert and hash with the type's function */
	bool		image;			/* ... but hash the converted value's image:
								 * a type without equality, which the worker
								 * compares by datum image (lookup.c) */
	int16		typlen;			/* for image */
	bool		typbyval;
	Oid			ioparam;
	int32		typmod;			/* the column's, as the worker converts */
	FmgrInfo	infunc;
	FmgrInfo	recvfunc;		/* fn_oid invalid: the type has none */
	FmgrInfo	hashfunc;
	Oid			collation;
} DepCol;

typedef struct DepKey
{
	uint32		tag;			/* relation id for the RI key, index oid */
	int			ncols;
	int		   *cols;			/* remote column numbers */
	DepCol	   *hash;			/* how each of them is hashed */
	bool		nulls_distinct;
} DepKey;

typedef struct DepRel
{
	LogicalRepRelId remoteid;	/* hash key */
	LogicalRepRelation *remote;
	bool		resolved;		/* keys below match the local relation */
	uint64		retry_seq;		/* could not be resolved during this
								 * transaction (locked): retry at the next */
	Oid			localrelid;		/* local relation, InvalidOid if none */
	int			nleaves;		/* leaf partitions of a partitioned target */
	Oid		   *leaves;
	bool		table_level;
	bool		ri_usable;
	bool		row_key;		/* ri is the whole row (REPLICA IDENTITY FULL) */
	DepKey		ri;
	int			nuniq;
	DepKey	   *uniq;
	uint64		signature;		/* of the keys resolved, 0 before the first */
	uint64		last_writer;
	uint64		prev_writer;	/* last writer before last_writer */
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

/* the key budget of the transaction being dispatched */
static uint64 budget_seq = 0;
static int	budget_used = 0;

/* What a streamed transaction wrote, recorded at its commit */
typedef struct DepStream
{
	uint64	   *keys;			/* key hashes, up to the key budget */
	int			nkeys;
	int			maxkeys;
	DepRel	  **rels;			/* relations it wrote ... */
	bool	   *barrier;		/* ... and those it is a barrier for */
	int			nrels;
	int			maxrels;
	bool		truncate;		/* a global barrier */
} DepStream;

/*
 * The stream whose change is being tracked, NULL for an ordinary
 * transaction's change; its changes run under a sequence number no
 * transaction has and none is recorded.
 */
static DepStream *dep_stream = NULL;

#define STREAM_SEQ		PG_UINT64_MAX

/*
 * A local relation changed (its relcache entry was invalidated): re-resolve
 * the relations it concerns at their next change.  A relation that does not
 * exist locally is re-resolved at any invalidation, which is how a table
 * created later is found.
 */
static void
dep_relcache_cb(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	DepRel	   *rel;

	if (rels == NULL)
		return;
	hash_seq_init(&status, rels);
	while ((rel = hash_seq_search(&status)) != NULL)
	{
		int			i;

		if (!rel->resolved)
			continue;
		if (relid == InvalidOid || rel->localrelid == relid ||
			!OidIsValid(rel->localrelid))
		{
			rel->resolved = false;
			continue;
		}
		for (i = 0; i < rel->nleaves; i++)
			if (rel->leaves[i] == relid)
				rel->resolved = false;
	}
}

void
pa_dep_init(void)
{
	HASHCTL		ctl;
	static bool callback_registered = false;

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
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(dep_relcache_cb, (Datum) 0);
		callback_registered = true;
	}
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
	int			i;

	if (dep <= committed)
		return;
	if (dep > acc->max)
		acc->max = dep;
	for (i = 0; i < acc->nnoted; i++)
		if (acc->noted[i] == dep)
			return;
	if (acc->nnoted < PA_DEP_NOTED)
		acc->noted[acc->nnoted++] = dep;
	else
		acc->overflow = true;
}

/* Called at BEGIN: the global barrier binds every transaction */
void
pa_dep_begin(uint64 seq, PaDepAcc *acc)
{
	budget_seq = seq;
	budget_used = 0;
	if (global_barrier != seq)
		pa_dep_note(acc, global_barrier);
}

void
pa_dep_truncate(uint64 seq, PaDepAcc *acc)
{
	pa_dep_note(acc, seq - 1);
	global_barrier = seq;
}

/* The stream being tracked writes rel, or is a barrier for it */
static void
stream_note_rel(DepRel *rel, bool barrier)
{
	DepStream  *st = dep_stream;
	int			i;

	for (i = st->nrels - 1; i >= 0; i--)
	{
		if (st->rels[i] == rel)
		{
			st->barrier[i] |= barrier;
			return;
		}
	}
	if (st->nrels == st->maxrels)
	{
		st->maxrels *= 2;
		st->rels = repalloc(st->rels, sizeof(DepRel *) * st->maxrels);
		st->barrier = repalloc(st->barrier, sizeof(bool) * st->maxrels);
	}
	st->rels[st->nrels] = rel;
	st->barrier[st->nrels] = barrier;
	st->nrels++;
}

/* Transaction seq writes the relation */
static inline void
rel_write(DepRel *rel, uint64 seq)
{
	if (dep_stream != NULL)
	{
		stream_note_rel(rel, false);
		return;
	}
	if (rel->last_writer != seq)
	{
		rel->prev_writer = rel->last_writer;
		rel->last_writer = seq;
	}
}

/*
 * Transaction seq is a barrier for the relation: it depends on every
 * earlier writer of the relation (the latest one, other than itself, is
 * enough: commits are ordered), and every later change depends on it.
 */
static void
rel_barrier(DepRel *rel, uint64 seq, PaDepAcc *acc)
{
	if (dep_stream != NULL)
	{
		pa_dep_note(acc, rel->last_writer);
		stream_note_rel(rel, true);
		return;
	}
	pa_dep_note(acc, rel->last_writer == seq ? rel->prev_writer : rel->last_writer);
	rel->barrier = seq;
	rel_write(rel, seq);
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
		rel->retry_seq = 0;
		rel->localrelid = InvalidOid;
		rel->nleaves = 0;
		rel->leaves = NULL;
		rel->signature = 0;
		rel->last_writer = 0;
		rel->prev_writer = 0;
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
	rel->nleaves = 0;
	rel->leaves = NULL;
	old = MemoryContextSwitchTo(rel->cxt);
	s.data = (char *) msg;
	s.len = len;
	s.cursor = 1;				/* past the type byte */
	s.maxlen = -1;
	rel->remote = logicalrep_read_rel(&s);
	MemoryContextSwitchTo(old);
	rel->resolved = false;
	rel->retry_seq = 0;

	/* a schema change is a barrier for the relation */
	if (changed && seq != 0)
		rel_barrier(rel, seq, acc);
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

static Form_pg_attribute
local_att(TupleDesc desc, const char *attname)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), attname) == 0)
			return att;
	}
	return NULL;
}

/*
 * Are equal values of this type always sent with the same bytes, text or
 * binary, and is byte equality its equality under this collation?
 */
static bool
byte_canonical(Oid typid, int32 typmod, Oid collation)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case BOOLOID:
		case CHAROID:
		case UUIDOID:
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:	/* TimeZone is pinned (leader.c) */
		case BYTEAOID:			/* bytea_output is pinned (leader.c) */
			return true;
		case BPCHAROID:
			/* unbounded bpchar drops trailing blanks when comparing */
			if (typmod < 0)
				return false;
			/* FALLTHROUGH */
		case TEXTOID:
		case VARCHAROID:
		case NAMEOID:
			return !OidIsValid(collation) ||
				get_collation_isdeterministic(collation);
		default:
			return false;
	}
}

/*
 * How to convert a value of column att as the worker does: the input and
 * receive functions of its type, of the base type for a domain (a domain's
 * input would check its constraints).  False if the type is not found.
 */
static bool
setup_conversion(DepCol *col, Form_pg_attribute att, MemoryContext cxt)
{
	Oid			basetyp;
	int32		basetypmod = att->atttypmod;
	HeapTuple	tup;
	Form_pg_type typform;

	basetyp = getBaseTypeAndTypmod(att->atttypid, &basetypmod);
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(basetyp));
	if (!HeapTupleIsValid(tup))
		return false;
	typform = (Form_pg_type) GETSTRUCT(tup);
	col->ioparam = getTypeIOParam(tup);
	col->typmod = basetypmod;
	col->typlen = typform->typlen;
	col->typbyval = typform->typbyval;
	fmgr_info_cxt(typform->typinput, &col->infunc, cxt);
	if (OidIsValid(typform->typreceive))
		fmgr_info_cxt(typform->typreceive, &col->recvfunc, cxt);
	ReleaseSysCache(tup);
	return true;
}

/*
 * How to hash a key column whose local column is att and whose remote type
 * is remotetyp, under collation: by bytes where that is exact, else by the
 * local type's own extended hash function.  False if it cannot be hashed
 * (no hash function): the relation is then tracked at table level.
 */
static bool
setup_col(DepCol *col, Form_pg_attribute att, Oid remotetyp, Oid collation,
		  MemoryContext cxt)
{
	TypeCacheEntry *tce;

	memset(col, 0, sizeof(DepCol));
	if (att->atttypid == remotetyp &&
		byte_canonical(att->atttypid, att->atttypmod, collation))
		return true;

	tce = lookup_type_cache(att->atttypid, TYPECACHE_HASH_EXTENDED_PROC_FINFO);
	if (!OidIsValid(tce->hash_extended_proc) || !setup_conversion(col, att, cxt))
		return false;
	fmgr_info_copy(&col->hashfunc, &tce->hash_extended_proc_finfo, cxt);
	col->collation = collation;
	col->typed = true;
	return true;
}

/*
 * A column of a REPLICA IDENTITY FULL row key whose type has no equality
 * operator: the worker compares it by datum image, so it is hashed by the
 * image of the converted value.  False if the type has an equality
 * operator (and so no hash function, since setup_col failed).
 */
static bool
setup_image_col(DepCol *col, Form_pg_attribute att, MemoryContext cxt)
{
	TypeCacheEntry *tce = lookup_type_cache(att->atttypid, TYPECACHE_EQ_OPR);

	memset(col, 0, sizeof(DepCol));
	if (OidIsValid(tce->eq_opr) || !setup_conversion(col, att, cxt))
		return false;
	col->typed = true;
	col->image = true;
	return true;
}

/* The hash of a datum's image, equal for datums datum_image_eq() calls equal */
static uint64
hash_image(DepCol *col, Datum d)
{
	if (col->typbyval)
		return hash_bytes_extended((const unsigned char *) &d, sizeof(Datum), 0);
	if (col->typlen > 0)
		return hash_bytes_extended((const unsigned char *) DatumGetPointer(d),
								   col->typlen, 0);
	if (col->typlen == -1)
	{
		struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

		return hash_bytes_extended((const unsigned char *) VARDATA_ANY(v),
								   VARSIZE_ANY_EXHDR(v), 0);
	}
	return hash_bytes_extended((const unsigned char *) DatumGetCString(d),
							   strlen(DatumGetCString(d)), 0);
}

static uint64
signature_of_key(uint64 h, DepKey *key)
{
	int			i;

	h = hash_combine64(h, key->tag);
	h = hash_combine64(h, key->nulls_distinct);
	for (i = 0; i < key->ncols; i++)
	{
		h = hash_combine64(h, key->cols[i]);
		h = hash_combine64(h, key->hash[i].typed ?
						   key->hash[i].hashfunc.fn_oid : 0);
		h = hash_combine64(h, key->hash[i].image);
		h = hash_combine64(h, key->hash[i].collation);
	}
	return h;
}

/*
 * Does a partition of a partitioned target have a unique index of its own
 * (not a partition of an index of the root)?  The leaf oids are kept for
 * invalidation.  Sets *locked to false if a leaf is locked by someone else.
 */
static bool
leaf_only_unique(DepRel *rel, Oid relid, bool *locked)
{
	List	   *leaves = find_all_inheritors(relid, NoLock, NULL);
	ListCell   *lc;
	bool		found = false;

	*locked = true;
	rel->leaves = palloc(sizeof(Oid) * Max(list_length(leaves), 1));
	rel->nleaves = 0;
	foreach(lc, leaves)
	{
		Oid			leaf = lfirst_oid(lc);
		Relation	leafrel;
		List	   *indexes;
		ListCell   *ic;

		if (leaf == relid)
			continue;
		rel->leaves[rel->nleaves++] = leaf;
		if (found)
			continue;
		if (!ConditionalLockRelationOid(leaf, AccessShareLock))
		{
			*locked = false;
			continue;
		}
		leafrel = try_relation_open(leaf, NoLock);
		if (leafrel == NULL)
		{
			UnlockRelationOid(leaf, AccessShareLock);
			continue;
		}
		indexes = RelationGetIndexList(leafrel);
		foreach(ic, indexes)
		{
			Oid			indexoid = lfirst_oid(ic);
			HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));

			if (!HeapTupleIsValid(tup))
				continue;
			if (((Form_pg_index) GETSTRUCT(tup))->indisunique &&
				!get_rel_relispartition(indexoid))
				found = true;
			ReleaseSysCache(tup);
		}
		list_free(indexes);
		relation_close(leafrel, NoLock);
		UnlockRelationOid(leaf, AccessShareLock);
	}
	list_free(leaves);
	return found;
}

/* The access method of an index */
static Oid
get_index_am(Oid indexoid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexoid));
	Oid			am;

	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	am = ((Form_pg_class) GETSTRUCT(tup))->relam;
	ReleaseSysCache(tup);
	return am;
}

/* The unique indexes of localrel that give keys, into rel->uniq */
static bool
resolve_unique_keys(DepRel *rel, Relation localrel)
{
	LogicalRepRelation *remote = rel->remote;
	List	   *indexes = RelationGetIndexList(localrel);
	ListCell   *lc;
	int			i;

	rel->uniq = palloc(sizeof(DepKey) * Max(list_length(indexes), 1));
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index form;
		DepKey	   *key;
		bool		usable = true;
		Datum		d;
		bool		isnull;
		oidvector  *collations;
		oidvector  *opclasses;
		Oid			am;

		if (!HeapTupleIsValid(tup))
			continue;
		form = (Form_pg_index) GETSTRUCT(tup);
		if (!form->indisunique || !form->indisvalid ||
			!heap_attisnull(tup, Anum_pg_index_indexprs, NULL))
		{
			ReleaseSysCache(tup);
			continue;
		}
		d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indcollation, &isnull);
		Assert(!isnull);
		collations = (oidvector *) DatumGetPointer(d);
		d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indclass, &isnull);
		Assert(!isnull);
		opclasses = (oidvector *) DatumGetPointer(d);
		am = get_index_am(indexoid);

		key = &rel->uniq[rel->nuniq];
		key->tag = indexoid;
		key->nulls_distinct = !form->indnullsnotdistinct;
		key->ncols = form->indnkeyatts;
		key->cols = palloc(sizeof(int) * Max(key->ncols, 1));
		key->hash = palloc(sizeof(DepCol) * Max(key->ncols, 1));
		for (i = 0; i < key->ncols && usable; i++)
		{
			AttrNumber	attnum = form->indkey.values[i];
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(localrel), attnum - 1);
			int			rc = remote_col(remote, NameStr(att->attname));

			if (rc < 0)
			{
				usable = false;	/* not replicated: never claims a value */
				break;
			}
			key->cols[i] = rc;

			/*
			 * The type's own equality is the index's only with its default
			 * operator class; with another, equal keys may hash apart.
			 */
			if (opclasses->values[i] != GetDefaultOpClass(att->atttypid, am) ||
				!setup_col(&key->hash[i], att, remote->atttyps[rc],
						   collations->values[i], rel->rescxt))
			{
				ReleaseSysCache(tup);
				list_free(indexes);
				return false;
			}
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
					if (rel->ri.cols[j] == key->cols[i] &&
						rel->ri.hash[j].typed == key->hash[i].typed &&
						rel->ri.hash[j].collation == key->hash[i].collation)
						same = true;
			}
			if (same)
				usable = false;
		}
		if (usable)
			rel->nuniq++;
	}
	list_free(indexes);
	return true;
}

/*
 * Look at the local table: which keys its changes claim, and how to hash
 * them.  Never waits for a lock: if the table is locked by someone else (a
 * worker's TRUNCATE, a local ALTER TABLE), the relation is tracked at table
 * level until the next transaction tries again.  When the keys differ from
 * the ones used so far, transaction seq is a barrier for the relation: the
 * keys earlier transactions claimed are not comparable with the new ones.
 */
static void
resolve_rel(DepRel *rel, uint64 seq, PaDepAcc *acc)
{
	LogicalRepRelation *remote = rel->remote;
	MemoryContext old;
	Oid			relid;
	Relation	localrel = NULL;
	int			i;
	bool		started = false;
	bool		locked = false;
	bool		retry = false;
	uint64		sig;

	if (rel->rescxt == NULL)
		rel->rescxt = AllocSetContextCreate(rel->cxt, "parallel_apply dependency keys",
											ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(rel->rescxt);
	old = MemoryContextSwitchTo(rel->rescxt);
	/* an invalidation while we look (locking processes them) is kept */
	rel->resolved = true;
	rel->table_level = true;	/* until shown otherwise */
	rel->ri_usable = false;
	rel->row_key = false;
	rel->nuniq = 0;
	rel->uniq = NULL;
	rel->nleaves = 0;
	rel->leaves = NULL;
	rel->ri.tag = remote->remoteid;
	rel->ri.nulls_distinct = false;
	rel->ri.ncols = 0;
	rel->ri.cols = palloc(sizeof(int) * Max(remote->natts, 1));
	rel->ri.hash = palloc0(sizeof(DepCol) * Max(remote->natts, 1));
	if (!IsTransactionState())
	{
		StartTransactionCommand();
		started = true;
		MemoryContextSwitchTo(rel->rescxt);
	}

	relid = RangeVarGetRelid(makeRangeVar(remote->nspname, remote->relname, -1),
							 NoLock, true);
	rel->localrelid = relid;
	if (!OidIsValid(relid))
		goto done;				/* the worker will report it */
	if (!ConditionalLockRelationOid(relid, AccessShareLock))
	{
		retry = true;
		goto done;
	}
	locked = true;
	/* locking processed invalidations: is the name still this relation's? */
	if (RangeVarGetRelid(makeRangeVar(remote->nspname, remote->relname, -1),
						 NoLock, true) != relid ||
		(localrel = try_relation_open(relid, NoLock)) == NULL)
	{
		retry = true;
		goto done;
	}

	/* the replica identity columns, as the publisher flagged them */
	for (i = 0; i < remote->natts; i++)
	{
		Form_pg_attribute att;

		if (!bms_is_member(i, remote->attkeys))
			continue;
		att = local_att(RelationGetDescr(localrel), remote->attnames[i]);
		if (att == NULL)
			goto done;			/* the worker reports a missing column */
		if (!setup_col(&rel->ri.hash[rel->ri.ncols], att, remote->atttyps[i],
					   att->attcollation, rel->rescxt) &&
			(remote->replident != REPLICA_IDENTITY_FULL ||
			 !setup_image_col(&rel->ri.hash[rel->ri.ncols], att, rel->rescxt)))
			goto done;			/* no hash function: table level */
		rel->ri.cols[rel->ri.ncols++] = i;
	}

	/*
	 * With REPLICA IDENTITY FULL the key is the whole row image: the old row
	 * for UPDATE and DELETE, the new row for INSERT and UPDATE, so two
	 * changes conflict when they touch equal rows, compared as the worker
	 * compares them (lookup.c).
	 */
	rel->ri_usable = rel->ri.ncols > 0;
	rel->row_key = (remote->replident == REPLICA_IDENTITY_FULL);

	if (!resolve_unique_keys(rel, localrel))
		goto done;
	if (localrel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		bool		leaves_locked;

		if (leaf_only_unique(rel, relid, &leaves_locked) || !leaves_locked)
		{
			retry = !leaves_locked;
			goto done;
		}
	}

	rel->table_level = false;

done:
	if (localrel != NULL)
		relation_close(localrel, NoLock);
	if (locked)
		UnlockRelationOid(relid, AccessShareLock);
	if (started)
		CommitTransactionCommand();
	MemoryContextSwitchTo(old);

	if (rel->table_level)
	{
		rel->ri_usable = false;
		rel->nuniq = 0;
	}
	sig = hash_combine64(rel->table_level ? 1 : 2, rel->ri_usable);
	if (rel->ri_usable)
		sig = signature_of_key(sig, &rel->ri);
	for (i = 0; i < rel->nuniq; i++)
		sig = signature_of_key(sig, &rel->uniq[i]);
	sig |= 1;
	if (rel->signature != 0 && rel->signature != sig)
		rel_barrier(rel, seq, acc);
	rel->signature = sig;
	if (retry)
		rel->resolved = false;
	rel->retry_seq = retry ? seq : 0;
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

/*
 * Typed conversion and hashing may read the catalogs (a collation, an
 * array's element type, an extension type's cache), which needs a
 * transaction: the first typed value of a burst of messages starts one, and
 * the leader's loop ends it after the burst (pa_dep_end_batch), before it
 * waits or checks anything.  A transaction without an xid costs little, and
 * only bursts with typed keys pay for it.
 */
static bool batch_xact = false;
static bool conversion_failed = false;	/* by hash_value(), for the change */
static bool row_key_missed = false; /* a row image had no key (a 'u' column) */

static void
batch_xact_start(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	batch_xact = true;
}

void
pa_dep_end_batch(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (!batch_xact)
		return;
	batch_xact = false;
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
}

/*
 * A typed column's hash: the value converted with the subscriber type's
 * input or receive function, hashed with its extended hash function.  A
 * value the conversion rejects is hashed by its bytes: the worker will
 * fail on it and report it, with the transaction's context.  A value the
 * conversion rejects (a data exception: any other error goes on) sets
 * conversion_failed, and its change is a barrier for its relation, since
 * the same value could hash otherwise in another transaction.  The batch
 * transaction is then aborted, releasing whatever the failed function
 * held.
 */
static uint64
hash_value(DepCol *col, ColVal *v)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile uint64 h = 0;
	volatile bool ok = true;

	if (!col->typed)
		return hash_bytes_extended((const unsigned char *) v->data, v->len, 0);

	if (!IsTransactionState())
		batch_xact_start();
	PG_TRY();
	{
		Datum		d;
		char	   *copy = palloc(v->len + 1);

		/* the bytes may contain zeros: copy them all (no pnstrdup) */
		memcpy(copy, v->data, v->len);
		copy[v->len] = '\0';
		if (v->kind == LOGICALREP_COLUMN_TEXT)
			d = InputFunctionCall(&col->infunc, copy, col->ioparam, col->typmod);
		else if (OidIsValid(col->recvfunc.fn_oid))
		{
			StringInfoData buf;

			buf.data = copy;
			buf.len = v->len;
			buf.maxlen = v->len + 1;
			buf.cursor = 0;
			d = ReceiveFunctionCall(&col->recvfunc, &buf, col->ioparam,
									col->typmod);
			if (buf.cursor != buf.len)
				ok = false;
		}
		else
			ok = false;
		if (ok && col->image)
			h = hash_image(col, d);
		else if (ok)
			h = DatumGetUInt64(FunctionCall2Coll(&col->hashfunc, col->collation,
												 d, UInt64GetDatum(0)));
	}
	PG_CATCH();
	{
		/* only the value's own fault: a cancel or out of memory goes on */
		MemoryContextSwitchTo(cxt);
		if (ERRCODE_TO_CATEGORY(geterrcode()) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		if (batch_xact)
		{
			AbortCurrentTransaction();
			MemoryContextSwitchTo(cxt);
			batch_xact = false;
		}
		ok = false;
	}
	PG_END_TRY();

	if (!ok)
	{
		conversion_failed = true;
		return 0;
	}
	return h;
}

/* Claim one key for seq; note the previous writer.  False if skipped. */
static bool
claim_key(DepKey *key, ColVal *cols, int ncols, bool unique,
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
			return false;
		v = &cols[c];
		if (v->kind == LOGICALREP_COLUMN_UNCHANGED)
			return false;		/* neither claims nor frees */
		if (v->kind == LOGICALREP_COLUMN_NULL)
		{
			if (unique && key->nulls_distinct)
				return false;	/* NULLs never conflict */
			h = hash_combine64(h, 0x9e3779b97f4a7c15ULL);
			continue;
		}
		h = hash_combine64(h, hash_value(&key->hash[i], v));
	}

	if (dep_stream != NULL)
	{
		DepStream  *st = dep_stream;

		/* depend on its writer; record the key at the stream's commit */
		e = hash_search(keys, &h, HASH_FIND, NULL);
		if (e != NULL)
			pa_dep_note(acc, e->seq);
		if (st->nkeys == st->maxkeys)
		{
			st->maxkeys *= 2;
			st->keys = repalloc_huge(st->keys, sizeof(uint64) * st->maxkeys);
		}
		st->keys[st->nkeys++] = h;
		return true;
	}

	e = hash_search(keys, &h, HASH_ENTER, &found);
	if (found && e->seq != seq)
		pa_dep_note(acc, e->seq);
	else if (!found)
		budget_used++;			/* only new entries cost memory */
	e->seq = seq;
	return true;
}

/* Claim a tuple's keys; returns how many were claimed */
static int
claim_tuple(DepRel *rel, ColVal *cols, int ncols, bool complete, bool ri,
			uint64 seq, PaDepAcc *acc)
{
	int			n = 0;
	int			i;

	if (ri && rel->ri_usable)
	{
		bool		claimed = claim_key(&rel->ri, cols, ncols, false, seq, acc);

		n += claimed;
		if (!claimed && rel->row_key)
			row_key_missed = true;
	}
	if (complete)
		for (i = 0; i < rel->nuniq; i++)
			n += claim_key(&rel->uniq[i], cols, ncols, true, seq, acc);
	return n;
}

/* An INSERT, UPDATE or DELETE message of transaction seq on relation rel */
void
pa_dep_change(uint64 seq, PaDepRel *rel, const char *msg, int len, PaDepAcc *acc)
{
	StringInfoData s;
	char		type = msg[0];
	ColVal	   *cols;
	int			natts;
	int			claimed = 0;
	MemoryContext old;

	s.data = (char *) msg;
	s.len = len;
	s.cursor = 1 + 4;			/* past the type byte and the relation id */
	s.maxlen = -1;

	if (rel->barrier != seq)
		pa_dep_note(acc, rel->barrier);
	if (!rel->resolved && rel->retry_seq != seq)
		resolve_rel(rel, seq, acc);
	if (rel->table_level)
	{
		/*
		 * Inserts commute with each other here (no unique index); an UPDATE
		 * or DELETE waits for every earlier writer and every later change
		 * waits for it.
		 */
		if (type != LOGICAL_REP_MSG_INSERT)
			rel_barrier(rel, seq, acc);
		else
			rel_write(rel, seq);
		return;
	}

	/*
	 * Past its key budget a transaction records no more keys: each of its
	 * changes is a barrier for its relation instead.
	 */
	Assert(budget_seq == seq || dep_stream != NULL);
	if ((dep_stream != NULL ? dep_stream->nkeys : budget_used) +
		2 * (1 + rel->nuniq) > pa_max_transaction_keys)
	{
		rel_barrier(rel, seq, acc);
		return;
	}
	rel_write(rel, seq);

	old = MemoryContextSwitchTo(ChangeContext);
	cols = palloc(sizeof(ColVal) * Max(rel->remote->natts, 1));
	if (type == LOGICAL_REP_MSG_INSERT)
	{
		(void) pq_getmsgbyte(&s);	/* 'N' */
		natts = parse_tuple(&s, cols, rel->remote->natts);
		claimed += claim_tuple(rel, cols, natts, true, true, seq, acc);
	}
	else
	{
		char		tag = pq_getmsgbyte(&s);

		if (tag == 'K' || tag == 'O')
		{
			natts = parse_tuple(&s, cols, rel->remote->natts);
			/* 'K' has only the key; 'O' is the whole old row */
			claimed += claim_tuple(rel, cols, natts, tag == 'O', true, seq, acc);
			if (type == LOGICAL_REP_MSG_UPDATE)
				tag = pq_getmsgbyte(&s);
		}
		if (type == LOGICAL_REP_MSG_UPDATE && tag == 'N')
		{
			natts = parse_tuple(&s, cols, rel->remote->natts);
			claimed += claim_tuple(rel, cols, natts, true, true, seq, acc);
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(ChangeContext);

	/*
	 * An UPDATE or DELETE that claimed no key (NULLs in every unique key of
	 * a FULL table) finds its row by a comparison the keys do not see; a
	 * value that could not be converted has no trustworthy hash.
	 */
	if ((claimed == 0 && type != LOGICAL_REP_MSG_INSERT) || conversion_failed ||
		row_key_missed)
		rel_barrier(rel, seq, acc);
	conversion_failed = false;
	row_key_missed = false;
}

/*
 * Streamed transactions applied while they stream: see the file header.
 * Their collections live in DepContext and are freed at commit or abort.
 */
PaDepStream *
pa_dep_stream_create(void)
{
	DepStream  *st = MemoryContextAllocZero(DepContext, sizeof(DepStream));

	st->maxkeys = 256;
	st->keys = MemoryContextAlloc(DepContext, sizeof(uint64) * st->maxkeys);
	st->maxrels = 8;
	st->rels = MemoryContextAlloc(DepContext, sizeof(DepRel *) * st->maxrels);
	st->barrier = MemoryContextAlloc(DepContext, sizeof(bool) * st->maxrels);
	return st;
}

void
pa_dep_stream_free(PaDepStream *st)
{
	pfree(st->keys);
	pfree(st->rels);
	pfree(st->barrier);
	pfree(st);
}

/* A row change of the stream on rel: its dependencies, its keys collected */
void
pa_dep_stream_change(PaDepStream *st, PaDepRel *rel, const char *msg,
					 int len, PaDepAcc *acc)
{
	pa_dep_note(acc, global_barrier);

	/*
	 * No PG_TRY on this per-change path: an error ends the leader, which
	 * never goes on after one (leader.c re-throws).
	 */
	dep_stream = st;
	pa_dep_change(STREAM_SEQ, rel, msg, len, acc);
	dep_stream = NULL;
}

/*
 * A change of the stream on a relation whose description the stream itself
 * carries (a schema change inside it): its keys are not parsed; it waits for
 * every earlier writer of the relation and is a barrier for it at commit
 * (through the merged RELATION message: the caller's pa_dep_barrier()).
 */
void
pa_dep_stream_table(PaDepStream *st, PaDepRel *rel, PaDepAcc *acc)
{
	pa_dep_note(acc, global_barrier);
	if (rel != NULL)
	{
		pa_dep_note(acc, rel->barrier);
		pa_dep_note(acc, rel->last_writer);
	}
}

/* TRUNCATE in the stream: after every earlier transaction, before any later */
void
pa_dep_stream_truncate(PaDepStream *st, uint64 last_seq, PaDepAcc *acc)
{
	pa_dep_note(acc, last_seq);
	st->truncate = true;
}

/* The stream commits as transaction seq: what it wrote is recorded now */
void
pa_dep_stream_commit(PaDepStream *st, uint64 seq)
{
	int			i;

	for (i = 0; i < st->nkeys; i++)
	{
		KeyEntry   *e = hash_search(keys, &st->keys[i], HASH_ENTER, NULL);

		e->seq = seq;			/* every other writer precedes it */
	}
	for (i = 0; i < st->nrels; i++)
	{
		if (st->barrier[i])
			st->rels[i]->barrier = seq;
		rel_write(st->rels[i], seq);
	}
	if (st->truncate)
		global_barrier = seq;
}

/* Transaction seq is a barrier for rel: later changes of it wait for seq */
void
pa_dep_barrier(uint64 seq, PaDepRel *rel)
{
	rel->barrier = seq;
	rel_write(rel, seq);
}
