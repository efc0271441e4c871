# pg_booking — root Makefile.
#
# The extension is built with plain PGXS from the sources in extension/.
# The install script pg_booking--1.0.sql is assembled from the numbered
# fragments in extension/sql/ (one per concern), in file-name order.
#
#   make run     install what is missing, build, start a local cluster + demo data
#   make stop    stop that cluster
#   make test    everything CI runs (pg_regress + TAP on private temporary instances)
#   make bench   benchmarks (ratios against baselines run in the same invocation)

MODULE_big = pg_booking
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard extension/*.c)))
MODULEDIR = extension
DATA = extension/pg_booking.control $(filter-out extension/pg_booking--1.0.sql,$(wildcard extension/pg_booking--*.sql))
DATA_built = extension/pg_booking--1.0.sql

# Every sql/<name>.sql is a pg_regress test; they run in name order.
REGRESS = $(sort $(patsubst sql/%.sql,%,$(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-instance=$(CURDIR)/tmp_regress --temp-config=$(CURDIR)/test/regress.conf \
	--load-extension=pgcrypto --load-extension=pg_booking
TAP_TESTS = 1

PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
ifdef PG_WERROR
PG_CFLAGS += -Werror
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

extension/pg_booking--1.0.sql: $(sort $(wildcard extension/sql/*.sql))
	cat $^ > $@

EXTRA_CLEAN = tmp_regress tmp_check results regression.diffs regression.out

.PHONY: run stop test bench deps adapter
# The HTTP adapter (adapter/Makefile; its tests run from scripts/test.sh).
adapter:
	$(MAKE) -C adapter
deps:
	bash scripts/deps.sh
run:
	bash scripts/run.sh
stop:
	bash scripts/stop.sh
test:
	bash scripts/test.sh
bench:
	bash scripts/bench.sh
