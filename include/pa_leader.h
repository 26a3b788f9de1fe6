/*-------------------------------------------------------------------------
 *
 * pa_leader.h
 *	  Contracts between the leader's stages: the loop (src/leader.c),
 *	  decode (src/decode.c) and dispatch (src/dispatch.c).
 *
 * The leader's loop (src/leader.c) hands every pgoutput message to decode;
 * decode turns the stream (including streamed transactions, which it
 * spools) into whole remote transactions and calls dispatch; dispatch gives
 * each a commit-order sequence number and a worker and writes it into that
 * worker's queue.  Data flows one way: decode and dispatch never call the
 * loop and never wait.  When queue memory runs out, dispatch keeps the rest
 * of the message in an outbox and says so (pa_dispatch_ready() false); the
 * loop then stops reading, waits for resources -- processing completions,
 * handing partly filled chunks over and answering the publisher, nothing
 * else -- and drains the outboxes (and a streamed transaction's replay,
 * pa_decode_replay) before it reads the next message.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_LEADER_H
#define PA_LEADER_H

#include "catalog/pg_subscription.h"
#include "lib/stringinfo.h"
#include "parallel_apply.h"
#include "postmaster/bgworker.h"
#include "replication/logicalproto.h"
#include "replication/origin.h"
#include "replication/walreceiver.h"

typedef struct PaLeader
{
	int			slotno;
	PaSub	   *sub;			/* our slot in shared memory */
	Subscription *mysub;		/* catalog copy, in TopMemoryContext */
	RepOriginId originid;
	char		originname[NAMEDATALEN];
	WalReceiverConn *conn;
	XLogRecPtr	last_received;	/* highest LSN received from the publisher */
	TimestampTz last_commit_time;	/* publisher's commit time of the newest
									 * transaction received */
	int			nworkers;
	int			nactive;		/* the active set: workers 0..nactive-1
								 * receive new independent work (adapt.c) */
	int			read_ahead;		/* with adaptive use, transactions the
								 * leader queues per active worker on
								 * average at most (adapt.c) */
	uint64		placed;			/* ordinary transactions given a worker
								 * (dispatch.c choose_worker()) */
	uint64		placed_free;	/* of them, in runs that began with no
								 * uncommitted dependency: what a wider
								 * set would spread (adapt.c) */
	bool		started_serial; /* re-applying a failed window serially */
	BackgroundWorkerHandle *handles[PA_MAX_WORKERS];
} PaLeader;

extern PaLeader pa_leader;

/* adapt.c */
extern void pa_adapt_init(void);
extern void pa_adapt_note_wait(int64 usecs);
extern void pa_adapt_tick(void);

/* decode.c */
extern void pa_decode_init(void);
extern void pa_decode_message(StringInfo s);
extern bool pa_decode_in_remote_transaction(void);
extern bool pa_decode_replaying(void);
extern void pa_decode_replay(void);

/* dispatch.c */
extern void pa_dispatch_init(void);
extern bool pa_dispatch_ready(void);
extern bool pa_dispatch_needs_memory(void);
extern void pa_dispatch_begin(TransactionId xid, XLogRecPtr final_lsn,
							  TimestampTz committime);
extern void pa_dispatch_relation(LogicalRepRelId relid, const char *msg, int len);
extern void pa_dispatch_change(const char *msg, int len,
							   LogicalRepRelId *relids, int nrelids);
extern void pa_dispatch_commit(XLogRecPtr commit_lsn, XLogRecPtr end_lsn,
							   TimestampTz committime);
extern bool pa_dispatch_process_completions(void);
extern void pa_dispatch_flush(void);
extern void pa_dispatch_flush_wal_if_idle(void);
extern XLogRecPtr pa_dispatch_current_final_lsn(void);
extern bool pa_dispatch_waits_for_stream(void);
extern uint64 pa_dispatch_wake_seq(void);
extern bool pa_dispatch_stream_starved(int w, TransactionId *xid);

/* dispatch.c: streamed transactions applied while they stream */
typedef struct PaStream PaStream;

extern PaStream *pa_dispatch_stream_open(TransactionId xid);
extern bool pa_dispatch_stream_spilling(PaStream *st, TransactionId subxid);
extern void pa_dispatch_stream_replay(PaStream *st, XLogRecPtr commit_lsn,
									  TimestampTz committime);
extern void pa_dispatch_stream_relation(PaStream *st, LogicalRepRelId relid,
										const char *msg, int len);
extern void pa_dispatch_stream_change(PaStream *st, TransactionId subxid,
									  const char *msg, int len,
									  LogicalRepRelId *relids, int nrelids);
extern bool pa_dispatch_stream_abort(PaStream *st, TransactionId subxid);
extern void pa_dispatch_stream_commit(PaStream *st, XLogRecPtr commit_lsn,
									  XLogRecPtr end_lsn,
									  TimestampTz committime);
extern void pa_dispatch_positions(XLogRecPtr *applied, XLogRecPtr *flushed,
								  bool *pending);

#endif							/* PA_LEADER_H */
