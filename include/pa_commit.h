/*-------------------------------------------------------------------------
 *
 * pa_commit.h
 *	  Commit order and progress (src/commit.c), used by the apply workers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_COMMIT_H
#define PA_COMMIT_H

#include "pa_protocol.h"
#include "parallel_apply.h"
#include "replication/origin.h"

extern void pa_commit_init(PaSub *sub, PaWorker *me, RepOriginId originid,
						   pid_t leader_pid);
extern void pa_report_activity(void);
extern void pa_commit_start(PaTxn *txn);
extern void pa_stream_lock_acquire(void);
extern void pa_stream_lock_release(void);
extern bool pa_is_committed(uint64 seq);
extern bool pa_wait_for_commit(uint64 seq);
extern XLogRecPtr pa_commit_group(uint64 first, uint64 last,
								  const PaMsgCommit *commit);
extern void pa_clear_skip_lsn(Oid subid, XLogRecPtr finish_lsn);

#endif							/* PA_COMMIT_H */
