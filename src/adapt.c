/*-------------------------------------------------------------------------
 *
 * adapt.c
 *	  The leader's choice of the active set: how many of its workers new,
 *	  independent work is spread over (parallel_apply.adaptive).
 *
 * Owns: the active set's size (pa_leader.nactive, published as
 * PaSub->active_workers with the reason it last changed), how far the
 * leader reads ahead of it (pa_leader.read_ahead, set_read_ahead()) and the
 * measurements behind both.
 *
 * More workers pay only while the workers are what holds the subscription
 * back and the machine has CPU for them: on a small machine the walsender,
 * the leader and N workers share a few CPUs, each commit-order hand-over is
 * a cross-process wake-up, and a wider set can apply slower (docs/
 * benchmarks.md).  So the leader measures, per window of
 * PA_ADAPT_WINDOW_MS:
 *	- the apply rate: transactions committed in order (committed_seq);
 *	- whether the workers are behind: the leader waited for them (queue
 *	  memory or the in-flight window full) for at least a third of the
 *	  window, or at least PA_ADAPT_BACKLOG transactions sat dispatched and
 *	  uncommitted at both ends of it;
 * and decides:
 *	- widen (double, up to parallel_apply.workers) while the workers are
 *	  behind, the machine left at least PA_ADAPT_IDLE_CPUS of its CPUs
 *	  idle, on average over the set's last PA_ADAPT_BASE windows (/proc/
 *	  stat: with every CPU busy, another worker only takes CPU from the
 *	  walsender, the leader and the other workers, and adds hand-overs:
 *	  docs/architecture.md, "A cost model"; one window's idle CPU varies
 *	  too much to go by), and enough of the work is independent: over the
 *	  same windows, the transactions dispatched in runs that began with no
 *	  uncommitted dependency (pa_leader.placed_free), the only ones a wider
 *	  set spreads, would give the added workers at least PA_ADAPT_SPREAD of
 *	  all (in turn, the added workers get their share of them); with
 *	  dependent work (tpcb-like: ten branches) a trial only costs; the wider
 *	  set is kept only if its rate, over the PA_ADAPT_MEASURE windows after
 *	  the transactions queued before the change have committed (they are
 *	  applied where they were queued), beats the rate before
 *	  (the mean of the set's last PA_ADAPT_BASE windows) by PA_ADAPT_GAIN
 *	  and its added workers applied at least PA_ADAPT_SPREAD of the
 *	  transactions (dependencies may keep all work where it was, and then a
 *	  rate says nothing); else the set goes back and the next attempt waits
 *	  twice as long as the last (from 1 s up to 32 s); a wider set slower
 *	  than the narrower one after half its measurement goes back then;
 *	- try a narrower set (half) every PA_ADAPT_NARROW_PROBE_MS while the
 *	  workers are behind, kept if it applies nearly as fast (within
 *	  PA_ADAPT_KEEP of the rate before: fewer workers cost less);
 *	- narrow (halve) when the workers kept up (no wait, almost nothing
 *	  queued) for PA_ADAPT_CALM windows in a row, but not below a size that
 *	  a widening proved worth within its hold time (5 s, doubled each time
 *	  the set is narrowed below it and has to widen again, up to 60 s):
 *	  hysteresis, so that a load at the boundary does not flap.
 * Only the spreading of independent work follows the active set (dispatch.c
 * choose_worker()): a transaction still goes behind the run or the
 * dependency it continues when that worker is active, streams still go to
 * any idle worker, and a worker outside the set finishes what it holds.
 *
 * Invariants kept here:
 *	- 1 <= nactive <= nworkers; with parallel_apply.adaptive off nactive is
 *	  nworkers (the behaviour before adaptive use);
 *	- the decision costs one clock read per leader loop and a few
 *	  arithmetic operations per window; it never waits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "pa_leader.h"
#include "utils/timestamp.h"

#define PA_ADAPT_WINDOW_MS		250
#define PA_ADAPT_BASE			4	/* windows the rate before is averaged
									 * over */
#define PA_ADAPT_MEASURE		4	/* windows measured after a change */
#define PA_ADAPT_CALM			4	/* windows kept up before narrowing */
#define PA_ADAPT_BACKLOG		128 /* queued transactions: workers behind */
#define PA_ADAPT_GAIN			1.10	/* a wider set must be this much faster */
#define PA_ADAPT_SPREAD			0.10	/* and its added workers must have
										 * applied this share */
#define PA_ADAPT_KEEP			0.97	/* a narrower set this nearly as fast */
#define PA_ADAPT_IDLE_CPUS		0.5 /* idle CPU a widening needs */
#define PA_ADAPT_NARROW_PROBE_MS 8000
#define PA_ADAPT_BACKOFF_MIN_MS 1000
#define PA_ADAPT_BACKOFF_MAX_MS 32000
#define PA_ADAPT_HOLD_MIN_MS	5000
#define PA_ADAPT_HOLD_MAX_MS	60000
#define PA_READ_AHEAD_MS		25	/* apply time queued per active worker */
#define PA_READ_AHEAD_MIN		256 /* transactions queued per active worker,
									 * at least */

typedef enum AdaptPhase
{
	ADAPT_STEADY,				/* measuring the current set */
	ADAPT_SETTLE,				/* the set just changed: what was queued
								 * before is being applied */
	ADAPT_MEASURE				/* measuring the changed set */
} AdaptPhase;

static AdaptPhase phase = ADAPT_STEADY;
static TimestampTz window_start = 0;
static uint64 window_seq = 0;	/* committed_seq at window_start */
static uint64 window_queued = 0;	/* dispatched - committed then */
static uint64 window_placed = 0;	/* pa_leader.placed then */
static uint64 window_free = 0;	/* pa_leader.placed_free then */
static int64 waited_us = 0;		/* leader's waits for its workers */

static double recent[PA_ADAPT_BASE];	/* the current set's last rates */
static double recent_idle[PA_ADAPT_BASE];	/* and the idle CPUs then */
static double recent_free[PA_ADAPT_BASE];	/* and the share of independent
											 * transactions dispatched */
static double free_avg = -1;	/* that share, averaged over about
								 * PA_ADAPT_BASE windows of any set; the
								 * first window's share, or -1 before it */
static int	nrecent = 0;
static double base_rate;		/* rate of base_size before the change */
static int	base_size;
static uint64 applied0[PA_MAX_WORKERS]; /* each worker's count when the
										 * measurement began */
static uint64 settle_seq;		/* dispatched when the set changed: the
								 * change shows once it has committed */
static double measured;			/* sum of the measured windows' rates */
static int	nmeasured;
static int	calm = 0;			/* consecutive windows the workers kept up */

static uint64 cpu_idle0 = 0;		/* /proc/stat idle ticks at window_start */
static uint64 cpu_total0 = 0;	/* and all ticks */
static int	ncpus = 0;

static TimestampTz next_widen = 0;
static int	widen_backoff_ms = PA_ADAPT_BACKOFF_MIN_MS;
static TimestampTz next_narrow_probe = 0;
static int	floor_size = 1;		/* do not narrow below it until floor_until */
static TimestampTz floor_until = 0;
static int	hold_ms = PA_ADAPT_HOLD_MIN_MS;

static void
set_active(int n, const char *fmt,...) pg_attribute_printf(2, 3);

static void
set_active(int n, const char *fmt,...)
{
	PaSub	   *sub = pa_leader.sub;
	va_list		ap;
	char		reason[PA_REASON_LEN];

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);

	if (n != pa_leader.nactive)
	{
		nrecent = 0;			/* the rates were the old set's */
		pg_atomic_fetch_add_u64(&sub->active_changes, 1);
	}
	pa_leader.nactive = n;
	SpinLockAcquire(&sub->adapt_lock);
	strlcpy(sub->active_reason, reason, PA_REASON_LEN);
	SpinLockRelease(&sub->adapt_lock);
	pg_atomic_write_u32(&sub->active_workers, n);
	elog(DEBUG1, "parallel_apply for subscription \"%s\": %s",
		 pa_leader.mysub->name, reason);
}

/*
 * The machine's CPU ticks so far, idle (idle and iowait) and all, from the
 * first line of /proc/stat; false where there is none (not Linux).
 */
static bool
read_cpu_ticks(uint64 *idle, uint64 *total)
{
	FILE	   *f = fopen("/proc/stat", "r");
	unsigned long long v[8] = {0};
	int			n;
	int			i;

	if (f == NULL)
		return false;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
			   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 4)
		return false;
	*idle = v[3] + v[4];
	*total = 0;
	for (i = 0; i < 8; i++)
		*total += v[i];
	return true;
}

/*
 * CPUs the machine left idle since the last call (0 .. ncpus); ncpus where
 * that cannot be read, so that the check never stops a widening there.
 */
static double
idle_cpus(void)
{
	uint64		idle;
	uint64		total;
	double		share;

	if (ncpus <= 0 || !read_cpu_ticks(&idle, &total))
		return Max(ncpus, 1);
	share = total > cpu_total0 ?
		(double) (idle - cpu_idle0) / (total - cpu_total0) : 1.0;
	cpu_idle0 = idle;
	cpu_total0 = total;
	return share * ncpus;
}

static uint64
queued_now(void)
{
	PaSub	   *sub = pa_leader.sub;
	uint64		dispatched = pg_atomic_read_u64(&sub->dispatched_seq);
	uint64		committed = pg_atomic_read_u64(&sub->committed_seq);

	return dispatched > committed ? dispatched - committed : 0;
}

/* At the leader's start, once its workers are registered */
void
pa_adapt_init(void)
{
	TimestampTz now = GetCurrentTimestamp();

	phase = ADAPT_STEADY;
	ncpus = (int) sysconf(_SC_NPROCESSORS_ONLN);
	(void) idle_cpus();
	window_start = now;
	window_seq = pg_atomic_read_u64(&pa_leader.sub->committed_seq);
	window_queued = 0;
	window_placed = pa_leader.placed;
	window_free = pa_leader.placed_free;
	free_avg = -1;
	waited_us = 0;
	calm = 0;
	next_widen = now;
	nrecent = 0;
	widen_backoff_ms = PA_ADAPT_BACKOFF_MIN_MS;
	next_narrow_probe = TimestampTzPlusMilliseconds(now, PA_ADAPT_NARROW_PROBE_MS);
	floor_size = 1;
	floor_until = 0;
	hold_ms = PA_ADAPT_HOLD_MIN_MS;
	/* where the leader starts is no change of the active set */
	pa_leader.nactive = pa_adaptive ? 1 : pa_leader.nworkers;
	pa_leader.read_ahead = PA_READ_AHEAD_MIN;
	if (pa_adaptive)
		set_active(1, "started with 1 of %d workers (parallel_apply.adaptive)",
				   pa_leader.nworkers);
	else
		set_active(pa_leader.nworkers, "all %d workers (parallel_apply.adaptive is off)",
				   pa_leader.nworkers);
}

/*
 * Would doubling a set of n workers spread enough work, given that share
 * of independent transactions (those of runs that began with no
 * uncommitted dependency)?  In turn, the added workers get their part of
 * them, and a trial is judged by whether they applied PA_ADAPT_SPREAD.
 */
static bool
would_spread(double share, int n)
{
	int			wider = Min(n * 2, pa_leader.nworkers);

	return wider > n && share * (wider - n) / wider >= PA_ADAPT_SPREAD;
}

/*
 * How far the leader reads ahead of n active workers that applied rate
 * transactions/s (dispatch.c active_room()): PA_READ_AHEAD_MS of their
 * apply, at least PA_READ_AHEAD_MIN transactions each.  A bound in
 * transactions alone either keeps too little queued when transactions are
 * small (hot rows on one worker, the leader woken every half of 256
 * transactions: 5.5% faster with 1024) or queues seconds of work that
 * cannot move when the set widens when they are large.
 */
static void
set_read_ahead(double rate, int n)
{
	double		per_worker = rate * PA_READ_AHEAD_MS / 1000.0 / n;

	/*
	 * Work too dependent for a wider set to spread (would_spread()) stays
	 * where it is queued whatever the set: the bound would only cost
	 * wake-ups of the leader, so read ahead as with a fixed count.  So does
	 * all work once the set holds every worker (would_spread() is false
	 * there too: no widening can come).
	 */
	if (free_avg >= 0 && !would_spread(free_avg, n))
		per_worker = PA_MAX_INFLIGHT;
	pa_leader.read_ahead = (int) Max(PA_READ_AHEAD_MIN,
									 Min(per_worker, PA_MAX_INFLIGHT));
}

/* The leader waited usecs for its workers (queue memory, in-flight window) */
void
pa_adapt_note_wait(int64 usecs)
{
	waited_us += usecs;
}

/* Start measuring a changed set of n workers against the rate before */
static void
try_size(int n, double rate, const char *why)
{
	base_rate = rate;
	base_size = pa_leader.nactive;
	settle_seq = pg_atomic_read_u64(&pa_leader.sub->dispatched_seq);
	measured = 0;
	nmeasured = 0;
	phase = ADAPT_SETTLE;
	set_active(n, "trying %d workers (%s; %d applied %.0f transactions/s)",
			   n, why, base_size, rate);
}

/* The share of the transactions applied since applied0 that workers >= k applied */
static double
share_beyond(int k)
{
	PaSub	   *sub = pa_leader.sub;
	uint64		all = 0;
	uint64		beyond = 0;
	int			w;

	for (w = 0; w < pa_leader.nworkers; w++)
	{
		uint64		n = pg_atomic_read_u64(&sub->workers[w].applied) - applied0[w];

		all += n;
		if (w >= k)
			beyond += n;
	}
	return all > 0 ? (double) beyond / all : 0;
}

/* The changed set has been measured: keep it or go back */
static void
judge(TimestampTz now)
{
	int			n = pa_leader.nactive;
	double		rate = measured / nmeasured;

	phase = ADAPT_STEADY;
	calm = 0;
	if (n > base_size && share_beyond(base_size) < PA_ADAPT_SPREAD)
	{
		/* dependencies kept the work where it was: nothing to measure */
		set_active(base_size, "back to %d workers: the %d added got almost no independent work",
				   base_size, n - base_size);
		next_widen = TimestampTzPlusMilliseconds(now, widen_backoff_ms);
		widen_backoff_ms = Min(widen_backoff_ms * 2, PA_ADAPT_BACKOFF_MAX_MS);
	}
	else if (n > base_size)
	{
		if (rate >= base_rate * PA_ADAPT_GAIN)
		{
			set_active(n, "widened to %d workers: %.0f transactions/s against %.0f with %d",
					   n, rate, base_rate, base_size);
			widen_backoff_ms = PA_ADAPT_BACKOFF_MIN_MS;
			next_widen = now;
			/* proven before, narrowed below, proven again: hold it longer */
			if (n == floor_size)
				hold_ms = Min(hold_ms * 2, PA_ADAPT_HOLD_MAX_MS);
			floor_size = n;
			floor_until = TimestampTzPlusMilliseconds(now, hold_ms);
		}
		else
		{
			set_active(base_size, "back to %d workers: %d applied %.0f transactions/s against %.0f with %d",
					   base_size, n, rate, base_rate, base_size);
			next_widen = TimestampTzPlusMilliseconds(now, widen_backoff_ms);
			widen_backoff_ms = Min(widen_backoff_ms * 2, PA_ADAPT_BACKOFF_MAX_MS);
		}
	}
	else
	{
		if (rate >= base_rate * PA_ADAPT_KEEP)
		{
			set_active(n, "narrowed to %d workers: %.0f transactions/s against %.0f with %d",
					   n, rate, base_rate, base_size);
			floor_size = Min(floor_size, n);
		}
		else
			set_active(base_size, "back to %d workers: %d applied %.0f transactions/s against %.0f with %d",
					   base_size, n, rate, base_rate, base_size);
		next_narrow_probe = TimestampTzPlusMilliseconds(now, PA_ADAPT_NARROW_PROBE_MS);
	}
}

/* Once per leader loop: close the window when it is over, and decide */
void
pa_adapt_tick(void)
{
	TimestampTz now;
	long		secs;
	int			usecs;
	double		elapsed;
	uint64		committed;
	uint64		queued;
	double		rate;
	bool		behind;
	bool		kept_up;
	double		idle;
	double		free_share;
	int			n = pa_leader.nactive;

	if (!pa_adaptive)
	{
		if (n != pa_leader.nworkers)
			set_active(pa_leader.nworkers, "all %d workers (parallel_apply.adaptive is off)",
					   pa_leader.nworkers);
		phase = ADAPT_STEADY;
		return;
	}

	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(window_start, now, PA_ADAPT_WINDOW_MS))
		return;
	TimestampDifference(window_start, now, &secs, &usecs);
	elapsed = secs + usecs / 1000000.0;
	committed = pg_atomic_read_u64(&pa_leader.sub->committed_seq);
	queued = queued_now();
	rate = (committed - window_seq) / elapsed;
	behind = waited_us >= elapsed * 1000000.0 / 3 ||
		(window_queued >= PA_ADAPT_BACKLOG && queued >= PA_ADAPT_BACKLOG);
	kept_up = waited_us == 0 && queued < PA_ADAPT_BACKLOG / 4;
	idle = idle_cpus();
	free_share = pa_leader.placed > window_placed ?
		(double) (pa_leader.placed_free - window_free) /
		(pa_leader.placed - window_placed) : 0;
	elog(DEBUG2, "parallel_apply adaptive window: %d active, %.0f transactions/s, waited %.0f%%, queued " UINT64_FORMAT ", %.2f CPUs idle, %.0f%% independent",
		 n, rate, 100.0 * waited_us / (elapsed * 1000000.0), queued, idle,
		 100.0 * free_share);

	window_start = now;
	window_seq = committed;
	window_queued = queued;
	waited_us = 0;
	if (pa_leader.placed > window_placed)
		free_avg = free_avg < 0 ? free_share :
			free_avg + (free_share - free_avg) / PA_ADAPT_BASE;
	window_placed = pa_leader.placed;
	window_free = pa_leader.placed_free;
	set_read_ahead(rate, n);

	switch (phase)
	{
		case ADAPT_SETTLE:
			{
				int			w;

				/*
				 * What was queued before the change is applied as before:
				 * wait until it has committed (or the measurement would
				 * judge the old set), or nothing more arrives.
				 */
				if (committed < settle_seq && queued > 0)
					return;

				for (w = 0; w < pa_leader.nworkers; w++)
					applied0[w] = pg_atomic_read_u64(&pa_leader.sub->workers[w].applied);
				phase = ADAPT_MEASURE;
				return;
			}
		case ADAPT_MEASURE:
			measured += rate;
			nmeasured++;

			/*
			 * A wider set slower than the narrower one after half its
			 * measurement will not make up the gain it needs: a failed
			 * widening costs half as much.
			 */
			if (nmeasured >= PA_ADAPT_MEASURE ||
				(nmeasured >= PA_ADAPT_MEASURE / 2 && n > base_size &&
				 measured / nmeasured < base_rate))
				judge(now);
			return;
		case ADAPT_STEADY:
			break;
	}

	/*
	 * The current set's rate and the idle CPU: the means of its last
	 * PA_ADAPT_BASE windows (one window's idle CPU varies too much: on 2
	 * CPUs, tpcb-like on one worker left 0.04 to 0.56 CPUs idle per window,
	 * about 0.3 on average).
	 */
	if (nrecent == PA_ADAPT_BASE)
	{
		memmove(recent, recent + 1, sizeof(double) * (PA_ADAPT_BASE - 1));
		memmove(recent_idle, recent_idle + 1, sizeof(double) * (PA_ADAPT_BASE - 1));
		memmove(recent_free, recent_free + 1, sizeof(double) * (PA_ADAPT_BASE - 1));
		nrecent--;
	}
	recent[nrecent] = rate;
	recent_idle[nrecent] = idle;
	recent_free[nrecent] = free_share;
	nrecent++;

	if (behind)
	{
		double		base = 0;
		double		base_idle = 0;
		double		base_free = 0;
		int			i;

		calm = 0;
		if (nrecent < PA_ADAPT_BASE)
			return;				/* not measured long enough */
		for (i = 0; i < nrecent; i++)
		{
			base += recent[i];
			base_idle += recent_idle[i];
			base_free += recent_free[i];
		}
		base /= nrecent;
		base_idle /= nrecent;
		base_free /= nrecent;
		if (n < pa_leader.nworkers && now >= next_widen &&
			base_idle >= PA_ADAPT_IDLE_CPUS && would_spread(base_free, n))
			try_size(Min(n * 2, pa_leader.nworkers), base, "the workers are behind");
		else if (n > 1 && now >= next_narrow_probe)
			try_size(n / 2, base, "fewer may apply as fast");
	}
	else if (kept_up && n > 1 && ++calm >= PA_ADAPT_CALM &&
			 (n / 2 >= floor_size || now >= floor_until))
	{
		calm = 0;
		set_active(Max(n / 2, 1), "narrowed to %d workers: %d kept up for %d ms",
				   Max(n / 2, 1), n, PA_ADAPT_CALM * PA_ADAPT_WINDOW_MS);
	}
	else if (!kept_up)
		calm = 0;
}
