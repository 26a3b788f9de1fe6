/*-------------------------------------------------------------------------
 *
 * pa_queue.h
 *	  The queues between the leader and the apply workers (src/queue.c).
 *
 * Every queue is a liburcu wait-free concurrent queue (struct
 * __cds_wfcq_head, no mutex) laid in the main shared-memory segment, with
 * exactly one consumer:
 *
 *	  dispatch queue of worker w	leader -> worker w	 chunks of messages
 *	  free queue					workers -> leader	 chunks to reuse
 *	  completion queue				workers -> leader	 committed transactions
 *
 * Queue memory is the fixed pool of PA_CHUNK_SIZE chunks of the
 * subscription's slot (parallel_apply.queue_memory); a chunk is always in
 * exactly one place: the free queue, the leader's hands, a dispatch queue,
 * or a worker's hands.  Wake-ups are latches.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PA_QUEUE_H
#define PA_QUEUE_H

#include "parallel_apply.h"

extern Size pa_queue_pool_size(void);
extern void pa_queue_reset(PaSub *sub);
extern uint32 pa_chunk_wake_threshold(PaSub *sub);

/* leader side */
extern PaChunk *pa_chunk_get(PaSub *sub);
extern void pa_chunk_send(PaSub *sub, int worker, PaChunk *chunk);
extern PaTxn *pa_done_receive(PaSub *sub);

/* worker side */
extern PaChunk *pa_chunk_receive(PaSub *sub, int worker);
extern void pa_chunk_put(PaSub *sub, PaChunk *chunk);
extern void pa_done_send(PaSub *sub, PaTxn *txn);

#endif							/* PA_QUEUE_H */
