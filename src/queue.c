/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  Wait-free queues and the bounded chunk pool between the leader and the
 *	  apply workers.
 *
 * Owns: the chunk pool of each subscription slot and the three kinds of
 * queue described in pa_queue.h.
 *
 * Invariants kept here:
 *	- each queue has a single consumer (the leader for the free and
 *	  completion queues, worker w for dispatch queue w), as liburcu's
 *	  __cds_wfcq_*_nonblocking calls require;
 *	- queue memory is bounded: chunks come only from the pool, so the leader
 *	  can never buffer more than parallel_apply.queue_memory per
 *	  subscription in shared memory (invariant 5);
 *	- a consumer that finds a queue empty, or an enqueue in progress
 *	  (CDS_WFCQ_WOULDBLOCK), returns NULL and waits on its latch; producers
 *	  set that latch after enqueueing (for the free queue: once a quarter of
 *	  the pool is free, and a worker going idle wakes a waiting leader too;
 *	  the leader's wait also ends after a second).  Nobody spins.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pa_queue.h"

/* Bytes of queue memory per subscription slot, rounded to whole chunks */
Size
pa_queue_pool_size(void)
{
	Size		n = ((Size) pa_queue_memory_kb * 1024) / PA_CHUNK_SIZE;

	return Max(n, 16) * PA_CHUNK_SIZE;
}

/*
 * Put every chunk back on the free queue and empty all queues.  Called by a
 * leader when it starts, once no worker of the slot is alive, so that no
 * chunk of a previous leader's life is left anywhere.
 */
void
pa_queue_reset(PaSub *sub)
{
	uint32		i;

	__cds_wfcq_init(&sub->free_head, &sub->free_tail);
	__cds_wfcq_init(&sub->done_head, &sub->done_tail);
	for (i = 0; i < PA_MAX_WORKERS; i++)
		__cds_wfcq_init(&sub->workers[i].qhead, &sub->workers[i].qtail);

	for (i = 0; i < sub->nchunks; i++)
	{
		PaChunk    *chunk = (PaChunk *) (sub->pool + (Size) i * PA_CHUNK_SIZE);

		cds_wfcq_node_init(&chunk->node);
		chunk->len = 0;
		cds_wfcq_enqueue(&sub->free_head, &sub->free_tail, &chunk->node);
	}
	pg_atomic_write_u32(&sub->free_chunks, sub->nchunks);
}

/*
 * Free chunks that wake a leader waiting for queue memory: a quarter of the
 * pool.  Waking it for every chunk made it read and dispatch one chunk at a
 * time (a wake-up per 8kB); a quarter lets it read a batch.
 */
uint32
pa_chunk_wake_threshold(PaSub *sub)
{
	return Max(sub->nchunks / 4, 1);
}

static inline struct cds_wfcq_node *
dequeue(struct __cds_wfcq_head *head, struct cds_wfcq_tail *tail)
{
	struct cds_wfcq_node *node;

	node = __cds_wfcq_dequeue_nonblocking(head, tail);
	if (node == CDS_WFCQ_WOULDBLOCK)
		return NULL;			/* a producer is mid-enqueue; its latch
								 * wake-up follows */
	return node;
}

/* Leader: take a free chunk, or NULL if queue memory is exhausted */
PaChunk *
pa_chunk_get(PaSub *sub)
{
	struct cds_wfcq_node *node = dequeue(&sub->free_head, &sub->free_tail);
	PaChunk    *chunk;

	if (node == NULL)
		return NULL;

	/*
	 * May run ahead of the worker's increment and wrap for a moment: the
	 * count only decides when to wake the leader, never whether a chunk is
	 * there.
	 */
	pg_atomic_fetch_sub_u32(&sub->free_chunks, 1);
	chunk = caa_container_of(node, PaChunk, node);
	cds_wfcq_node_init(&chunk->node);
	chunk->len = 0;
	return chunk;
}

/* Leader: hand a filled chunk to a worker and wake it */
void
pa_chunk_send(PaSub *sub, int worker, PaChunk *chunk)
{
	PaWorker   *w = &sub->workers[worker];
	Latch	   *latch;

	cds_wfcq_enqueue(&w->qhead, &w->qtail, &chunk->node);
	pg_memory_barrier();
	if (pg_atomic_read_u32(&w->sleeping))
	{
		latch = w->latch;
		if (latch)
			SetLatch(latch);
	}
}

/* Worker: next chunk of its dispatch queue, or NULL */
PaChunk *
pa_chunk_receive(PaSub *sub, int worker)
{
	PaWorker   *w = &sub->workers[worker];
	struct cds_wfcq_node *node = dequeue(&w->qhead, &w->qtail);

	return node ? caa_container_of(node, PaChunk, node) : NULL;
}

/*
 * Worker: give a consumed chunk back; wake the leader if it waits for queue
 * memory and a quarter of the pool is free again.
 */
void
pa_chunk_put(PaSub *sub, PaChunk *chunk)
{
	uint32		nfree;

	cds_wfcq_node_init(&chunk->node);
	cds_wfcq_enqueue(&sub->free_head, &sub->free_tail, &chunk->node);
	nfree = pg_atomic_add_fetch_u32(&sub->free_chunks, 1);	/* full barrier */
	if (nfree >= pa_chunk_wake_threshold(sub) &&
		pg_atomic_read_u32(&sub->leader_waiting))
	{
		Latch	   *latch = sub->leader_latch;

		if (latch)
			SetLatch(latch);
	}
}

/*
 * Worker: report a committed transaction to the leader (committed_seq already
 * covers it).  The leader is woken only if it waits for room, and from the
 * transaction it named in leader_wake_seq on; otherwise it drains completions
 * when it next wakes (and a worker that runs out of work wakes it).
 */
void
pa_done_send(PaSub *sub, PaTxn *txn)
{
	cds_wfcq_node_init(&txn->done_node);
	cds_wfcq_enqueue(&sub->done_head, &sub->done_tail, &txn->done_node);
	pg_memory_barrier();
	if (pg_atomic_read_u32(&sub->leader_waiting) &&
		pg_atomic_read_u64(&txn->seq) >= pg_atomic_read_u64(&sub->leader_wake_seq))
	{
		Latch	   *latch = sub->leader_latch;

		if (latch)
			SetLatch(latch);
	}
}

/* Leader: next completed transaction, or NULL */
PaTxn *
pa_done_receive(PaSub *sub)
{
	struct cds_wfcq_node *node = dequeue(&sub->done_head, &sub->done_tail);

	return node ? caa_container_of(node, PaTxn, done_node) : NULL;
}
