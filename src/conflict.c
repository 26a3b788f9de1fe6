/*-------------------------------------------------------------------------
 *
 * conflict.c
 *	  Conflicts met while a remote change is applied: their detection, the
 *	  report in PostgreSQL 18's words, the counters of
 *	  parallel_apply.stat_conflicts and the rows of
 *	  parallel_apply.conflict_history.
 *
 * Owns: the search for the row that holds a new row's key once the index
 * insertion flagged a possible duplicate, the origin check of a found local
 * row, how a row is shown (in the log and as jsonb), the per-subscription
 * conflict counters (PaSub.conflicts), the LOG-level reports deferred to
 * the commit, and the history rows waiting to be written.
 *
 * The types, their levels and SQLSTATEs, and every word of the message,
 * DETAIL and CONTEXT are PostgreSQL 18.6's (replication/logical/conflict.c
 * there; ../shared/notes/pg18-conflicts.md has its output verbatim).
 *
 * Invariants kept here:
 *	- a conflict is reported only as serial apply in the publisher's order
 *	  meets it: a key found taken is looked up again once every transaction
 *	  before the worker's open commit group has committed, and a row not
 *	  found is looked for again after that wait by the caller (apply.c,
 *	  find_local_row); the wait is the commit-order lock wait (commit.c),
 *	  which the deadlock detector sees.  LOG-level conflicts are reported
 *	  when the worker's transaction commits, and forgotten if it aborts (it
 *	  is applied again), so each is reported once per applied transaction;
 *	- a change without a conflict pays nothing more: taken keys are looked
 *	  for only when the index insertion flagged a possible duplicate (as in
 *	  PostgreSQL 18), and the origin check reads the commit timestamp of the
 *	  found row's xmin, only with track_commit_timestamp;
 *	- a row is shown only as far as the subscription owner may read it
 *	  (PostgreSQL's rules for error messages: table or column SELECT, plus
 *	  the columns the change writes), in the log and in the history alike;
 *	- history rows are written in a transaction of their own, after the
 *	  transaction that met them committed or aborted, so a conflict that
 *	  raised an ERROR is recorded too; that write waits for locks a few
 *	  seconds at most.  One row per (subscription, finish LSN, change, type,
 *	  index): meeting it again, as a retried transaction does, counts an
 *	  attempt.  Memory is bounded: at most PA_MAX_DEFERRED_CONFLICTS reports
 *	  are kept per local transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/commit_ts.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "replication/origin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pa_apply.h"
#include "pa_commit.h"
#include "pa_conflict.h"
#include "pa_lookup.h"

int			pa_conflict_log = PA_CONFLICT_LOG_BOTH;

/* values longer than this are cut in the log, as PostgreSQL 18 cuts them */
#define PA_VALUE_DESC_LEN	64

static const char *const conflict_type_names[PA_NUM_CONFLICT_TYPES] = {
	[PA_CT_INSERT_EXISTS] = "insert_exists",
	[PA_CT_UPDATE_ORIGIN_DIFFERS] = "update_origin_differs",
	[PA_CT_UPDATE_EXISTS] = "update_exists",
	[PA_CT_UPDATE_MISSING] = "update_missing",
	[PA_CT_DELETE_ORIGIN_DIFFERS] = "delete_origin_differs",
	[PA_CT_DELETE_MISSING] = "delete_missing",
	[PA_CT_MULTIPLE_UNIQUE_CONFLICTS] = "multiple_unique_conflicts"
};

/* A local row a conflict is about */
typedef struct ConflictRow
{
	Oid			indexoid;		/* the unique index in which it holds the
								 * key (the *_exists types), else InvalidOid */
	TupleTableSlot *slot;		/* the row; NULL when there is none */
	TransactionId xmin;			/* the transaction that last wrote it */
	RepOriginId origin;			/* that transaction's origin, and */
	TimestampTz ts;				/* commit time; 0 when not known */
} ConflictRow;

/* How the rows of one conflict are shown: log text, and jsonb text */
typedef struct RowDescs
{
	char	   *key;			/* the taken key (the *_exists types) */
	char	   *local;			/* the existing local row */
	char	   *remote;			/* the remote new row */
	char	   *search;			/* the row searched for (replica identity) */
	bool		search_full;	/* ... by the whole row: no identity index */
	char	   *key_json;
	char	   *local_json;
	char	   *remote_json;
	char	   *search_json;
} RowDescs;

/* A row of parallel_apply.conflict_history not written yet */
typedef struct HistoryRow
{
	TimestampTz time;
	Oid			relid;
	char	   *relation;
	PaConflictType type;
	char	   *index_name;
	TransactionId remote_xid;
	XLogRecPtr	finish_lsn;
	int			change;
	TimestampTz remote_commit_time;
	char	   *local_origin;
	TransactionId local_xid;	/* InvalidTransactionId: no local row */
	TimestampTz local_ts;
	char	   *key;
	char	   *local_row;
	char	   *remote_row;
	char	   *replica_identity;
	const char *resolution;
} HistoryRow;

static PaSub *my_sub = NULL;
static PaWorker *my_worker = NULL;
static char my_subname[NAMEDATALEN];
static MemoryContext HistoryContext = NULL;
static List *pending = NIL;		/* HistoryRows to write, in HistoryContext */

/*
 * A LOG-level conflict of the open local transaction (its commit group),
 * reported -- logged, counted, its history row kept for writing -- once the
 * transaction has committed, and forgotten if it aborts: the transaction is
 * then applied again, and meets it again (in HistoryContext).
 */
typedef struct DeferredReport
{
	PaConflictType type;
	char	   *message;
	char	   *detail;			/* NULL: not for the log */
	char	   *context;		/* the CONTEXT line at detection */
	HistoryRow *row;			/* NULL: not for the table */
} DeferredReport;

/* at most this many per local transaction; past it, reported at once */
#define PA_MAX_DEFERRED_CONFLICTS	10000

static List *deferred = NIL;	/* DeferredReports */
static int	unrecorded = 0;		/* conflicts past that limit, not recorded
								 * in the history (memory stays bounded) */

static void flush_history(void);

const char *
pa_conflict_type_name(PaConflictType type)
{
	Assert(type >= 0 && type < PA_NUM_CONFLICT_TYPES);
	return conflict_type_names[type];
}

void
pa_conflict_init(PaSub *sub, PaWorker *me, const char *subname)
{
	my_sub = sub;
	my_worker = me;
	strlcpy(my_subname, subname, sizeof(my_subname));
	if (HistoryContext == NULL)
		HistoryContext = AllocSetContextCreate(TopMemoryContext,
											   "parallel_apply conflict history",
											   ALLOCSET_SMALL_SIZES);
}

bool
pa_predecessors_committed(void)
{
	return pa_apply_predecessor == 0 || pa_is_committed(pa_apply_predecessor);
}

void
pa_wait_predecessors(void)
{
	if (pa_apply_predecessor != 0)
		(void) pa_wait_for_commit(pa_apply_predecessor);
}

/* The last writer of the row in slot, and its commit's origin and time */
static void
get_row_info(TupleTableSlot *slot, ConflictRow *row)
{
	bool		isnull;

	row->slot = slot;
	row->xmin = DatumGetTransactionId(slot_getsysattr(slot,
													  MinTransactionIdAttributeNumber,
													  &isnull));
	row->origin = InvalidRepOriginId;
	row->ts = 0;

	/*
	 * A frozen row keeps its xmin, whose commit timestamp record may by now
	 * be another transaction's: its origin and time are not known.
	 */
	if (TTS_IS_BUFFERTUPLE(slot) || TTS_IS_HEAPTUPLE(slot))
	{
		HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, NULL);

		if (HeapTupleHeaderXminFrozen(tuple->t_data))
			return;
	}
	if (track_commit_timestamp && TransactionIdIsNormal(row->xmin) &&
		!TransactionIdGetCommitTsData(row->xmin, &row->ts, &row->origin))
	{
		row->origin = InvalidRepOriginId;
		row->ts = 0;
	}
}

bool
pa_origin_differs(TupleTableSlot *localslot)
{
	ConflictRow row;

	if (!track_commit_timestamp)
		return false;
	get_row_info(localslot, &row);

	/* our own origin is replorigin_session_origin, set for the whole worker */
	return row.ts != 0 && row.origin != replorigin_session_origin;
}

/*
 * The values of cols (attribute offsets into tupdesc) as a JSON object,
 * with json's rules for each type (row_to_json of a record of them).
 */
static char *
columns_json(TupleDesc tupdesc, Datum *values, bool *isnull,
			 const int *cols, int ncols)
{
	TupleDesc	desc = CreateTemplateTupleDesc(ncols);
	Datum	   *v = palloc(sizeof(Datum) * Max(ncols, 1));
	bool	   *n = palloc(sizeof(bool) * Max(ncols, 1));
	HeapTuple	tuple;
	int			j;

	for (j = 0; j < ncols; j++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, cols[j]);

		TupleDescInitEntry(desc, (AttrNumber) (j + 1), NameStr(att->attname),
						   att->atttypid, att->atttypmod, att->attndims);
		TupleDescInitEntryCollation(desc, (AttrNumber) (j + 1),
									att->attcollation);
		v[j] = values[cols[j]];
		n[j] = isnull[cols[j]];
	}
	desc = BlessTupleDesc(desc);
	tuple = heap_form_tuple(desc, v, n);
	return TextDatumGetCString(DirectFunctionCall1(row_to_json,
												   HeapTupleGetDatum(tuple)));
}

/*
 * The row in slot (rowtype of relation reloid) as PostgreSQL shows it in
 * an error message: "(v1, v2)" with table-level SELECT, else
 * "(c1, c2) = (v1, v2)" over the columns with column-level SELECT or that
 * the change writes (modifiedCols); NULL when that is none, or row-level
 * security applies.  *json gets the same columns as a JSON object.
 */
static char *
row_desc(Oid reloid, TupleTableSlot *slot, Bitmapset *modifiedCols,
		 char **json)
{
	TupleDesc	tupdesc = slot->tts_tupleDescriptor;
	bool		table_perm;
	int		   *cols;
	int			ncols = 0;
	StringInfoData buf;
	int			i;

	*json = NULL;
	if (check_enable_rls(reloid, InvalidOid, true) == RLS_ENABLED)
		return NULL;
	table_perm = (pg_class_aclcheck(reloid, GetUserId(), ACL_SELECT) == ACLCHECK_OK);

	slot_getallattrs(slot);
	cols = palloc(sizeof(int) * Max(tupdesc->natts, 1));
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (att->attisdropped)
			continue;
		if (table_perm ||
			bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber,
						  modifiedCols) ||
			pg_attribute_aclcheck(reloid, att->attnum, GetUserId(),
								  ACL_SELECT) == ACLCHECK_OK)
			cols[ncols++] = i;
	}
	if (ncols == 0 && !table_perm)
		return NULL;

	initStringInfo(&buf);
	if (!table_perm)
	{
		appendStringInfoChar(&buf, '(');
		for (i = 0; i < ncols; i++)
		{
			if (i > 0)
				appendStringInfoString(&buf, ", ");
			appendStringInfoString(&buf,
								   NameStr(TupleDescAttr(tupdesc, cols[i])->attname));
		}
		appendStringInfoString(&buf, ") = ");
	}
	appendStringInfoChar(&buf, '(');
	for (i = 0; i < ncols; i++)
	{
		int			c = cols[i];
		char	   *val = "null";
		int			len;

		if (!slot->tts_isnull[c])
		{
			Oid			typoutput;
			bool		typisvarlena;

			getTypeOutputInfo(TupleDescAttr(tupdesc, c)->atttypid,
							  &typoutput, &typisvarlena);
			val = OidOutputFunctionCall(typoutput, slot->tts_values[c]);
		}
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		len = strlen(val);
		if (len <= PA_VALUE_DESC_LEN)
			appendBinaryStringInfo(&buf, val, len);
		else
		{
			len = pg_mbcliplen(val, len, PA_VALUE_DESC_LEN);
			appendBinaryStringInfo(&buf, val, len);
			appendStringInfoString(&buf, "...");
		}
	}
	appendStringInfoChar(&buf, ')');

	*json = columns_json(tupdesc, slot->tts_values, slot->tts_isnull,
						 cols, ncols);
	return buf.data;
}

/*
 * The key of index indexoid that the row in slot has, as PostgreSQL shows
 * it ("(id)=(1)"; NULL when the subscription owner may not read all its
 * columns), and as a JSON object.
 */
static char *
index_desc(EState *estate, Oid indexoid, TupleTableSlot *slot, char **json)
{
	Relation	index = index_open(indexoid, AccessShareLock);
	IndexInfo  *ii = BuildIndexInfo(index);
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];
	char	   *desc;

	*json = NULL;
	GetPerTupleExprContext(estate)->ecxt_scantuple = slot;
	FormIndexDatum(ii, slot, estate, values, isnull);
	desc = BuildIndexValueDescription(index, values, isnull);
	if (desc != NULL)
	{
		int			nkeys = IndexRelationGetNumberOfKeyAttributes(index);
		TupleDesc	keydesc = CreateTemplateTupleDesc(nkeys);
		int			cols[INDEX_MAX_KEYS];
		int			i;

		/* the values are of the opclasses' input types, as the description's */
		for (i = 0; i < nkeys; i++)
		{
			TupleDescInitEntry(keydesc, (AttrNumber) (i + 1),
							   NameStr(TupleDescAttr(RelationGetDescr(index), i)->attname),
							   index->rd_opcintype[i], -1, 0);
			TupleDescInitEntryCollation(keydesc, (AttrNumber) (i + 1),
										index->rd_indcollation[i]);
			cols[i] = i;
		}
		*json = columns_json(keydesc, values, isnull, cols, nkeys);
	}
	index_close(index, AccessShareLock);
	return desc;
}

/* What PostgreSQL 18 shows of a conflict's rows */
static void
describe_rows(EState *estate, ResultRelInfo *relinfo, PaConflictType type,
			  TupleTableSlot *searchslot, ConflictRow *row,
			  TupleTableSlot *remoteslot, RowDescs *d)
{
	Relation	rel = relinfo->ri_RelationDesc;
	Oid			relid = RelationGetRelid(rel);

	memset(d, 0, sizeof(*d));
	if (OidIsValid(row->indexoid) && row->slot != NULL)
		d->key = index_desc(estate, row->indexoid, row->slot, &d->key_json);
	if (row->slot != NULL)
		d->local = row_desc(relid, row->slot, NULL, &d->local_json);
	if (remoteslot != NULL)
	{
		Bitmapset  *written = bms_union(ExecGetInsertedCols(relinfo, estate),
										ExecGetUpdatedCols(relinfo, estate));

		d->remote = row_desc(relid, remoteslot, written, &d->remote_json);
	}
	if (searchslot != NULL)
	{
		Oid			identity = pa_identity_index(rel);

		if (OidIsValid(identity))
			d->search = index_desc(estate, identity, searchslot,
								   &d->search_json);
		else
		{
			d->search = row_desc(relid, searchslot, NULL, &d->search_json);
			d->search_full = true;
		}
	}
}

/* "<what> <desc>" after a "; ", the first one capitalized */
static void
append_value(StringInfo buf, const char *what, const char *desc)
{
	if (desc == NULL)
		return;
	if (buf->len > 0)
		appendStringInfo(buf, "; %s %s", what, desc);
	else
		appendStringInfo(buf, "%c%s %s", pg_toupper((unsigned char) what[0]),
						 what + 1, desc);
}

/*
 * "Updating (Deleting) the row that was modified ..." of the *_origin_differs
 * types; origin_name is NULL when the origin no longer exists.
 */
static void
append_origin_sentence(StringInfo buf, const char *verb, ConflictRow *row,
					   const char *origin_name)
{
	if (row->origin == InvalidRepOriginId)
		appendStringInfo(buf, "%s the row that was modified locally in transaction %u at %s.",
						 verb, row->xmin, timestamptz_to_str(row->ts));
	else if (origin_name != NULL)
		appendStringInfo(buf, "%s the row that was modified by a different origin \"%s\" in transaction %u at %s.",
						 verb, origin_name, row->xmin,
						 timestamptz_to_str(row->ts));
	else
		appendStringInfo(buf, "%s the row that was modified by a non-existent origin in transaction %u at %s.",
						 verb, row->xmin, timestamptz_to_str(row->ts));
}

/*
 * Append one conflicting row's DETAIL to buf: the sentence saying what was
 * found, then a line with the key, the existing local row, the remote row
 * and the replica identity, where each applies.
 */
static void
append_detail(StringInfo buf, PaConflictType type, ConflictRow *row,
			  RowDescs *d)
{
	StringInfoData values;
	char	   *origin_name = NULL;

	/* origin_name stays NULL for an origin that no longer exists */
	if (row->origin != InvalidRepOriginId &&
		!replorigin_by_oid(row->origin, true, &origin_name))
		origin_name = NULL;

	if (buf->len > 0)
		appendStringInfoChar(buf, '\n');

	switch (type)
	{
		case PA_CT_INSERT_EXISTS:
		case PA_CT_UPDATE_EXISTS:
		case PA_CT_MULTIPLE_UNIQUE_CONFLICTS:
			{
				char	   *index_name = get_rel_name(row->indexoid);

				if (row->ts == 0)
					appendStringInfo(buf, "Key already exists in unique index \"%s\", modified in transaction %u.",
									 index_name, row->xmin);
				else if (row->origin == InvalidRepOriginId)
					appendStringInfo(buf, "Key already exists in unique index \"%s\", modified locally in transaction %u at %s.",
									 index_name, row->xmin,
									 timestamptz_to_str(row->ts));
				else if (origin_name != NULL)
					appendStringInfo(buf, "Key already exists in unique index \"%s\", modified by origin \"%s\" in transaction %u at %s.",
									 index_name, origin_name, row->xmin,
									 timestamptz_to_str(row->ts));
				else
					appendStringInfo(buf, "Key already exists in unique index \"%s\", modified by a non-existent origin in transaction %u at %s.",
									 index_name, row->xmin,
									 timestamptz_to_str(row->ts));
			}
			break;

		case PA_CT_UPDATE_ORIGIN_DIFFERS:
			append_origin_sentence(buf, "Updating", row, origin_name);
			break;

		case PA_CT_UPDATE_MISSING:
			appendStringInfoString(buf, "Could not find the row to be updated.");
			break;

		case PA_CT_DELETE_ORIGIN_DIFFERS:
			append_origin_sentence(buf, "Deleting", row, origin_name);
			break;

		case PA_CT_DELETE_MISSING:
			appendStringInfoString(buf, "Could not find the row to be deleted.");
			break;
	}

	initStringInfo(&values);
	append_value(&values, "key", d->key);
	append_value(&values, "existing local row", d->local);
	append_value(&values, "remote row", d->remote);
	append_value(&values, d->search_full ? "replica identity full" : "replica identity",
				 d->search);
	if (values.len > 0)
		appendStringInfo(buf, "\n%s.", values.data);
	pfree(values.data);
}

static char *
history_strdup(const char *s)
{
	return s ? MemoryContextStrdup(HistoryContext, s) : NULL;
}

/* A history row of this conflict, in HistoryContext */
static HistoryRow *
history_row(Relation rel, const char *nspname, PaConflictType type,
		 ConflictRow *row, RowDescs *d, const char *resolution)
{
	MemoryContext old = MemoryContextSwitchTo(HistoryContext);
	HistoryRow *h = palloc0(sizeof(HistoryRow));

	h->time = GetCurrentTimestamp();
	h->relid = RelationGetRelid(rel);
	h->relation = psprintf("%s.%s", nspname, RelationGetRelationName(rel));
	h->type = type;
	h->index_name = OidIsValid(row->indexoid) ?
		history_strdup(get_rel_name(row->indexoid)) : NULL;
	h->remote_xid = pa_errctx.remote_xid;
	h->finish_lsn = pa_errctx.finish_lsn;
	h->change = pa_apply_change;
	h->remote_commit_time = pa_apply_commit_time;
	if (row->slot != NULL)
	{
		char	   *origin_name;

		h->local_xid = row->xmin;
		h->local_ts = row->ts;
		if (row->ts != 0 && row->origin != InvalidRepOriginId)
			h->local_origin =
				replorigin_by_oid(row->origin, true, &origin_name) ?
				history_strdup(origin_name) : psprintf("#%u", row->origin);
	}
	h->key = history_strdup(d->key_json);
	h->local_row = history_strdup(d->local_json);
	h->remote_row = history_strdup(d->remote_json);
	h->replica_identity = history_strdup(d->search_json);
	h->resolution = resolution;
	MemoryContextSwitchTo(old);
	return h;
}

/*
 * The schema of the extension, where conflict_history is, and the
 * extension's owner if owner is not NULL; NULL if there is no extension
 */
static char *
extension_schema(Oid *owner)
{
	Oid			extoid = get_extension_oid("parallel_apply", true);

	if (!OidIsValid(extoid))
		return NULL;
	return get_namespace_name(pa_extension_schema(extoid, owner));
}

/* PostgreSQL 18's SQLSTATE of a conflict type (errcode_apply_conflict) */
static int
conflict_sqlstate(PaConflictType type)
{
	switch (type)
	{
		case PA_CT_INSERT_EXISTS:
		case PA_CT_UPDATE_EXISTS:
		case PA_CT_MULTIPLE_UNIQUE_CONFLICTS:
			return ERRCODE_UNIQUE_VIOLATION;
		case PA_CT_UPDATE_ORIGIN_DIFFERS:
		case PA_CT_UPDATE_MISSING:
		case PA_CT_DELETE_ORIGIN_DIFFERS:
		case PA_CT_DELETE_MISSING:
			return ERRCODE_T_R_SERIALIZATION_FAILURE;
	}
	return ERRCODE_INTERNAL_ERROR;	/* keep compiler quiet */
}

/* error context callback of a deferred report: the line saved with it */
static void
saved_context_callback(void *arg)
{
	if (arg != NULL)
		errcontext("%s", (const char *) arg);
}

/* Log and count a LOG-level conflict, with the CONTEXT line it was met in */
static void
emit_log_report(PaConflictType type, const char *message, const char *detail,
				const char *context)
{
	ErrorContextCallback cb;

	pg_atomic_fetch_add_u64(&my_sub->conflicts[type], 1);
	if (detail == NULL)
		return;

	/* only our line: the worker's own callback may describe another state */
	cb.callback = saved_context_callback;
	cb.arg = (void *) context;
	cb.previous = NULL;
	{
		ErrorContextCallback *save = error_context_stack;

		error_context_stack = &cb;
		ereport(LOG,
				(errcode(conflict_sqlstate(type)),
				 errmsg_internal("%s", message),
				 errdetail_internal("%s", detail)));
		error_context_stack = save;
	}
}

/*
 * Report one conflict, with nrows local rows (none for the *_missing
 * types).  An ERROR-level one is counted, logged and raised here (it does
 * not return), its history row written after the abort; a LOG-level one is
 * deferred to the commit of the transaction (pa_conflict_commit).
 */
static void
report_conflict(EState *estate, ResultRelInfo *relinfo, int elevel,
				PaConflictType type, TupleTableSlot *searchslot,
				TupleTableSlot *remoteslot, ConflictRow *rows, int nrows)
{
	Relation	rel = relinfo->ri_RelationDesc;
	char	   *nspname = get_namespace_name(RelationGetNamespace(rel));
	bool		to_log = (pa_conflict_log & PA_CONFLICT_LOG_LOG) != 0;
	bool		to_table = (pa_conflict_log & PA_CONFLICT_LOG_TABLE) != 0;
	const char *resolution;
	ConflictRow none;
	StringInfoData detail;
	char	   *message;
	HistoryRow *hrow = NULL;
	int			i;

	Assert(my_sub != NULL);

	if (elevel >= ERROR)
		resolution = "error";
	else if (type == PA_CT_UPDATE_MISSING || type == PA_CT_DELETE_MISSING)
		resolution = "skipped";
	else
		resolution = "applied_remote";

	if (nrows == 0)
	{
		memset(&none, 0, sizeof(none));
		rows = &none;
		nrows = 1;
	}

	initStringInfo(&detail);
	for (i = 0; i < nrows; i++)
	{
		RowDescs	d;

		describe_rows(estate, relinfo, type, searchslot, &rows[i],
					  remoteslot, &d);
		append_detail(&detail, type, &rows[i], &d);
		if (!to_table)
			continue;
		hrow = history_row(rel, nspname, type, &rows[i], &d, resolution);
		if (elevel >= ERROR)
		{
			MemoryContext old = MemoryContextSwitchTo(HistoryContext);

			pending = lappend(pending, hrow);
			MemoryContextSwitchTo(old);
		}
	}
	message = psprintf("conflict detected on relation \"%s.%s\": conflict=%s",
					   nspname, RelationGetRelationName(rel),
					   pa_conflict_type_name(type));

	if (elevel < ERROR)
	{
		/* LOG-level types have a single row */
		Assert(nrows == 1);
		if (list_length(deferred) < PA_MAX_DEFERRED_CONFLICTS)
		{
			MemoryContext old = MemoryContextSwitchTo(HistoryContext);
			DeferredReport *r = palloc(sizeof(DeferredReport));

			r->type = type;
			r->message = pstrdup(message);
			r->detail = to_log ? pstrdup(detail.data) : NULL;
			r->context = pa_apply_error_context();
			r->row = hrow;
			deferred = lappend(deferred, r);
			MemoryContextSwitchTo(old);
		}
		else
		{
			/* too many to keep: say it now, and keep no history row */
			char	   *context = pa_apply_error_context();

			emit_log_report(type, message, to_log ? detail.data : NULL,
							context);
			if (to_table)
				unrecorded++;
		}
		pfree(detail.data);
		return;
	}

	pg_atomic_fetch_add_u64(&my_sub->conflicts[type], 1);
	my_worker->conflict_failed = true;
	if (to_log)
		ereport(elevel,
				(errcode(conflict_sqlstate(type)),
				 errmsg_internal("%s", message),
				 errdetail_internal("%s", detail.data)));
	else
	{
		char	   *schema = extension_schema(NULL);

		ereport(elevel,
				(errcode(conflict_sqlstate(type)),
				 errmsg_internal("%s", message),
				 errdetail("The conflict is recorded in %s.conflict_history.",
						   quote_identifier(schema ? schema : "parallel_apply"))));
	}
}

List *
pa_conflict_indexes(ResultRelInfo *relinfo)
{
	List	   *indexes = NIL;
	int			i;

	for (i = 0; i < relinfo->ri_NumIndices; i++)
	{
		Relation	index = relinfo->ri_IndexRelationDescs[i];
		IndexInfo  *ii = relinfo->ri_IndexRelationInfo[i];

		if (index != NULL && ii->ii_Unique && ii->ii_ReadyForInserts &&
			index->rd_index->indimmediate)
			indexes = lappend_oid(indexes, RelationGetRelid(index));
	}
	return indexes;
}

/*
 * Look in a unique index for a row other than self holding the key in
 * values/isnull, with a dirty snapshot, as the unique check does
 * (check_exclusion_or_unique_constraint in execIndexing.c, which cannot
 * leave our own new row out in PostgreSQL 15): a row an in-progress
 * transaction inserts or deletes is waited for (a transaction lock wait)
 * and the index looked at again.  With lock, the row found is locked in
 * share mode, and looked for again if it changed meanwhile, so that the
 * report shows it as it is (PostgreSQL 18's FindConflictTuple).  Returns
 * whether there is one, in slot.
 */
static bool
probe_index(EState *estate, Relation heap, Relation index, IndexInfo *ii,
			Datum *values, bool *isnull, ItemPointer self, bool lock,
			TupleTableSlot *slot)
{
	int			nkeys = IndexRelationGetNumberOfKeyAttributes(index);
	ScanKeyData scankeys[INDEX_MAX_KEYS];
	SnapshotData dirty;
	int			i;

	if (!ii->ii_NullsNotDistinct)
		for (i = 0; i < nkeys; i++)
			if (isnull[i])
				return false;	/* NULLs never collide */

	if (ii->ii_UniqueOps == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);

		BuildSpeculativeIndexInfo(index, ii);
		MemoryContextSwitchTo(old);
	}
	for (i = 0; i < nkeys; i++)
		ScanKeyEntryInitialize(&scankeys[i],
							   isnull[i] ? SK_ISNULL | SK_SEARCHNULL : 0,
							   i + 1, ii->ii_UniqueStrats[i], InvalidOid,
							   index->rd_indcollation[i], ii->ii_UniqueProcs[i],
							   values[i]);
	InitDirtySnapshot(dirty);

	for (;;)
	{
		IndexScanDesc scan;
		bool		got = false;
		TransactionId xwait = InvalidTransactionId;
		uint32		token = 0;
		ItemPointerData tid;
		TM_FailureData tmfd;
		TM_Result	res;

		CHECK_FOR_INTERRUPTS();
		scan = index_beginscan(heap, index, &dirty, nkeys, 0);
		index_rescan(scan, scankeys, nkeys, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			if (self != NULL && ItemPointerEquals(self, &slot->tts_tid))
				continue;
			xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
			token = dirty.speculativeToken;
			tid = slot->tts_tid;
			got = true;
			break;
		}
		index_endscan(scan);
		if (!got)
			return false;

		if (TransactionIdIsValid(xwait))
		{
			if (token != 0)
				SpeculativeInsertionWait(dirty.xmin, token);
			else
				XactLockTableWait(xwait, heap, &tid, XLTW_InsertIndex);
			continue;
		}
		if (!lock)
			return true;

		res = table_tuple_lock(heap, &tid, GetLatestSnapshot(), slot,
							   GetCurrentCommandId(false), LockTupleShare,
							   LockWaitBlock, 0, &tmfd);
		if (res == TM_Ok)
			return true;
		if (res != TM_Updated && res != TM_Deleted)
			elog(ERROR, "unexpected table_tuple_lock status: %u", res);
		/* it changed after we saw it: look again */
	}
}

/*
 * The rows other than the new one in slot that hold its key in one of
 * indexes that is unique and immediately checked, into rows (locked, with
 * lock); returns how many.
 */
static int
find_unique_conflicts(EState *estate, ResultRelInfo *relinfo,
					  TupleTableSlot *slot, List *indexes, bool lock,
					  ConflictRow *rows)
{
	Relation	rel = relinfo->ri_RelationDesc;
	int			n = 0;
	int			i;

	for (i = 0; i < relinfo->ri_NumIndices; i++)
	{
		Relation	index = relinfo->ri_IndexRelationDescs[i];
		IndexInfo  *ii = relinfo->ri_IndexRelationInfo[i];
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];
		TupleTableSlot *found;

		/* flagged, and one PostgreSQL 18 checks (deferrable ones are not) */
		if (index == NULL || !ii->ii_Unique || !index->rd_index->indimmediate ||
			!list_member_oid(indexes, RelationGetRelid(index)))
			continue;

		GetPerTupleExprContext(estate)->ecxt_scantuple = slot;
		FormIndexDatum(ii, slot, estate, values, isnull);
		found = table_slot_create(rel, &estate->es_tupleTable);
		if (!probe_index(estate, rel, index, ii, values, isnull,
						 &slot->tts_tid, lock, found))
			continue;

		memset(&rows[n], 0, sizeof(ConflictRow));
		rows[n].indexoid = RelationGetRelid(index);
		get_row_info(found, &rows[n]);
		n++;
	}
	return n;
}

void
pa_check_unique(EState *estate, ResultRelInfo *relinfo, TupleTableSlot *slot,
				List *indexes, TupleTableSlot *searchslot, bool update)
{
	ConflictRow *rows;
	int			n;
	PaConflictType type;

	if (indexes == NIL)
		return;

	rows = palloc(sizeof(ConflictRow) * list_length(indexes));
	for (;;)
	{
		/* read before the probe: a commit just after it must count */
		bool		settled = pa_predecessors_committed();

		n = find_unique_conflicts(estate, relinfo, slot, indexes, settled,
								  rows);
		if (n == 0)
		{
			/* a false alarm, or the writer went away: the new row stands */
			pfree(rows);
			return;
		}
		if (settled)
			break;

		/*
		 * An earlier transaction may yet remove the row: look again once
		 * they have all committed.  The row is not locked while we wait, so
		 * that such a transaction does not wait for us.
		 */
		pa_wait_predecessors();
	}

	if (n > 1)
		type = PA_CT_MULTIPLE_UNIQUE_CONFLICTS;
	else
		type = update ? PA_CT_UPDATE_EXISTS : PA_CT_INSERT_EXISTS;
	report_conflict(estate, relinfo, ERROR, type, searchslot, slot, rows, n);
}

void
pa_report_origin_differs(EState *estate, ResultRelInfo *relinfo,
						 PaConflictType type, TupleTableSlot *searchslot,
						 TupleTableSlot *localslot, TupleTableSlot *remoteslot)
{
	ConflictRow row;

	/*
	 * No wait for the earlier transactions: the report waits for the
	 * transaction's commit (report_conflict), which comes after theirs, and
	 * the row found is the one serial apply finds, since the dependency
	 * tracker orders every change of a replica identity key behind the
	 * earlier ones (src/dependency.c).  Waiting here, holding the row's
	 * lock, would make every change of a row written locally or copied by
	 * the initial synchronization wait for all earlier transactions.
	 */
	memset(&row, 0, sizeof(row));
	get_row_info(localslot, &row);
	report_conflict(estate, relinfo, LOG, type, searchslot, remoteslot,
					&row, 1);
}

void
pa_report_missing(EState *estate, ResultRelInfo *relinfo, PaConflictType type,
				  TupleTableSlot *searchslot, TupleTableSlot *remoteslot)
{
	report_conflict(estate, relinfo, LOG, type, searchslot, remoteslot,
					NULL, 0);
}

void
pa_conflict_commit(void)
{
	ListCell   *lc;

	foreach(lc, deferred)
	{
		DeferredReport *r = (DeferredReport *) lfirst(lc);

		emit_log_report(r->type, r->message, r->detail, r->context);
		if (r->row != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(HistoryContext);

			pending = lappend(pending, r->row);
			MemoryContextSwitchTo(old);
		}
	}
	deferred = NIL;
	flush_history();
}

void
pa_conflict_abort(void)
{
	/* met again when the transaction is applied again */
	deferred = NIL;
	flush_history();
}

#define HISTORY_NARGS 19

/*
 * Insert (or count again) the pending rows, in a transaction, as the
 * extension's owner, who owns the history table; only this statement runs
 * under that identity
 */
static void
write_history(void)
{
	static const Oid argtypes[HISTORY_NARGS] = {
		TIMESTAMPTZOID, OIDOID, NAMEOID, OIDOID, TEXTOID, TEXTOID, TEXTOID,
		XIDOID, LSNOID, INT4OID, TIMESTAMPTZOID, TEXTOID, XIDOID,
		TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID
	};
	Oid			owner = InvalidOid;
	char	   *schema = extension_schema(&owner);
	Oid			save_userid;
	int			save_sec;
	char	   *sql;
	SPIPlanPtr	plan;
	ListCell   *lc;

	if (schema == NULL)
		elog(ERROR, "extension \"parallel_apply\" does not exist");
	sql = psprintf("INSERT INTO %s.conflict_history AS h"
				   " (time, last_time, attempts, subid, subname, relid, relation,"
				   " conflict_type, index_name, remote_xid, finish_lsn, change,"
				   " remote_commit_time, local_origin, local_xid, local_commit_time,"
				   " key, local_row, remote_row, replica_identity, resolution)"
				   " VALUES ($1, $1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
				   " $12, $13, $14, $15::jsonb, $16::jsonb, $17::jsonb, $18::jsonb, $19)"
				   " ON CONFLICT (subid, finish_lsn, change, conflict_type,"
				   " (coalesce(index_name, '')))"
				   " DO UPDATE SET last_time = excluded.last_time,"
				   " attempts = h.attempts + 1, remote_xid = excluded.remote_xid,"
				   " remote_commit_time = excluded.remote_commit_time,"
				   " local_origin = excluded.local_origin,"
				   " local_xid = excluded.local_xid,"
				   " local_commit_time = excluded.local_commit_time,"
				   " key = excluded.key, local_row = excluded.local_row,"
				   " remote_row = excluded.remote_row,"
				   " replica_identity = excluded.replica_identity,"
				   " resolution = excluded.resolution",
				   quote_identifier(schema));

	/*
	 * The subscription owner may not write the table.  Its owner may; only
	 * our own statement runs, with the values as parameters.  A session
	 * that holds the table or a row locked (a purge left open) is waited
	 * for a few seconds at most: the worker may hold its commit-order locks
	 * meanwhile, and the rows are not worth a stalled subscription.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	(void) set_config_option("lock_timeout", "5s", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	(void) set_config_option("statement_timeout", "10s", PGC_SUSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	plan = SPI_prepare(sql, HISTORY_NARGS, (Oid *) argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));

	foreach(lc, pending)
	{
		HistoryRow *h = (HistoryRow *) lfirst(lc);
		Datum		v[HISTORY_NARGS];
		char		n[HISTORY_NARGS + 1];
		int			i;

		memset(n, ' ', HISTORY_NARGS);
		n[HISTORY_NARGS] = '\0';
#define TEXT_ARG(i, s) \
		do { if ((s) != NULL) v[i] = CStringGetTextDatum(s); else n[i] = 'n'; } while (0)
		v[0] = TimestampTzGetDatum(h->time);
		v[1] = ObjectIdGetDatum(pa_apply_subid);
		v[2] = DirectFunctionCall1(namein, CStringGetDatum(my_subname));
		v[3] = ObjectIdGetDatum(h->relid);
		v[4] = CStringGetTextDatum(h->relation);
		v[5] = CStringGetTextDatum(pa_conflict_type_name(h->type));
		TEXT_ARG(6, h->index_name);
		v[7] = TransactionIdGetDatum(h->remote_xid);
		v[8] = LSNGetDatum(h->finish_lsn);
		v[9] = Int32GetDatum(h->change);
		v[10] = TimestampTzGetDatum(h->remote_commit_time);
		if (h->remote_commit_time == 0)
			n[10] = 'n';
		TEXT_ARG(11, h->local_origin);
		v[12] = TransactionIdGetDatum(h->local_xid);
		if (!TransactionIdIsValid(h->local_xid))
			n[12] = 'n';
		v[13] = TimestampTzGetDatum(h->local_ts);
		if (h->local_ts == 0)
			n[13] = 'n';
		TEXT_ARG(14, h->key);
		TEXT_ARG(15, h->local_row);
		TEXT_ARG(16, h->remote_row);
		TEXT_ARG(17, h->replica_identity);
		v[18] = CStringGetTextDatum(h->resolution);
#undef TEXT_ARG
		i = SPI_execute_plan(plan, v, n, false, 0);
		if (i != SPI_OK_INSERT)
			elog(ERROR, "could not insert into %s.conflict_history: %s",
				 schema, SPI_result_code_string(i));
	}
	PopActiveSnapshot();
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
}

static void
flush_history(void)
{
	RepOriginId save_origin = replorigin_session_origin;
	XLogRecPtr	save_lsn = replorigin_session_origin_lsn;
	TimestampTz save_ts = replorigin_session_origin_timestamp;
	MemoryContext oldcxt = CurrentMemoryContext;
	int			count = list_length(pending);

	if (unrecorded > 0)
	{
		ereport(WARNING,
				(errmsg_plural("%d conflict was not recorded in parallel_apply.conflict_history",
							   "%d conflicts were not recorded in parallel_apply.conflict_history",
							   unrecorded, unrecorded),
				 errdetail("A transaction met more than %d conflicts; the others were logged and counted when they were met.",
						   PA_MAX_DEFERRED_CONFLICTS)));
		unrecorded = 0;
	}
	/* called with no deferred report left: everything here can go */
	Assert(deferred == NIL);
	if (pending == NIL)
	{
		MemoryContextReset(HistoryContext);
		return;
	}
	Assert(!IsTransactionState());

	/*
	 * A transaction of our own, not a replicated one: no origin in its
	 * commit record, nothing advanced.
	 */
	replorigin_session_origin = InvalidRepOriginId;
	replorigin_session_origin_lsn = InvalidXLogRecPtr;
	replorigin_session_origin_timestamp = 0;

	PG_TRY();
	{
		StartTransactionCommand();
		write_history();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg_plural("could not record %d conflict in parallel_apply.conflict_history: %s",
							   "could not record %d conflicts in parallel_apply.conflict_history: %s",
							   count, count, edata->message),
				 errhint("The conflicts are in the server log if parallel_apply.conflict_log includes \"log\".")));
		FreeErrorData(edata);
	}
	PG_END_TRY();

	replorigin_session_origin = save_origin;
	replorigin_session_origin_lsn = save_lsn;
	replorigin_session_origin_timestamp = save_ts;
	pending = NIL;
	MemoryContextReset(HistoryContext);
	MemoryContextSwitchTo(oldcxt);
}
