/* test_record.c — record.h: every record type's payload encodes and decodes to
 * the same values, every rule of validation rejects what the loader skips, keys
 * nobody knows are ignored, types nobody knows are reported, and the sample
 * journals of tests/fixtures/journal/ decode. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/attach.h"
#include "mcpfs/journal.h"
#include "mcpfs/record.h"

/* Decodes the text payload s as type into r (released by the caller). */
static int dec(struct record *r, uint16_t type, const char *s, const char **why)
{
	memset(r, 0, sizeof(*r));
	return record_decode(r, type, s, strlen(s), why);
}

/* Prints o (taken) and decodes it as type. */
static int dec_json(struct record *r, uint16_t type, cJSON *o)
{
	char *text;
	size_t len;
	memset(r, 0, sizeof(*r));
	CHECK_EQ_INT(record_print(o, &text, &len), 0);
	int ret = record_decode(r, type, text, len, NULL);
	free(text);
	return ret;
}

static void test_names(void)
{
	CHECK_EQ_STR(record_type_name(JOURNAL_CREATE), "CREATE");
	CHECK_EQ_STR(record_type_name(JOURNAL_REPLY_PART), "REPLY_PART");
	CHECK_EQ_STR(record_type_name(JOURNAL_FORKED_FROM), "FORKED_FROM");
	CHECK_EQ_STR(record_type_name(JOURNAL_DETACH), "DETACH");
	CHECK(record_type_name(0) == NULL);
	CHECK(record_type_name(13) == NULL);
	CHECK(record_type_name(200) == NULL);
}

/* The encoders print exactly what the writers always printed. */
static void test_encoded_bytes(void)
{
	char *t;
	CHECK_EQ_INT(record_print(record_user_json(3, "hi\nyou", 6, 1700000000123, NULL), &t, NULL),
		     0);
	CHECK_EQ_STR(t, "{\"turn\":3,\"text\":\"hi\\nyou\",\"ms\":1700000000123}");
	free(t);
	CHECK_EQ_INT(record_print(record_retry_json(2, 5, 9), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"turn\":2,\"attempt\":5,\"ms\":9}");
	free(t);
	CHECK_EQ_INT(record_print(record_clear_json(7), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"turn\":7}");
	free(t);
	CHECK_EQ_INT(record_print(record_undo_json(4, 8), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"turn\":4,\"ms\":8}");
	free(t);
	CHECK_EQ_INT(record_print(record_forked_from_json("src", 0, 8), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"context\":\"src\",\"turn\":0,\"ms\":8}");
	free(t);
	CHECK_EQ_INT(record_print(record_detach_json("a.txt", 8), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"name\":\"a.txt\",\"ms\":8}");
	free(t);
	CHECK_EQ_INT(record_print(record_detach_json("a.txt", -1), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"name\":\"a.txt\"}");
	free(t);
	struct wire_usage u = {.input_tokens = 10,
			       .cache_read_input_tokens = 3,
			       .present = WIRE_USAGE_INPUT | WIRE_USAGE_CACHE_READ};
	CHECK_EQ_INT(record_print(record_usage_json(&u), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"input_tokens\":10,\"cache_read_input_tokens\":3}");
	free(t);
	CHECK_EQ_INT(record_print(NULL, &t, NULL), -ENOMEM);
}

/* The struct encoders: the bytes the writers print, and back. */
static void test_struct_encoders(void)
{
	char *t;
	struct record r;
	cJSON *set = cJSON_Parse("{\"model\":\"m\",\"max_tokens\":5}");
	struct record_settings s = {
	    .settings = set, .system = "be brief", .schema = "", .v = RECORD_ABSENT};
	CHECK_EQ_INT(record_print(record_settings_json(&s), &t, NULL), 0);
	CHECK_EQ_STR(t,
		     "{\"settings\":{\"model\":\"m\",\"max_tokens\":5},\"system\":\"be brief\"}");
	free(t);
	s.schema = "{\"type\":\"object\"}";
	s.v = 1;
	s.created_ms = 42;
	CHECK_EQ_INT(record_print(record_settings_json(&s), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"settings\":{\"model\":\"m\",\"max_tokens\":5},\"system\":\"be brief\","
			"\"schema\":\"{\\\"type\\\":\\\"object\\\"}\",\"v\":1,\"created_ms\":42}");
	CHECK_EQ_INT(dec(&r, JOURNAL_CREATE, t, NULL), RECORD_OK);
	CHECK_EQ_STR(r.u.settings.system, "be brief");
	CHECK_EQ_STR(r.u.settings.schema, "{\"type\":\"object\"}");
	CHECK_EQ_INT(r.u.settings.created_ms, 42);
	CHECK(cJSON_Compare(r.u.settings.settings, set, true));
	record_release(&r);
	free(t);
	cJSON_Delete(set);

	struct record_end e = {.turn = 3,
			       .attempt = 2,
			       .done = false,
			       .has_usage = true,
			       .usage = {.input_tokens = 1,
					 .output_tokens = 2,
					 .present = WIRE_USAGE_INPUT | WIRE_USAGE_OUTPUT},
			       .stop_reason = "",
			       .request_id = "req",
			       .model = "m",
			       .has_error = true,
			       .error_type = "overloaded",
			       .error_message = "busy",
			       .error_request_id = "",
			       .error_http_status = 529,
			       .raw_sent = 10,
			       .http_status = RECORD_ABSENT,
			       .retries = 2,
			       .request_bytes = 300,
			       .request_us = 7,
			       .text_bytes = 0,
			       .first_turn = 0};
	CHECK_EQ_INT(record_print(record_end_json(&e), &t, NULL), 0);
	CHECK_EQ_STR(
	    t, "{\"turn\":3,\"attempt\":2,\"state\":\"failed\",\"usage\":{\"input_tokens\":1,"
	       "\"output_tokens\":2},\"request_id\":\"req\",\"model\":\"m\",\"error\":{\"type\":"
	       "\"overloaded\",\"message\":\"busy\",\"request_id\":\"\",\"http_status\":529},"
	       "\"raw_sent\":10,\"retries\":2,\"request_bytes\":300,\"request_us\":7,"
	       "\"text_bytes\":0}");
	CHECK_EQ_INT(dec(&r, JOURNAL_REPLY_END, t, NULL), RECORD_OK);
	CHECK(!r.u.end.done && r.u.end.has_error && r.u.end.has_usage);
	CHECK_EQ_INT(r.u.end.usage.output_tokens, 2);
	CHECK_EQ_INT(r.u.end.error_http_status, 529);
	CHECK_EQ_INT(r.u.end.http_status, RECORD_ABSENT);
	CHECK_EQ_INT(r.u.end.first_turn, RECORD_ABSENT);
	record_release(&r);
	free(t);
	e = (struct record_end){.turn = 1,
				.attempt = 1,
				.done = true,
				.cache_hit = true,
				.stop_reason = "end_turn",
				.raw_sent = RECORD_ABSENT,
				.http_status = 200,
				.text_bytes = 5,
				.first_turn = 1};
	CHECK_EQ_INT(record_print(record_end_json(&e), &t, NULL), 0);
	CHECK_EQ_STR(t,
		     "{\"turn\":1,\"attempt\":1,\"state\":\"done\",\"stop_reason\":\"end_turn\","
		     "\"cache_hit\":true,\"http_status\":200,\"text_bytes\":5,\"first_turn\":1}");
	free(t);

	struct record_summary su = {.text = "so far",
				    .first_turn = 1,
				    .last_turn = 2,
				    .by = "call",
				    .ms = 9,
				    .has_usage = true,
				    .usage = {.output_tokens = 4},
				    .model = "m"};
	CHECK_EQ_INT(record_print(record_summary_json(&su), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"text\":\"so far\",\"first_turn\":1,\"last_turn\":2,\"by\":\"call\","
			"\"ms\":9,\"usage\":{\"input_tokens\":0,\"output_tokens\":4,"
			"\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0},"
			"\"model\":\"m\"}");
	CHECK_EQ_INT(dec(&r, JOURNAL_SUMMARY, t, NULL), RECORD_OK);
	CHECK_EQ_STR(r.u.summary.text, "so far");
	CHECK_EQ_INT(r.u.summary.last_turn, 2);
	CHECK_EQ_INT(r.u.summary.usage.output_tokens, 4);
	record_release(&r);
	free(t);
	su = (struct record_summary){.text = NULL, .by = "fork", .ms = 3, .model = "ignored"};
	CHECK_EQ_INT(record_print(record_summary_json(&su), &t, NULL), 0);
	CHECK_EQ_STR(t,
		     "{\"text\":\"\",\"first_turn\":0,\"last_turn\":0,\"by\":\"fork\",\"ms\":3}");
	free(t);

	struct record_attach at = {.name = "a.png",
				   .type = "PNG",
				   .size = 10,
				   .hash = "0123456789abcdef0123456789abcdef",
				   .tokens = 7,
				   .ms = 5};
	CHECK_EQ_INT(record_print(record_attach_json(&at), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"name\":\"a.png\",\"type\":\"PNG\",\"size\":10,"
			"\"hash\":\"0123456789abcdef0123456789abcdef\",\"tokens\":7,\"ms\":5}");
	CHECK_EQ_INT(dec(&r, JOURNAL_ATTACH, t, NULL), RECORD_OK);
	CHECK_EQ_STR(r.u.attach.name, "a.png");
	CHECK_EQ_STR(r.u.attach.type, "PNG");
	CHECK_EQ_STR(r.u.attach.hash, "0123456789abcdef0123456789abcdef");
	CHECK_EQ_INT(r.u.attach.size, 10);
	CHECK_EQ_INT(r.u.attach.tokens, 7);
	CHECK_EQ_INT(r.u.attach.ms, 5);
	record_release(&r);
	free(t);
	at.ms = RECORD_ABSENT; /* an item of a USER's "attach" list */
	CHECK_EQ_INT(record_print(record_attach_json(&at), &t, NULL), 0);
	CHECK(strstr(t, "\"ms\"") == NULL && strstr(t, "\"tokens\":7}") != NULL);
	free(t);

	cJSON *meta = cJSON_Parse("{\"k\":\"v\"}");
	t = record_meta_print(meta);
	CHECK_EQ_STR(t, "{\"meta\":{\"k\":\"v\"}}");
	free(t);
	t = record_meta_print(NULL);
	CHECK_EQ_STR(t, "{\"meta\":{}}");
	free(t);
	cJSON_Delete(meta);

	/* a block's NUL marks print as \u0000 and decode as NULs again */
	cJSON *blk = cJSON_Parse("{\"type\":\"tool_use\",\"input\":{\"q\":\"a\xff"
				 "b\"}}");
	struct record_block bl = {.turn = 2,
				  .attempt = 1,
				  .text_at = 0,
				  .text_end = 3,
				  .thinking_at = 1,
				  .thinking_end = 1,
				  .block = blk};
	struct buf b;
	buf_init(&b, 1 << 20);
	CHECK_EQ_INT(record_block_print(&bl, &b), 0);
	CHECK_EQ_STR(b.data,
		     "{\"turn\":2,\"attempt\":1,\"text_at\":0,\"text_end\":3,"
		     "\"thinking_at\":1,\"thinking_end\":1,\"block\":{\"type\":\"tool_use\","
		     "\"input\":{\"q\":\"a\\u0000b\"}}}");
	memset(&r, 0, sizeof(r));
	CHECK_EQ_INT(record_decode(&r, JOURNAL_BLOCK, b.data, b.len, NULL), RECORD_OK);
	CHECK_EQ_INT(r.u.block.text_end, 3);
	CHECK_EQ_STR(r.u.block.block_type, "tool_use");
	CHECK(cJSON_Compare(r.u.block.block, blk, true)); /* the marks, as in memory */
	record_release(&r);
	buf_done(&b);
	cJSON_Delete(blk);
}

/* Each type: encoded (by its encoder, or as the writer prints it), decoded. */
static void test_round_trip(void)
{
	struct record r;
	CHECK_EQ_INT(
	    dec(&r, JOURNAL_CREATE,
		"{\"settings\":{\"model\":\"m\"},\"system\":\"\",\"v\":1,\"created_ms\":5}", NULL),
	    RECORD_OK);
	CHECK(cJSON_IsObject(r.u.settings.settings));
	CHECK_EQ_STR(r.u.settings.system, "");
	CHECK(r.u.settings.schema == NULL);
	CHECK_EQ_INT(r.u.settings.v, 1);
	CHECK_EQ_INT(r.u.settings.created_ms, 5);
	record_release(&r);
	CHECK_EQ_INT(dec(&r, JOURNAL_SETTINGS,
			 "{\"settings\":[],\"system\":\"be\\u0000brief\",\"schema\":\"{}\"}", NULL),
		     RECORD_OK);
	CHECK(r.u.settings.settings == NULL); /* no object: the defaults stay */
	CHECK_EQ_INT(r.u.settings.system_len, 8);
	CHECK(memcmp(r.u.settings.system, "be\0brief", 8) == 0);
	CHECK_EQ_STR(r.u.settings.schema, "{}");
	CHECK_EQ_INT(r.u.settings.created_ms, RECORD_ABSENT);
	record_release(&r);

	CHECK_EQ_INT(dec_json(&r, JOURNAL_USER, record_user_json(3, "a\tb", 3, 77, NULL)),
		     RECORD_OK);
	CHECK_EQ_INT(r.u.user.turn, 3);
	CHECK_EQ_STR(r.u.user.text, "a\tb");
	CHECK_EQ_INT(r.u.user.ms, 77);
	CHECK(r.u.user.attach == NULL);
	record_release(&r);
	CHECK_EQ_INT(dec(&r, JOURNAL_USER, "{\"turn\":1,\"text\":\"x\",\"attach\":[{}]}", NULL),
		     RECORD_OK);
	CHECK(cJSON_IsArray(r.u.user.attach));
	CHECK_EQ_INT(r.u.user.ms, RECORD_ABSENT);
	record_release(&r);

	struct buf b;
	buf_init(&b, RECORD_PART_SIZE(16, 16));
	CHECK_EQ_INT(record_part_print(&b, 9, 2, "he\"llo\0", 7, "hm", 2), 0);
	memset(&r, 0, sizeof(r));
	CHECK_EQ_INT(record_decode(&r, JOURNAL_REPLY_PART, b.data, b.len, NULL), RECORD_OK);
	CHECK_EQ_INT(r.u.part.turn, 9);
	CHECK_EQ_INT(r.u.part.attempt, 2);
	CHECK_EQ_INT(r.u.part.text_len, 7);
	CHECK(memcmp(r.u.part.text, "he\"llo\0", 7) == 0);
	CHECK_EQ_STR(r.u.part.thinking, "hm");
	record_release(&r);
	CHECK_EQ_INT(record_part_print(&b, 1, 1, "t", 1, "", 0), 0);
	memset(&r, 0, sizeof(r));
	CHECK_EQ_INT(record_decode(&r, JOURNAL_REPLY_PART, b.data, b.len, NULL), RECORD_OK);
	CHECK(r.u.part.thinking == NULL);
	record_release(&r);
	buf_done(&b);

	CHECK_EQ_INT(
	    dec(&r, JOURNAL_REPLY_END,
		"{\"turn\":2,\"attempt\":1,\"state\":\"failed\",\"stop_reason\":\"end_turn\","
		"\"usage\":{\"input_tokens\":5,\"output_tokens\":-1},\"request_id\":\"r\","
		"\"model\":\"m\",\"error\":{\"type\":\"api\",\"message\":\"no\","
		"\"request_id\":\"q\",\"http_status\":529},\"raw_sent\":100,"
		"\"http_status\":200,\"retries\":2,\"request_bytes\":30,\"request_us\":4,"
		"\"text_bytes\":0,\"first_turn\":1,\"cache_hit\":true}",
		NULL),
	    RECORD_OK);
	const struct record_end *e = &r.u.end;
	CHECK(!e->done && e->has_error && e->cache_hit);
	CHECK_EQ_INT(e->turn, 2);
	CHECK_EQ_INT(e->attempt, 1);
	CHECK_EQ_STR(e->stop_reason, "end_turn");
	CHECK_EQ_INT(e->usage.present, WIRE_USAGE_INPUT); /* -1 is no count */
	CHECK_EQ_INT(e->usage.input_tokens, 5);
	CHECK_EQ_STR(e->request_id, "r");
	CHECK_EQ_STR(e->model, "m");
	CHECK_EQ_STR(e->error_type, "api");
	CHECK_EQ_STR(e->error_message, "no");
	CHECK_EQ_STR(e->error_request_id, "q");
	CHECK_EQ_INT(e->error_http_status, 529);
	CHECK_EQ_INT(e->raw_sent, 100);
	CHECK_EQ_INT(e->http_status, 200);
	CHECK_EQ_INT(e->retries, 2);
	CHECK_EQ_INT(e->request_bytes, 30);
	CHECK_EQ_INT(e->request_us, 4);
	CHECK_EQ_INT(e->text_bytes, 0);
	CHECK_EQ_INT(e->first_turn, 1);
	record_release(&r);
	CHECK_EQ_INT(dec(&r, JOURNAL_REPLY_END, "{\"state\":\"done\"}", NULL), RECORD_OK);
	CHECK(r.u.end.done && !r.u.end.has_error && !r.u.end.cache_hit);
	CHECK_EQ_INT(r.u.end.turn, RECORD_ABSENT);
	CHECK_EQ_INT(r.u.end.text_bytes, RECORD_ABSENT);
	CHECK(r.u.end.stop_reason == NULL && r.u.end.model == NULL);
	record_release(&r);

	CHECK_EQ_INT(dec_json(&r, JOURNAL_CLEAR, record_clear_json(6)), RECORD_OK);
	CHECK_EQ_INT(r.u.clear.turn, 6);
	record_release(&r);
	CHECK_EQ_INT(dec_json(&r, JOURNAL_RETRY, record_retry_json(4, 3, 12)), RECORD_OK);
	CHECK_EQ_INT(r.u.retry.turn, 4);
	CHECK_EQ_INT(r.u.retry.attempt, 3);
	CHECK_EQ_INT(r.u.retry.ms, 12);
	record_release(&r);

	CHECK_EQ_INT(dec(&r, JOURNAL_BLOCK,
			 "{\"turn\":1,\"attempt\":1,\"text_at\":0,\"text_end\":4,\"thinking_at\":2,"
			 "\"thinking_end\":9,\"block\":{\"type\":\"tool_use\",\"id\":\"x\"}}",
			 NULL),
		     RECORD_OK);
	CHECK_EQ_INT(r.u.block.text_end, 4);
	CHECK_EQ_INT(r.u.block.thinking_at, 2);
	CHECK_EQ_INT(r.u.block.thinking_end, 9);
	CHECK_EQ_STR(r.u.block.block_type, "tool_use");
	record_release(&r);
	/* a block without a string type decodes; blocks_load judges it */
	CHECK_EQ_INT(dec(&r, JOURNAL_BLOCK, "{\"block\":\"no\"}", NULL), RECORD_OK);
	CHECK(r.u.block.block == NULL && r.u.block.block_type == NULL);
	record_release(&r);

	CHECK_EQ_INT(dec(&r, JOURNAL_SUMMARY,
			 "{\"text\":\"so far\",\"first_turn\":1,\"last_turn\":3,\"by\":\"call\","
			 "\"ms\":5,\"usage\":{\"output_tokens\":7},\"model\":\"m\"}",
			 NULL),
		     RECORD_OK);
	CHECK_EQ_STR(r.u.summary.text, "so far");
	CHECK_EQ_INT(r.u.summary.first_turn, 1);
	CHECK_EQ_INT(r.u.summary.last_turn, 3);
	CHECK_EQ_STR(r.u.summary.by, "call");
	CHECK(r.u.summary.has_usage);
	CHECK_EQ_INT(r.u.summary.usage.output_tokens, 7);
	CHECK_EQ_STR(r.u.summary.model, "m");
	record_release(&r);

	CHECK_EQ_INT(dec_json(&r, JOURNAL_UNDO, record_undo_json(5, 6)), RECORD_OK);
	CHECK_EQ_INT(r.u.undo.turn, 5);
	CHECK_EQ_INT(r.u.undo.ms, 6);
	record_release(&r);
	CHECK_EQ_INT(dec_json(&r, JOURNAL_FORKED_FROM, record_forked_from_json("a-b", 0, 6)),
		     RECORD_OK);
	CHECK_EQ_STR(r.u.forked_from.context, "a-b");
	CHECK_EQ_INT(r.u.forked_from.turn, 0);
	record_release(&r);
	CHECK_EQ_INT(dec(&r, JOURNAL_META, "{\"meta\":{\"k\":\"v\"}}", NULL), RECORD_OK);
	CHECK(cJSON_IsObject(r.u.meta.meta));
	CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(r.u.meta.meta, "k")->valuestring, "v");
	record_release(&r);
	CHECK_EQ_INT(dec(&r, JOURNAL_META, "{\"meta\":[\"k\"]}", NULL), RECORD_OK);
	CHECK(r.u.meta.meta == NULL); /* no object: no set */
	record_release(&r);
	CHECK_EQ_INT(dec(&r, JOURNAL_META, "{}", NULL), RECORD_OK);
	CHECK(r.u.meta.meta == NULL);
	record_release(&r);
	CHECK_EQ_INT(dec(&r, JOURNAL_ATTACH,
			 "{\"name\":\"a.pdf\",\"type\":\"PDF\",\"size\":3,\"hash\":\"h\"}", NULL),
		     RECORD_OK);
	CHECK_EQ_STR(r.u.attach.name, "a.pdf");
	record_release(&r);
	CHECK_EQ_INT(dec_json(&r, JOURNAL_DETACH, record_detach_json("a.pdf", 1)), RECORD_OK);
	CHECK_EQ_STR(r.u.attach.name, "a.pdf");
	record_release(&r);
}

#define HASH "0123456789abcdef0123456789abcdef"

/* USER's "attach" list, and the attachment an ATTACH or a list item holds:
 * the exact bytes the writers print, and the validation of what is read. */
static void test_attachments(void)
{
	char *t;
	struct record_attach att[2] = {
	    {.name = "a.png", .type = "PNG", .size = 10, .hash = HASH, .tokens = 7, .ms = 5},
	    {.name = "b.txt", .type = "text", .size = 3, .hash = HASH, .tokens = 1}};
	cJSON *list = record_attach_list_json(att, 2);
	CHECK(cJSON_IsArray(list));
	CHECK_EQ_INT(record_print(record_user_json(2, "see", 3, 9, list), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"turn\":2,\"text\":\"see\",\"ms\":9,\"attach\":["
			"{\"name\":\"a.png\",\"type\":\"PNG\",\"size\":10,\"hash\":\"" HASH
			"\",\"tokens\":7},"
			"{\"name\":\"b.txt\",\"type\":\"text\",\"size\":3,\"hash\":\"" HASH
			"\",\"tokens\":1}]}");
	struct record r;
	CHECK_EQ_INT(dec(&r, JOURNAL_USER, t, NULL), RECORD_OK);
	CHECK(cJSON_Compare(r.u.user.attach, list, true));
	struct record_attachment f;
	CHECK_EQ_INT(record_attachment_fields(cJSON_GetArrayItem(r.u.user.attach, 1), &f), 0);
	CHECK_EQ_STR(f.name, "b.txt");
	CHECK_EQ_INT(f.type, ATTACH_TEXT);
	CHECK_EQ_INT(f.size, 3);
	CHECK_EQ_STR(f.hash, HASH);
	CHECK_EQ_INT(f.tokens, 1);
	record_release(&r);
	free(t);
	cJSON_Delete(list);
	list = record_attach_list_json(NULL, 0); /* an empty list is still a list */
	CHECK_EQ_INT(record_print(record_user_json(1, "x", 1, 2, list), &t, NULL), 0);
	CHECK_EQ_STR(t, "{\"turn\":1,\"text\":\"x\",\"ms\":2,\"attach\":[]}");
	free(t);
	cJSON_Delete(list);

	/* an ATTACH payload; tokens are optional */
	CHECK_EQ_INT(dec(&r, JOURNAL_ATTACH,
			 "{\"name\":\"a.pdf\",\"type\":\"PDF\",\"size\":3,\"hash\":\"" HASH
			 "\",\"ms\":4}",
			 NULL),
		     RECORD_OK);
	CHECK_EQ_INT(record_attachment_fields(r.json, &f), 0);
	CHECK_EQ_INT(f.type, ATTACH_PDF);
	CHECK_EQ_INT(f.tokens, RECORD_ABSENT);
	record_release(&r);

	/* what is no attachment */
	static const char *const bad[] = {
	    "{\"type\":\"PDF\",\"size\":3,\"hash\":\"" HASH "\"}",
	    "{\"name\":\"../x\",\"type\":\"PDF\",\"size\":3,\"hash\":\"" HASH "\"}",
	    "{\"name\":\"a\",\"type\":\"zip\",\"size\":3,\"hash\":\"" HASH "\"}",
	    "{\"name\":\"a\",\"type\":\"PDF\",\"size\":-1,\"hash\":\"" HASH "\"}",
	    "{\"name\":\"a\",\"type\":\"PDF\",\"size\":25165825,\"hash\":\"" HASH "\"}",
	    "{\"name\":\"a\",\"type\":\"PDF\",\"size\":\"3\",\"hash\":\"" HASH "\"}",
	    "{\"name\":\"a\",\"type\":\"PDF\",\"size\":3,\"hash\":\"h\"}",
	    "{\"name\":\"a\",\"type\":\"PDF\",\"size\":3}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *o = cJSON_Parse(bad[i]);
		CHECK(o != NULL);
		CHECK_EQ_INT(record_attachment_fields(o, &f), -EINVAL);
		cJSON_Delete(o);
	}
	/* the limit itself, and tokens out of range read as absent */
	cJSON *o = cJSON_Parse("{\"name\":\"a\",\"type\":\"PNG\",\"size\":25165824,"
			       "\"hash\":\"" HASH "\",\"tokens\":1e12}");
	CHECK_EQ_INT(record_attachment_fields(o, &f), 0);
	CHECK_EQ_INT(f.size, ATTACH_FILE_MAX);
	CHECK_EQ_INT(f.tokens, RECORD_ABSENT);
	cJSON_Delete(o);
}

/* Every rejection (-EINVAL: a bad record), with its reason. */
static void test_rejections(void)
{
	static const struct {
		uint16_t type;
		const char *payload;
		int want;
	} cases[] = {
	    {JOURNAL_CREATE, "\xff{}", -EINVAL},	   /* not UTF-8 */
	    {JOURNAL_SETTINGS, "[1]", -EINVAL},		   /* no object */
	    {JOURNAL_SETTINGS, "{\"settings\":", -EINVAL}, /* no JSON */
	    {JOURNAL_USER, "", -EINVAL},
	    {JOURNAL_USER, "{\"text\":\"x\"}", -EINVAL},
	    {JOURNAL_USER, "{\"turn\":0,\"text\":\"x\"}", -EINVAL},
	    {JOURNAL_USER, "{\"turn\":1.5,\"text\":\"x\"}", -EINVAL},
	    {JOURNAL_USER, "{\"turn\":1e16,\"text\":\"x\"}", -EINVAL},
	    {JOURNAL_USER, "{\"turn\":\"1\",\"text\":\"x\"}", -EINVAL},
	    {JOURNAL_USER, "{\"turn\":1}", -EINVAL},
	    {JOURNAL_USER, "{\"turn\":1,\"text\":5}", -EINVAL},
	    {JOURNAL_SUMMARY, "{\"first_turn\":0,\"last_turn\":0}", -EINVAL},
	    {JOURNAL_SUMMARY, "{\"text\":\"s\",\"last_turn\":0}", -EINVAL},
	    {JOURNAL_SUMMARY, "{\"text\":\"s\",\"first_turn\":3,\"last_turn\":2}", -EINVAL},
	    {JOURNAL_SUMMARY, "{\"text\":\"s\",\"first_turn\":3}", -EINVAL},
	    {JOURNAL_UNDO, "{\"ms\":1}", -EINVAL},
	    {JOURNAL_UNDO, "{\"turn\":0}", -EINVAL},
	    {JOURNAL_FORKED_FROM, "{\"turn\":1}", -EINVAL},
	    {JOURNAL_FORKED_FROM, "{\"context\":\"a/b\",\"turn\":1}", -EINVAL},
	    {JOURNAL_FORKED_FROM, "{\"context\":\"\",\"turn\":1}", -EINVAL},
	    {JOURNAL_FORKED_FROM, "{\"context\":\"a\"}", -EINVAL},
	    {JOURNAL_FORKED_FROM, "{\"context\":\"a\",\"turn\":-1}", -EINVAL},
	    /* ignored, not bad */
	    {JOURNAL_ATTACH, "{\"size\":1}", RECORD_IGNORED},
	    {JOURNAL_DETACH, "{\"name\":1}", RECORD_IGNORED},
	    /* what only the context can judge decodes */
	    {JOURNAL_REPLY_PART, "{}", RECORD_OK},
	    {JOURNAL_REPLY_END, "{}", RECORD_OK},
	    {JOURNAL_CLEAR, "{}", RECORD_OK},
	    {JOURNAL_RETRY, "{}", RECORD_OK},
	    {JOURNAL_BLOCK, "{}", RECORD_OK},
	    {JOURNAL_META, "{}", RECORD_OK},
	    {JOURNAL_SUMMARY, "{\"text\":\"\",\"first_turn\":0,\"last_turn\":0}", RECORD_OK},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct record r;
		const char *why = NULL;
		int ret = dec(&r, cases[i].type, cases[i].payload, &why);
		if (ret != cases[i].want)
			fprintf(stderr, "case %zu: type %u %s: %d\n", i, cases[i].type,
				cases[i].payload, ret);
		CHECK_EQ_INT(ret, cases[i].want);
		CHECK((ret == RECORD_OK) == (why == NULL));
		record_release(&r);
	}
	/* a summary over SUMMARY_MAX */
	size_t n = (256u << 10) + 1;
	char *big = malloc(n + 64);
	CHECK(big != NULL);
	if (big) {
		int k = snprintf(big, 64, "{\"first_turn\":0,\"last_turn\":0,\"text\":\"");
		memset(big + k, 'x', n);
		strcpy(big + k + n, "\"}");
		struct record r;
		CHECK_EQ_INT(dec(&r, JOURNAL_SUMMARY, big, NULL), -EINVAL);
		record_release(&r);
		strcpy(big + k + n - 1, "\"}"); /* exactly the limit */
		CHECK_EQ_INT(dec(&r, JOURNAL_SUMMARY, big, NULL), RECORD_OK);
		CHECK_EQ_INT(r.u.summary.text_len, n - 1);
		record_release(&r);
		free(big);
	}
}

/* Keys a version does not know are ignored; types it does not know are
 * reported, not bad. */
static void test_unknown(void)
{
	struct record r;
	const char *why = NULL;
	CHECK_EQ_INT(
	    dec(&r, JOURNAL_USER, "{\"turn\":1,\"later\":{\"x\":[1]},\"text\":\"t\"}", &why),
	    RECORD_OK);
	CHECK_EQ_STR(r.u.user.text, "t");
	record_release(&r);
	CHECK_EQ_INT(dec(&r, 200, "{\"anything\":1}", &why), RECORD_UNKNOWN);
	CHECK(why != NULL);
	record_release(&r);
	CHECK_EQ_INT(dec(&r, 13, "{}", &why), RECORD_UNKNOWN);
	record_release(&r);
	/* an unknown type's payload must still be a JSON object of UTF-8 */
	CHECK_EQ_INT(dec(&r, 200, "nope", &why), -EINVAL);
	record_release(&r);
	record_release(NULL);
}

struct fixture_count {
	int ok, bad, ignored, unknown, other;
};

static int on_fixture(void *data, uint16_t type, const void *payload, size_t len, uint64_t off)
{
	struct fixture_count *n = data;
	struct record r = {0};
	(void)off;
	int ret = record_decode(&r, type, payload, len, NULL);
	n->ok += ret == RECORD_OK;
	n->bad += ret == -EINVAL;
	n->ignored += ret == RECORD_IGNORED;
	n->unknown += ret == RECORD_UNKNOWN;
	n->other += ret < 0 && ret != -EINVAL;
	record_release(&r);
	return 0;
}

static void test_fixtures(void)
{
	static const char *const names[] = {"good",	   "blocks",	"forked-undone",
					    "interrupted", "misplaced", "unknown-type",
					    "bad-middle",  "torn-tail"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/journal/%s.mcj", FIXTURES, names[i]);
		struct fixture_count n = {0};
		struct journal_report rep;
		CHECK_EQ_INT(journal_scan(path, on_fixture, &n, &rep), 0);
		CHECK(n.ok > 0);
		CHECK_EQ_INT(n.other, 0);
		CHECK_EQ_INT(n.unknown, !strcmp(names[i], "unknown-type"));
		/* misplaced.mcj's turn 6 USER is not UTF-8; the rest of what the
		 * loader refuses there is judged against the context */
		CHECK_EQ_INT(n.bad, !strcmp(names[i], "misplaced"));
	}
}

int main(void)
{
	test_names();
	test_encoded_bytes();
	test_round_trip();
	test_struct_encoders();
	test_attachments();
	test_rejections();
	test_unknown();
	test_fixtures();
	return check_report();
}
