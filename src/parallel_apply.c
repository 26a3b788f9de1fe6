/*-------------------------------------------------------------------------
 *
 * parallel_apply.c
 *	  Module loading: GUCs, shared memory, and the launcher registration.
 *
 * Owns: the parallel_apply.* GUCs and the PaShared segment (one PaSub slot
 * per possible attached subscription plus each slot's chunk pool).  Shared
 * memory is requested in shmem_request_hook, so the module must be listed in
 * shared_preload_libraries; loaded any other way (CREATE EXTENSION in a
 * session without the preload) it only refuses, with a hint.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pa_conflict.h"
#include "pa_lookup.h"
#include "pa_queue.h"
#include "parallel_apply.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			pa_workers = 4;
int			pa_queue_memory_kb = 1024;
int			pa_max_subscriptions = 4;
int			pa_retry_interval_ms = 5000;
int			pa_receive_batch = 32 * 1024;
int			pa_launcher_naptime_ms = 10000;
int			pa_group_size = 32;
int			pa_max_transaction_keys = 65536;
int			pa_max_streams = -1;
bool		pa_adaptive = true;
int			pa_stream_spill_timeout_ms = 10000;
char	   *pa_database = NULL;

static const struct config_enum_entry ri_full_index_options[] = {
	{"auto", PA_RI_FULL_INDEX_AUTO, false},
	{"off", PA_RI_FULL_INDEX_OFF, false},
	{NULL, 0, false}
};

static const struct config_enum_entry conflict_log_options[] = {
	{"log", PA_CONFLICT_LOG_LOG, false},
	{"table", PA_CONFLICT_LOG_TABLE, false},
	{"both", PA_CONFLICT_LOG_BOTH, false},
	{NULL, 0, false}
};

bool		pa_preloaded = false;
PaShared   *pa_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
pa_shmem_size(void)
{
	Size		size;

	size = add_size(offsetof(PaShared, subs),
					mul_size(sizeof(PaSub), pa_max_subscriptions));
	size = add_size(size, mul_size(pa_queue_pool_size(), pa_max_subscriptions));
	size = add_size(size, PA_CHUNK_SIZE);	/* alignment slack */
	return size;
}

static void
pa_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(pa_shmem_size());
	RequestAddinShmemSpace(pa_rel_stats_shmem_size());
	RequestNamedLWLockTranche("parallel_apply", 1);
}

static void
pa_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pa_shared = ShmemInitStruct("parallel_apply", pa_shmem_size(), &found);
	if (!found)
	{
		char	   *pool;
		int			i;

		memset(pa_shared, 0, offsetof(PaShared, subs) +
			   sizeof(PaSub) * pa_max_subscriptions);
		pa_shared->lock = &(GetNamedLWLockTranche("parallel_apply"))->lock;
		pa_shared->nsubs = pa_max_subscriptions;
		pool = (char *) TYPEALIGN(PA_CHUNK_SIZE,
								  (char *) pa_shared + offsetof(PaShared, subs) +
								  sizeof(PaSub) * pa_max_subscriptions);
		for (i = 0; i < pa_max_subscriptions; i++)
		{
			PaSub	   *sub = &pa_shared->subs[i];
			int			j;

			sub->pool = pool + (Size) i * pa_queue_pool_size();
			sub->nchunks = pa_queue_pool_size() / PA_CHUNK_SIZE;
			ConditionVariableInit(&sub->cv);
			pg_atomic_init_u32(&sub->leader_waiting, 0);
			pg_atomic_init_u64(&sub->leader_wake_seq, 0);
			pg_atomic_init_u32(&sub->leader_pacing, 0);
			pg_atomic_init_u32(&sub->free_chunks, 0);
			pg_atomic_init_u64(&sub->received_lsn, 0);
			pg_atomic_init_u64(&sub->applied_lsn, 0);
			pg_atomic_init_u64(&sub->flushed_lsn, 0);
			pg_atomic_init_u64(&sub->serial_until, 0);
			pg_atomic_init_u64(&sub->committed_seq, 0);
			pg_atomic_init_u64(&sub->txns_applied, 0);
			pg_atomic_init_u64(&sub->dependency_waits, 0);
			pg_atomic_init_u64(&sub->serial_retries, 0);
			pg_atomic_init_u64(&sub->restarts, 0);
			pg_atomic_init_u64(&sub->paced_reads, 0);
			pg_atomic_init_u64(&sub->streams_applied, 0);
			pg_atomic_init_u64(&sub->streams_spilled, 0);
			pg_atomic_init_u64(&sub->bytes_spilled, 0);
			pg_atomic_init_u32(&sub->streams_open, 0);
			pg_atomic_init_u64(&sub->leader_registered, 0);
			for (j = 0; j < PA_NUM_CONFLICT_TYPES; j++)
				pg_atomic_init_u64(&sub->conflicts[j], 0);
			pg_atomic_init_u64(&sub->conflicts_reset, 0);
			pg_atomic_init_u64(&sub->last_msg_send_time, 0);
			pg_atomic_init_u64(&sub->last_msg_receipt_time, 0);
			pg_atomic_init_u64(&sub->latest_end_lsn, 0);
			pg_atomic_init_u64(&sub->latest_end_time, 0);
			pg_atomic_init_u64(&sub->dispatched_seq, 0);
			pg_atomic_init_u64(&sub->last_commit_time, 0);
			SpinLockInit(&sub->error_lock);
			SpinLockInit(&sub->adapt_lock);
			pg_atomic_init_u32(&sub->active_workers, 0);
			pg_atomic_init_u64(&sub->active_changes, 0);
			sub->active_reason[0] = '\0';
			pg_atomic_init_u64(&sub->apply_errors, 0);
			pg_atomic_init_u64(&sub->error_lsn, 0);
			sub->has_error = false;
			for (j = 0; j < PA_MAX_WORKERS; j++)
			{
				pg_atomic_init_u64(&sub->workers[j].current_seq, 0);
				pg_atomic_init_u64(&sub->workers[j].applied, 0);
				pg_atomic_init_u32(&sub->workers[j].sleeping, 0);
				pg_atomic_init_u64(&sub->workers[j].wait_seq, 0);
				pg_atomic_init_u32(&sub->workers[j].stream_xid, 0);
				pg_atomic_init_u64(&sub->workers[j].chunks_taken, 0);
			}
			for (j = 0; j < PA_MAX_INFLIGHT; j++)
			{
				pg_atomic_init_u64(&sub->txns[j].seq, 0);
				pg_atomic_init_u32(&sub->txns[j].lock_held, 0);
			}
			pa_queue_reset(sub);
		}
	}
	pa_rel_stats_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * A subscription's synchronous_commit (pg_subscription.subsynccommit, kept
 * as the user spelt it) as a SYNCHRONOUS_COMMIT_* level, read the way the
 * GUC reads it: local, remote_write, remote_apply, or any boolean spelling
 * (on, off, true, yes, 1, ...).
 */
int
pa_synccommit_level(const char *value)
{
	bool		b;

	if (pg_strcasecmp(value, "local") == 0)
		return SYNCHRONOUS_COMMIT_LOCAL_FLUSH;
	if (pg_strcasecmp(value, "remote_write") == 0)
		return SYNCHRONOUS_COMMIT_REMOTE_WRITE;
	if (pg_strcasecmp(value, "remote_apply") == 0)
		return SYNCHRONOUS_COMMIT_REMOTE_APPLY;
	if (parse_bool(value, &b))
		return b ? SYNCHRONOUS_COMMIT_ON : SYNCHRONOUS_COMMIT_OFF;
	return SYNCHRONOUS_COMMIT_OFF;	/* CREATE SUBSCRIPTION validated it */
}

/* ereport if the module was not loaded by shared_preload_libraries */
void
pa_check_preloaded(void)
{
	if (!pa_preloaded || pa_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("parallel_apply must be loaded via shared_preload_libraries"),
				 errhint("Add parallel_apply to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* The slot of an attached subscription, or NULL.  Caller holds the lock. */
PaSub *
pa_find_sub(Oid subid)
{
	int			i;

	for (i = 0; i < pa_shared->nsubs; i++)
	{
		if (pa_shared->subs[i].in_use && pa_shared->subs[i].subid == subid)
			return &pa_shared->subs[i];
	}
	return NULL;
}

/*
 * Is any leader or apply worker of this slot alive, or a leader registered
 * in the last few seconds about to start?  (A registered leader that the
 * postmaster never started is forgotten after that.)
 */
bool
pa_sub_has_processes(PaSub *sub)
{
	uint64		registered = pg_atomic_read_u64(&sub->leader_registered);
	int			i;

	pg_read_barrier();			/* the leader sets its pid, then clears it */
	if (sub->leader_pid != 0)
		return true;
	if (registered != 0 &&
		!TimestampDifferenceExceeds((TimestampTz) registered,
									GetCurrentTimestamp(), 5000))
		return true;
	for (i = 0; i < PA_MAX_WORKERS; i++)
		if (sub->workers[i].pid != 0)
			return true;
	return false;
}

/* Is a stop of the subscription requested?  Caller holds the lock. */
bool
pa_stop_pending(Oid subid)
{
	int			i;

	for (i = 0; i < PA_MAX_STOPPING; i++)
		if (pa_shared->stopping[i].subid == subid)
			return true;
	return false;
}

/* The progress and counters a newly attached subscription starts from */
void
pa_sub_reset(PaSub *sub)
{
	int			i;

	pg_atomic_write_u64(&sub->received_lsn, 0);
	pg_atomic_write_u64(&sub->applied_lsn, 0);
	pg_atomic_write_u64(&sub->flushed_lsn, 0);
	pg_atomic_write_u64(&sub->serial_until, 0);
	pg_atomic_write_u64(&sub->committed_seq, 0);
	pg_atomic_write_u64(&sub->txns_applied, 0);
	pg_atomic_write_u64(&sub->dependency_waits, 0);
	pg_atomic_write_u64(&sub->serial_retries, 0);
	pg_atomic_write_u64(&sub->restarts, 0);
	pg_atomic_write_u64(&sub->paced_reads, 0);
	pg_atomic_write_u64(&sub->streams_applied, 0);
	pg_atomic_write_u64(&sub->streams_spilled, 0);
	pg_atomic_write_u64(&sub->bytes_spilled, 0);
	pg_atomic_write_u32(&sub->streams_open, 0);
	pg_atomic_write_u32(&sub->active_workers, 0);
	pg_atomic_write_u64(&sub->active_changes, 0);
	SpinLockAcquire(&sub->adapt_lock);
	sub->active_reason[0] = '\0';
	SpinLockRelease(&sub->adapt_lock);
	for (i = 0; i < PA_MAX_WORKERS; i++)
		pg_atomic_write_u64(&sub->workers[i].applied, 0);
	for (i = 0; i < PA_NUM_CONFLICT_TYPES; i++)
		pg_atomic_write_u64(&sub->conflicts[i], 0);
	pg_atomic_write_u64(&sub->conflicts_reset, 0);
	pg_atomic_write_u64(&sub->last_msg_send_time, 0);
	pg_atomic_write_u64(&sub->last_msg_receipt_time, 0);
	pg_atomic_write_u64(&sub->latest_end_lsn, 0);
	pg_atomic_write_u64(&sub->latest_end_time, 0);
	pg_atomic_write_u64(&sub->dispatched_seq, 0);
	pg_atomic_write_u64(&sub->last_commit_time, 0);
	pg_atomic_write_u64(&sub->apply_errors, 0);
	SpinLockAcquire(&sub->error_lock);
	sub->has_error = false;
	pg_atomic_write_u64(&sub->error_lsn, 0);
	SpinLockRelease(&sub->error_lock);
	sub->restart_now = false;
}

/*
 * An apply error of the subscription: count it and keep it for
 * stat_subscription (what the view's last_error* columns show), with the
 * remote transaction that raised it (xid and finish LSN; invalid when the
 * error belongs to no transaction, as a lost connection).
 */
void
pa_sub_record_error(PaSub *sub, const char *message, TransactionId xid,
					XLogRecPtr finish_lsn)
{
	TimestampTz now = GetCurrentTimestamp();

	pg_atomic_fetch_add_u64(&sub->apply_errors, 1);
	SpinLockAcquire(&sub->error_lock);
	sub->has_error = true;
	sub->error_time = now;
	sub->error_xid = xid;
	strlcpy(sub->error_message, message ? message : "", PA_ERROR_LEN);
	pg_atomic_write_u64(&sub->error_lsn, finish_lsn);
	SpinLockRelease(&sub->error_lock);
}

/*
 * Transactions up to one finished at committed_lsn have been committed (or
 * skipped): the last error is gone if its transaction was among them, or
 * if it belonged to no transaction.
 */
void
pa_sub_clear_error(PaSub *sub, XLogRecPtr committed_lsn)
{
	SpinLockAcquire(&sub->error_lock);
	if (sub->has_error &&
		pg_atomic_read_u64(&sub->error_lsn) <= committed_lsn)
		sub->has_error = false;
	SpinLockRelease(&sub->error_lock);
}

void
pa_wake_launcher(void)
{
	Latch	   *latch = pa_shared ? pa_shared->launcher_latch : NULL;

	if (latch)
		SetLatch(latch);
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;					/* pa_check_preloaded() refuses later */

	pa_preloaded = true;

	DefineCustomIntVariable("parallel_apply.workers",
							"Number of apply workers per attached subscription.",
							"Takes effect when the engine of a subscription (re)starts.",
							&pa_workers, 4, 1, PA_MAX_WORKERS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("parallel_apply.group_size",
							"Maximum number of consecutive remote transactions a worker commits together.",
							"A worker applies the next transaction in commit order in the same local transaction when it is already queued for it; 1 commits every transaction on its own.",
							&pa_group_size, 32, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("parallel_apply.adaptive",
							 "Spreads independent transactions over only as many workers as make the subscription apply faster.",
							 "The leader measures the apply rate and whether its workers are behind, widens the active set while a wider one applies faster and narrows it when fewer keep up; off spreads them over all parallel_apply.workers.",
							 &pa_adaptive, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("parallel_apply.max_transaction_keys",
							"Maximum number of keys the leader records for one remote transaction.",
							"Past it, every further change of the transaction is a barrier for its table (later changes of the table wait for the transaction's commit), so the leader's memory stays bounded whatever the transaction's size.",
							&pa_max_transaction_keys, 65536, 0, INT_MAX / 2,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("parallel_apply.max_streams",
							"Maximum number of streamed transactions applied in workers while they stream, per subscription.",
							"A streamed transaction beyond it, or one that finds no idle worker, is spilled to a file and applied at its commit, as PostgreSQL 15 does; -1 means half of parallel_apply.workers (none with one worker), 0 spills every streamed transaction.",
							&pa_max_streams, -1, -1, PA_MAX_WORKERS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("parallel_apply.stream_spill_timeout",
							"Time the leader waits for a worker applying a streamed transaction to take more of it before it spills the rest to a file.",
							"While it waits, the leader reads nothing from the publisher; the rest of the stream is then written to a file and applied by the same worker at the stream's commit.",
							&pa_stream_spill_timeout_ms, 10000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomEnumVariable("parallel_apply.ri_full_index",
							 "How rows of REPLICA IDENTITY FULL tables without a primary key or replica identity index are found.",
							 "auto uses the best usable btree or hash index (unique first, then the most selective by statistics) and compares every column; off scans the table for every row, as PostgreSQL 15 does.",
							 &pa_ri_full_index, PA_RI_FULL_INDEX_AUTO,
							 ri_full_index_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("parallel_apply.conflict_log",
							 "Where conflicts met while applying are recorded.",
							 "log writes PostgreSQL 18's conflict messages to the server log; table writes a row per conflict into parallel_apply.conflict_history; both does both.",
							 &pa_conflict_log, PA_CONFLICT_LOG_BOTH,
							 conflict_log_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("parallel_apply.queue_memory",
							"Shared memory for queued changes, per attached subscription.",
							"When it is full the leader stops reading from the publisher; more lets it read further ahead of the workers, which does not make them faster.",
							&pa_queue_memory_kb, 1024, 128, 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("parallel_apply.max_subscriptions",
							"Maximum number of subscriptions attached at the same time.",
							NULL,
							&pa_max_subscriptions, 4, 1, 64,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("parallel_apply.retry_interval",
							"Time to wait before restarting the engine of a subscription after an error.",
							"Also the least time between two starts of the engine that stopped for a reason it may meet again.",
							&pa_retry_interval_ms, 5000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("parallel_apply.receive_batch",
							"Bytes the leader reads at most every 2 ms at the start of a catch-up, when it paces its reads.",
							"While the subscription lags behind, the leader reads in paced batches whose size adapts to the publisher; 0 reads every message as it arrives.",
							&pa_receive_batch, 32 * 1024, 0, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("parallel_apply.launcher_naptime",
							"Time between the launcher's checks of attached subscriptions.",
							"The launcher is also woken at once by attach, detach, resume and ALTER SUBSCRIPTION of an attached subscription.",
							&pa_launcher_naptime_ms, 10000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("parallel_apply.database",
							   "Database the launcher connects to, to read the shared catalogs.",
							   "It must exist; attached subscriptions may live in any database.",
							   &pa_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("parallel_apply");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pa_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pa_shmem_startup;

	pa_launcher_register();
	pa_sqlapi_init();
}
