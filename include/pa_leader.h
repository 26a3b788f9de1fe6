/*-------------------------------------------------------------------------
 *
 * pa_leader.h
 *	  Contracts between the leader's stages: receive (src/receive.c),
 *	  decode (src/decode.c) and dispatch (src/dispatch.c).
 *
 * receive hands every pgoutput message to decode; decode turns the stream
 * (including streamed transactions, which it spools) into whole remote
 * transactions and calls dispatch; dispatch gives each a commit-order
 * sequence number and a worker and writes it into that worker's queue.
 * When queue memory is full, dispatch calls pa_leader_idle(), which keeps
 * the connection alive without reading from it.
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
	bool		started_serial; /* re-applying a failed window serially */
	BackgroundWorkerHandle *handles[PA_MAX_WORKERS];
} PaLeader;

extern PaLeader pa_leader;

/* receive.c */
extern void pa_leader_idle(bool for_chunk);
extern void pa_leader_send_feedback(bool force, bool request_reply);

/* decode.c */
extern void pa_decode_init(void);
extern void pa_decode_message(StringInfo s);
extern bool pa_decode_in_remote_transaction(void);

/* dispatch.c */
extern void pa_dispatch_init(void);
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
extern void pa_dispatch_positions(XLogRecPtr *applied, XLogRecPtr *flushed,
								  bool *pending);

#endif							/* PA_LEADER_H */
