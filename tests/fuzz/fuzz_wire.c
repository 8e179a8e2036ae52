/* fuzz_wire: one record as it arrives on the socket, through both decoders.
 *
 * The input is the record's bytes: a 4-byte little-endian length, then the
 * payload.  wire_decode_client() is what memsrv does with a record from a
 * VMM or memsrv-ctl; wire_decode_server() what libmemsrv and memsrv-ctl do
 * with the server's.  A message that decodes must pack again to a record
 * that decodes to the same bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* Whether msg or a message in it kept fields it does not know.  protobuf-c
 * keeps them as they came and packs them again, and accepts some it
 * refuses once packed (a tag of field 0 sent in more bytes than needed), so
 * such a message need not survive a round trip. */
static bool has_unknown(const ProtobufCMessage *msg)
{
	if (msg->n_unknown_fields)
		return true;
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const char *base = (const char *)msg;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF && *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *sub = *(ProtobufCMessage *const *const *)(base + f->offset);
			for (size_t k = 0; k < n; k++)
				if (has_unknown(sub[k]))
					return true;
		} else {
			const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(base + f->offset);
			if (sub && has_unknown(sub))
				return true;
		}
	}
	return false;
}

/* pack(msg) as a record, decoded again and packed again: the same bytes */
static void check_round_trip(const ProtobufCMessage *msg, bool client)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *rec = malloc(WIRE_HEADER + len);
	if (!rec)
		abort();
	rec[0] = len, rec[1] = len >> 8, rec[2] = len >> 16, rec[3] = len >> 24;
	protobuf_c_message_pack(msg, rec + WIRE_HEADER);
	struct wire_fault fault = { "" };
	ProtobufCMessage *again = NULL;
	int ret = client ? wire_decode_client(rec, WIRE_HEADER + len, (Memsrv__ClientMessage **)&again, &fault)
			 : wire_decode_server(rec, WIRE_HEADER + len, (Memsrv__ServerMessage **)&again, &fault);
	/* packing may grow a payload (repeated scalars sent packed are packed
	 * one tag each): past 64 KiB only the limit may refuse it */
	if (ret != 1 && len <= WIRE_MAX_PAYLOAD && !has_unknown(msg)) {
		fprintf(stderr, "re-packed message of %zu bytes does not decode: %s\n", len, fault.what);
		abort();
	}
	if (ret == 1) {
		size_t len2 = protobuf_c_message_get_packed_size(again);
		uint8_t *buf2 = malloc(len2 ? len2 : 1);
		if (!buf2)
			abort();
		protobuf_c_message_pack(again, buf2);
		if (len2 != len || memcmp(buf2, rec + WIRE_HEADER, len)) {
			fprintf(stderr, "re-packed message changed: %zu bytes, then %zu\n", len, len2);
			abort();
		}
		free(buf2);
		protobuf_c_message_free_unpacked(again, NULL);
	}
	free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_fault fault = { "" };
	Memsrv__ClientMessage *cm = NULL;
	int ret = wire_decode_client(data, size, &cm, &fault);
	if (ret == 1) {
		check_round_trip(&cm->base, true);
		memsrv__client_message__free_unpacked(cm, NULL);
	} else if (ret < 0 && !fault.what[0]) {
		abort();  /* a refusal always says why */
	}
	Memsrv__ServerMessage *sm = NULL;
	memset(&fault, 0, sizeof fault);
	ret = wire_decode_server(data, size, &sm, &fault);
	if (ret == 1) {
		check_round_trip(&sm->base, false);
		memsrv__server_message__free_unpacked(sm, NULL);
	} else if (ret < 0 && !fault.what[0]) {
		abort();
	}
	return 0;
}
