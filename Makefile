# pg_booking — root Makefile.
#
# The extension is built with plain PGXS from the sources in extension/.
#
# Versions (the way pg_cron does it): the version is written once, here.
# extension/pg_booking--1.0.sql is the frozen script of the first release and
# every later change is an upgrade script extension/pg_booking--A--B.sql.
# The fresh install script of EXTVERSION is built by concatenating the base
# with the chain of upgrades, so "old version + ALTER EXTENSION UPDATE" and
# "CREATE EXTENSION" run the same statements (t/060_upgrade.pl compares the
# results).  Released scripts are never edited: extension/released.sha256
# holds their checksums and make test refuses a change.
#
#   make run     install what is missing, build, start a local cluster + demo data
#   make stop    stop that cluster
#   make test    everything CI runs (pg_regress + TAP on private temporary instances)
#   make bench   benchmarks (ratios against baselines run in the same invocation)

MODULE_big = pg_booking
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard extension/*.c)))
MODULEDIR = extension
EXTVERSION = 1.1
# The frozen base and the upgrade chain, oldest first.
BASE_SCRIPT = extension/pg_booking--1.0.sql
UPGRADE_SCRIPTS = $(shell ls extension/pg_booking--*--*.sql | sort -V)
DATA = $(BASE_SCRIPT) $(UPGRADE_SCRIPTS)
DATA_built = extension/pg_booking.control extension/pg_booking--$(EXTVERSION).sql

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

extension/pg_booking--$(EXTVERSION).sql: $(BASE_SCRIPT) $(UPGRADE_SCRIPTS)
	cat $^ > $@

extension/pg_booking.control: extension/pg_booking.control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/' $< > $@

# The version for scripts and the adapter: make -s print-version
print-version:
	@echo $(EXTVERSION)

EXTRA_CLEAN = tmp_regress tmp_check results regression.diffs regression.out

.PHONY: run stop test bench fuzz deps adapter print-version
# The HTTP adapter (adapter/Makefile; its tests run from scripts/test.sh).
adapter:
	$(MAKE) -C adapter EXTVERSION=$(EXTVERSION)
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
# A long fuzz of the adapter's HTTP edge (FUZZ_REQUESTS, FUZZ_SEED; adapter/t/044).
fuzz:
	bash scripts/fuzz.sh
