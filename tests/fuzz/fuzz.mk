# tests/fuzz/fuzz.mk — builds the libFuzzer targets into build/fuzz/ (called by
# tests/fuzz/run.sh from the repository root; `make -f tests/fuzz/fuzz.mk` works too).
#
# The server sources (server/, handlers/ minus server/main.c, build/gen/*.c) are compiled
# once with coverage instrumentation (-fsanitize=fuzzer-no-link) plus ASan and UBSan into
# build/fuzz/obj/; each target links its tests/fuzz/<name>.c against them with libFuzzer's
# main. ws_message includes server/ws.c itself (to reach its static message parser), so it
# links everything but ws.o.

FUZZ_CC  ?= clang
BUILD     = build/fuzz
PKGS      = libmicrohttpd libwebsockets jansson hiredis libpq libpcre2-8 libcrypto libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
SAN       = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
WARN      = -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wstrict-prototypes
CFLAGS    = -std=c11 -D_GNU_SOURCE -g -O1 $(WARN) -MMD -MP -Iserver -Ibuild/gen $(PKG_CFLAGS)
LDLIBS    = $(PKG_LIBS) -lpthread -lm

TARGETS   = envelope schema validate cloudevents filters ws_message
LIB_SRC   = $(filter-out server/main.c,$(shell find server handlers -name '*.c' | sort))
GEN_SRC   = build/gen/migrations.c build/gen/openapi.c build/gen/openapi_json.c build/gen/catalog.c
LIB_OBJ   = $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(GEN_SRC:build/gen/%.c=$(BUILD)/obj/gen/%.o)

.PHONY: all
.SECONDARY: # keep the objects (the pattern chain would delete them as intermediates)
all: $(TARGETS:%=$(BUILD)/%)

$(BUILD)/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) $(SAN) -fsanitize=fuzzer-no-link -c -o $@ $<

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) $(SAN) -fsanitize=fuzzer-no-link -c -o $@ $<

$(BUILD)/obj/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) $(SAN) -fsanitize=fuzzer -c -o $@ $<

$(BUILD)/ws_message: $(BUILD)/obj/tests/fuzz/ws_message.o $(filter-out $(BUILD)/obj/server/ws.o,$(LIB_OBJ))
	$(FUZZ_CC) $(SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

$(BUILD)/%: $(BUILD)/obj/tests/fuzz/%.o $(LIB_OBJ)
	$(FUZZ_CC) $(SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
