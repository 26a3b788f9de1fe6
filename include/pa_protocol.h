/*-------------------------------------------------------------------------
 *
 * pa_protocol.h
 *	  The messages the leader writes into a worker's chunks (src/dispatch.c
 *	  writes them, src/worker.c reads them).
 *
 * Each message is framed as a uint32 length followed by that many bytes; the
 * first byte is the kind.  Frames may straddle chunks.  BEGIN and COMMIT
 * carry the engine's own fixed-size structs; WAIT, placed just before the
 * first change that depends on another transaction, names the sequence
 * number whose commit the worker must wait for; CHANGE carries one pgoutput
 * message (RELATION, INSERT, UPDATE, DELETE or TRUNCATE) exactly as the
 * publisher sent it, with any streamed-transaction xid prefix removed, so
 * the worker decodes rows itself and the leader's per-change work stays a
 * copy.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_PROTOCOL_H
#define PA_PROTOCOL_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"

#define PA_MSG_BEGIN	'B'
#define PA_MSG_CHANGE	'P'
#define PA_MSG_COMMIT	'C'
#define PA_MSG_WAIT		'W'		/* uint64 seq: wait for its commit first */

/*
 * A streamed transaction applied while it streams: STREAM_START opens it in
 * the worker (which then receives nothing else until it ends); SUBXACT
 * names the sub-transaction of the changes that follow (the worker opens a
 * savepoint at each new one); PRED names the latest transaction dispatched
 * before the changes that follow, all of which precede the stream in
 * commit order (a row an UPDATE or DELETE cannot find is looked for again
 * once it has committed); STREAM_ABORT rolls back to a sub-transaction's
 * savepoint, or the whole transaction when it names the top-level xid;
 * STREAM_COMMIT gives it its place in commit order and commits it there.
 */
#define PA_MSG_STREAM_START		'S' /* PaMsgStream */
#define PA_MSG_SUBXACT			'X' /* TransactionId subxid */
#define PA_MSG_PRED				'R' /* uint64 seq */
#define PA_MSG_STREAM_ABORT		'A' /* TransactionId subxid */
#define PA_MSG_STREAM_COMMIT	'K' /* PaMsgBegin, then PaMsgCommit */

typedef struct PaMsgBegin
{
	uint64		seq;			/* commit-order sequence number */
	TransactionId remote_xid;
	XLogRecPtr	final_lsn;		/* remote commit LSN */
	TimestampTz committime;
	bool		skip;			/* ALTER SUBSCRIPTION ... SKIP names it */
	bool		alone;			/* commit it on its own, in no group (the
								 * serial window after a failure) */
} PaMsgBegin;

typedef struct PaMsgStream
{
	TransactionId remote_xid;	/* the top-level xid */
	uint64		pred;			/* latest transaction dispatched before it */
} PaMsgStream;

typedef struct PaMsgCommit
{
	XLogRecPtr	commit_lsn;
	XLogRecPtr	end_lsn;
	TimestampTz committime;
} PaMsgCommit;

#endif							/* PA_PROTOCOL_H */
