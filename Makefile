# parallel_apply: parallel apply of logical replication subscriptions (PGXS)

MODULE_big = parallel_apply
OBJS = \
	src/parallel_apply.o \
	src/launcher.o \
	src/leader.o \
	src/adapt.o \
	src/decode.o \
	src/dispatch.o \
	src/dependency.o \
	src/queue.o \
	src/worker.o \
	src/commit.o \
	src/apply.o \
	src/lookup.o \
	src/conflict.o \
	src/relmap.o \
	src/sqlapi.o

EXTENSION = parallel_apply
DATA = sql/parallel_apply--1.0.sql
PGFILEDESC = "parallel_apply - parallel apply of logical replication"

# liburcu's wait-free queue is used header-only (_LGPL_SOURCE)
PG_CPPFLAGS = -I$(srcdir)/include
PG_CFLAGS = -Werror=implicit-function-declaration

REGRESS = api
REGRESS_OPTS = --temp-config=$(srcdir)/sql/regress.conf --temp-instance=tmp_check_regress

TAP_TESTS = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every stage depends on the contracts between stages
$(OBJS): $(wildcard $(srcdir)/include/*.h)
