/*-------------------------------------------------------------------------
 *
 * relmap.c
 *	  Map remote relations to local replication target relations.
 *
 * This file owns the apply worker's relation map: one entry per remote
 * relation (keyed by the publisher's relation OID), holding the remote
 * description from the last RELATION message and, once the relation has
 * been opened, the local table it resolves to by schema and name, the
 * attribute map from local columns to remote columns (matched by name, in
 * any order), whether the local replica identity allows UPDATE/DELETE, and
 * each local column's input function (looked up at its first use, not for
 * every value as PostgreSQL 15 does).  It also owns the partition map,
 * keyed by (remote relation, leaf partition), used when a partitioned table
 * is the target.
 *
 * Invariants:
 *	- The maps and everything they point to live in PaRelMapContext;
 *	  scratch memory comes from the caller's (per-message) context.
 *	- A RELATION message whose description equals the cached one leaves the
 *	  entry alone; a different one replaces the description, drops the
 *	  partition entries that shared it, and forces re-resolution by name.
 *	- Local-side data is trusted only in state PA_RELMAP_VALID, which is
 *	  reached only after the local relation was locked and the data built
 *	  under that lock.  The relcache callback resets any entry whose local
 *	  relation (or, for a partition entry, whose partitioned parent) changed,
 *	  so local DDL is picked up at the next open; the cached input functions
 *	  are part of the local-side data and are dropped with it.
 *	- An ERROR between open and close leaves localrel dangling; the
 *	  relcache reference is released by transaction abort and the open
 *	  functions overwrite localrel, so a worker can go on after an error.
 *
 * The checks made on a target (relkind, no system catalogs, no temporary
 * tables, all replicated columns present, replica identity usable) follow
 * PostgreSQL 15's logical replication worker (relation.c), including the
 * catalog and temporary table checks added in 15.20, reimplemented here so
 * that the module loads on every 15.x minor release.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_subscription_rel.h"

#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "nodes/bitmapset.h"
#include "nodes/makefuncs.h"
#include "utils/catcache.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "pa_apply.h"
#include "pa_lookup.h"
#include "pa_relmap.h"

/* Hash entry of the relation map. */
typedef struct PaRelHashEntry
{
	LogicalRepRelId remoteid;	/* hash key */
	PaRelMapEntry entry;
} PaRelHashEntry;

/* Hash key and entry of the partition map. */
typedef struct PaPartKey
{
	LogicalRepRelId remoteid;	/* remote relation routed from */
	Oid			partoid;		/* local leaf partition */
} PaPartKey;

typedef struct PaPartHashEntry
{
	PaPartKey	key;			/* hash key */
	Oid			parentreloid;	/* local relation the routing started at */
	PaRelMapEntry entry;
} PaPartHashEntry;

static MemoryContext PaRelMapContext = NULL;
static HTAB *PaRelMap = NULL;
static HTAB *PaPartMap = NULL;

/* Drop an entry's local-side data: its attribute map and column inputs */
static void
free_local_data(PaRelMapEntry *entry)
{
	if (entry->attrmap)
		free_attrmap(entry->attrmap);
	entry->attrmap = NULL;
	if (entry->inputcxt)
		MemoryContextDelete(entry->inputcxt);
	entry->inputcxt = NULL;
	entry->colinput = NULL;
}

static void pa_relmap_invalidate_cb(Datum arg, Oid reloid);
static bool remoterel_equal(LogicalRepRelation *a, LogicalRepRelation *b);
static LogicalRepRelation *remoterel_copy(LogicalRepRelation *src);
static void remoterel_free(LogicalRepRelation *rel);
static void pa_partmap_reset(LogicalRepRelId remoteid);
static void pa_rel_build(PaRelMapEntry *entry, LOCKMODE lockmode);
static void pa_rel_mark_updatable(PaRelMapEntry *entry);

/*
 * Create the maps and register the invalidation callback.  Once per
 * process; the database connection must exist.
 */
void
pa_relmap_init(void)
{
	HASHCTL		ctl;

	if (PaRelMap != NULL)
		return;

	if (CacheMemoryContext == NULL)
		CreateCacheMemoryContext();

	PaRelMapContext = AllocSetContextCreate(CacheMemoryContext,
											"PaRelMapContext",
											ALLOCSET_DEFAULT_SIZES);

	ctl.keysize = sizeof(LogicalRepRelId);
	ctl.entrysize = sizeof(PaRelHashEntry);
	ctl.hcxt = PaRelMapContext;
	PaRelMap = hash_create("parallel_apply relation map", 128, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	ctl.keysize = sizeof(PaPartKey);
	ctl.entrysize = sizeof(PaPartHashEntry);
	ctl.hcxt = PaRelMapContext;
	PaPartMap = hash_create("parallel_apply partition map", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	CacheRegisterRelcacheCallback(pa_relmap_invalidate_cb, (Datum) 0);
}

/*
 * Relcache invalidation: reset the entries built on the invalidated
 * relation (all entries when reloid is InvalidOid).  Partition entries also
 * depend on their parent's attribute map, so they are reset with it.
 */
static void
pa_relmap_invalidate_cb(Datum arg, Oid reloid)
{
	HASH_SEQ_STATUS status;
	PaRelHashEntry *rh;
	PaPartHashEntry *ph;

	if (PaRelMap == NULL)
		return;

	hash_seq_init(&status, PaRelMap);
	while ((rh = (PaRelHashEntry *) hash_seq_search(&status)) != NULL)
	{
		if (!OidIsValid(reloid) || rh->entry.localreloid == reloid)
			rh->entry.state = PA_RELMAP_INVALID;
	}

	hash_seq_init(&status, PaPartMap);
	while ((ph = (PaPartHashEntry *) hash_seq_search(&status)) != NULL)
	{
		if (!OidIsValid(reloid) ||
			ph->key.partoid == reloid ||
			ph->parentreloid == reloid)
			ph->entry.state = PA_RELMAP_INVALID;
	}
}

/* Do two remote descriptions describe the same relation the same way? */
static bool
remoterel_equal(LogicalRepRelation *a, LogicalRepRelation *b)
{
	int			i;

	if (a->remoteid != b->remoteid ||
		a->natts != b->natts ||
		a->replident != b->replident ||
		strcmp(a->nspname, b->nspname) != 0 ||
		strcmp(a->relname, b->relname) != 0 ||
		!bms_equal(a->attkeys, b->attkeys))
		return false;

	for (i = 0; i < a->natts; i++)
	{
		if (a->atttyps[i] != b->atttyps[i] ||
			strcmp(a->attnames[i], b->attnames[i]) != 0)
			return false;
	}

	return true;
}

/* Deep copy of a remote description, in PaRelMapContext. */
static LogicalRepRelation *
remoterel_copy(LogicalRepRelation *src)
{
	MemoryContext oldctx = MemoryContextSwitchTo(PaRelMapContext);
	LogicalRepRelation *dst = palloc0(sizeof(LogicalRepRelation));
	int			i;

	dst->remoteid = src->remoteid;
	dst->nspname = pstrdup(src->nspname);
	dst->relname = pstrdup(src->relname);
	dst->natts = src->natts;
	dst->attnames = palloc(Max(src->natts, 1) * sizeof(char *));
	dst->atttyps = palloc(Max(src->natts, 1) * sizeof(Oid));
	for (i = 0; i < src->natts; i++)
	{
		dst->attnames[i] = pstrdup(src->attnames[i]);
		dst->atttyps[i] = src->atttyps[i];
	}
	dst->replident = src->replident;
	/* logicalrep_read_rel() leaves relkind unset; it is not used */
	dst->relkind = 0;
	dst->attkeys = bms_copy(src->attkeys);

	MemoryContextSwitchTo(oldctx);
	return dst;
}

static void
remoterel_free(LogicalRepRelation *rel)
{
	int			i;

	pfree(rel->nspname);
	pfree(rel->relname);
	for (i = 0; i < rel->natts; i++)
		pfree(rel->attnames[i]);
	pfree(rel->attnames);
	pfree(rel->atttyps);
	bms_free(rel->attkeys);
	pfree(rel);
}

/* Drop the partition entries routed from the given remote relation. */
static void
pa_partmap_reset(LogicalRepRelId remoteid)
{
	HASH_SEQ_STATUS status;
	PaPartHashEntry *ph;

	hash_seq_init(&status, PaPartMap);
	while ((ph = (PaPartHashEntry *) hash_seq_search(&status)) != NULL)
	{
		if (ph->key.remoteid != remoteid)
			continue;

		free_local_data(&ph->entry);
		/* removing the element just returned by hash_seq_search is allowed */
		if (hash_search(PaPartMap, &ph->key, HASH_REMOVE, NULL) == NULL)
			elog(ERROR, "parallel_apply partition map is corrupted");
	}
}

/*
 * Install the description carried by a RELATION message.  The local side
 * is resolved lazily, at the first change for the relation.
 */
void
pa_relmap_update(LogicalRepRelation *remoterel)
{
	PaRelHashEntry *rh;
	PaRelMapEntry *entry;
	bool		found;

	Assert(PaRelMap != NULL);

	rh = (PaRelHashEntry *) hash_search(PaRelMap, &remoterel->remoteid,
										HASH_ENTER, &found);
	entry = &rh->entry;

	if (found)
	{
		/* The publisher resends descriptions; most often nothing changed. */
		if (remoterel_equal(entry->remoterel, remoterel))
			return;

		pa_partmap_reset(remoterel->remoteid);
		remoterel_free(entry->remoterel);
		free_local_data(entry);
	}
	pa_lookup_remote_changed(); /* which columns it sends may differ */

	memset(entry, 0, sizeof(PaRelMapEntry));
	entry->state = PA_RELMAP_INVALID;
	entry->remoterel = remoterel_copy(remoterel);
}

/*
 * Refuse local relations that cannot be replication targets: anything but
 * a table or partitioned table, system catalogs and temporary tables.
 * nspname/relname name the relation in the error; when NULL they are
 * looked up, which only happens on the error path.
 */
void
pa_check_target_rel(Relation rel, const char *nspname, const char *relname)
{
	char		relkind = rel->rd_rel->relkind;
	bool		badkind;
	bool		catalog;

	badkind = (relkind != RELKIND_RELATION &&
			   relkind != RELKIND_PARTITIONED_TABLE);
	catalog = IsCatalogRelationOid(RelationGetRelid(rel));

	if (!badkind && !catalog &&
		rel->rd_rel->relpersistence != RELPERSISTENCE_TEMP)
		return;

	if (nspname == NULL)
	{
		nspname = get_namespace_name(RelationGetNamespace(rel));
		relname = RelationGetRelationName(rel);
	}

	if (badkind)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot use relation \"%s.%s\" as logical replication target",
						nspname, relname),
				 errdetail_relkind_not_supported(relkind)));
	if (catalog)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot use relation \"%s.%s\" as logical replication target",
						nspname, relname),
				 errdetail("This operation is not supported for system tables.")));
	ereport(ERROR,
			(errcode(ERRCODE_WRONG_OBJECT_TYPE),
			 errmsg("cannot use relation \"%s.%s\" as logical replication target",
					nspname, relname),
			 errdetail("This operation is not supported for temporary tables.")));
}

/*
 * Decide whether UPDATE/DELETE can find rows: every column of the local
 * replica identity (or primary key) must be part of the remote replica
 * identity.  Without either, the remote side must be REPLICA IDENTITY FULL.
 * A stricter local identity (fewer columns) is fine.
 */
static void
pa_rel_mark_updatable(PaRelMapEntry *entry)
{
	LogicalRepRelation *remoterel = entry->remoterel;
	Bitmapset  *idkey;
	int			i;

	entry->updatable = true;

	idkey = RelationGetIndexAttrBitmap(entry->localrel,
									   INDEX_ATTR_BITMAP_IDENTITY_KEY);
	if (idkey == NULL)
	{
		idkey = RelationGetIndexAttrBitmap(entry->localrel,
										   INDEX_ATTR_BITMAP_PRIMARY_KEY);
		if (idkey == NULL && remoterel->replident != REPLICA_IDENTITY_FULL)
			entry->updatable = false;
	}

	i = -1;
	while ((i = bms_next_member(idkey, i)) >= 0)
	{
		int			attnum = i + FirstLowInvalidHeapAttributeNumber;
		int			remoteattnum;

		if (!AttrNumberIsForUserDefinedAttr(attnum))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("logical replication target relation \"%s.%s\" uses system columns in REPLICA IDENTITY index",
							remoterel->nspname, remoterel->relname)));

		remoteattnum = entry->attrmap->attnums[AttrNumberGetAttrOffset(attnum)];
		if (remoteattnum < 0 || !bms_is_member(remoteattnum, remoterel->attkeys))
		{
			entry->updatable = false;
			break;
		}
	}

	bms_free(idkey);
}

/*
 * Resolve the local relation by name, lock it, check it and rebuild the
 * attribute map.  On return entry->localrel is open.
 */
static void
pa_rel_build(PaRelMapEntry *entry, LOCKMODE lockmode)
{
	LogicalRepRelation *remoterel = entry->remoterel;
	MemoryContext oldctx;
	TupleDesc	desc;
	Bitmapset  *missingatts;
	Oid			relid;
	int			i;

	entry->state = PA_RELMAP_INVALID;
	free_local_data(entry);

	relid = RangeVarGetRelid(makeRangeVar(remoterel->nspname,
										  remoterel->relname, -1),
							 lockmode, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("logical replication target relation \"%s.%s\" does not exist",
						remoterel->nspname, remoterel->relname)));

	/*
	 * From here on we hold the lock; invalidations arriving while we build
	 * reset the state and make the next open rebuild again.
	 */
	entry->localrel = table_open(relid, NoLock);
	entry->localreloid = relid;
	entry->state = PA_RELMAP_BUILDING;

	pa_check_target_rel(entry->localrel, remoterel->nspname,
						remoterel->relname);

	/*
	 * Like the built-in apply worker, apply changes only to tables whose
	 * synchronization is done (a table added by REFRESH PUBLICATION while
	 * attached waits for its initial copy, which the built-in worker does
	 * after detach).
	 */
	{
		XLogRecPtr	statelsn;

		entry->ready = (GetSubscriptionRelState(pa_apply_subid, relid, &statelsn) ==
						SUBREL_STATE_READY);
	}

	/* Map local columns to remote ones by name. */
	desc = RelationGetDescr(entry->localrel);
	oldctx = MemoryContextSwitchTo(PaRelMapContext);
	entry->attrmap = make_attrmap(desc->natts);
	MemoryContextSwitchTo(oldctx);

	missingatts = bms_add_range(NULL, 0, remoterel->natts - 1);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, i);
		int			remoteattnum = -1;
		int			j;

		if (!attr->attisdropped && !attr->attgenerated)
		{
			for (j = 0; j < remoterel->natts; j++)
			{
				if (strcmp(remoterel->attnames[j], NameStr(attr->attname)) == 0)
				{
					remoteattnum = j;
					break;
				}
			}
		}

		entry->attrmap->attnums[i] = remoteattnum;
		if (remoteattnum >= 0)
			missingatts = bms_del_member(missingatts, remoteattnum);
	}

	if (!bms_is_empty(missingatts))
	{
		StringInfoData buf;
		int			nmissing = 0;

		initStringInfo(&buf);
		i = -1;
		while ((i = bms_next_member(missingatts, i)) >= 0)
		{
			if (nmissing++ > 0)
				appendStringInfoString(&buf, ", ");
			appendStringInfo(&buf, "\"%s\"", remoterel->attnames[i]);
		}

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg_plural("logical replication target relation \"%s.%s\" is missing replicated column: %s",
							   "logical replication target relation \"%s.%s\" is missing replicated columns: %s",
							   nmissing,
							   remoterel->nspname, remoterel->relname,
							   buf.data)));
	}
	bms_free(missingatts);

	pa_rel_mark_updatable(entry);

	if (entry->state == PA_RELMAP_BUILDING)
		entry->state = PA_RELMAP_VALID;
}

/*
 * Open and lock the local relation for a remote relation, (re)building the
 * entry's local-side data when the relcache said it changed.
 */
PaRelMapEntry *
pa_rel_open(LogicalRepRelId remoteid, LOCKMODE lockmode)
{
	PaRelHashEntry *rh;
	PaRelMapEntry *entry;

	Assert(PaRelMap != NULL);

	rh = (PaRelHashEntry *) hash_search(PaRelMap, &remoteid, HASH_FIND, NULL);
	if (rh == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg_internal("no relation map entry for remote relation ID %u",
								 remoteid)));
	entry = &rh->entry;
	entry->localrel = NULL;

	/*
	 * Locking processes pending invalidations, so open a valid entry's
	 * relation by OID first and see whether it is still valid afterwards.
	 */
	if (entry->state == PA_RELMAP_VALID)
	{
		entry->localrel = try_table_open(entry->localreloid, lockmode);
		if (entry->localrel == NULL)
			entry->state = PA_RELMAP_INVALID;	/* dropped */
		else if (entry->state != PA_RELMAP_VALID)
		{
			/* changed meanwhile; release the no-longer-useful lock */
			table_close(entry->localrel, lockmode);
			entry->localrel = NULL;
		}
	}

	if (entry->state != PA_RELMAP_VALID)
		pa_rel_build(entry, lockmode);

	return entry;
}

void
pa_rel_close(PaRelMapEntry *entry, LOCKMODE lockmode)
{
	table_close(entry->localrel, lockmode);
	entry->localrel = NULL;
}

/*
 * Entry for a leaf partition reached by tuple routing from root (which is
 * open).  map is the routing's root-to-partition attribute map (1-based
 * root attribute numbers, 0 for dropped columns), or NULL when the
 * partition's columns match the root's.  The caller owns partrel; there is
 * no matching close.
 */
PaRelMapEntry *
pa_partition_open(PaRelMapEntry *root, Relation partrel, AttrMap *map)
{
	PaPartKey	key;
	PaPartHashEntry *ph;
	PaRelMapEntry *entry;
	MemoryContext oldctx;
	bool		found;
	int			i;

	Assert(root->localrel != NULL);

	memset(&key, 0, sizeof(key));
	key.remoteid = root->remoterel->remoteid;
	key.partoid = RelationGetRelid(partrel);

	ph = (PaPartHashEntry *) hash_search(PaPartMap, &key, HASH_ENTER, &found);
	entry = &ph->entry;

	if (!found)
	{
		memset(entry, 0, sizeof(PaRelMapEntry));
		entry->state = PA_RELMAP_INVALID;
	}

	/* Always point at the caller's Relation; an older one may be gone. */
	entry->localrel = partrel;

	if (found && entry->state == PA_RELMAP_VALID)
		return entry;

	entry->state = PA_RELMAP_BUILDING;
	entry->remoterel = root->remoterel;
	entry->localreloid = key.partoid;
	ph->parentreloid = root->localreloid;

	free_local_data(entry);

	/* Compose partition -> root -> remote. */
	oldctx = MemoryContextSwitchTo(PaRelMapContext);
	if (map)
	{
		entry->attrmap = make_attrmap(map->maplen);
		for (i = 0; i < map->maplen; i++)
		{
			AttrNumber	root_attno = map->attnums[i];

			entry->attrmap->attnums[i] = (root_attno == 0) ? -1 :
				root->attrmap->attnums[root_attno - 1];
		}
	}
	else
	{
		entry->attrmap = make_attrmap(root->attrmap->maplen);
		memcpy(entry->attrmap->attnums, root->attrmap->attnums,
			   root->attrmap->maplen * sizeof(AttrNumber));
	}
	MemoryContextSwitchTo(oldctx);

	pa_rel_mark_updatable(entry);

	if (entry->state == PA_RELMAP_BUILDING)
		entry->state = PA_RELMAP_VALID;

	return entry;
}

/*
 * The input function converting values of local column attoff from the
 * given wire format (LOGICALREP_COLUMN_TEXT or _BINARY), looked up once per
 * column and kept until the entry's local data is rebuilt.  PostgreSQL 15
 * looks it up for every value.
 */
FmgrInfo *
pa_rel_column_input(PaRelMapEntry *entry, int attoff, Oid typid, char format,
					Oid *typioparam)
{
	PaColumnInput *in;

	Assert(entry->attrmap != NULL && attoff < entry->attrmap->maplen);
	if (entry->colinput == NULL)
	{
		entry->inputcxt = AllocSetContextCreate(PaRelMapContext,
												"parallel_apply column input",
												ALLOCSET_SMALL_SIZES);
		entry->colinput = MemoryContextAllocZero(entry->inputcxt,
												 sizeof(PaColumnInput) *
												 entry->attrmap->maplen);
	}
	in = &entry->colinput[attoff];
	if (in->format != format)
	{
		Oid			func;

		in->format = 0;
		if (format == LOGICALREP_COLUMN_TEXT)
			getTypeInputInfo(typid, &func, &in->typioparam);
		else
			getTypeBinaryInputInfo(typid, &func, &in->typioparam);
		fmgr_info_cxt(func, &in->func, entry->inputcxt);
		in->format = format;
	}
	*typioparam = in->typioparam;
	return &in->func;
}
