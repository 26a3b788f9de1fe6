/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Row applier of the parallel_apply workers.
 *
 * This file owns the application of one row-level pgoutput message
 * (RELATION, TYPE, INSERT, UPDATE, DELETE, TRUNCATE) to the local database:
 * conversion of remote tuples to local ones, executor state, lookup of the
 * local row for UPDATE/DELETE, routing into partitions, privilege checks,
 * and the error context that names the remote transaction, relation and
 * column being processed.  The semantics are those of PostgreSQL 15's
 * built-in apply worker (replication/logical/worker.c).  The relation map
 * itself is in relmap.c.
 *
 * Invariants:
 *	- Every change runs as one "replication step" inside the local
 *	  transaction, which is started here if none is open but never committed
 *	  here; the worker loop commits, in commit order, with the origin set.
 *	  A step ends with CommandCounterIncrement so later changes of the same
 *	  transaction see it.
 *	- All per-message memory is in ApplyMessageContext (or in the EState's
 *	  contexts, which are children of it); it is reset after each message
 *	  and again before the next one, so an ERROR leaks nothing for long.
 *	- On return the caller's memory context is current again.
 *	- pa_errctx.command/nspname/relname/attname are set only while a
 *	  message is processed and cleared after it; the transaction fields
 *	  belong to the worker loop.
 *	- A local row that UPDATE or DELETE cannot find is looked for again once
 *	  every transaction before the worker's open group has committed, then
 *	  skipped and reported as PostgreSQL 18 does (update_missing,
 *	  delete_missing), with PostgreSQL 15's DEBUG1 line too; the other
 *	  conflicts are found and reported by conflict.c, at the places
 *	  PostgreSQL 18 looks for them: the origin of
 *	  a found row before it is changed, and a unique key when inserting the
 *	  new row's index entries flagged it as possibly taken
 *	  (insert_index_entries).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/tupconvert.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_inherits.h"
#include "commands/tablecmds.h"
#include "commands/trigger.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "replication/logicalproto.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "pa_apply.h"
#include "pa_commit.h"
#include "pa_conflict.h"
#include "pa_lookup.h"
#include "pa_relmap.h"

PaErrorContext pa_errctx;
Oid			pa_apply_subid = InvalidOid;
uint64		pa_apply_predecessor = 0;
TimestampTz pa_apply_commit_time = 0;
int			pa_apply_change = 0;

static MemoryContext ApplyMessageContext = NULL;

/* Executor state for applying one change to one target relation. */
typedef struct PaExecData
{
	EState	   *estate;
	PaRelMapEntry *targetRel;
	ResultRelInfo *targetRelInfo;

	/* only used when the target is partitioned */
	ModifyTableState *mtstate;	/* dummy, for ExecFindPartition() */
	PartitionTupleRouting *proute;
} PaExecData;

static void begin_replication_step(void);
static void end_replication_step(void);
static void set_errctx_rel(PaRelMapEntry *rel);
static PaExecData *create_edata_for_relation(PaRelMapEntry *rel);
static void finish_edata(PaExecData *edata);
static void store_column(TupleTableSlot *slot, int attoff,
						 PaRelMapEntry *rel, LogicalRepTupleData *tupleData,
						 int remoteattnum);
static void slot_store_data(TupleTableSlot *slot, PaRelMapEntry *rel,
							LogicalRepTupleData *tupleData);
static void slot_modify_data(TupleTableSlot *slot, TupleTableSlot *srcslot,
							 PaRelMapEntry *rel,
							 LogicalRepTupleData *tupleData);
static void slot_fill_defaults(PaRelMapEntry *rel, EState *estate,
							   TupleTableSlot *slot);
static void TargetPrivilegesCheck(Relation rel, AclMode mode);
static void check_relation_updatable(PaRelMapEntry *rel);
static bool open_indices(ResultRelInfo *relinfo);
static void close_indices(ResultRelInfo *relinfo, bool opened);
static bool FindReplTupleInLocalRel(EState *estate, Relation localrel,
									LogicalRepRelation *remoterel,
									TupleTableSlot *remoteslot,
									TupleTableSlot **localslot);
static void report_missing_row(Relation localrel, CmdType operation,
							   bool partition);
static TupleTableSlot *remote_new_row(EState *estate, Relation localrel,
									  PaRelMapEntry *rel,
									  LogicalRepTupleData *newtup);
static void finish_new_row(ResultRelInfo *relinfo, EState *estate,
						   TupleTableSlot *slot, CmdType cmd);
static List *insert_index_entries(ResultRelInfo *relinfo, EState *estate,
								  TupleTableSlot *slot,
								  TupleTableSlot *searchslot, bool update);
static void insert_row(ResultRelInfo *relinfo, EState *estate,
					   TupleTableSlot *slot);
static void update_row(ResultRelInfo *relinfo, EState *estate,
					   EPQState *epqstate, TupleTableSlot *localslot,
					   TupleTableSlot *slot, TupleTableSlot *searchslot);
static void delete_row(ResultRelInfo *relinfo, EState *estate,
					   TupleTableSlot *localslot);
static void apply_handle_relation(StringInfo s);
static void apply_handle_type(StringInfo s);
static void apply_handle_insert(StringInfo s);
static void apply_handle_update(StringInfo s);
static void apply_handle_delete(StringInfo s);
static void apply_handle_truncate(StringInfo s);
static void apply_insert_internal(PaExecData *edata, ResultRelInfo *relinfo,
								  TupleTableSlot *remoteslot);
static void apply_update_internal(PaExecData *edata, ResultRelInfo *relinfo,
								  TupleTableSlot *remoteslot,
								  LogicalRepTupleData *newtup,
								  PaRelMapEntry *relmapentry);
static void apply_delete_internal(PaExecData *edata, ResultRelInfo *relinfo,
								  TupleTableSlot *remoteslot);
static void apply_tuple_routing(PaExecData *edata,
								TupleTableSlot *remoteslot,
								LogicalRepTupleData *newtup,
								CmdType operation);
static TupleTableSlot *convert_to_partition(ResultRelInfo *partrelinfo,
											TupleTableSlot *rootslot,
											EState *estate);

/*
 * Once per process, with a database connection: memory contexts and the
 * relation map (whose relcache callback invalidates mapped relations and
 * their partitions).  No syscache callback is needed: conversion looks up
 * the type I/O functions for every value, as PostgreSQL 15 does.
 */
void
pa_apply_init(void)
{
	if (ApplyMessageContext != NULL)
		return;

	pa_relmap_init();
	pa_lookup_init(pa_apply_subid);

	ApplyMessageContext = AllocSetContextCreate(TopMemoryContext,
												"ApplyMessageContext",
												ALLOCSET_DEFAULT_SIZES);
}

/*
 * Apply one row-level message; see pa_apply.h.
 */
void
pa_apply_message(StringInfo s)
{
	MemoryContext oldctx;
	LogicalRepMsgType action;

	if (ApplyMessageContext == NULL)
		pa_apply_init();

	CHECK_FOR_INTERRUPTS();

	/* The previous message may have ended in an ERROR. */
	MemoryContextReset(ApplyMessageContext);
	pa_errctx.nspname = NULL;
	pa_errctx.relname = NULL;
	pa_errctx.attname = NULL;

	oldctx = MemoryContextSwitchTo(ApplyMessageContext);

	action = (LogicalRepMsgType) pq_getmsgbyte(s);
	pa_errctx.command = action;
	if (action != LOGICAL_REP_MSG_RELATION && action != LOGICAL_REP_MSG_TYPE)
		pa_apply_change++;

	switch (action)
	{
		case LOGICAL_REP_MSG_RELATION:
			apply_handle_relation(s);
			break;
		case LOGICAL_REP_MSG_TYPE:
			apply_handle_type(s);
			break;
		case LOGICAL_REP_MSG_INSERT:
			apply_handle_insert(s);
			break;
		case LOGICAL_REP_MSG_UPDATE:
			apply_handle_update(s);
			break;
		case LOGICAL_REP_MSG_DELETE:
			apply_handle_delete(s);
			break;
		case LOGICAL_REP_MSG_TRUNCATE:
			apply_handle_truncate(s);
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("invalid logical replication message type \"??? (%d)\"",
							action)));
	}

	MemoryContextSwitchTo(oldctx);
	MemoryContextReset(ApplyMessageContext);

	pa_errctx.command = 0;
	pa_errctx.nspname = NULL;
	pa_errctx.relname = NULL;
	pa_errctx.attname = NULL;
}

/*
 * The error context line, PostgreSQL 15's wording (parts that are not set
 * are left out), palloc'd; NULL when no message is being processed.
 */
char *
pa_apply_error_context(void)
{
	PaErrorContext *ctx = &pa_errctx;
	StringInfoData buf;

	if (ctx->command == 0)
		return NULL;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "processing remote data");
	if (ctx->origin_name)
		appendStringInfo(&buf, " for replication origin \"%s\"",
						 ctx->origin_name);
	appendStringInfo(&buf, " during message type \"%s\"",
					 logicalrep_message_type(ctx->command));
	if (ctx->relname)
	{
		appendStringInfo(&buf, " for replication target relation \"%s.%s\"",
						 ctx->nspname ? ctx->nspname : "", ctx->relname);
		if (ctx->attname)
			appendStringInfo(&buf, " column \"%s\"", ctx->attname);
	}
	if (TransactionIdIsValid(ctx->remote_xid))
	{
		appendStringInfo(&buf, " in transaction %u", ctx->remote_xid);
		if (!XLogRecPtrIsInvalid(ctx->finish_lsn))
			appendStringInfo(&buf, ", finished at %X/%X",
							 LSN_FORMAT_ARGS(ctx->finish_lsn));
	}
	return buf.data;
}

/* Error context callback: pa_apply_error_context() */
void
pa_apply_error_callback(void *arg)
{
	char	   *context = pa_apply_error_context();

	if (context == NULL)
		return;
	errcontext("%s", context);
	pfree(context);
}

/*
 * Begin one step (one INSERT, UPDATE, ...) of the replicated transaction:
 * start the local transaction if needed, push a snapshot, and work in
 * ApplyMessageContext.
 */
static void
begin_replication_step(void)
{
	SetCurrentStatementStartTimestamp();

	if (!IsTransactionState())
		StartTransactionCommand();

	PushActiveSnapshot(GetTransactionSnapshot());

	MemoryContextSwitchTo(ApplyMessageContext);
}

/* End the step; the transaction stays open and sees the step's effects. */
static void
end_replication_step(void)
{
	PopActiveSnapshot();

	CommandCounterIncrement();
}

static void
set_errctx_rel(PaRelMapEntry *rel)
{
	pa_errctx.nspname = rel->remoterel->nspname;
	pa_errctx.relname = rel->remoterel->relname;
}

/*
 * Executor state for applying a change to rel (open).  Callers open and
 * close indexes themselves.
 */
static PaExecData *
create_edata_for_relation(PaRelMapEntry *rel)
{
	PaExecData *edata;
	EState	   *estate;
	RangeTblEntry *rte;
	ResultRelInfo *resultRelInfo;

	edata = (PaExecData *) palloc0(sizeof(PaExecData));
	edata->targetRel = rel;
	edata->estate = estate = CreateExecutorState();

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel->localrel);
	rte->relkind = rel->localrel->rd_rel->relkind;
	rte->rellockmode = AccessShareLock;
	ExecInitRangeTable(estate, list_make1(rte));

	edata->targetRelInfo = resultRelInfo = makeNode(ResultRelInfo);

	/* Use the Relation the relation map opened; no second refcount. */
	InitResultRelInfo(resultRelInfo, rel->localrel, 1, NULL, 0);

	/*
	 * Listed in es_opened_result_relations (without es_result_relations) so
	 * that ExecGetTriggerResultRel() finds it.
	 */
	estate->es_opened_result_relations =
		lappend(estate->es_opened_result_relations, resultRelInfo);

	estate->es_output_cid = GetCurrentCommandId(true);

	/* Prepare to catch AFTER triggers. */
	AfterTriggerBeginQuery();

	return edata;
}

/*
 * Fire queued AFTER triggers and release the executor state.
 *
 * ExecCloseResultRelations() is deliberately not used: it would close the
 * target relation, on which the EState holds no reference of its own (the
 * relation map's open owns it).  Relations opened for trigger firing by
 * ExecGetTriggerResultRel() are closed here (what 15.20 does with
 * ExecCloseTrigTargetRelations(), which older minors lack); partitions
 * opened by routing are closed by ExecCleanupTupleRouting().
 */
static void
finish_edata(PaExecData *edata)
{
	EState	   *estate = edata->estate;
	ListCell   *lc;

	AfterTriggerEndQuery(estate);

	if (edata->proute)
		ExecCleanupTupleRouting(edata->mtstate, edata->proute);

	foreach(lc, estate->es_trig_target_relations)
	{
		ResultRelInfo *rri = (ResultRelInfo *) lfirst(lc);

		table_close(rri->ri_RelationDesc, NoLock);
	}
	estate->es_trig_target_relations = NIL;

	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	pfree(edata);
}

/*
 * Convert one remote column into local attribute attoff of slot, with the
 * type's text input or binary receive function.  'n' (and, defensively,
 * 'u') give NULL.
 */
static void
store_column(TupleTableSlot *slot, int attoff, PaRelMapEntry *rel,
			 LogicalRepTupleData *tupleData, int remoteattnum)
{
	Form_pg_attribute att = TupleDescAttr(slot->tts_tupleDescriptor, attoff);
	StringInfo	colvalue;

	if (remoteattnum >= tupleData->ncols)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg_internal("remote tuple has %d columns, relation description has %d",
								 tupleData->ncols, rel->remoterel->natts)));

	colvalue = &tupleData->colvalues[remoteattnum];
	pa_errctx.attname = rel->remoterel->attnames[remoteattnum];

	switch (tupleData->colstatus[remoteattnum])
	{
		case LOGICALREP_COLUMN_TEXT:
			{
				Oid			typioparam;
				FmgrInfo   *input = pa_rel_column_input(rel, attoff, att->atttypid,
														LOGICALREP_COLUMN_TEXT,
														&typioparam);

				slot->tts_values[attoff] =
					InputFunctionCall(input, colvalue->data,
									  typioparam, att->atttypmod);
				slot->tts_isnull[attoff] = false;
			}
			break;

		case LOGICALREP_COLUMN_BINARY:
			{
				Oid			typioparam;
				FmgrInfo   *receive = pa_rel_column_input(rel, attoff, att->atttypid,
														  LOGICALREP_COLUMN_BINARY,
														  &typioparam);

				/* the same tuple data may be converted more than once */
				colvalue->cursor = 0;

				slot->tts_values[attoff] =
					ReceiveFunctionCall(receive, colvalue,
										typioparam, att->atttypmod);

				if (colvalue->cursor != colvalue->len)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
							 errmsg("incorrect binary data format in logical replication column %d",
									remoteattnum + 1)));
				slot->tts_isnull[attoff] = false;
			}
			break;

		default:
			slot->tts_values[attoff] = (Datum) 0;
			slot->tts_isnull[attoff] = true;
			break;
	}

	pa_errctx.attname = NULL;
}

/*
 * Fill slot (local rowtype) from a remote tuple.  Local columns the remote
 * side does not send are left NULL, for slot_fill_defaults().
 */
static void
slot_store_data(TupleTableSlot *slot, PaRelMapEntry *rel,
				LogicalRepTupleData *tupleData)
{
	int			natts = slot->tts_tupleDescriptor->natts;
	int			i;

	ExecClearTuple(slot);

	Assert(natts == rel->attrmap->maplen);
	for (i = 0; i < natts; i++)
	{
		int			remoteattnum = rel->attrmap->attnums[i];

		if (remoteattnum >= 0)
			store_column(slot, i, rel, tupleData, remoteattnum);
		else
		{
			slot->tts_values[i] = (Datum) 0;
			slot->tts_isnull[i] = true;
		}
	}

	ExecStoreVirtualTuple(slot);
}

/*
 * Fill slot with the local row in srcslot, replacing the columns the
 * remote tuple carries; unchanged-TOAST ('u') columns keep the local value.
 * Unreplaced by-reference values point into srcslot's storage.
 */
static void
slot_modify_data(TupleTableSlot *slot, TupleTableSlot *srcslot,
				 PaRelMapEntry *rel, LogicalRepTupleData *tupleData)
{
	int			natts = slot->tts_tupleDescriptor->natts;
	int			i;

	ExecClearTuple(slot);

	Assert(natts == srcslot->tts_tupleDescriptor->natts);
	slot_getallattrs(srcslot);
	memcpy(slot->tts_values, srcslot->tts_values, natts * sizeof(Datum));
	memcpy(slot->tts_isnull, srcslot->tts_isnull, natts * sizeof(bool));

	Assert(natts == rel->attrmap->maplen);
	for (i = 0; i < natts; i++)
	{
		int			remoteattnum = rel->attrmap->attnums[i];

		if (remoteattnum < 0)
			continue;
		if (remoteattnum < tupleData->ncols &&
			tupleData->colstatus[remoteattnum] == LOGICALREP_COLUMN_UNCHANGED)
			continue;

		store_column(slot, i, rel, tupleData, remoteattnum);
	}

	ExecStoreVirtualTuple(slot);
}

/*
 * Evaluate the defaults of local columns the remote side does not have, so
 * that the subscriber's table may have more columns than the publisher's.
 */
static void
slot_fill_defaults(PaRelMapEntry *rel, EState *estate, TupleTableSlot *slot)
{
	TupleDesc	desc = RelationGetDescr(rel->localrel);
	int			natts = desc->natts;
	int			num_defaults = 0;
	int		   *defmap;
	ExprState **defexprs;
	ExprContext *econtext;
	int			i;

	/* Every local column came from the remote side. */
	if (natts == rel->remoterel->natts)
		return;

	econtext = GetPerTupleExprContext(estate);
	defmap = (int *) palloc(natts * sizeof(int));
	defexprs = (ExprState **) palloc(natts * sizeof(ExprState *));

	Assert(rel->attrmap->maplen == natts);
	for (i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Expr	   *defexpr;

		if (att->attisdropped || att->attgenerated)
			continue;
		if (rel->attrmap->attnums[i] >= 0)
			continue;

		defexpr = (Expr *) build_column_default(rel->localrel, i + 1);
		if (defexpr != NULL)
		{
			defexpr = expression_planner(defexpr);
			defexprs[num_defaults] = ExecInitExpr(defexpr, NULL);
			defmap[num_defaults] = i;
			num_defaults++;
		}
	}

	for (i = 0; i < num_defaults; i++)
		slot->tts_values[defmap[i]] =
			ExecEvalExpr(defexprs[i], econtext, &slot->tts_isnull[defmap[i]]);
}

/*
 * The current user (the subscription owner) must hold the privilege on
 * the relation it writes, and row-level security must not apply to it: RLS
 * policies cannot be honoured here, and as in PostgreSQL 15 every command,
 * TRUNCATE included, is refused alike.
 */
static void
TargetPrivilegesCheck(Relation rel, AclMode mode)
{
	Oid			relid = RelationGetRelid(rel);
	AclResult	aclresult;

	aclresult = pg_class_aclcheck(relid, GetUserId(), mode);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult,
					   get_relkind_objtype(rel->rd_rel->relkind),
					   get_rel_name(relid));

	if (check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("user \"%s\" cannot replicate into relation with row-level security enabled: \"%s\"",
						GetUserNameFromId(GetUserId(), true),
						RelationGetRelationName(rel))));
}

/*
 * Error out if UPDATE/DELETE cannot locate rows in rel.  For a partitioned
 * table only the leaf partition matters, and it is checked after routing.
 */
static void
check_relation_updatable(PaRelMapEntry *rel)
{
	if (rel->localrel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		return;

	if (rel->updatable)
		return;

	if (OidIsValid(pa_identity_index(rel->localrel)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("publisher did not send replica identity column "
						"expected by the logical replication target relation \"%s.%s\"",
						rel->remoterel->nspname, rel->remoterel->relname)));

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("logical replication target relation \"%s.%s\" has "
					"neither REPLICA IDENTITY index nor PRIMARY "
					"KEY and published relation does not have "
					"REPLICA IDENTITY FULL",
					rel->remoterel->nspname, rel->remoterel->relname)));
}

/*
 * Open relinfo's indexes unless already open (tuple routing opens those of
 * the partitions it sets up, and closes them itself).  Returns whether we
 * opened them, to pass to close_indices().
 */
static bool
open_indices(ResultRelInfo *relinfo)
{
	if (relinfo->ri_IndexRelationDescs != NULL)
		return false;

	ExecOpenIndices(relinfo, false);
	return true;
}

static void
close_indices(ResultRelInfo *relinfo, bool opened)
{
	if (!opened)
		return;

	ExecCloseIndices(relinfo);
	relinfo->ri_NumIndices = 0;
	relinfo->ri_IndexRelationDescs = NULL;
	relinfo->ri_IndexRelationInfo = NULL;
}

/*
 * Find the local row matching remoteslot (local rowtype) through the
 * replica identity index or primary key, or, when there is neither
 * (REPLICA IDENTITY FULL), through the best usable index or a scan,
 * comparing whole rows (src/lookup.c).  The row is locked; on success
 * *localslot holds it.
 */
static bool
FindReplTupleInLocalRel(EState *estate, Relation localrel,
						LogicalRepRelation *remoterel,
						TupleTableSlot *remoteslot,
						TupleTableSlot **localslot)
{
	/* Whatever the operation, this reads the table. */
	TargetPrivilegesCheck(localrel, ACL_SELECT);

	/* by the identity index or primary key, else by the best index (FULL) */
	return pa_lookup_row(estate, localrel, remoterel, remoteslot, localslot);
}

/*
 * FindReplTupleInLocalRel(), but a row not found while transactions before
 * the open group are still uncommitted is looked for again once they have
 * committed: the dependency tracker may not have seen that one of them
 * writes it (DESIGN.md invariant 4).  The wait is a heavyweight-lock wait
 * (commit.c), so a cycle through rows we hold is a detected deadlock.
 */
static bool
find_local_row(EState *estate, Relation localrel,
			   LogicalRepRelation *remoterel, TupleTableSlot *remoteslot,
			   TupleTableSlot **localslot)
{
	/* read before the lookup: a commit just after it must count */
	bool		before_committed = pa_predecessors_committed();

	if (FindReplTupleInLocalRel(estate, localrel, remoterel, remoteslot,
								localslot))
		return true;
	if (before_committed)
		return false;
	pa_wait_predecessors();
	return FindReplTupleInLocalRel(estate, localrel, remoterel, remoteslot,
								   localslot);
}

/*
 * PostgreSQL 15's own DEBUG1 line for a row an UPDATE or DELETE does not
 * find, kept beside PostgreSQL 18's conflict report (pa_report_missing)
 * for whoever looks for it.
 */
static void
report_missing_row(Relation localrel, CmdType operation, bool partition)
{
	const char *relname = RelationGetRelationName(localrel);

	if (operation == CMD_UPDATE && !partition)
		elog(DEBUG1,
			 "logical replication did not find row to be updated "
			 "in replication target relation \"%s\"", relname);
	else if (operation == CMD_UPDATE)
		elog(DEBUG1,
			 "logical replication did not find row to be updated "
			 "in replication target relation's partition \"%s\"", relname);
	else
	{
		/* a DELETE routed to a partition names the partition as its target */
		elog(DEBUG1,
			 "logical replication did not find row to be deleted "
			 "in replication target relation \"%s\"", relname);
	}
}

/*
 * The remote new row of an UPDATE as the publisher sent it (a column it
 * did not send, unchanged TOAST included, is NULL), for a conflict report.
 */
static TupleTableSlot *
remote_new_row(EState *estate, Relation localrel, PaRelMapEntry *rel,
			   LogicalRepTupleData *newtup)
{
	TupleTableSlot *slot = ExecInitExtraTupleSlot(estate,
												  RelationGetDescr(localrel),
												  &TTSOpsVirtual);
	MemoryContext oldctx = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));

	slot_store_data(slot, rel, newtup);
	MemoryContextSwitchTo(oldctx);
	return slot;
}

/*
 * The row about to be written, after BEFORE ROW triggers: its generated
 * columns and its constraints.
 */
static void
finish_new_row(ResultRelInfo *relinfo, EState *estate, TupleTableSlot *slot,
			   CmdType cmd)
{
	Relation	rel = relinfo->ri_RelationDesc;

	if (rel->rd_att->constr && rel->rd_att->constr->has_generated_stored)
		ExecComputeStoredGenerated(relinfo, estate, slot, cmd);
	if (rel->rd_att->constr)
		ExecConstraints(relinfo, slot, estate);
	if (rel->rd_rel->relispartition)
		ExecPartitionCheck(relinfo, slot, estate, true);
}

/*
 * The index entries of the row just written, with PostgreSQL 18's conflict
 * check: the unique, immediate indexes are the arbiters of a no-error
 * insertion (as ON CONFLICT's), which flags a possible duplicate instead of
 * raising it; only then does conflict.c look for the other row, report the
 * conflict and raise the ERROR.  A row without a duplicate pays nothing
 * more than before.  Returns the indexes to recheck, for AFTER triggers.
 */
static List *
insert_index_entries(ResultRelInfo *relinfo, EState *estate,
					 TupleTableSlot *slot, TupleTableSlot *searchslot,
					 bool update)
{
	List	   *arbiters = pa_conflict_indexes(relinfo);
	List	   *recheck;
	bool		conflict = false;

	recheck = ExecInsertIndexTuples(relinfo, slot, estate, update,
									arbiters != NIL, &conflict, arbiters);
	if (conflict)
		pa_check_unique(estate, relinfo, slot, recheck, searchslot, update);
	list_free(arbiters);
	return recheck;
}

/*
 * ExecSimpleRelationInsert(), with the unique-key conflict check of
 * PostgreSQL 18 (insert_index_entries).
 */
static void
insert_row(ResultRelInfo *relinfo, EState *estate, TupleTableSlot *slot)
{
	Relation	rel = relinfo->ri_RelationDesc;
	List	   *recheck = NIL;

	/* As ExecSimpleRelationInsert(), for now only tables. */
	Assert(rel->rd_rel->relkind == RELKIND_RELATION);

	CheckCmdReplicaIdentity(rel, CMD_INSERT);

	if (relinfo->ri_TrigDesc && relinfo->ri_TrigDesc->trig_insert_before_row &&
		!ExecBRInsertTriggers(estate, relinfo, slot))
		return;					/* a trigger said "do nothing" */

	finish_new_row(relinfo, estate, slot, CMD_INSERT);

	simple_table_tuple_insert(rel, slot);
	if (relinfo->ri_NumIndices > 0)
		recheck = insert_index_entries(relinfo, estate, slot, NULL, false);
	ExecARInsertTriggers(estate, relinfo, slot, recheck, NULL);
	list_free(recheck);
}

/*
 * ExecSimpleRelationUpdate() of the locked row in localslot to slot, with
 * the unique-key conflict check, as insert_row.  searchslot is what the
 * row was searched by, for the report.
 */
static void
update_row(ResultRelInfo *relinfo, EState *estate, EPQState *epqstate,
		   TupleTableSlot *localslot, TupleTableSlot *slot,
		   TupleTableSlot *searchslot)
{
	Relation	rel = relinfo->ri_RelationDesc;
	ItemPointer tid = &localslot->tts_tid;
	List	   *recheck = NIL;
	bool		update_indexes;

	/* As ExecSimpleRelationUpdate(): non-system tables only. */
	Assert(rel->rd_rel->relkind == RELKIND_RELATION);
	Assert(!IsCatalogRelation(rel));

	CheckCmdReplicaIdentity(rel, CMD_UPDATE);

	if (relinfo->ri_TrigDesc && relinfo->ri_TrigDesc->trig_update_before_row &&
		!ExecBRUpdateTriggers(estate, epqstate, relinfo, tid, NULL, slot, NULL))
		return;					/* a trigger said "do nothing" */

	finish_new_row(relinfo, estate, slot, CMD_UPDATE);

	simple_table_tuple_update(rel, tid, slot, estate->es_snapshot,
							  &update_indexes);

	/* a HOT update adds no index entries, so no key can collide */
	if (relinfo->ri_NumIndices > 0 && update_indexes)
		recheck = insert_index_entries(relinfo, estate, slot, searchslot,
									   true);
	ExecARUpdateTriggers(estate, relinfo, NULL, NULL, tid, NULL, slot,
						 recheck, NULL, false);
	list_free(recheck);
}

/* Delete the locked row in localslot, with its privilege check */
static void
delete_row(ResultRelInfo *relinfo, EState *estate, TupleTableSlot *localslot)
{
	EPQState	epqstate;

	EvalPlanQualInit(&epqstate, estate, NULL, NIL, -1);
	EvalPlanQualSetSlot(&epqstate, localslot);

	/* ExecSimpleRelationDelete() runs CheckCmdReplicaIdentity() */
	TargetPrivilegesCheck(relinfo->ri_RelationDesc, ACL_DELETE);
	ExecSimpleRelationDelete(relinfo, estate, &epqstate, localslot);
	EvalPlanQualEnd(&epqstate);
}

/*
 * RELATION: replace the remote description.  The local side is checked
 * lazily, at the first change for the relation.
 */
static void
apply_handle_relation(StringInfo s)
{
	LogicalRepRelation *rel = logicalrep_read_rel(s);

	pa_relmap_update(rel);
}

/*
 * TYPE: read and ignore.  Incoming data must be acceptable to the local
 * types' input functions; TYPE messages change nothing about that.
 */
static void
apply_handle_type(StringInfo s)
{
	LogicalRepTyp typ;

	logicalrep_read_typ(s, &typ);
}

static void
apply_handle_insert(StringInfo s)
{
	PaRelMapEntry *rel;
	LogicalRepTupleData newtup;
	LogicalRepRelId relid;
	PaExecData *edata;
	EState	   *estate;
	TupleTableSlot *remoteslot;
	MemoryContext oldctx;

	begin_replication_step();

	relid = logicalrep_read_insert(s, &newtup);
	rel = pa_rel_open(relid, RowExclusiveLock);
	set_errctx_rel(rel);
	if (!rel->ready)
	{
		pa_rel_close(rel, RowExclusiveLock);
		end_replication_step();
		return;
	}

	edata = create_edata_for_relation(rel);
	estate = edata->estate;
	remoteslot = ExecInitExtraTupleSlot(estate,
										RelationGetDescr(rel->localrel),
										&TTSOpsVirtual);

	oldctx = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	slot_store_data(remoteslot, rel, &newtup);
	slot_fill_defaults(rel, estate, remoteslot);
	MemoryContextSwitchTo(oldctx);

	if (rel->localrel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		apply_tuple_routing(edata, remoteslot, NULL, CMD_INSERT);
	else
		apply_insert_internal(edata, edata->targetRelInfo, remoteslot);

	finish_edata(edata);
	pa_rel_close(rel, NoLock);

	end_replication_step();
}

/* Insert remoteslot into relinfo's relation (possibly a leaf partition). */
static void
apply_insert_internal(PaExecData *edata, ResultRelInfo *relinfo,
					  TupleTableSlot *remoteslot)
{
	bool		opened = open_indices(relinfo);

	TargetPrivilegesCheck(relinfo->ri_RelationDesc, ACL_INSERT);
	insert_row(relinfo, edata->estate, remoteslot);

	close_indices(relinfo, opened);
}

static void
apply_handle_update(StringInfo s)
{
	PaRelMapEntry *rel;
	LogicalRepRelId relid;
	LogicalRepTupleData oldtup;
	LogicalRepTupleData newtup;
	bool		has_oldtup;
	PaExecData *edata;
	EState	   *estate;
	TupleTableSlot *remoteslot;
	RangeTblEntry *target_rte;
	MemoryContext oldctx;
	int			i;

	begin_replication_step();

	relid = logicalrep_read_update(s, &has_oldtup, &oldtup, &newtup);
	rel = pa_rel_open(relid, RowExclusiveLock);
	set_errctx_rel(rel);
	if (!rel->ready)
	{
		pa_rel_close(rel, RowExclusiveLock);
		end_replication_step();
		return;
	}

	check_relation_updatable(rel);

	edata = create_edata_for_relation(rel);
	estate = edata->estate;
	remoteslot = ExecInitExtraTupleSlot(estate,
										RelationGetDescr(rel->localrel),
										&TTSOpsVirtual);

	/*
	 * Mark the columns the remote tuple carries as updated, for per-column
	 * triggers and the executor's "index unchanged" hint.  That may be more
	 * columns than changed on the publisher, which the protocol does not
	 * tell, but never the subscriber-only ones.
	 */
	target_rte = exec_rt_fetch(1, estate);
	for (i = 0; i < remoteslot->tts_tupleDescriptor->natts; i++)
	{
		int			remoteattnum = rel->attrmap->attnums[i];

		if (remoteattnum >= 0 && remoteattnum < newtup.ncols &&
			newtup.colstatus[remoteattnum] != LOGICALREP_COLUMN_UNCHANGED)
			target_rte->updatedCols =
				bms_add_member(target_rte->updatedCols,
							   i + 1 - FirstLowInvalidHeapAttributeNumber);
	}

	/* The search tuple: the old key or old row if sent, else the new row. */
	oldctx = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	slot_store_data(remoteslot, rel, has_oldtup ? &oldtup : &newtup);
	MemoryContextSwitchTo(oldctx);

	if (rel->localrel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		apply_tuple_routing(edata, remoteslot, &newtup, CMD_UPDATE);
	else
		apply_update_internal(edata, edata->targetRelInfo, remoteslot,
							  &newtup, rel);

	finish_edata(edata);
	pa_rel_close(rel, NoLock);

	end_replication_step();
}

/*
 * Find the row remoteslot identifies in relinfo's relation and update it
 * with newtup.  relmapentry maps relinfo's relation to the remote one.
 */
static void
apply_update_internal(PaExecData *edata, ResultRelInfo *relinfo,
					  TupleTableSlot *remoteslot, LogicalRepTupleData *newtup,
					  PaRelMapEntry *relmapentry)
{
	EState	   *estate = edata->estate;
	Relation	localrel = relinfo->ri_RelationDesc;
	EPQState	epqstate;
	TupleTableSlot *localslot;
	bool		opened;

	EvalPlanQualInit(&epqstate, estate, NULL, NIL, -1);
	opened = open_indices(relinfo);

	if (find_local_row(estate, localrel, relmapentry->remoterel,
					   remoteslot, &localslot))
	{
		TupleTableSlot *newslot;
		MemoryContext oldctx;

		if (pa_origin_differs(localslot))
			pa_report_origin_differs(estate, relinfo,
									 PA_CT_UPDATE_ORIGIN_DIFFERS, remoteslot,
									 localslot,
									 remote_new_row(estate, localrel,
													relmapentry, newtup));

		/* the new row; remoteslot stays the searched row, for reports */
		newslot = ExecInitExtraTupleSlot(estate, RelationGetDescr(localrel),
										 &TTSOpsVirtual);
		oldctx = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
		slot_modify_data(newslot, localslot, relmapentry, newtup);
		MemoryContextSwitchTo(oldctx);

		EvalPlanQualSetSlot(&epqstate, newslot);

		TargetPrivilegesCheck(localrel, ACL_UPDATE);
		update_row(relinfo, estate, &epqstate, localslot, newslot,
				   remoteslot);
	}
	else
	{
		report_missing_row(localrel, CMD_UPDATE, false);
		pa_report_missing(estate, relinfo, PA_CT_UPDATE_MISSING, remoteslot,
						  remote_new_row(estate, localrel, relmapentry,
										 newtup));
	}

	close_indices(relinfo, opened);
	EvalPlanQualEnd(&epqstate);
}

static void
apply_handle_delete(StringInfo s)
{
	PaRelMapEntry *rel;
	LogicalRepTupleData oldtup;
	LogicalRepRelId relid;
	PaExecData *edata;
	EState	   *estate;
	TupleTableSlot *remoteslot;
	MemoryContext oldctx;

	begin_replication_step();

	relid = logicalrep_read_delete(s, &oldtup);
	rel = pa_rel_open(relid, RowExclusiveLock);
	set_errctx_rel(rel);
	if (!rel->ready)
	{
		pa_rel_close(rel, RowExclusiveLock);
		end_replication_step();
		return;
	}

	check_relation_updatable(rel);

	edata = create_edata_for_relation(rel);
	estate = edata->estate;
	remoteslot = ExecInitExtraTupleSlot(estate,
										RelationGetDescr(rel->localrel),
										&TTSOpsVirtual);

	oldctx = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	slot_store_data(remoteslot, rel, &oldtup);
	MemoryContextSwitchTo(oldctx);

	if (rel->localrel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		apply_tuple_routing(edata, remoteslot, NULL, CMD_DELETE);
	else
		apply_delete_internal(edata, edata->targetRelInfo, remoteslot);

	finish_edata(edata);
	pa_rel_close(rel, NoLock);

	end_replication_step();
}

/* Find the row remoteslot identifies in relinfo's relation and delete it. */
static void
apply_delete_internal(PaExecData *edata, ResultRelInfo *relinfo,
					  TupleTableSlot *remoteslot)
{
	EState	   *estate = edata->estate;
	Relation	localrel = relinfo->ri_RelationDesc;
	TupleTableSlot *localslot;
	bool		opened;

	opened = open_indices(relinfo);

	if (find_local_row(estate, localrel, edata->targetRel->remoterel,
					   remoteslot, &localslot))
	{
		if (pa_origin_differs(localslot))
			pa_report_origin_differs(estate, relinfo,
									 PA_CT_DELETE_ORIGIN_DIFFERS, remoteslot,
									 localslot, NULL);
		delete_row(relinfo, estate, localslot);
	}
	else
	{
		report_missing_row(localrel, CMD_DELETE, false);
		pa_report_missing(estate, relinfo, PA_CT_DELETE_MISSING, remoteslot,
						  NULL);
	}

	close_indices(relinfo, opened);
}

/*
 * Convert rootslot (the partitioned root's rowtype) to the rowtype of the
 * leaf partition partrelinfo, in a slot of the partition.
 */
static TupleTableSlot *
convert_to_partition(ResultRelInfo *partrelinfo, TupleTableSlot *rootslot,
					 EState *estate)
{
	TupleTableSlot *partslot = partrelinfo->ri_PartitionTupleSlot;
	TupleConversionMap *map = partrelinfo->ri_RootToPartitionMap;

	if (partslot == NULL)
		partslot = table_slot_create(partrelinfo->ri_RelationDesc,
									 &estate->es_tupleTable);

	if (map != NULL)
		return execute_attr_map_slot(map->attrMap, rootslot, partslot);

	partslot = ExecCopySlot(partslot, rootslot);
	slot_getallattrs(partslot);
	return partslot;
}

/*
 * INSERT, UPDATE or DELETE on a partitioned table: route remoteslot to its
 * leaf partition and apply there.  An UPDATE whose new row belongs to
 * another partition becomes a DELETE in the old leaf and an INSERT routed
 * through the root.
 */
static void
apply_tuple_routing(PaExecData *edata, TupleTableSlot *remoteslot,
					LogicalRepTupleData *newtup, CmdType operation)
{
	EState	   *estate = edata->estate;
	PaRelMapEntry *relmapentry = edata->targetRel;
	ResultRelInfo *relinfo = edata->targetRelInfo;
	Relation	parentrel = relinfo->ri_RelationDesc;
	ModifyTableState *mtstate;
	PartitionTupleRouting *proute;
	ResultRelInfo *partrelinfo;
	Relation	partrel;
	TupleTableSlot *remoteslot_part;
	PaRelMapEntry *part_entry = NULL;
	MemoryContext oldctx;

	/* ExecFindPartition() needs a ModifyTableState ... */
	edata->mtstate = mtstate = makeNode(ModifyTableState);
	mtstate->ps.plan = NULL;
	mtstate->ps.state = estate;
	mtstate->operation = operation;
	mtstate->resultRelInfo = relinfo;

	/* ... and a PartitionTupleRouting. */
	edata->proute = proute = ExecSetupPartitionTupleRouting(estate, parentrel);

	oldctx = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	partrelinfo = ExecFindPartition(mtstate, relinfo, proute, remoteslot,
									estate);
	Assert(partrelinfo != NULL);
	partrel = partrelinfo->ri_RelationDesc;

	/* The set of partitions changes; check each leaf we reach. */
	pa_check_target_rel(partrel, NULL, NULL);

	remoteslot_part = convert_to_partition(partrelinfo, remoteslot, estate);
	MemoryContextSwitchTo(oldctx);

	if (operation == CMD_UPDATE || operation == CMD_DELETE)
	{
		TupleConversionMap *map = partrelinfo->ri_RootToPartitionMap;

		part_entry = pa_partition_open(relmapentry, partrel,
									   map ? map->attrMap : NULL);
		check_relation_updatable(part_entry);
	}

	switch (operation)
	{
		case CMD_INSERT:
			apply_insert_internal(edata, partrelinfo, remoteslot_part);
			break;

		case CMD_DELETE:
			apply_delete_internal(edata, partrelinfo, remoteslot_part);
			break;

		case CMD_UPDATE:
			{
				TupleTableSlot *localslot;
				ResultRelInfo *partrelinfo_new;
				bool		found;

				TupleTableSlot *newslot;

				found = find_local_row(estate, partrel, part_entry->remoterel,
									   remoteslot_part, &localslot);
				if (!found)
				{
					report_missing_row(partrel, CMD_UPDATE, true);
					pa_report_missing(estate, partrelinfo,
									  PA_CT_UPDATE_MISSING, remoteslot_part,
									  remote_new_row(estate, partrel,
													 part_entry, newtup));
					return;
				}
				if (pa_origin_differs(localslot))
					pa_report_origin_differs(estate, partrelinfo,
											 PA_CT_UPDATE_ORIGIN_DIFFERS,
											 remoteslot_part, localslot,
											 remote_new_row(estate, partrel,
															part_entry,
															newtup));

				/* The new row, in the partition's rowtype. */
				newslot = ExecInitExtraTupleSlot(estate,
												 RelationGetDescr(partrel),
												 &TTSOpsVirtual);
				oldctx = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
				slot_modify_data(newslot, localslot, part_entry, newtup);
				MemoryContextSwitchTo(oldctx);

				if (!partrel->rd_rel->relispartition ||
					ExecPartitionCheck(partrelinfo, newslot, estate, false))
				{
					/* Still fits this partition: a plain UPDATE. */
					EPQState	epqstate;
					bool		opened;

					EvalPlanQualInit(&epqstate, estate, NULL, NIL, -1);
					opened = open_indices(partrelinfo);

					EvalPlanQualSetSlot(&epqstate, newslot);
					TargetPrivilegesCheck(partrel, ACL_UPDATE);
					update_row(partrelinfo, estate, &epqstate, localslot,
							   newslot, remoteslot_part);

					close_indices(partrelinfo, opened);
					EvalPlanQualEnd(&epqstate);
				}
				else
				{
					/*
					 * Move the row: route the new row through the root
					 * (converting it back to the root's rowtype), delete the
					 * old row from this leaf, insert into the new one.
					 */
					oldctx = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
					if (partrelinfo->ri_RootToPartitionMap != NULL)
					{
						TupleConversionMap *PartitionToRootMap;

						PartitionToRootMap =
							convert_tuples_by_name(RelationGetDescr(partrel),
												   RelationGetDescr(parentrel));
						remoteslot = execute_attr_map_slot(PartitionToRootMap->attrMap,
														   newslot,
														   remoteslot);
					}
					else
					{
						remoteslot = ExecCopySlot(remoteslot, newslot);
						slot_getallattrs(remoteslot);
					}

					partrelinfo_new = ExecFindPartition(mtstate, relinfo,
														proute, remoteslot,
														estate);
					MemoryContextSwitchTo(oldctx);
					Assert(partrelinfo_new != partrelinfo);

					pa_check_target_rel(partrelinfo_new->ri_RelationDesc,
										NULL, NULL);

					/* the old row is found and locked: delete it */
					{
						bool		opened = open_indices(partrelinfo);

						delete_row(partrelinfo, estate, localslot);
						close_indices(partrelinfo, opened);
					}

					oldctx = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
					remoteslot_part = convert_to_partition(partrelinfo_new,
														   remoteslot, estate);
					MemoryContextSwitchTo(oldctx);

					apply_insert_internal(edata, partrelinfo_new,
										  remoteslot_part);
				}
			}
			break;

		default:
			elog(ERROR, "unrecognized CmdType: %d", (int) operation);
			break;
	}
}

/*
 * TRUNCATE the mapped relations, and all partitions of partitioned ones.
 * As in PostgreSQL 15, the publisher's CASCADE is not applied (dependent
 * tables on the subscriber are not truncated: DROP_RESTRICT); RESTART
 * IDENTITY is.
 */
static void
apply_handle_truncate(StringInfo s)
{
	bool		cascade = false;
	bool		restart_seqs = false;
	List	   *remote_relids;
	List	   *rels = NIL;
	List	   *relids = NIL;
	List	   *relids_logged = NIL;
	ListCell   *lc;
	LOCKMODE	lockmode = AccessExclusiveLock;

	begin_replication_step();

	remote_relids = logicalrep_read_truncate(s, &cascade, &restart_seqs);

	foreach(lc, remote_relids)
	{
		LogicalRepRelId relid = lfirst_oid(lc);
		PaRelMapEntry *rel;

		CHECK_FOR_INTERRUPTS();

		rel = pa_rel_open(relid, lockmode);
		set_errctx_rel(rel);

		/* Not synchronized yet, or already included as a partition. */
		if (!rel->ready || list_member_oid(relids, rel->localreloid))
		{
			pa_rel_close(rel, NoLock);
			continue;
		}

		TargetPrivilegesCheck(rel->localrel, ACL_TRUNCATE);
		rels = lappend(rels, rel->localrel);
		relids = lappend_oid(relids, rel->localreloid);
		if (RelationIsLogicallyLogged(rel->localrel))
			relids_logged = lappend_oid(relids_logged, rel->localreloid);

		if (rel->localrel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		{
			ListCell   *child;
			List	   *children = find_all_inheritors(rel->localreloid,
													   lockmode, NULL);

			foreach(child, children)
			{
				Oid			childrelid = lfirst_oid(child);
				Relation	childrel;

				CHECK_FOR_INTERRUPTS();

				if (list_member_oid(relids, childrelid))
					continue;

				/* find_all_inheritors() locked it */
				childrel = table_open(childrelid, NoLock);

				/* Skip other backends' temp tables, as TRUNCATE does. */
				if (RELATION_IS_OTHER_TEMP(childrel))
				{
					table_close(childrel, lockmode);
					continue;
				}

				TargetPrivilegesCheck(childrel, ACL_TRUNCATE);
				rels = lappend(rels, childrel);
				relids = lappend_oid(relids, childrelid);
				if (RelationIsLogicallyLogged(childrel))
					relids_logged = lappend_oid(relids_logged, childrelid);
			}
		}
	}

	pa_errctx.nspname = NULL;
	pa_errctx.relname = NULL;

	ExecuteTruncateGuts(rels, relids, relids_logged, DROP_RESTRICT,
						restart_seqs);

	/*
	 * Close everything, keeping the locks.  The map entries' localrel
	 * pointers are stale from here on; the next open resets them.
	 */
	foreach(lc, rels)
		table_close((Relation) lfirst(lc), NoLock);

	end_replication_step();
}
