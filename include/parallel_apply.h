/*-------------------------------------------------------------------------
 *
 * parallel_apply.h
 *	  Shared state of the parallel_apply engine: GUCs, the shared-memory
 *	  layout every process of the engine agrees on, and the entry points of
 *	  the background workers.
 *
 * One PaSub slot exists per attached subscription.  Each field says which
 * process writes it.  Fields that change while other processes read them
 * are pg_atomic_* (with barriers where the order of two fields matters), or
 * pointers read once into a local.  The plain fields are written before the
 * readers can look (a ring entry's worker, xid and LSN before its seq is
 * published; a worker's slot before its pid), or are read only as hints
 * that a later check confirms (states for the views, pids compared with
 * the reader's own copy).  The hot paths take no locks:
 *
 *	- the leader owns the transaction ring entries it dispatches, the chunk
 *	  free queue (single consumer) and the completion queue (single
 *	  consumer);
 *	- each apply worker owns its dispatch queue (single consumer) and
 *	  advances the commit watermark when its commit turn comes;
 *	- a few fields have two writers, never at the same time: the leader
 *	  resets the watermark and the ring's lock_held flags before any worker
 *	  of its life starts, and restart_now is set by the leader before it
 *	  exits and cleared by the launcher once it has seen the exit;
 *	- PaShared->lock (an LWLock) protects only slot assignment, the
 *	  in_use/subid/stop_requested fields, and the launcher's fields.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARALLEL_APPLY_H
#define PARALLEL_APPLY_H

#define _LGPL_SOURCE
#include <urcu/wfcqueue.h>

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#define PA_MAX_WORKERS		32	/* upper bound of parallel_apply.workers */
#define PA_MAX_INFLIGHT		4096	/* transactions dispatched, not yet
									 * completed, per subscription */
#define PA_CHUNK_SIZE		8192	/* bytes per queue chunk, header included */
#define PA_MAX_STOPPING		64	/* stop requests pending at a time */
#define PA_NUM_CONFLICT_TYPES	7	/* PaConflictType (pa_conflict.h) */
#define PA_ERROR_LEN		1024	/* bytes of the last error's message kept */
#define PA_REASON_LEN		128 /* bytes of the active set's reason kept */

/* name of the replication origin that marks a subscription as attached */
#define PA_ATTACH_MARKER_FMT "parallel_apply_attached_%u"
/* ... and of the one that marks it as paused (parallel_apply.pause()) */
#define PA_PAUSE_MARKER_FMT "parallel_apply_paused_%u"

/* advisory lock "field4" used for commit-order locks (users use 1 and 2) */
#define PA_LOCKTAG_COMMIT_ORDER 0x5041
/* ... and for the lock serializing attach markers (sqlapi.c) */
#define PA_LOCKTAG_MARKERS		0x5042
/* ... and for the lock a worker holds while it has a stream open */
#define PA_LOCKTAG_STREAM		0x5043

/* GUCs (src/parallel_apply.c) */
extern int	pa_workers;
extern int	pa_queue_memory_kb;
extern int	pa_max_subscriptions;
extern int	pa_retry_interval_ms;
extern int	pa_receive_batch;
extern int	pa_launcher_naptime_ms;
extern int	pa_group_size;
extern int	pa_max_transaction_keys;
extern int	pa_max_streams;
extern bool pa_adaptive;
extern int	pa_stream_spill_timeout_ms;
extern char *pa_database;

/* A piece of the bounded queue memory: carries framed messages to a worker */
typedef struct PaChunk
{
	struct cds_wfcq_node node;	/* link in a dispatch queue or the free queue */
	uint32		len;			/* bytes of data used */
	char		data[FLEXIBLE_ARRAY_MEMBER];
} PaChunk;

#define PA_CHUNK_CAPACITY	(PA_CHUNK_SIZE - offsetof(PaChunk, data))

/* One transaction in flight, in the ring indexed by seq % PA_MAX_INFLIGHT */
typedef struct PaTxn
{
	struct cds_wfcq_node done_node; /* completion queue link */
	pg_atomic_uint64 seq;		/* commit-order sequence number (leader;
								 * written after worker, with a barrier) */
	int			worker;			/* worker it was given to (leader) */
	TransactionId remote_xid;	/* (leader) */
	XLogRecPtr	final_lsn;		/* remote commit ("finished at") LSN (leader) */
	XLogRecPtr	local_end;		/* local commit record end (worker) */
	pg_atomic_uint32 lock_held; /* worker holds this seq's commit lock
								 * (worker; reset by the leader at BEGIN) */
} PaTxn;

typedef enum PaWorkerState
{
	PA_WORKER_FREE = 0,
	PA_WORKER_IDLE,				/* waiting for work */
	PA_WORKER_APPLYING,
	PA_WORKER_WAITING			/* waiting for a predecessor's commit */
} PaWorkerState;

typedef struct PaWorker
{
	pid_t		pid;			/* 0 when the slot is free (worker) */
	Latch	   *volatile latch;	/* (worker); read it once into a local */
	PaWorkerState state;		/* (worker) */
	struct __cds_wfcq_head qhead;	/* dispatch queue: leader -> worker */
	struct cds_wfcq_tail qtail;
	pg_atomic_uint64 current_seq;	/* seq being applied, 0 if none (worker) */
	uint64		failed_seq;		/* seq it was applying when it failed */
	bool		group_failed;	/* it failed committing a group of several
								 * transactions: which one raised the error
								 * is not known (worker) */
	bool		conflict_failed;	/* its error was a conflict, met once
									 * every earlier transaction had
									 * committed (worker) */
	pg_atomic_uint64 applied;	/* transactions committed (worker) */
	pg_atomic_uint32 sleeping;	/* waits for its queue: wake it (worker) */

	/*
	 * what it applies, for stat_workers (worker; hints for the view, read
	 * without a lock): the remote transaction's xid, finish LSN and when
	 * the worker began it; and the seq of the transaction whose commit it
	 * waits for, 0 when it does not wait, with whether that is its commit
	 * turn (the transaction just before its own)
	 */
	TransactionId cur_xid;
	XLogRecPtr	cur_lsn;
	TimestampTz cur_start;
	pg_atomic_uint64 wait_seq;
	bool		wait_turn;

	/*
	 * the streamed transaction it applies while it streams (remote xid),
	 * InvalidTransactionId when none (worker; waiters read it, after
	 * lock_held of the transaction they wait for, to choose the lock to
	 * wait on); and the chunks it has taken from its dispatch queue, which
	 * the leader compares with those it sent to bound what one stream
	 * holds of queue memory (worker)
	 */
	pg_atomic_uint32 stream_xid;
	pg_atomic_uint64 chunks_taken;
} PaWorker;

typedef enum PaSubState
{
	PA_SUB_STOPPED = 0,			/* no leader running */
	PA_SUB_STARTING,
	PA_SUB_STREAMING
} PaSubState;

typedef struct PaSub
{
	/* protected by PaShared->lock */
	bool		in_use;
	Oid			subid;
	bool		stop_requested; /* a stop is pending (PaShared.stopping
								 * says so too): what the leader checks */
	int			stop_requester; /* pid of the backend asking */

	/*
	 * when the launcher registered a leader that has not set leader_pid yet,
	 * 0 if none (set by the launcher when it registers one; cleared by the
	 * leader once leader_pid is set, or by the launcher when it sees the
	 * leader stopped); a stop request waits for such a leader for a few
	 * seconds (pa_sub_has_processes)
	 */
	pg_atomic_uint64 leader_registered;

	/* written by the leader */
	pid_t		leader_pid;
	Latch	   *volatile leader_latch;	/* read it once into a local */
	PaSubState	state;
	int			nworkers;
	pg_atomic_uint32 leader_waiting;	/* leader waits for free chunks */
	pg_atomic_uint64 leader_wake_seq;	/* leader: while it waits, a commit
										 * wakes it only from this seq on
										 * (0: any) */
	pg_atomic_uint32 leader_pacing; /* leader paces its reads: it wakes by
									 * itself every few milliseconds */
	pg_atomic_uint64 received_lsn;
	pg_atomic_uint64 applied_lsn;
	pg_atomic_uint64 flushed_lsn;
	pg_atomic_uint64 serial_until;	/* re-apply serially up to this LSN
									 * after a worker failed */
	bool		restart_now;	/* skip retry_interval once (leader sets it
								 * before exiting, launcher clears it) */

	/*
	 * commit watermark: seq of the last transaction committed in order
	 * (workers; reset by the leader at start, before its workers run)
	 */
	pg_atomic_uint64 committed_seq;
	ConditionVariable cv;		/* broadcast when a transaction starts or
								 * commits */

	/* counters, kept across leader restarts */
	pg_atomic_uint64 txns_applied;
	pg_atomic_uint64 dependency_waits;
	pg_atomic_uint64 serial_retries;
	pg_atomic_uint64 restarts;
	pg_atomic_uint64 paced_reads;	/* pauses of paced reads (leader.c) */

	/*
	 * streamed transactions (leader): committed after being applied while
	 * they streamed, wholly or partly spilled to a file, the bytes written
	 * to such files, and the streams open in workers right now
	 */
	pg_atomic_uint64 streams_applied;
	pg_atomic_uint64 streams_spilled;
	pg_atomic_uint64 bytes_spilled;
	pg_atomic_uint32 streams_open;

	/*
	 * adaptive worker use (leader, adapt.c): how many workers new
	 * independent work is spread over, how often that changed, and why it
	 * last did (active_reason under adapt_lock)
	 */
	pg_atomic_uint32 active_workers;
	pg_atomic_uint64 active_changes;
	slock_t		adapt_lock;
	char		active_reason[PA_REASON_LEN];

	/*
	 * conflicts met, per PaConflictType (workers), and when they were last
	 * reset to zero, 0 if never (backends: reset_subscription_stats())
	 */
	pg_atomic_uint64 conflicts[PA_NUM_CONFLICT_TYPES];
	pg_atomic_uint64 conflicts_reset;

	/*
	 * what the publisher sent last (leader): the send time and receipt time
	 * of the last message, and the end LSN and send time of the last
	 * keepalive (PostgreSQL's latest_end_lsn and latest_end_time); the seq
	 * of the last transaction given to a worker (leader); the publisher's
	 * commit time of the last transaction committed in order (workers, at
	 * their commit turn)
	 */
	pg_atomic_uint64 last_msg_send_time;
	pg_atomic_uint64 last_msg_receipt_time;
	pg_atomic_uint64 latest_end_lsn;
	pg_atomic_uint64 latest_end_time;
	pg_atomic_uint64 dispatched_seq;
	pg_atomic_uint64 last_commit_time;

	/*
	 * the last apply error, kept across engine restarts until a transaction
	 * finished at or after its finish LSN commits or is skipped (workers,
	 * leader; under error_lock, error_lsn also atomic for the commit path's
	 * check); apply_errors counts every apply error since attach or the last
	 * reset_subscription_stats()
	 */
	slock_t		error_lock;
	pg_atomic_uint64 apply_errors;
	pg_atomic_uint64 error_lsn; /* InvalidXLogRecPtr: none, or none known */
	bool		has_error;
	TimestampTz error_time;
	TransactionId error_xid;
	char		error_message[PA_ERROR_LEN];

	/* queues; see pa_queue.h */
	struct __cds_wfcq_head free_head;	/* free chunks: workers -> leader */
	struct cds_wfcq_tail free_tail;
	struct __cds_wfcq_head done_head;	/* completions: workers -> leader */
	struct cds_wfcq_tail done_tail;
	char	   *pool;			/* this slot's chunks, in the main segment */
	uint32		nchunks;
	pg_atomic_uint32 free_chunks;	/* chunks on the free queue */

	PaWorker	workers[PA_MAX_WORKERS];
	PaTxn		txns[PA_MAX_INFLIGHT];
} PaSub;

typedef struct PaShared
{
	LWLock	   *lock;
	Latch	   *launcher_latch; /* (launcher) NULL while none runs */
	pid_t		launcher_pid;	/* (launcher) 0 while none runs */
	bool		launcher_connecting;	/* (launcher) set before it connects
										 * to parallel_apply.database, cleared
										 * once connected: left set by a
										 * launcher that could not connect */
	/*
	 * stop requests of detach, pause and DROP SUBSCRIPTION, until the
	 * requesting transaction ends, whether or not the subscription has a
	 * slot yet: the launcher starts no leader for them (backends, under lock;
	 * subid InvalidOid when free)
	 */
	struct
	{
		Oid			subid;
		pid_t		requester;
	}			stopping[PA_MAX_STOPPING];
	uint32		changes;		/* (backends, under lock) bumped at the end
								 * of a transaction that attached, resumed,
								 * or stopped an engine: a launcher pass
								 * whose catalog scan began before must scan
								 * again */
	int			nsubs;
	PaSub		subs[FLEXIBLE_ARRAY_MEMBER];
} PaShared;

extern PaShared *pa_shared;

/* parallel_apply.c */
extern bool pa_preloaded;
extern void pa_check_preloaded(void);
extern PaSub *pa_find_sub(Oid subid);
extern bool pa_sub_has_processes(PaSub *sub);
extern bool pa_stop_pending(Oid subid);
extern void pa_sub_reset(PaSub *sub);
extern void pa_sub_record_error(PaSub *sub, const char *message,
								TransactionId xid, XLogRecPtr finish_lsn);
extern void pa_sub_clear_error(PaSub *sub, XLogRecPtr committed_lsn);
extern void pa_wake_launcher(void);
extern int	pa_synccommit_level(const char *value);

/* sqlapi.c */
extern void pa_sqlapi_init(void);
extern void pa_lock_markers(void);
extern Oid	pa_extension_schema(Oid extoid, Oid *owner);

/* launcher.c */
extern void pa_launcher_register(void);
extern PGDLLEXPORT void pa_launcher_main(Datum main_arg);
extern bool pa_subscription_is_attached(Oid subid);
extern bool pa_subscription_is_paused(Oid subid);
extern char *pa_attach_marker_name(Oid subid);
extern char *pa_pause_marker_name(Oid subid);

/* leader.c: leader entry point */
extern PGDLLEXPORT void pa_leader_main(Datum main_arg);

/* worker.c: apply worker entry point */
extern PGDLLEXPORT void pa_worker_main(Datum main_arg);

/* arguments passed in bgw_extra to leaders and workers */
typedef struct PaWorkerArgs
{
	Oid			subid;
	Oid			dbid;
	Oid			owner;
	int			slot;			/* index in pa_shared->subs */
	int			worker;			/* worker index, -1 for the leader */
	pid_t		leader_pid;
} PaWorkerArgs;

#endif							/* PARALLEL_APPLY_H */
