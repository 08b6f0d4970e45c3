# Sluice — one Makefile. `make` builds build/sluice; `make run`, `make test`,
# `make bench` set up a private PostgreSQL and Redis first (scripts/).
# SANITIZER=address builds with AddressSanitizer + UBSan into build/asan/.

CC       ?= cc
PKGS      = libmicrohttpd libwebsockets jansson hiredis libpq libpcre2-8 libcrypto libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN      = -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wstrict-prototypes
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP -Iserver -Ibuild/gen $(PKG_CFLAGS)
LDLIBS    = $(PKG_LIBS) -lpthread -lm

ifeq ($(SANITIZER),address)
  BUILD   = build/asan
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
else
  BUILD   = build
  # jemalloc instead of glibc's malloc in the release binary: request threads allocate what
  # core threads free (bodies, envelopes, answers), which kept glibc's arenas consolidating;
  # measured in README "Benchmarks". Sanitizer builds keep ASan's allocator.
  LDLIBS += $(shell pkg-config --libs jemalloc 2>/dev/null)
endif

CORE_SRC    = $(shell find server handlers -name '*.c' | sort)
LIB_SRC     = $(filter-out server/main.c,$(CORE_SRC))
LIB_OBJ     = $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/migrations.o \
              $(BUILD)/obj/gen/openapi.o $(BUILD)/obj/gen/openapi_json.o \
              $(BUILD)/obj/gen/catalog.o
CATALOG     = $(sort $(wildcard schemas/*.json))
MAIN_OBJ    = $(BUILD)/obj/server/main.o
UNIT_SRC    = $(shell find tests/unit -name '*.c' 2>/dev/null | sort)
CONF_SRC    = $(wildcard tests/conformance/*.c)
CONF_OBJ    = $(CONF_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_OBJ    = $(UNIT_SRC:%.c=$(BUILD)/obj/%.o)
MIGRATIONS  = $(sort $(wildcard migrations/*.sql))

.PHONY: all run test unit bench faults clean format asan
all: $(BUILD)/sluice

$(BUILD)/sluice: $(LIB_OBJ) $(MAIN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

build/gen/migrations.c: $(MIGRATIONS) scripts/embed-migrations.sh
	@mkdir -p build/gen
	scripts/embed-migrations.sh $@ $(MIGRATIONS)

build/gen/openapi.c: openapi/openapi.yaml scripts/embed-text.sh
	@mkdir -p build/gen
	scripts/embed-text.sh $@ openapi_yaml openapi/openapi.yaml

# The same document as JSON, for the request-body schemas (server/reqschema.c).
build/gen/openapi_json.c: openapi/openapi.yaml scripts/embed-openapi-json.py
	@mkdir -p build/gen
	scripts/embed-openapi-json.py $@ openapi/openapi.yaml

build/gen/catalog.c: $(CATALOG) scripts/embed-catalog.sh
	@mkdir -p build/gen
	scripts/embed-catalog.sh $@ $(CATALOG)

$(BUILD)/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/unit-tests: $(LIB_OBJ) $(UNIT_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

# The JSON-Schema-Test-Suite runner (tests/conformance/): a program of its own.
$(BUILD)/conformance: $(LIB_OBJ) $(CONF_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

asan:
	$(MAKE) SANITIZER=address build/asan/sluice build/asan/unit-tests

run:
	scripts/install-deps.sh
	$(MAKE) all
	scripts/run.sh

test:
	scripts/install-deps.sh
	scripts/test.sh

bench:
	scripts/install-deps.sh
	$(MAKE) all
	bench/all.sh

# The fault suite on its own: crashes, PostgreSQL and Redis outages, leader loss
# (make test runs the same files as part of the integration suite).
faults:
	scripts/install-deps.sh
	$(MAKE) all SANITIZER=address build/asan/sluice
	SLUICE_FAULTS_ONLY=1 scripts/test.sh

format:
	clang-format -i $(CORE_SRC) $(shell find server handlers -name '*.h') $(UNIT_SRC)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
